"""Per-entity cost of Bash plugins: a new bash per entity (naive) vs one persistent bash per worker.

Run:  .venv/bin/python benchmarks/bench_bash.py [--calls N]

Measures, in one run and side by side (interleaved, best of several runs),
the wall time of ``module.compute`` per entity for:
  * an "echo" plugin (the call overhead alone: the plugin does no work),
  * the same plugin with a 300-line top level (sourcing cost grows with the script),
  * plugins/gc_content.sh on examples/genomes (a real plugin: about 8 processes per entity),
  * plugins/gc_content.py, the Python twin, for reference.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from provbatch.plugins.registry import importer

ROOT = Path(__file__).resolve().parent.parent
ECHO = 'ID=echo\nVERSION=1\nINPUT=any\nOUTPUT=(value)\ncompute() { printf "%s\\n" "$1"; }\n'
BIG = ECHO + "".join(f"helper_{i}() {{ local x=$1; printf '%s\\n' \"$x{i}\"; }}\nCONST_{i}='value {i}'\n" for i in range(150))


def mean_call_ms(compute: Callable[[str], object], entities: list[str], calls: int) -> float:
    """Mean wall time of one call, in milliseconds."""
    start = time.perf_counter()
    for i in range(calls):
        compute(entities[i % len(entities)])
    return (time.perf_counter() - start) / calls * 1000


def best_of(computes: list[Callable[[str], object]], entities: list[str], calls: int, repeats: int) -> list[float]:
    """Best (lowest) mean per call of each compute, the computes measured in turn in each repeat.

    Interleaving keeps a burst of load from other processes from favouring one side.
    """
    for compute in computes:
        compute(entities[0])  # warm-up: starts the persistent bash
    best = [float("inf")] * len(computes)
    for _ in range(repeats):
        for index, compute in enumerate(computes):
            best[index] = min(best[index], mean_call_ms(compute, entities, calls))
    return best


def bash_row(path: Path, entities: list[str], calls: int, repeats: int) -> tuple[float, float]:
    naive = importer(path, persistent=False)
    persistent = importer(path, persistent=True)
    try:
        naive_ms, persistent_ms = best_of([naive.compute, persistent.compute], entities, calls, repeats)
        return naive_ms, persistent_ms
    finally:
        persistent.__provbatch_cleanup__()


def first_call_ms(path: Path, entity: str) -> float:
    """Cost of the first persistent call: starting bash and sourcing the plugin."""
    module = importer(path, persistent=True)
    module.__provbatch_cleanup__()
    start = time.perf_counter()
    module.compute(entity)
    elapsed = (time.perf_counter() - start) * 1000
    module.__provbatch_cleanup__()
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100, help="calls per measurement (default 100)")
    parser.add_argument("--repeats", type=int, default=5, help="measurements per figure, best kept (default 5)")
    args = parser.parse_args()
    genomes = [str(ROOT / line) for line in (ROOT / "examples" / "genomes.txt").read_text().split()]
    with tempfile.TemporaryDirectory() as tmp:
        echo, big = Path(tmp) / "echo.sh", Path(tmp) / "big.sh"
        echo.write_text(ECHO)
        big.write_text(BIG)
        rows = [
            ("echo (call overhead)", *bash_row(echo, ["e1", "e2", "e3"], args.calls, args.repeats)),
            ("echo, 300-line script", *bash_row(big, ["e1", "e2", "e3"], args.calls, args.repeats)),
            ("gc_content.sh on examples", *bash_row(ROOT / "plugins" / "gc_content.sh", genomes, args.calls, args.repeats)),
        ]
        python = importer(ROOT / "plugins" / "gc_content.py")
        [python_ms] = best_of([lambda e: python.compute(e, digits=4)], genomes, args.calls, args.repeats)
        startup = first_call_ms(echo, "e1")
    print(f"per-entity wall time in ms: mean of {args.calls} calls, best of {args.repeats} interleaved runs")
    print(f"{'plugin':<28}{'naive':>10}{'persistent':>12}{'speed-up':>10}")
    for name, naive_ms, persistent_ms in rows:
        print(f"{name:<28}{naive_ms:>10.2f}{persistent_ms:>12.2f}{naive_ms / persistent_ms:>9.1f}x")
    print(f"{'gc_content.py (reference)':<28}{python_ms:>10.3f}")
    print(f"first persistent call (start bash + source echo.sh): {startup:.2f} ms")
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}: wall times on this machine, not limits")
    return 0


if __name__ == "__main__":
    sys.exit(main())
