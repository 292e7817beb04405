"""Sequence length with a batch-wide state: initialize, merge, finalize.

Example of the state lifecycle. initialize(**params) runs once and builds the
state (a dict); each worker gets its own copy, counts what it computed in it,
and merge() combines the workers' copies so that finalize() sees the totals
and writes a summary file when ``summary`` is given.
"""

ID = "seq_stats_state"
VERSION = "1.0.0"
INPUT = "path to a FASTA file (plain text)"
OUTPUT = ["genome_size"]
METHOD = "counts the sequence characters of all records; totals are gathered in the state"
PARAMETERS = [
    ("summary", "String(1024)", "", "file where finalize writes the totals (none when empty)"),
]


def initialize(summary="", **kwargs):
    return {"summary": summary, "files": 0, "bases": 0}


def compute(entity, state=None, **kwargs):
    size = 0
    with open(entity, "rb") as handle:
        for line in handle:
            if not line.startswith(b">"):
                size += len(line.strip())
    state["files"] += 1
    state["bases"] += size
    return [size], []


def merge(states):
    merged = dict(states[0])
    merged["files"] = sum(s["files"] for s in states)
    merged["bases"] = sum(s["bases"] for s in states)
    return merged


def finalize(state):
    if state["summary"]:
        with open(state["summary"], "w") as out:
            out.write(f"files\t{state['files']}\nbases\t{state['bases']}\n")
