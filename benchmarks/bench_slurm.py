"""Slurm: the per-entity overhead of ``--backend slurm`` (a job array of chunks, each task computing its
chunk with provbatch's worker) against a plain job array with one task per entity running the same
plugin (the approach of prenacs' ``--mode slurm``), side by side on one real single-node Slurm cluster
(tests/slurm_cluster.py: munged, slurmctld and slurmd of its own, stopped at the end).

Both compute the trivial plugin (the id's length: the compute itself costs nothing, so what is
measured is what Slurm and the engine cost per entity) for the same entities, with the same number
of tasks running at once (``--workers`` / the array throttle ``%W``), from submission until every
result is in one results file. Both results files are checked (every id once, exact values).

Usage: python benchmarks/bench_slurm.py [--quick] [--entities N] [--workers W]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _scale import BIN, PLUGINS, load_average, result  # noqa: E402
from slurm_cluster import SlurmCluster  # noqa: E402

PLUGIN = PLUGINS / "trivial.py"

#: one array task of the plain approach: load the plugin, compute entity number $SLURM_ARRAY_TASK_ID, write its line
ONE_ENTITY_TASK = """\
import os, sys
from provbatch.plugins.registry import importer
plugin = importer(sys.argv[1])
index = int(os.environ["SLURM_ARRAY_TASK_ID"])
with open(sys.argv[2]) as ids:
    for number, line in enumerate(ids):
        if number == index:
            entity = line.rstrip("\\n")
            break
values, _logs = plugin.compute(entity)
tmp = os.path.join(sys.argv[3], f".{index}.tmp")
with open(tmp, "w") as out:
    out.write(entity + "\\t" + "\\t".join(str(v) for v in values) + "\\n")
os.replace(tmp, os.path.join(sys.argv[3], f"{index}.tsv"))
"""


def check(path: Path, ids: list[str]) -> None:
    rows = [line.split("\t") for line in path.read_text().splitlines()]
    got = {row[0]: row[1:] for row in rows}
    if len(rows) != len(ids) or got != {e: [str(len(e))] for e in ids}:
        sys.exit(f"{path}: wrong results ({len(rows)} lines for {len(ids)} ids)")


def run_provbatch(cluster: SlurmCluster, folder: Path, ids_path: Path, workers: int) -> float:
    out = folder / "provbatch.tsv"
    env = {**os.environ, **cluster.env}
    started = time.perf_counter()
    done = subprocess.run([str(BIN / "batch-compute"), str(PLUGIN), str(ids_path), "--backend", "slurm",
                           "--workers", str(workers), "--out", str(out), "--attributes", str(PLUGINS / "attribute_definitions.yaml")],
                          capture_output=True, text=True, env=env, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"batch-compute --backend slurm failed:\n{done.stderr}")
    return seconds


def run_plain_array(cluster: SlurmCluster, folder: Path, ids_path: Path, n: int, workers: int) -> float:
    """sbatch --array=0-(n-1)%W of one-entity tasks, squeue polled until none is left, then the results gathered."""
    parts = folder / "plain-parts"
    parts.mkdir()
    runner = folder / "one_entity.py"
    runner.write_text(ONE_ENTITY_TASK)
    script = folder / "one_entity.sh"
    script.write_text(f"#!/bin/sh\nexec {sys.executable} {runner} {PLUGIN} {ids_path} {parts}\n")
    script.chmod(0o755)
    started = time.perf_counter()
    job = cluster.run("sbatch", "--parsable", f"--array=0-{n - 1}%{workers}", "--no-requeue",
                      f"--output={folder / 'plain-logs-%a.log'}", str(script)).stdout.strip().split(";")[0]
    while True:
        states = cluster.run("squeue", "-h", "-r", "-t", "all", "-j", job, "-o", "%T").stdout.split()
        if len(states) >= n and all(s in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT") for s in states):
            break
        time.sleep(0.5)
    out = folder / "plain.tsv"
    with open(out, "w") as target:
        for index in range(n):
            target.write((parts / f"{index}.tsv").read_text())
    seconds = time.perf_counter() - started
    if any(s != "COMPLETED" for s in states):
        sys.exit(f"the plain job array had tasks that did not complete: {sorted(set(states))}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="200 entities instead of 1,000")
    parser.add_argument("--entities", type=int, help="number of entities (default 1000)")
    parser.add_argument("--workers", type=int, default=8, help="tasks running at once (the cluster's CPUs)")
    args = parser.parse_args()
    n = args.entities or (200 if args.quick else 1000)
    print(f"bench_slurm: {n} entities, {args.workers} tasks at once, trivial plugin; {load_average()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-slurm-") as tmp:
        folder = Path(tmp)
        ids = [f"id_{i:08d}" for i in range(n)]
        ids_path = folder / "ids.txt"
        ids_path.write_text("".join(e + "\n" for e in ids))
        with SlurmCluster(folder / "cluster", cpus=args.workers) as cluster:
            provbatch_seconds = run_provbatch(cluster, folder, ids_path, args.workers)
            check(folder / "provbatch.tsv", ids)
            plain_seconds = run_plain_array(cluster, folder, ids_path, n, args.workers)
            check(folder / "plain.tsv", ids)
    per_provbatch, per_plain = provbatch_seconds / n * 1e3, plain_seconds / n * 1e3
    print(f"  --backend slurm (chunks)       {provbatch_seconds:8.2f} s  {per_provbatch:8.2f} ms per entity")
    print(f"  plain array, 1 task per entity {plain_seconds:8.2f} s  {per_plain:8.2f} ms per entity")
    print(f"  ratio plain / provbatch: {plain_seconds / provbatch_seconds:.1f}x")
    result("slurm overhead per entity vs one task per entity", f"{per_provbatch:.2f} ms vs {per_plain:.2f} ms "
           f"({plain_seconds / provbatch_seconds:.1f}x less)", "lower than one task per entity",
           per_provbatch < per_plain)


if __name__ == "__main__":
    main()
