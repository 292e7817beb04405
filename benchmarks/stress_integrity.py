"""Stress of issue 13: the driver/worker protocol never deadlocks, and every results line is written once.

Runs ``batch-compute`` on N trivial ids (default 1,000,000) with the benchmark plugin
``trivial.py``, on ``pool`` and ``auto``, with and without ``--log``, fresh and resumed
from 35 % (the first 35 % of a fresh run's rows kept, as a killed run leaves them).
Each run must finish within ``--limit`` seconds and leave exactly N rows, no duplicate,
the exact set of ids. Prints one line per run and exits non-zero on the first problem.

    python benchmarks/stress_integrity.py [--n 1000000] [--workers 2] [--limit 900]

Not a test (it takes minutes on a shared machine): run it when the pool protocol changes.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PLUGIN = HERE / "plugins" / "trivial.py"
ATTRIBUTES = HERE / "plugins" / "attribute_definitions.yaml"
BIN = Path(sys.executable).parent / "batch-compute"


def run(args: list[str], limit: float) -> float:
    started = time.perf_counter()
    done = subprocess.run([str(BIN), *args], capture_output=True, text=True, timeout=limit)
    if done.returncode != 0:
        sys.exit(f"FAILED ({done.returncode}): {' '.join(args)}\n{done.stderr[-2000:]}")
    return time.perf_counter() - started


def check(path: Path, n: int) -> None:
    ids = [line.split("\t", 1)[0] for line in path.read_text().splitlines()]
    if len(ids) != n or len(set(ids)) != n or set(ids) != {f"id{i:07d}" for i in range(1, n + 1)}:
        sys.exit(f"FAILED: {path} has {len(ids)} rows, {len(set(ids))} distinct, expected exactly ids 1..{n}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", type=float, default=900.0, help="seconds a run may take before it counts as hung")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="provbatch-stress-") as folder:
        root = Path(folder)
        ids = root / "ids.txt"
        ids.write_text("".join(f"id{i:07d}\n" for i in range(1, options.n + 1)))
        print(f"{options.n} trivial ids, {options.workers} workers, limit {options.limit:.0f} s per run")
        for backend in ("pool", "auto"):
            for logs in (False, True):
                for resumed in (False, True):
                    out = root / f"{backend}-{'logs' if logs else 'nologs'}-{'resumed' if resumed else 'fresh'}.tsv"
                    extra = ["--log", str(out) + ".log"] if logs else []
                    common = [str(PLUGIN), str(ids), "--attributes", str(ATTRIBUTES), "--backend", backend,
                              "--workers", str(options.workers), "--out", str(out), "--no-progress", *extra]
                    if resumed:
                        run(common, options.limit)
                        lines = out.read_text().splitlines(keepends=True)
                        out.write_text("".join(lines[: int(len(lines) * 0.35)]))
                    seconds = run(common, options.limit)
                    check(out, options.n)
                    print(f"  {backend:5} {'with logs' if logs else 'no logs  '} {'resumed 35 %' if resumed else 'fresh       '}"
                          f"  {seconds:7.1f} s  OK ({options.n} rows, no duplicate)")
    print("all runs finished with the exact set of ids")


if __name__ == "__main__":
    main()
