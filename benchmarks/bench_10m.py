"""Target 4: ten million ids through the trivial plugin, CLI end to end with default options,
results to a file: the peak resident memory of the driver (the batch-compute process; with the
trivial plugin auto computes in it, no worker process starts), and the rate.

The results file is checked (line count, no duplicate, only input ids; with sort(1)).
Goal: peak RSS of the driver at most 500 MB.

Usage: python benchmarks/bench_10m.py [--quick] [--entities N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _scale import PLUGINS, batch_compute, cache_dir, check_results, fresh, ids_file, load_average, result, run_env, timed_run  # noqa: E402, I001


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1,500,000 ids (past the point where the seen ids become fingerprints)")
    parser.add_argument("--entities", type=int)
    args = parser.parse_args()
    n = args.entities or (1_500_000 if args.quick else 10_000_000)
    print(f"target 4: {n:,} ids, trivial plugin, CLI end to end; {load_average()}", flush=True)
    ids = ids_file(n)
    work = fresh(cache_dir() / "work-10m")
    out = work / "out.tsv"
    timed = timed_run(batch_compute(PLUGINS / "trivial.py", ids, "--out", out), cwd=work, env=run_env(work))
    if timed.returncode != 0:
        sys.exit(f"batch-compute failed (exit {timed.returncode}):\n{timed.stderr[-2000:]}")
    report = next(iter(yaml.safe_load_all(Path(f"{out}.report.yaml").read_text())))
    print(f"  {timed.seconds:.1f} s, {n / timed.seconds:,.0f} ids/s, peak RSS {timed.max_rss_mb:.0f} MB, "
          f"backend {report['backend']}", flush=True)
    print(f"  {check_results(out, n, ids)}")
    out.unlink()
    result("4 peak RSS at 10M ids" if n == 10_000_000 else f"4 peak RSS at {n:,} ids",
           f"{timed.max_rss_mb:.0f} MB, {n / timed.seconds:,.0f} ids/s", "<= 500 MB", timed.max_rss_mb <= 500)


if __name__ == "__main__":
    main()
