"""Target 9 (issue 17): no slow path. Through the CLI, in one run:

a. 100,000 trivial ids: ``--backend pool`` against ``--backend serial`` (goal: pool at least
   0.8x the speed of serial: worker processes must not cost much more than they can save);
b. each benchmark plugin (benchmarks/plugins: trivial.py, cpu_burn.py, state_array.py) with
   the default backend ``auto`` against ``--backend serial`` (goal: auto never more than 10%
   slower than serial: auto must not pick a backend that loses).

The commands run in interleaved rounds (a burst of load from the other users of this machine
then hits both alike; the order alternates between rounds), start-up included; the verdict is
the median of the rounds' own ratios (each round's two runs are neighbours in time:
_scale.paired_ratio), the best round of each printed beside it. Every results file is checked
(one line per id, no duplicate), and the results of the commands compared must be the same lines.

The runs of trivial.py and state_array.py take 0.2-0.5 s, and two neighbouring runs of one and
the same command differ here by up to 30 % (2026-12-03: 20 interleaved pairs of ``--backend
serial`` against ``auto``, which decides ``serial`` and then runs the same code, gave paired
ratios from 0.74 to 1.46); their comparisons get :data:`SHORT_ROUNDS` times the rounds, so that
their median is not a coin toss at the goal's 10 % (a pair costs ~1 s).

Usage: python benchmarks/bench_pool.py [--quick] [--rounds R]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _scale import PLUGINS, batch_compute, cache_dir, check_results, fresh, ids_file, load_average, paired_ratio, result, run_env, timed_run  # noqa: E402, I001

POOL_GOAL = 0.8
AUTO_GOAL = 1.10
#: the sub-second comparisons (trivial.py's and state_array.py's) run this many times the rounds
SHORT_ROUNDS = 3


def compare(work: Path, label: str, plugin: Path, ids: Path, n: int, variants: dict[str, list[str]],
            rounds: int, extra: list[str]) -> tuple[dict[str, float], list[dict[str, float]]]:
    """Best wall time of each variant of one command and each round's times, interleaved rounds, outputs
    checked and compared."""
    best: dict[str, float] = {}
    times: list[dict[str, float]] = []
    for round_no in range(1, rounds + 1):
        times.append({})
        order = list(variants) if round_no % 2 else list(reversed(variants))
        for name in order:
            out = work / f"{label}-{name}.tsv"
            for stale in work.glob(f"{out.name}*"):
                stale.unlink()
            timed = timed_run(batch_compute(plugin, ids, "--out", out, *extra, *variants[name]), cwd=work, env=run_env(work))
            if timed.returncode != 0:
                sys.exit(f"{label} {name} failed (exit {timed.returncode}):\n{timed.stderr[-2000:]}")
            check = check_results(out, n, ids)
            report = next(iter(yaml.safe_load_all(Path(f"{out}.report.yaml").read_text())))
            print(f"  round {round_no}: {label:12s} {name:7s} {timed.seconds:7.2f} s  backend {report['backend']}, "
                  f"{report['workers']} worker(s)  ({check})", flush=True)
            best[name] = min(best.get(name, float("inf")), timed.seconds)
            times[-1][name] = timed.seconds
    contents = {name: sorted((work / f"{label}-{name}.tsv").read_text().splitlines()) for name in variants}
    first = next(iter(contents.values()))
    if any(lines != first for lines in contents.values()):
        sys.exit(f"{label}: the results of {', '.join(variants)} differ")
    return best, times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a quarter of the entities, 2 rounds")
    parser.add_argument("--rounds", type=int)
    args = parser.parse_args()
    rounds = args.rounds or (2 if args.quick else 5)
    scale = 4 if args.quick else 1
    work = fresh(cache_dir() / "work-pool")
    print(f"target 9: pool vs serial, auto vs serial; {rounds} interleaved rounds ({rounds * SHORT_ROUNDS} for the sub-second "
          f"ones), the median of their paired ratios; {load_average()}")

    n = 100_000 // scale
    ids = ids_file(n)
    short_rounds = rounds * SHORT_ROUNDS
    best, times = compare(work, "trivial", PLUGINS / "trivial.py", ids, n,
                          {"serial": ["--backend", "serial"], "pool": ["--backend", "pool"]}, short_rounds, [])
    speed, speeds = paired_ratio(times, "serial", "pool")
    print(f"  pool vs serial, the rounds' speeds {', '.join(f'{x:.2f}' for x in speeds)}: median {speed:.2f}x; best of each: "
          f"pool {best['pool']:.2f} s vs serial {best['serial']:.2f} s ({best['serial'] / best['pool']:.2f}x)")
    result(f"9a pool vs serial ({n // 1000}k trivial ids)", f"{speed:.2f}x (median of {short_rounds} paired rounds; best of each "
           f"{best['pool']:.2f} s vs {best['serial']:.2f} s)", f">= {POOL_GOAL}x serial's speed", speed >= POOL_GOAL)

    cases = [
        ("trivial", PLUGINS / "trivial.py", 100_000 // scale, short_rounds),
        ("cpu_burn", PLUGINS / "cpu_burn.py", 4_000 // scale, rounds),
        ("state_array", PLUGINS / "state_array.py", 20_000 // scale, short_rounds),
    ]
    worst, figures = 0.0, []
    for label, plugin, count, case_rounds in cases:
        ids = ids_file(count)
        best, times = compare(work, label, plugin, ids, count, {"serial": ["--backend", "serial"], "auto": []},
                              case_rounds, [])
        slower, ratios = paired_ratio(times, "auto", "serial")
        worst = max(worst, slower)
        figures.append(f"{label} {slower:.2f} ({case_rounds} rounds)")
        print(f"  {label}: auto/serial, the rounds' {', '.join(f'{x:.2f}' for x in ratios)}: median {slower:.2f}; best of "
              f"each: auto {best['auto']:.2f} s vs serial {best['serial']:.2f} s ({best['auto'] / best['serial']:.2f})")
    result("9b auto / serial time, worst of the benchmark plugins", f"{worst:.2f} ({', '.join(figures)})",
           f"<= {AUTO_GOAL:.2f}", worst <= AUTO_GOAL)
    print(load_average())


if __name__ == "__main__":
    main()
