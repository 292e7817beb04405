"""initialize once, finalize once, merge of worker states, per-worker states, shared numpy state."""

from __future__ import annotations

import os

import pytest
import yaml

import provbatch
from conftest import read_tsv, run_cli

COUNTING_PLUGIN = """
    import os
    ID = "counting"; VERSION = "1"; INPUT = "x"; OUTPUT = ["length"]
    PARAMETERS = [("journal", "Text", "", "file recording lifecycle calls")]

    def _note(journal, what):
        with open(journal, "a") as f:
            f.write(f"{what}\\t{os.getpid()}\\n")

    def initialize(journal="", **kwargs):
        _note(journal, "initialize")
        return {"journal": journal, "n": 0}

    def compute(entity, state=None, **kwargs):
        state["n"] += 1
        return [len(entity)], []

    def merge(states):
        _note(states[0]["journal"], f"merge\\t{len(states)}")
        return {"journal": states[0]["journal"], "n": sum(s["n"] for s in states)}

    def finalize(state):
        _note(state["journal"], f"finalize\\t{state['n']}")
"""


def journal_calls(journal):
    return [line.split("\t")[:-1] for line in journal.read_text().splitlines()]


@pytest.mark.parametrize("backend", ["serial", "pool", "auto"])
def test_initialize_and_finalize_once_and_merge_sees_all(backend, tmp_path, write_plugin, attributes_file, ids_file):
    plugin = write_plugin(COUNTING_PLUGIN)
    journal = tmp_path / "journal"
    ids = ids_file([f"e{i}" for i in range(300)])
    proc = run_cli(plugin, ids, "--attributes", attributes_file, "--backend", backend, "--workers", "2",
                   "--param", f"journal={journal}", "--out", tmp_path / "out.tsv")
    assert proc.returncode == 0, proc.stderr
    calls = journal_calls(journal)
    assert [c[0] for c in calls].count("initialize") == 1
    finalize = [c for c in calls if c[0] == "finalize"]
    assert finalize == [["finalize", "300"]]  # merge gathered every worker's counts
    assert len(read_tsv(tmp_path / "out.tsv")) == 300
    # initialize and finalize ran in the driver (the same process)
    pids = {line.split("\t")[-1] for line in journal.read_text().splitlines() if line.split("\t")[0] in ("initialize", "finalize")}
    assert len(pids) == 1


def test_without_merge_finalize_gets_driver_state_and_report_says_so(tmp_path, write_plugin, attributes_file, ids_file):
    source = COUNTING_PLUGIN.replace("def merge(states):", "def _unused_merge(states):")
    plugin = write_plugin(source)
    journal = tmp_path / "journal"
    proc = run_cli(plugin, ids_file(["a", "b", "c", "d"]), "--attributes", attributes_file, "--backend", "pool",
                   "--workers", "2", "--param", f"journal={journal}", "--out", tmp_path / "o.tsv")
    assert proc.returncode == 0, proc.stderr
    assert [c for c in journal_calls(journal) if c[0] == "finalize"] == [["finalize", "0"]]
    report = yaml.safe_load((tmp_path / "o.tsv.report.yaml").read_text())
    assert any("merge(states)" in remark for remark in report["remarks"])


def test_unpicklable_state_is_made_per_worker(tmp_path, write_plugin, attributes_file, ids_file):
    plugin = write_plugin("""
        import os, threading
        ID = "perworker"; VERSION = "1"; INPUT = "x"; OUTPUT = ["pid"]
        PARAMETERS = [("journal", "Text", "", "lifecycle journal")]
        def initialize(journal="", **kwargs):
            with open(journal, "a") as f:
                f.write(f"initialize\\t{os.getpid()}\\n")
            return {"lock": threading.Lock(), "journal": journal}   # a lock cannot be pickled
        def compute(entity, state=None, **kwargs):
            with state["lock"]:
                return [os.getpid()], []
        def finalize(state):
            with open(state["journal"], "a") as f:
                f.write(f"finalize\\t{os.getpid()}\\n")
        """)
    journal = tmp_path / "journal"
    out = tmp_path / "out.tsv"
    proc = run_cli(plugin, ids_file([f"e{i}" for i in range(40)]), "--attributes", attributes_file,
                   "--backend", "pool", "--workers", "2", "--param", f"journal={journal}", "--out", out)
    assert proc.returncode == 0, proc.stderr
    calls = journal_calls(journal)
    # the driver made one (and finalizes it), each of the 2 workers made its own
    assert [c[0] for c in calls].count("initialize") == 3
    assert [c[0] for c in calls].count("finalize") == 3
    init_pids = {line.split("\t")[1] for line in journal.read_text().splitlines() if line.startswith("initialize")}
    final_pids = {line.split("\t")[1] for line in journal.read_text().splitlines() if line.startswith("finalize")}
    assert init_pids == final_pids and len(init_pids) == 3
    worker_pids = {row[0] for row in read_tsv(out).values()}
    assert worker_pids <= init_pids and str(os.getpid()) not in worker_pids
    report = yaml.safe_load((tmp_path / "out.tsv.report.yaml").read_text())
    assert report["state_mode"] == "per_worker"


