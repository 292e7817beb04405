"""All the performance targets (issues 8, 13, 16 and 17), one benchmark script each, then a table.

Runs benchmarks/bench_prenacs.py (1), bench_cpu.py (2), bench_ray.py (3), bench_10m.py (4),
bench_overhead.py (5), bench_state.py (6), bench_nim.py --targets (7: the Nim bridge per
call beside a Python function, Nim vs Rust through the CLI), bench_hand_loop.py (8: 1M trivial
ids through the CLI against a hand-written loop, peak RSS), bench_pool.py (9: pool vs serial,
auto vs serial on the benchmark plugins), bench_bash_parallel.py (10: the Bash path against
GNU parallel) and
bench_integrity_cost.py (11: issue 13's capture of plugin output and resume check on 1M trivial
entities) and bench_store.py (12: issue 16's results store: load rates into SQLite, PostgreSQL
and MariaDB beside prenacs-load-results, why, export, batch-compute --store) one after the
other, shows their output, and
prints every target with its measured value, goal and PASS/FAIL. ``--quick`` passes --quick
to each (smaller sizes: a smoke run, not the figures of docs/performance.md).

Usage: python benchmarks/run_all.py [--quick] [--only 1,3,...]   (or: make bench)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = {
    "1": "bench_prenacs.py",
    "2": "bench_cpu.py",
    "3": "bench_ray.py",
    "4": "bench_10m.py",
    "5": "bench_overhead.py",
    "6": "bench_state.py",
    "7": "bench_nim.py --targets",
    "8": "bench_hand_loop.py",
    "9": "bench_pool.py",
    "10": "bench_bash_parallel.py",
    "11": "bench_integrity_cost.py",
    "12": "bench_store.py",
}


def numbered(target: str, number: str) -> str:
    """The target's name led by its row number (bench_store.py names its rows without one)."""
    return target if re.match(rf"{number}[a-z]?\b", target) else f"{number} {target}"


def run_script(number: str, quick: bool) -> list[dict]:
    """Run one target's script, showing its output; its RESULT rows, and a failing row when it
    did not end well (a non-zero exit, no verdict, an unreadable RESULT line): never an exception."""
    script_name, *script_args = SCRIPTS[number].split()
    script = HERE / script_name
    print(f"\n=== {script.name} ===", flush=True)
    started = time.perf_counter()
    found: list[dict] = []
    problems: list[str] = []
    last_line = ""
    try:
        process = subprocess.Popen([sys.executable, str(script), *script_args, *(["--quick"] if quick else [])],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except OSError as exc:
        problems.append(f"could not start: {exc}")
    else:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("RESULT "):
                try:
                    row = json.loads(line[len("RESULT "):])
                    found.append({"target": numbered(str(row["target"]), number), "measured": str(row["measured"]),
                                  "goal": str(row["goal"]), "pass": bool(row["pass"])})
                except (ValueError, KeyError, TypeError):
                    problems.append("an unreadable RESULT line")
            else:
                if "WARNING" not in line or "Token authentication" not in line:  # Ray's start-up banner
                    print(line, end="", flush=True)
                if line.strip():
                    last_line = line.strip()
        process.wait()
        if process.returncode != 0:
            problems.append(f"exit {process.returncode}" + (f": {last_line[:120]}" if last_line else ""))
        elif not found:
            problems.append("no verdict printed")
    if problems:
        found.append({"target": f"{number} ({script.name})", "measured": "script failed: " + "; ".join(problems),
                      "goal": "-", "pass": False})
    print(f"({time.perf_counter() - started:.0f} s)")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--only", help=f"comma-separated target numbers, of {','.join(SCRIPTS)} (default: all)")
    args = parser.parse_args()
    chosen = [number.strip() for number in args.only.split(",") if number.strip()] if args.only else list(SCRIPTS)
    unknown = [number for number in chosen if number not in SCRIPTS]
    if unknown or not chosen:
        parser.error(f"--only {args.only}: no target {', '.join(unknown) or '(none given)'}; the targets are {','.join(SCRIPTS)}")
    load = os.getloadavg()
    print(f"provbatch benchmarks{' (quick)' if args.quick else ''}: load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, "
          f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}", flush=True)
    rows: list[dict] = []
    for number in chosen:
        rows.extend(run_script(number, args.quick))
    load = os.getloadavg()
    print(f"\nload average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
    widths = [max(len(str(row[key])) for row in rows + [{"target": "target", "measured": "measured", "goal": "goal"}])
              for key in ("target", "measured", "goal")]
    print(f"{'target':{widths[0]}}  {'measured':{widths[1]}}  {'goal':{widths[2]}}  result")
    for row in rows:
        print(f"{row['target']:{widths[0]}}  {row['measured']:{widths[1]}}  {row['goal']:{widths[2]}}  "
              f"{'PASS' if row['pass'] else 'FAIL'}")
    print(f"\n{sum(row['pass'] for row in rows)} of {len(rows)} rows pass")
    return 0 if all(row["pass"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
