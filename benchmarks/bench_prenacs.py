"""Target 1: 100,000 ids, a trivial Python plugin, CLI end to end with default options, results to
a file: provbatch against prenacs 1.2 (PyPI ``prenacs==1.2``), its default parallel mode and ``--serial``.

prenacs is installed in a venv of its own in the benchmark cache (reused when present). The
three commands run side by side, in interleaved rounds; each figure is the best round. Every
results file is checked (line count, no duplicate, only input ids).

Goal: provbatch at least 10x faster than prenacs' default (parallel) mode, and not slower than
its --serial mode.

Usage: python benchmarks/bench_prenacs.py [--quick] [--entities N] [--rounds R]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _scale import PLUGINS, batch_compute, cache_dir, check_results, fresh, ids_file, load_average, result, run_env, timed_run  # noqa: E402, I001

PRENACS = "prenacs==1.2"


def prenacs_venv() -> tuple[Path | None, str]:
    """The prenacs-batch-compute of a venv with prenacs 1.2, installed once; (None, why) if that fails."""
    venv = cache_dir() / "prenacs-1.2-venv"
    tool = venv / "bin" / "prenacs-batch-compute"
    if tool.exists():
        return tool, "reused"
    print(f"installing {PRENACS} into {venv} ...", flush=True)
    steps = [[sys.executable, "-m", "venv", str(venv)], [str(venv / "bin" / "pip"), "install", "-q", PRENACS]]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            return None, f"`{' '.join(step)}` failed (exit {done.returncode}): {(done.stderr or done.stdout).strip()[-800:]}"
    return (tool, "installed") if tool.exists() else (None, f"{PRENACS} installed no prenacs-batch-compute")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20,000 ids, one round")
    parser.add_argument("--entities", type=int)
    parser.add_argument("--rounds", type=int)
    args = parser.parse_args()
    n = args.entities or (20_000 if args.quick else 100_000)
    rounds = args.rounds or (1 if args.quick else 2)
    plugin, ids = PLUGINS / "trivial.py", ids_file(n)
    work = fresh(cache_dir() / "work-prenacs")
    print(f"target 1: {n:,} ids, {plugin.name}, CLI end to end, results to a file; {load_average()}")

    tool, how = prenacs_venv()
    if tool is None:
        print(f"prenacs 1.2 could not be installed here: {how}")
        result("1 vs prenacs 1.2", "prenacs 1.2 not installable here", ">=10x parallel, >= serial", False)
        return
    print(f"prenacs: {tool} ({how})")

    commands = {
        # default options; the results file is the only thing asked for. Run from an empty folder so
        # that the attribute definitions found are the ones beside the plugin.
        "provbatch (default: auto)": lambda out: batch_compute(plugin, ids, "--out", out),
        # prenacs 1.2 stops with FileNotFoundError when --out does not exist yet: an empty file is created first
        "prenacs 1.2 --serial": lambda out: [str(tool), str(plugin), "ids", str(ids), "--out", str(out), "--serial"],
        "prenacs 1.2 (default: parallel)": lambda out: [str(tool), str(plugin), "ids", str(ids), "--out", str(out)],
    }
    best: dict[str, float] = {}
    for round_no in range(1, rounds + 1):
        for name, command in commands.items():
            out = work / f"{name.split()[0]}-{round_no}-{len(best)}.tsv"
            if name.startswith("prenacs"):
                out.write_text("")
            timed = timed_run(command(out), cwd=work, env=run_env(work))
            if timed.returncode != 0:
                print(f"{name} failed (exit {timed.returncode}):\n{timed.stderr[-2000:]}")
                result("1 vs prenacs 1.2", f"{name} failed to run", ">=10x parallel, >= serial", False)
                return
            check = check_results(out, n, ids)
            print(f"  round {round_no}: {name:34s} {timed.seconds:7.2f} s  {n / timed.seconds:>10,.0f} ids/s  "
                  f"peak RSS {timed.max_rss_mb:6.0f} MB  ({check})", flush=True)
            best[name] = min(best.get(name, float("inf")), timed.seconds)
            out.unlink()
    ours, serial, parallel = (best[name] for name in commands)
    print(f"best of {rounds}: provbatch {ours:.2f} s, prenacs --serial {serial:.2f} s, prenacs parallel {parallel:.2f} s")
    result("1a vs prenacs parallel", f"{parallel / ours:.1f}x faster ({ours:.2f} s vs {parallel:.2f} s)", ">= 10x", parallel / ours >= 10)
    result("1b vs prenacs --serial", f"{serial / ours:.2f}x ({ours:.2f} s vs {serial:.2f} s)", ">= 1.0x (not slower)", ours <= serial)


if __name__ == "__main__":
    main()