def test_user_state_parameter_goes_through_initialize(tmp_path, write_plugin, attributes_file, ids_file):
    plugin = write_plugin("""
        ID = "userstate"; VERSION = "1"; INPUT = "x"; OUTPUT = ["upper"]
        def initialize(state=None, **kwargs):
            return f"<{state}>"
        def compute(entity, state=None, **kwargs):
            return [state + entity], []
        def finalize(state):
            pass
        """)
    proc = run_cli(plugin, ids_file(["a"]), "--attributes", attributes_file, "--param", "state=S")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "a\t<S>a\n"


def test_finalize_runs_even_when_entities_fail(tmp_path, write_plugin, attributes_file, ids_file):
    plugin = write_plugin(COUNTING_PLUGIN.replace('state["n"] += 1', 'state["n"] += 1\n        if entity == "x": raise RuntimeError("no")'))
    journal = tmp_path / "journal"
    proc = run_cli(plugin, ids_file(["a", "x", "b"]), "--attributes", attributes_file, "--backend", "serial",
                   "--param", f"journal={journal}")
    assert proc.returncode == 3  # some entities failed (EXIT_ENTITIES_FAILED)
    assert [c for c in journal_calls(journal) if c[0] == "finalize"] == [["finalize", "3"]]


# ----------------------------------------------------------------------- Ray
NUMPY_STATE_PLUGIN = """
    import os
    import numpy as np
    ID = "numpy_state"; VERSION = "1"; INPUT = "index"; OUTPUT = ["length", "flag", "pid"]
    PARAMETERS = [("journal", "Text", "", "file recording unpickling of the state")]

    class Tracked:
        '''Records every time it is unpickled, i.e. every time the state reaches a process.'''
        def __init__(self, journal, array):
            self.journal, self.array = journal, array
        def __reduce__(self):
            return (_restore, (self.journal, self.array))

    def _restore(journal, array):
        with open(journal, "a") as f:
            f.write(f"unpickled\\t{os.getpid()}\\n")
        return Tracked(journal, array)

    def initialize(journal="", **kwargs):
        return Tracked(journal, np.arange(1_000_000, dtype=np.int64))

    def compute(entity, state=None, **kwargs):
        arr = state.array
        return [int(arr[int(entity)]), not arr.flags.writeable, os.getpid()], []

    def finalize(state):
        pass
"""


@pytest.mark.ray
def test_ray_backend_shares_state_once_per_worker(tmp_path, write_plugin, attributes_file, ids_file, ray_session):
    plugin = write_plugin(NUMPY_STATE_PLUGIN)
    journal = tmp_path / "journal"
    journal.touch()
    result = provbatch.run_batch(plugin, [str(i) for i in range(0, 200_000, 997)], params={"journal": str(journal)},
                                 backend="ray", workers=2, attributes=attributes_file)
    rows = result.as_dict()
    assert len(rows) == 201 and not result.failures
    assert rows["997"][:2] == [997, True]  # the array is read-only: mapped from the object store, not copied
    unpickled = journal.read_text().splitlines()
    assert 1 <= len(unpickled) <= 2  # once per worker process, not once per entity (201)
    assert result.report.backend == "ray" and result.report.state_mode == "shared"


@pytest.mark.ray
def test_ray_backend_cli_with_merge(tmp_path, write_plugin, attributes_file, ids_file):
    plugin = write_plugin(COUNTING_PLUGIN)
    journal = tmp_path / "journal"
    out = tmp_path / "out.tsv"
    proc = run_cli(plugin, ids_file([f"e{i}" for i in range(50)]), "--attributes", attributes_file,
                   "--backend", "ray", "--workers", "2", "--param", f"journal={journal}", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert len(read_tsv(out)) == 50
    calls = journal_calls(journal)
    assert [c[0] for c in calls].count("initialize") == 1
    assert ["merge", "2"] in calls and [c for c in calls if c[0] == "finalize"] == [["finalize", "50"]]
