"""Target 2: CPU-bound work. 20,000 entities of a plugin burning about 1 ms of CPU each
(benchmarks/plugins/cpu_burn.py), CLI end to end, default options (backend auto) against
``--backend serial``, start-up included.

Both commands run side by side, in interleaved rounds (this machine's CPU speed drifts by
10-30% from minute to minute: the figure of each is its best round); the results files are
checked (line count, no duplicate) and must hold the same values. Goal: auto at least 1.8x faster than serial (2 cores here: 2.0x is
the ceiling).

Usage: python benchmarks/bench_cpu.py [--quick] [--entities N] [--rounds R]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _scale import PLUGINS, batch_compute, cache_dir, check_results, fresh, ids_file, load_average, result, run_env, timed_run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10,000 entities")
    parser.add_argument("--entities", type=int)
    parser.add_argument("--rounds", type=int)
    args = parser.parse_args()
    n = args.entities or (10_000 if args.quick else 20_000)
    rounds = args.rounds or (1 if args.quick else 2)
    plugin, ids = PLUGINS / "cpu_burn.py", ids_file(n)
    work = fresh(cache_dir() / "work-cpu")
    print(f"target 2: {n:,} entities of {plugin.name} (~1 ms of CPU each), CLI end to end; {load_average()}")
    seconds: dict[str, float] = {}
    contents: dict[str, list[str]] = {}
    for round_no in range(1, rounds + 1):
        for name, options in (("serial", ["--backend", "serial"]), ("default (auto)", [])):
            out = work / f"{name.split()[0]}-{round_no}.tsv"
            timed = timed_run(batch_compute(plugin, ids, "--out", out, *options), cwd=work, env=run_env(work))
            if timed.returncode != 0:
                sys.exit(f"{name} failed (exit {timed.returncode}):\n{timed.stderr[-2000:]}")
            check = check_results(out, n, ids)
            report = next(iter(yaml.safe_load_all(Path(f"{out}.report.yaml").read_text())))
            print(f"  round {round_no}: {name:15s} {timed.seconds:7.2f} s  {timed.seconds / n * 1e3:.3f} ms/entity  "
                  f"backend {report['backend']}, {report['workers']} worker(s)  ({check})", flush=True)
            for remark in report.get("remarks") or []:
                print(f"      {remark}")
            seconds[name] = min(seconds.get(name, float("inf")), timed.seconds)
            contents[name] = sorted(out.read_text().splitlines())
            out.unlink()
    if contents["serial"] != contents["default (auto)"]:
        sys.exit("the results of auto and serial differ")
    ratio = seconds["serial"] / seconds["default (auto)"]
    print(f"best of {rounds}: serial {seconds['serial']:.2f} s, auto {seconds['default (auto)']:.2f} s")
    result("2 CPU-bound auto vs serial", f"{ratio:.2f}x ({seconds['default (auto)']:.2f} s vs {seconds['serial']:.2f} s)", ">= 1.8x", ratio >= 1.8)


if __name__ == "__main__":
    main()
