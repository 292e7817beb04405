"""Target 10 (issue 17): provbatch's Bash path against GNU parallel, per entity.

The same trivial Bash function (``compute`` of benchmarks/plugins/trivial.sh: ``printf
'%s\\n' "${#1}"``) over the same 10,000 ids on 2 jobs, in one run:

* ``batch-compute trivial.sh ids.txt --out o.tsv --workers 2`` (default backend auto: it
  measures the Bash calls and hands them to 2 worker processes, each with one persistent bash);
* ``parallel -j2 --tag compute :::: ids.txt > o.tsv`` (Debian ``parallel``), the function
  exported to it with ``export -f``; ``--tag`` prefixes each output line with its argument,
  which makes the same ``id<TAB>length`` lines.

Both are timed from their start to their end (os.wait4), in interleaved rounds, best round
each; the two outputs must hold the same lines. Goal: provbatch at least 2x faster per entity.

Usage: python benchmarks/bench_bash_parallel.py [--quick] [--entities N] [--rounds R]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _scale import PLUGINS, batch_compute, cache_dir, check_results, fresh, ids_file, load_average, result, run_env, timed_run  # noqa: E402, I001

GOAL = 2.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1,000 entities")
    parser.add_argument("--entities", type=int)
    parser.add_argument("--rounds", type=int, help="default 1: GNU parallel takes minutes for 10,000 entities here")
    args = parser.parse_args()
    n = args.entities or (1_000 if args.quick else 10_000)
    rounds = args.rounds or 1
    if shutil.which("parallel") is None:
        sys.exit("GNU parallel is not installed (Debian package 'parallel'; make system-deps installs it)")
    plugin, ids = PLUGINS / "trivial.sh", ids_file(n)
    work = fresh(cache_dir() / "work-bash-parallel")
    print(f"target 10: {n:,} ids, the compute function of {plugin.name}, 2 jobs: batch-compute vs GNU parallel; "
          f"{rounds} round(s); {load_average()}")
    peer = (f"source '{plugin}' && export -f compute && "
            f"exec parallel --will-cite -j2 --tag compute :::: '{ids}' > '{{out}}'")
    commands = {
        "batch-compute": lambda out: batch_compute(plugin, ids, "--out", out, "--workers", "2"),
        "GNU parallel": lambda out: ["bash", "-c", peer.format(out=out)],
    }
    best: dict[str, float] = {}
    for round_no in range(1, rounds + 1):
        order = list(commands) if round_no % 2 else list(reversed(commands))
        for name in order:
            out = work / f"{name.replace(' ', '-')}.tsv"
            for stale in work.glob(f"{out.name}*"):
                stale.unlink()
            timed = timed_run(commands[name](out), cwd=work, env=run_env(work))
            if timed.returncode != 0:
                sys.exit(f"{name} failed (exit {timed.returncode}):\n{timed.stderr[-2000:]}")
            check = check_results(out, n, ids)
            print(f"  round {round_no}: {name:13s} {timed.seconds:7.2f} s  {timed.seconds / n * 1e3:6.3f} ms/entity  ({check})",
                  flush=True)
            best[name] = min(best.get(name, float("inf")), timed.seconds)
    contents = {name: sorted((work / f"{name.replace(' ', '-')}.tsv").read_text().splitlines()) for name in commands}
    if contents["batch-compute"] != contents["GNU parallel"]:
        sys.exit("the results of batch-compute and of GNU parallel differ")
    ours, theirs = best["batch-compute"], best["GNU parallel"]
    ratio = theirs / ours
    print(f"best: batch-compute {ours / n * 1e3:.3f} ms/entity, GNU parallel {theirs / n * 1e3:.3f} ms/entity; {load_average()}")
    result(f"10 Bash vs GNU parallel ({n:,} entities, 2 jobs)",
           f"{ratio:.1f}x faster ({ours / n * 1e3:.3f} vs {theirs / n * 1e3:.3f} ms/entity)", f">= {GOAL}x", ratio >= GOAL)


if __name__ == "__main__":
    main()
