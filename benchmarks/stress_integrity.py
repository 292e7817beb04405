"""Stress of issue 13: the driver/worker protocol never deadlocks, and every results line is written once.

Runs ``batch-compute`` on N trivial ids (default 1,000,000) with the benchmark plugin
``trivial.py``, on ``pool`` and ``auto``, with and without ``--log`` (with logs, the same
plugin returning one log line per entity, so that logs really flow through the protocol),
fresh and resumed from 35 % (the first 35 % of a fresh run's rows kept, as a killed run
leaves them). Each run must finish within ``--limit`` seconds and leave exactly N rows,
each line whole, no duplicate, the exact set of ids; with logs, exactly one log line per id. Prints one line per run and exits non-zero on the first problem.

    python benchmarks/stress_integrity.py [--n 1000000] [--workers 2] [--limit 900]

Not a test (it takes minutes on a shared machine): run it when the pool protocol changes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PLUGIN = HERE / "plugins" / "trivial.py"
ATTRIBUTES = HERE / "plugins" / "attribute_definitions.yaml"
BIN = Path(sys.executable).parent / "batch-compute"


def load_average() -> str:
    one, five, _fifteen = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} CPUs"


def run(args: list[str], limit: float) -> tuple[float, str]:
    """Wall seconds and the run's summary line (the last line on stderr)."""
    started = time.perf_counter()
    done = subprocess.run([str(BIN), *args], capture_output=True, text=True, timeout=limit)
    if done.returncode != 0:
        sys.exit(f"FAILED ({done.returncode}): {' '.join(args)}\n{done.stderr[-2000:]}")
    return time.perf_counter() - started, (done.stderr.splitlines() or [""])[-1]


def check(path: Path, n: int) -> None:
    """Exactly ids 1..n, each once, each line whole (``id<TAB>len(id)<LF>``): no duplicate, no torn line."""
    text = path.read_text()
    lines = text.split("\n")
    if lines[-1] != "":
        sys.exit(f"FAILED: {path} does not end with a newline (a torn last line)")
    lines.pop()
    ids = [line.split("\t", 1)[0] for line in lines]
    torn = [line for line in lines if line.count("\t") != 1 or line.split("\t")[1] != str(len(line.split("\t")[0]))]
    if torn:
        sys.exit(f"FAILED: {path}: {len(torn)} line(s) not of the form id<TAB>length, e.g. {torn[:3]}")
    if len(ids) != n or len(set(ids)) != n or set(ids) != {f"id{i:07d}" for i in range(1, n + 1)}:
        sys.exit(f"FAILED: {path} has {len(ids)} rows, {len(set(ids))} distinct, expected exactly ids 1..{n}")


LOGGING = PLUGIN.read_text().replace('ID = "bench_trivial"', 'ID = "bench_trivial_logs"').replace(
    "return [len(entity)], []", 'return [len(entity)], [f"seen {entity}"]')


def check_log(path: Path, n: int) -> None:
    """One log line ``id<TAB>seen id`` per id: those of a killed run's lost rows dropped on resume, none twice."""
    lines = path.read_text().splitlines()
    expected = {f"id{i:07d}\tseen id{i:07d}" for i in range(1, n + 1)}
    if len(lines) != n or set(lines) != expected:
        sys.exit(f"FAILED: {path} has {len(lines)} log lines, {len(set(lines) & expected)} of the {n} expected")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", type=float, default=900.0, help="seconds a run may take before it counts as hung")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="provbatch-stress-") as folder:
        root = Path(folder)
        ids = root / "ids.txt"
        logging = root / "trivial_logs.py"
        logging.write_text(LOGGING)
        assert PLUGIN.read_text() != LOGGING
        ids.write_text("".join(f"id{i:07d}\n" for i in range(1, options.n + 1)))
        print(f"{options.n} trivial ids, {options.workers} workers, limit {options.limit:.0f} s per run; {load_average()}",
              flush=True)
        for backend in ("pool", "auto"):
            for logs in (False, True):
                for resumed in (False, True):
                    out = root / f"{backend}-{'logs' if logs else 'nologs'}-{'resumed' if resumed else 'fresh'}.tsv"
                    extra = ["--log", str(out) + ".log"] if logs else []
                    common = [str(logging if logs else PLUGIN), str(ids), "--attributes", str(ATTRIBUTES), "--backend", backend,
                              "--workers", str(options.workers), "--out", str(out), "--no-progress", *extra]
                    if resumed:
                        run(common, options.limit)
                        lines = out.read_text().splitlines(keepends=True)
                        out.write_text("".join(lines[: int(len(lines) * 0.35)]))
                    seconds, summary = run(common, options.limit)
                    check(out, options.n)
                    if logs:
                        check_log(Path(str(out) + ".log"), options.n)
                    print(f"  {backend:5} {'with logs' if logs else 'no logs  '} {'resumed 35 %' if resumed else 'fresh       '}"
                          f"  {seconds:7.1f} s  OK ({options.n} rows, no duplicate, no torn line{', one log line each' if logs else ''})  [{summary}]", flush=True)
    print(f"all runs finished with the exact set of ids; {load_average()}")


if __name__ == "__main__":
    main()
