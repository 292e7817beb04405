"""Target 3: Ray at scale. 200,000 trivial entities with ``backend="ray"`` (a private local Ray
instance, started and shut down by the run), results to a file.

Measured in-process with :func:`provbatch.iter_batch`, so that start-up and steady rate can be
told apart: start-up is the time to the first result (Ray's start, the actors, the plugin
loaded in them, the first one-entity chunk); the steady rate counts the rest of the results
over the time from the first to the last one. Shut-down is printed too. The results file is
checked (line count, no duplicate).

Goal: at least 50,000 entities/s once started.

Usage: python benchmarks/bench_ray.py [--quick] [--entities N]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _scale import PLUGINS, cache_dir, check_results, fresh, ids_file, load_average, result  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="50,000 entities")
    parser.add_argument("--entities", type=int)
    args = parser.parse_args()
    n = args.entities or (50_000 if args.quick else 200_000)
    os.environ.pop("RAY_ADDRESS", None)  # a private instance, never a cluster that happens to run here
    import provbatch
    from provbatch.inputs.entities import EntitySource

    ids = ids_file(n)
    work = fresh(cache_dir() / "work-ray")
    out = work / "ray.tsv"
    print(f"target 3: {n:,} trivial entities, backend ray; {load_average()}")
    started = time.perf_counter()
    first = last = 0.0
    count = 0
    with provbatch.iter_batch(PLUGINS / "trivial.py", EntitySource(path=str(ids)), backend="ray", out=out,
                              attributes=PLUGINS / "attribute_definitions.yaml", run_dir=work / "run") as run:
        for _row in run:
            count += 1
            last = time.perf_counter()
            if count == 1:
                first = last
    ended = time.perf_counter()
    check = check_results(out, n, ids)
    startup, steady = first - started, (count - 1) / (last - first)
    print(f"  start-up (to the first result): {startup:.2f} s; then {count - 1:,} results in {last - first:.2f} s: "
          f"{steady:,.0f} entities/s; shut-down {ended - last:.2f} s; total {ended - started:.2f} s "
          f"({n / (ended - started):,.0f} entities/s overall); workers {run.report.workers}  ({check})")
    result("3 Ray steady rate", f"{steady:,.0f} entities/s (start-up {startup:.1f} s)", ">= 50,000 entities/s", steady >= 50_000)


if __name__ == "__main__":
    main()
