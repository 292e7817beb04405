"""Target 5: engine overhead. The in-process Python API with the serial backend on the trivial
plugin: time per entity on top of the plugin's own time.

The plugin's own time is its compute called directly in a loop over the same ids (best of 3).
The engine runs are :func:`provbatch.iter_batch` (rows consumed as they come, not kept) and
:func:`provbatch.run_batch` (all rows kept in memory); each is the best of ``--rounds``, and
its row count and distinct ids are checked. Fixed costs (plugin loading, the run record, the
provenance capture) are included, spread over the entities.

Goal: at most 5 µs per entity on top of the plugin, for both.

Usage: python benchmarks/bench_overhead.py [--quick] [--entities N] [--rounds R]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _scale import PLUGINS, cache_dir, fresh, load_average, result  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="200,000 entities, 2 rounds")
    parser.add_argument("--entities", type=int)
    parser.add_argument("--rounds", type=int)
    args = parser.parse_args()
    n = args.entities or (200_000 if args.quick else 1_000_000)
    rounds = args.rounds or (2 if args.quick else 3)
    import provbatch
    from provbatch.plugins.loading import load_plugin

    work = fresh(cache_dir() / "work-overhead")
    plugin = load_plugin(PLUGINS / "trivial.py")
    attributes = PLUGINS / "attribute_definitions.yaml"
    ids = [f"id_{i:08d}" for i in range(n)]
    print(f"target 5: {n:,} entities in a list, trivial plugin, backend serial, in-process; {load_average()}")

    compute = plugin.module.compute
    own = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for entity in ids:
            compute(entity)
        own = min(own, time.perf_counter() - started)
    print(f"  plugin alone (compute in a loop): {own / n * 1e6:.3f} µs per entity")

    def streamed(run_dir: Path) -> int:
        count = 0
        with provbatch.iter_batch(plugin, ids, backend="serial", attributes=attributes, run_dir=run_dir) as run:
            for _row in run:
                count += 1
        return count

    def kept(run_dir: Path) -> int:
        rows = provbatch.run_batch(plugin, ids, backend="serial", attributes=attributes, run_dir=run_dir)
        if len({entity for entity, _values, _logs in rows}) != n:
            sys.exit("run_batch: duplicate rows")
        return len(rows)

    verdicts = []
    for name, run in (("iter_batch", streamed), ("run_batch", kept)):
        best = float("inf")
        for round_no in range(rounds):
            run_dir = work / f"{name}-{round_no}"
            started = time.perf_counter()
            count = run(run_dir)
            best = min(best, time.perf_counter() - started)
            shutil.rmtree(run_dir, ignore_errors=True)
            if count != n:
                sys.exit(f"{name}: {count} rows, expected {n}")
        overhead = (best - own) / n * 1e6
        print(f"  {name:10s} {best / n * 1e6:.3f} µs per entity in all (best of {rounds}): "
              f"{overhead:.3f} µs on top of the plugin  (checked: {n} rows)")
        verdicts.append((name, overhead))
    worst = max(overhead for _name, overhead in verdicts)
    measured = ", ".join(f"{name} {overhead:.2f} µs" for name, overhead in verdicts)
    result("5 engine overhead (serial, in-process)", measured, "<= 5 µs per entity", worst <= 5)


if __name__ == "__main__":
    main()
