"""Target 6: a state holding a 200 MB numpy array (benchmarks/plugins/state_array.py): workers get it
without a copy per task.

Three runs side by side over the same entities, 2 workers each:

- provbatch ``--backend pool`` (CLI): forked workers share the driver's state copy-on-write;
- provbatch ``--backend ray`` (CLI, a private local instance): the state is put in the object
  store once and each actor maps it read-only;
- the naive way, for comparison: a ``multiprocessing`` pool whose every task (1,000 entities)
  carries the state, pickled, as an argument.

Memory: the private memory (USS: Private_Clean + Private_Dirty of /proc/PID/smaps_rollup) of
each worker process, sampled every 20 ms; the figure is the largest worker's peak. A worker
holding its own copy of the array has at least 200 MB of it; one sharing it has only its
interpreter and the plugin. Time: wall time of the whole run (Ray's start-up included).

Goal: provbatch's workers (pool and Ray) stay below half the array size in private memory (no
copy), and the pool run is faster than passing the state per task. The Ray run's time is printed
for comparison; it includes Ray's own start-up (~5 s here), which has nothing to do with the state.

Usage: python benchmarks/bench_state.py [--quick] [--entities N] [--megabytes M]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _scale import PLUGINS, batch_compute, cache_dir, check_results, fresh, ids_file, load_average, result, run_env  # noqa: E402

TASK_SIZE = 1_000


def private_mb(pid: int) -> float:
    total = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith(("Private_Clean:", "Private_Dirty:")):
                    total += int(line.split()[1])
    except OSError:
        return 0.0
    return total / 1024


def processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    command = handle.read().replace(b"\0", b" ").decode(errors="replace")
                found[int(entry)] = (ppid, command)
            except (OSError, ValueError, IndexError):
                continue
    return found


def descendants(root: int, table: dict[int, tuple[int, str]]) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _command) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class WorkerMemory:
    """Samples the private memory of the worker processes (picked by ``is_worker``) under ``root``."""

    def __init__(self, root: int, is_worker: Callable[[int, int, str], bool]) -> None:
        self.root, self.is_worker = root, is_worker
        self.peak = 0.0
        self.seen: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            table = processes()
            for pid in descendants(self.root, table):
                ppid, command = table[pid]
                if self.is_worker(pid, ppid, command):
                    self.seen.add(pid)
                    self.peak = max(self.peak, private_mb(pid))
            self._stop.wait(0.02)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak


def provbatch_run(backend: str, ids: Path, work: Path, n: int, megabytes: int) -> tuple[float, float, int]:
    out = work / f"{backend}.tsv"
    argv = batch_compute(PLUGINS / "state_array.py", ids, "--out", out, "--backend", backend, "--workers", 2,
                         "--param", f"megabytes={megabytes}", "--no-progress")
    env = {**os.environ, **run_env(work)}
    env.pop("RAY_ADDRESS", None)
    started = time.perf_counter()
    process = subprocess.Popen(argv, cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if backend == "ray":
        def is_worker(_pid: int, _ppid: int, command: str) -> bool:
            return command.startswith("ray::") and "IDLE" not in command
    else:
        def is_worker(_pid: int, ppid: int, _command: str) -> bool:
            return ppid == process.pid
    memory = WorkerMemory(process.pid, is_worker)
    stderr = process.communicate()[1]
    seconds = time.perf_counter() - started
    peak = memory.stop()
    if process.returncode != 0:
        sys.exit(f"--backend {backend} failed (exit {process.returncode}):\n{stderr[-2000:]}")
    print(f"  provbatch --backend {backend:5s} {seconds:6.2f} s   largest worker's private memory {peak:6.0f} MB "
          f"({len(memory.seen)} worker processes seen)  ({check_results(out, n, ids)})", flush=True)
    return seconds, peak, len(memory.seen)


def _task(args: tuple[dict, list[str]]) -> list[float]:
    state, entities = args
    sys.path.insert(0, str(PLUGINS))
    import state_array

    return [state_array.compute(entity, state=state)[0][0] for entity in entities]


def per_task_run(ids: Path, n: int, megabytes: int) -> tuple[float, float]:
    sys.path.insert(0, str(PLUGINS))
    import state_array

    entities = ids.read_text().split()
    started = time.perf_counter()
    state = state_array.initialize(megabytes=megabytes)
    tasks = ((state, entities[i:i + TASK_SIZE]) for i in range(0, n, TASK_SIZE))
    context = multiprocessing.get_context("spawn")  # nothing inherited: the state comes with each task
    with context.Pool(2) as pool:
        memory = WorkerMemory(os.getpid(), lambda pid, ppid, command: ppid == os.getpid() and "spawn_main" in command)
        values = [value for chunk in pool.imap(_task, tasks) for value in chunk]
        peak = memory.stop()
    seconds = time.perf_counter() - started
    if len(values) != n:
        sys.exit(f"per-task run: {len(values)} values, expected {n}")
    print(f"  state passed per task     {seconds:6.2f} s   largest worker's private memory {peak:6.0f} MB "
          f"({len(memory.seen)} worker processes seen, {-(-n // TASK_SIZE)} tasks of {TASK_SIZE})  (checked: {len(values)} values)", flush=True)
    return seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="5,000 entities, the same 200 MB")
    parser.add_argument("--entities", type=int)
    parser.add_argument("--megabytes", type=int, default=200)
    args = parser.parse_args()
    n = args.entities or (5_000 if args.quick else 20_000)
    ids = ids_file(n)
    work = fresh(cache_dir() / "work-state")
    print(f"target 6: a {args.megabytes} MB numpy array in the state, {n:,} entities, 2 workers; {load_average()}", flush=True)
    pool_seconds, pool_peak, _ = provbatch_run("pool", ids, work, n, args.megabytes)
    ray_seconds, ray_peak, _ = provbatch_run("ray", ids, work, n, args.megabytes)
    naive_seconds, naive_peak = per_task_run(ids, n, args.megabytes)
    no_copy = max(pool_peak, ray_peak) < args.megabytes / 2
    faster = pool_seconds < naive_seconds
    result("6 state without a copy per task",
           f"largest worker pool {pool_peak:.0f} MB, ray {ray_peak:.0f} MB, per task {naive_peak:.0f} MB; "
           f"pool {pool_seconds:.1f} s, ray {ray_seconds:.1f} s (with Ray's start-up), per task {naive_seconds:.1f} s",
           f"workers < {args.megabytes // 2} MB private; pool faster than per task", no_copy and faster)


if __name__ == "__main__":
    main()
