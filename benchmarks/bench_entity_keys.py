"""Why an entity's key is its own name (schema revision 0003): new entities written in name order vs hashed.

The store's writer (the code of ``batch-compute --store``) writes N new entities with one
Integer value each into a new SQLite store, in transactions of 20,000 values, twice in one
run, interleaved: with names that are their own keys (``e_00000001``, ...: the keys arrive
in order and append to the unique key index), and with the same names plus a trailing
space (hashed: ``"\\x1f"`` + blake2b, so each key lands at a random place of the index, as
every key did in revisions 0001 and 0002). Prints the CPU and wall seconds of each and their
ratio. Informational (no target row): it backs the figures of docs/store.md.

Usage: python benchmarks/bench_entity_keys.py [--entities N] [--rounds R]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _scale import cache_dir, fresh, load_average  # noqa: E402

from provbatch.store import ComputationRecord, PluginRecord, Store  # noqa: E402

BATCH = 20_000


def write(folder: Path, names: list[str]) -> tuple[float, float]:
    """CPU and wall seconds of writing ``names`` (one value each) as a new computation into a new store."""
    url = f"sqlite:///{fresh(folder) / 'store.sqlite'}"
    Store.init(url)
    with Store(url) as store:
        store.apply_attributes({"n": {"datatype": "Integer"}})
        plugin = PluginRecord("keys", "1", "python", "s", {"OUTPUT": ["n"]})
        computation, _existed = store.record_computation(ComputationRecord(
            uuid="00000000-0000-0000-0000-000000000001", plugin=plugin, output=["n"], plugin_sha256="s",
            comp_status="completed"))
        writer = store.writer(computation, ["n"], fresh=True)
        batches = [(names[start:start + BATCH], [[str(i) for i in range(start, min(len(names), start + BATCH))]])
                   for start in range(0, len(names), BATCH)]
        cpu, wall = time.process_time(), time.perf_counter()
        for batch_names, columns in batches:
            writer.write_encoded((batch_names, writer.encode_columns(batch_names, columns)))
        return time.process_time() - cpu, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entities", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    n = args.entities
    variants = {"own keys (name order)": [f"e_{i:08d}" for i in range(n)],
                "hashed keys (random order)": [f"e_{i:08d} " for i in range(n)]}
    print(f"{n:,} new entities, one value each, into SQLite, {args.rounds} interleaved rounds; {load_average()}", flush=True)
    best: dict[str, tuple[float, float]] = {}
    work = cache_dir() / "work-entity-keys"
    for round_no in range(args.rounds):
        order = list(variants) if round_no % 2 == 0 else list(reversed(variants))
        for label in order:
            cpu, wall = write(work, variants[label])
            print(f"  round {round_no + 1}: {label:27s} CPU {cpu:6.2f} s, wall {wall:6.2f} s", flush=True)
            best[label] = min(best.get(label, (cpu, wall)), (cpu, wall))
    own, hashed = best["own keys (name order)"], best["hashed keys (random order)"]
    print(f"best of each: own keys CPU {own[0]:.2f} s / wall {own[1]:.2f} s; hashed CPU {hashed[0]:.2f} s / wall "
          f"{hashed[1]:.2f} s; hashed / own: CPU {hashed[0] / own[0]:.1f}x, wall {hashed[1] / own[1]:.1f}x")


if __name__ == "__main__":
    main()
