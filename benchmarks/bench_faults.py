"""Fault tolerance figures, printed (issue 6).

1. Fault matrix on the Ray backend: 10,000 entities of plugins/fault_injection.py
   with fail_prob 0.05, crash_prob 0.002, hang_prob 0.001, --retries 3,
   --timeout 2: how many succeeded, failed, were retried, how many workers
   were lost, and that succeeded + failed = 10,000 with no duplicate.
2. Kill-resume loop: one batch (local pool) killed with SIGKILL at 20 random
   moments, then run to the end; its results file must equal, as a set of
   lines, a clean serial run, with no duplicate and no torn line.

Usage: python benchmarks/bench_faults.py [--entities N] [--kills K]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PLUGIN = REPO / "plugins" / "fault_injection.py"


def batch_compute(*args: str) -> list[str]:
    return [str(BIN / "batch-compute"), str(PLUGIN), *map(str, args), "--no-progress"]


def fault_matrix(tmp: Path, n: int) -> bool:
    ids = tmp / "ids.txt"
    ids.write_text("".join(f"entity{i}\n" for i in range(n)))
    out, run_dir = tmp / "matrix.tsv", tmp / "matrix-run"
    started = time.monotonic()
    proc = subprocess.run(
        batch_compute(ids, "--backend", "ray", "--workers", "2", "--retries", "3", "--timeout", "2",
                      "--param", "fail_prob=0.05", "--param", "crash_prob=0.002", "--param", "hang_prob=0.001",
                      "--param", "seed=2026", "--out", out, "--log", tmp / "matrix.log", "--run-dir", run_dir),
        capture_output=True, text=True, env={**os.environ, "RAY_AUTH_MODE": "disabled"},
    )
    elapsed = time.monotonic() - started
    lines = out.read_text().splitlines()
    failures_file = Path(f"{out}.failures.tsv")
    failed = failures_file.read_text().splitlines() if failures_file.exists() else []
    manifest = json.loads((run_dir / "manifest.json").read_text())
    counts = manifest["counts"]
    events = [json.loads(line)["event"] for line in (run_dir / "events.jsonl").read_text().splitlines()]
    ids_done = [line.split("\t")[0] for line in lines]
    ids_failed = [line.split("\t")[0] for line in failed]
    ok = (
        proc.returncode == 0
        and len(lines) + len(failed) == n
        and len(set(ids_done)) == len(ids_done)
        and not set(ids_done) & set(ids_failed)
    )
    print(f"fault matrix on Ray ({n} entities, fail 0.05, crash 0.002, hang 0.001, retries 3, timeout 2 s)")
    print(f"  succeeded        {len(lines)}")
    print(f"  failed           {len(failed)}  (by class: {_by_class(failed)})")
    print(f"  retried          {counts['retried']} retries ({events.count('entity_retried')} entity_retried events)")
    print(f"  workers lost     {counts['workers_lost']} ({events.count('worker_lost')} worker_lost events)")
    print(f"  succeeded+failed {len(lines) + len(failed)} of {n}; duplicates {len(ids_done) - len(set(ids_done))}")
    print(f"  manifest status  {manifest['status']}, comp_status {manifest['comp_status']}; {elapsed:.1f} s")
    print(f"  => {'PASS' if ok else 'FAIL'}")
    if proc.returncode != 0:
        print(proc.stderr[-2000:])
    return ok


def _by_class(failed: list[str]) -> dict[str, int]:
    classes: dict[str, int] = {}
    for line in failed:
        error_class = line.split("\t")[2]
        classes[error_class] = classes.get(error_class, 0) + 1
    return classes


def kill_resume(tmp: Path, n: int, kills: int) -> bool:
    ids = tmp / "ids-kill.txt"
    ids.write_text("".join(f"k{i}\n" for i in range(n)))
    params = ["--param", "sleep_sec=[0.001, 0.003]", "--param", "seed=9"]
    clean = tmp / "clean.tsv"
    subprocess.run(batch_compute(ids, "--backend", "serial", "--out", clean, *params), check=True, capture_output=True)
    out, log = tmp / "killed.tsv", tmp / "killed.log"
    rng = random.Random(42)
    args = batch_compute(ids, "--backend", "pool", "--workers", "2", "--out", out, "--log", log, *params)
    done_at_kill = []
    for _ in range(kills):
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(rng.uniform(0.3, 1.0))  # start-up included: some kills land before the first line
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        done_at_kill.append(out.read_text().count("\n") if out.exists() else 0)
    final = subprocess.run(args, capture_output=True, text=True)
    text = out.read_text()
    lines = text.splitlines()
    clean_lines = clean.read_text().splitlines()
    torn = [line for line in lines if len(line.split("\t")) != 3]
    ok = final.returncode == 0 and text.endswith("\n") and set(lines) == set(clean_lines) and len(lines) == len(set(lines)) == n and not torn
    log_entities = [line.split("\t")[0] for line in log.read_text().splitlines()]
    print(f"kill-resume loop ({n} entities, {kills} SIGKILLs of the driver at random moments, then a final run)")
    print(f"  lines when killed  {done_at_kill}")
    print(f"  final file         {len(lines)} lines, {len(lines) - len(set(lines))} duplicates, {len(torn)} torn")
    print(f"  equal to clean serial run as a set of lines: {set(lines) == set(clean_lines)}")
    print(f"  log lines          {len(log_entities)} (the plugin logs nothing; error lines only)")
    print(f"  => {'PASS' if ok else 'FAIL'}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entities", type=int, default=10_000)
    parser.add_argument("--kills", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ok = fault_matrix(Path(tmp), args.entities)
        print()
        ok = kill_resume(Path(tmp), 12_000, args.kills) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
