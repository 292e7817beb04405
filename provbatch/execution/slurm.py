"""The Slurm backend: chunks of entities computed by the tasks of Slurm job arrays.

What runs where. The driver (``batch-compute --backend slurm``, in the foreground, e.g. on a
login node) loads and, for Rust and Nim, builds the plugin once, writes a *generation* directory
in the shared work directory (the runner configuration and state pickled once, the built library
copied there, one input file per chunk), submits the chunks as one job array (``sbatch
--array=0-N%W``), and follows it. Each array task runs ``python -m provbatch.execution.slurm``:
it loads the plugin from the spec (from the copied library: no task compiles), computes its chunk
with the same :class:`.ChunkRunner` as every other backend, and appends one JSON line per entity
to its part file, flushed per entity and written whole, so that a task that dies leaves every
finished entity readable and no torn line that counts. The driver reads the part files as they
grow (streamed merge: results reach ``--out`` long before a task ends) and polls ``squeue``
(``sacct`` when a task left the queue) for tasks that ended without their end line.

Faults map onto the outcomes the engine already handles (see :mod:`provbatch.engine.batch`):

- a task that failed, ran out of memory or time, or lost its node: the entity it was computing is
  ``WorkerLost`` / ``Timeout`` (re-run alone, so a crash is pinned on its entity, then charged to
  ``--retries``), the entities after it are ``NOT_STARTED`` (resubmitted, not charged);
- a task cancelled (``scancel`` from outside): its unfinished entities fail with ``Cancelled``,
  charged to ``--retries`` (so that a cancel is obeyed unless retries were asked for); a later run
  of the same command computes them (resume);
- a task that could not even load the plugin stops the batch with its log's last line.

The driver owns ``--out``: tasks never write it, so every entity reaches it exactly once however
tasks and drivers die. A driver killed with SIGKILL leaves its arrays running; the next driver on
the same work directory cancels them and recomputes what ``--out`` does not hold.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import pickle
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

from ..errors import ProvBatchError, UsageError, literal
from ..files import (
    atomic_write,
    private_dir,
    private_root,
    read_private,
    sha256_bytes,
    sha256_file,
)
from .base import NOT_STARTED, Completed, Pool, PoolOptions, default_workers
from .runner import Chunk, ChunkRunner, Outcome, RunnerConfig

#: the Slurm client commands the driver uses
COMMANDS = ("sbatch", "squeue", "scancel", "scontrol", "sinfo", "sacct")
#: the name of the work directory in messages: tasks unpickle what the driver writes there and load
#: the library copied there, so it is private (0700/0600, the user's own, checked like the build cache)
WHAT = "Slurm work directory"
#: states in which a job (array task) will not run any more
TERMINAL_STATES = frozenset({
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
    "BOOT_FAIL", "DEADLINE", "REVOKED", "SPECIAL_EXIT",
})
#: error class of the unfinished entities of a cancelled task (charged to --retries)
CANCELLED = "Cancelled"
#: how often the driver asks the queue about tasks that have not written their end line
QUEUE_POLL_SECONDS = 2.0
#: how often the driver reads the part files that grow
PART_POLL_SECONDS = 0.2
#: a task that is gone from squeue and unknown to sacct is given up after this long
VANISHED_SECONDS = 60.0
#: how long the checks of the Slurm installation may take in all
CHECK_TIMEOUT_SECONDS = 8.0


class SlurmError(ProvBatchError):
    """Slurm is missing, unreachable, or refused the job array."""

    exit_code = 1


class TaskStartError(SlurmError):
    """An array task could not load the plugin (its log tells why)."""


@dataclass(frozen=True)
class SlurmOptions:
    """The ``--slurm-*`` options (in API words: ``slurm_partition``, ...)."""

    partition: str | None = None
    time: str | None = None  # sbatch --time (e.g. "30", "1:00:00", "1-0")
    mem: str | None = None  # sbatch --mem (e.g. "2G")
    chunk: int | None = None  # entities per array task; default from the entity count and --workers
    opt: str | None = None  # passed to sbatch as is (shlex-split)
    workdir: str | None = None  # on the shared filesystem; default OUT.slurm beside --out

    def check(self) -> None:
        if self.chunk is not None and self.chunk < 1:
            raise UsageError.naming(f"{{slurm_chunk}} must be 1 or more, got {self.chunk}")
        if self.opt:
            try:
                shlex.split(self.opt)
            except ValueError as exc:
                raise UsageError.naming(f"{{slurm_opt}}: cannot split '{literal(self.opt)}': {literal(exc)}") from exc


def default_workdir(out: str | Path | None) -> Path:
    """Beside the results file (a shared filesystem when --out is on one), else in the current directory."""
    if out is not None and str(out) != "-":
        path = Path(out).resolve()
        return path.with_name(path.name + ".slurm")
    return Path.cwd().resolve() / ".provbatch-slurm"


def default_chunk(n_entities: int | None, workers: int) -> int:
    """About four tasks per concurrently running task: few tasks (Slurm's per-task cost is paid per
    chunk), yet a task that fails late or a slow node does not hold back a quarter of the batch."""
    if not n_entities:
        return 1000  # unknown count (an iterator): a fixed chunk
    return max(1, math.ceil(n_entities / (4 * workers)))


# --------------------------------------------------------------------------- the Slurm installation


def _run(args: list[str], timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no message)"


def check_slurm() -> dict[str, str]:
    """One-line error unless the Slurm commands are on PATH and the controller answers; returns
    a few facts of its configuration (MaxArraySize, ...). Bounded to a few seconds."""
    missing = [command for command in COMMANDS if shutil.which(command) is None]
    if missing:
        raise SlurmError.naming(f"{{backend}} slurm: Slurm command(s) {', '.join(missing)} not found on PATH "
                                "(run on a Slurm login node, or install slurm-client)")
    try:
        proc = _run(["scontrol", "ping"], timeout=CHECK_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        raise SlurmError.naming(f"{{backend}} slurm: the Slurm controller did not answer within {CHECK_TIMEOUT_SECONDS:g} s "
                                "(scontrol ping)") from None
    if proc.returncode != 0 or " is UP" not in proc.stdout:
        lines = (proc.stdout or proc.stderr).strip().splitlines()
        why = lines[0].strip() if lines else f"exit code {proc.returncode}"
        raise SlurmError.naming(f"{{backend}} slurm: the Slurm controller is not reachable (scontrol ping: {literal(why)})")
    config: dict[str, str] = {}
    try:
        shown = _run(["scontrol", "show", "config"], timeout=CHECK_TIMEOUT_SECONDS)
        for line in shown.stdout.splitlines():
            name, sep, value = line.partition("=")
            if sep:
                config[name.strip()] = value.strip()
    except subprocess.TimeoutExpired:
        pass
    return config


def partition_cpus(partition: str | None) -> int | None:
    """Total CPUs of the partition (the default one when None): the default of --workers."""
    args = ["sinfo", "-h", "-o", "%C"] + (["-p", partition] if partition else [])
    try:
        proc = _run(args, timeout=CHECK_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        return None
    total = 0
    for line in proc.stdout.split():
        parts = line.split("/")  # allocated/idle/other/total
        if len(parts) == 4 and parts[3].isdigit():
            total += int(parts[3])
    return total or None


# --------------------------------------------------------------------------- the driver's side


@dataclass
class _Array:
    """One sbatch job array of this generation."""

    name: str  # local name ("a0", "a1", ...): input and part files are named by it
    job_id: str = ""
    size: int = 0


@dataclass
class _Task:
    array: _Array
    index: int
    chunk_id: int
    chunk: Chunk
    part: Path
    offset: int = 0  # bytes of the part file consumed
    consumed: int = 0  # outcomes handed to the engine
    ready: bool = False
    ended: bool = False  # the end line was read
    state: str = "PENDING"
    gone_since: float | None = None
    seconds: float = 0.0
    handle: IO[bytes] | None = None

    @property
    def key(self) -> str:
        return f"{self.array.job_id}_{self.index}"


class SlurmPool(Pool):
    """Job arrays as a pool: ``submit`` writes a chunk's input file, ``wait`` submits what is
    waiting as one array and returns outcomes as the tasks' part files grow."""

    name = "slurm"

    def __init__(self, n_workers: int | None, config: RunnerConfig, state: Any, pool_options: PoolOptions) -> None:
        options: SlurmOptions = pool_options.slurm
        #: array tasks running at once: --workers, else the partition's CPUs
        self.n_workers = n_workers = n_workers or partition_cpus(options.partition) or default_workers()
        self.options = options
        self.chunk_size = options.chunk or default_chunk(pool_options.expected_entities, n_workers)
        self.fixed_chunk = self.chunk_size  # a job array's chunks are sized once
        self.return_state = pool_options.return_state
        self.job_name = pool_options.job_name
        workdir = Path(options.workdir) if options.workdir else default_workdir(None)
        slurm_config = pool_options.slurm_config or {}
        max_array = int(slurm_config.get("MaxArraySize", "1001") or 1001)
        #: chunks that may exist at once (submitted or waiting): one array's worth, bounding memory
        self.max_in_flight = max(1, min(max_array, 4 * n_workers))
        self.workdir, self._lock = self._take_workdir(workdir)
        state_bytes = pickle.dumps(state, protocol=5)
        self.key = run_key(config, state_bytes)
        #: entity id -> (fields, logs) that tasks of a killed driver computed and --out lacks
        self.salvage: dict[str, tuple[list[str], list[str]]] = {}
        self.earlier_jobs = self._end_earlier_generations()
        self.n_salvaged = 0
        self.salvaged: list[Completed] = []  # answered from the salvage, handed out by the next wait()
        self.generation = private_dir(self.workdir, f"g{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}", what=WHAT)
        for sub in ("in", "parts", "logs", "states", "plugin"):
            private_dir(self.generation, sub, what=WHAT)
        atomic_write(self.generation / "key", self.key)
        self.config = self._ship_plugin(config)
        self._write_config(state_bytes)
        self.script = self._write_script()
        self.arrays: list[_Array] = []
        self.waiting: list[tuple[int, Chunk]] = []  # submitted by the scheduler, not yet to Slurm
        self.tasks: dict[tuple[str, int], _Task] = {}  # active tasks: (array name, index)
        self.task_states: dict[str, str] = {}  # every task of this run: job_id_index -> last state seen
        self._last_queue_poll = 0.0
        self._closed = False

    # -- the work directory ----------------------------------------------------------------------

    @staticmethod
    def _take_workdir(workdir: Path) -> tuple[Path, IO[str]]:
        """The work directory, private, locked: one driver at a time (the lock goes with the process,
        also on SIGKILL)."""
        try:
            workdir = private_root(workdir, WHAT)
            handle = open(workdir / "driver.lock", "a+", encoding="utf-8")  # noqa: SIM115 - held for the run
        except OSError as exc:
            raise UsageError(f"{workdir}: cannot use it as the Slurm work directory: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise UsageError(f"{workdir}: another provbatch driver is using this Slurm work directory") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{socket.gethostname()} {os.getpid()}\n")
        handle.flush()
        return workdir, handle

    def _end_earlier_generations(self) -> list[str]:
        """A driver that was killed left its arrays running: cancel them and remove their files
        (keeping the logs). What their tasks finished and --out lacks is kept for this run when
        it was computed with the same plugin, parameters and state (same :func:`run_key`) and no
        merge of task states is needed: those entities are answered without computing them again."""
        earlier: list[str] = []
        for generation in sorted(self.workdir.glob("g*")):
            if not generation.is_dir():
                continue
            jobs_file = generation / "jobs"
            job_ids = jobs_file.read_text().split() if jobs_file.exists() else []
            if job_ids:
                _run(["scancel", *job_ids], timeout=30)
                earlier.extend(job_ids)
                self._wait_gone(job_ids)
            key_file = generation / "key"
            if not self.return_state and key_file.exists() and key_file.read_text() == self.key:
                self.salvage.update(_finished_in(generation / "parts"))
            _clean_generation(generation, keep_logs=None)
        return earlier

    @staticmethod
    def _wait_gone(job_ids: list[str], timeout: float = 30.0) -> None:
        """Until no task of these jobs runs any more (so none writes into a directory being removed)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = _run(["squeue", "-h", "-r", "-t", "all", "-j", ",".join(job_ids), "-o", "%T"], timeout=30)
            if proc.returncode != 0 or all(state in TERMINAL_STATES for state in proc.stdout.split()):
                return
            time.sleep(0.5)

    def _ship_plugin(self, config: RunnerConfig) -> RunnerConfig:
        """Copy a built library into the generation: tasks load it from there, never from a build
        cache (the driver's may not be on the shared filesystem) and never by compiling. A plugin
        that is its own artifact (a Bash script) stays where it is: it may source files beside it."""
        spec = config.spec
        if not spec.artifact or spec.artifact == spec.source or not Path(spec.artifact).is_file():
            return config
        original = Path(spec.artifact)
        # same <key>/<name> as in the build cache: loaders derive import names from them
        target = private_dir(self.generation, "plugin", original.parent.name, what=WHAT) / original.name
        atomic_write(target, original.read_bytes())
        return replace(config, spec=replace(spec, artifact=str(target)))

    def _write_config(self, state_bytes: bytes) -> None:
        payload = {"config": self.config, "state": state_bytes, "return_state": self.return_state}
        atomic_write(self.generation / "config.pkl", pickle.dumps(payload, protocol=5))

    def _write_script(self) -> Path:
        """The batch script of every array: the task entry point with this Python and this environment."""
        script = self.generation / "task.sh"
        atomic_write(script, (
            "#!/bin/sh\n"
            "# a provbatch array task: computes the chunk SLURM_ARRAY_TASK_ID of array $1\n"
            f"exec {shlex.quote(sys.executable)} -m provbatch.execution.slurm {shlex.quote(str(self.generation))} \"$1\"\n"
        ), mode=0o700)
        return script

    # -- the Pool interface ----------------------------------------------------------------------

    def capacity(self) -> int:
        return max(0, self.max_in_flight - self.in_flight())

    def in_flight(self) -> int:
        return len(self.waiting) + len(self.tasks) + len(self.salvaged)

    def submit(self, chunk_id: int, chunk: Chunk) -> None:
        if self.salvage:
            found = [item for item in chunk if item[0] in self.salvage]
            if found:
                outcomes: list[Outcome] = []
                for item in found:
                    fields, logs = self.salvage.pop(item[0])
                    outcomes.append((item[0], fields, logs, None))
                self.salvaged.append(Completed(chunk_id, found, outcomes, 0.0))
                self.n_salvaged += len(found)
                chunk = [item for item in chunk if item[0] not in {i[0] for i in found}]
        if chunk:
            self.waiting.append((chunk_id, chunk))

    def wait(self) -> list[Completed]:
        if self.salvaged:
            completed, self.salvaged = self.salvaged, []
            return completed
        while True:
            self._submit_waiting()
            completed = self._read_parts()
            now = time.monotonic()
            if now - self._last_queue_poll >= QUEUE_POLL_SECONDS:
                self._last_queue_poll = now
                completed.extend(self._poll_queue())
            # none left in flight: the last task's end line came after its last entity (a per-worker finalize,
            # a Bash plugin's shutdown ran between the two), retired now with nothing new to hand over
            if completed or not self.in_flight():
                return completed
            time.sleep(PART_POLL_SECONDS)

    def finish(self, return_state: bool) -> list[Any]:
        """All chunks are done: the final task states, the tasks' states for merge, clean-up."""
        self._poll_queue(final=True)
        states: list[Any] = []
        if return_state:
            for path in sorted((self.generation / "states").glob("*.pkl")):
                states.append(pickle.loads(read_private(path, WHAT)))
        self._close(clean=True)
        return states

    def terminate(self) -> None:
        """Ctrl-C or an error: cancel this run's arrays; --out holds what was merged (resume from it)."""
        active = sorted({task.array.job_id for task in self.tasks.values() if task.array.job_id})
        if active:
            try:
                _run(["scancel", *active], timeout=30)
                self.emit("slurm_cancelled", job_ids=active)
                self._wait_gone(active, timeout=15)
            except (OSError, subprocess.SubprocessError):
                pass
        for task in self.tasks.values():
            self.task_states.setdefault(task.key, "CANCELLED")
            if task.state not in TERMINAL_STATES:
                self.task_states[task.key] = "CANCELLED"
        self._close(clean=False)

    def status(self) -> str:
        running = sum(1 for task in self.tasks.values() if task.ready and not task.ended)
        pending = sum(1 for task in self.tasks.values() if not task.ready) + len(self.waiting)
        return f"slurm: {running} running, {pending} pending tasks"

    def details(self) -> dict[str, Any]:
        """What the report and the run record say about this backend."""
        return {
            "job_ids": [array.job_id for array in self.arrays],
            "workdir": str(self.workdir),
            "chunk": self.chunk_size,
            "tasks": dict(self.task_states),
            "earlier_jobs": self.earlier_jobs,  # of killed drivers: cancelled where still running
            "salvaged": self.n_salvaged,  # entities those jobs finished, taken instead of computed again
        }

    # -- submitting ------------------------------------------------------------------------------

    def sbatch_options(self) -> list[str]:
        """The user's sbatch options (--slurm-partition, --slurm-time, --slurm-mem, --slurm-opt)."""
        options = self.options
        given = [f"--partition={options.partition}"] if options.partition else []
        given += [f"--time={options.time}"] if options.time else []
        given += [f"--mem={options.mem}"] if options.mem else []
        return given + (shlex.split(options.opt) if options.opt else [])

    def _active_tasks(self) -> int:
        return sum(1 for task in self.tasks.values() if not task.ended)

    def _submit_waiting(self) -> None:
        """Waiting chunks go to Slurm as one array, when fewer than --workers tasks are active:
        the array's throttle is what is left, so at most --workers tasks of this run run at once."""
        active = self._active_tasks()
        if not self.waiting or active >= self.n_workers:
            return
        array = _Array(name=f"a{len(self.arrays)}", size=len(self.waiting))
        lines_in = self.generation / "in"
        tasks = []
        for index, (chunk_id, chunk) in enumerate(self.waiting):
            text = "".join(json.dumps(list(item), ensure_ascii=False) + "\n" for item in chunk)
            atomic_write(lines_in / f"{array.name}_{index}.jsonl", text)
            tasks.append(_Task(array, index, chunk_id, chunk, self.generation / "parts" / f"{array.name}_{index}.jsonl"))
        throttle = self.n_workers - active
        args = ["sbatch", "--parsable", f"--array=0-{array.size - 1}%{throttle}", f"--job-name={self.job_name}",
                f"--output={self.generation / 'logs' / '%A_%a.log'}", "--no-requeue", "--export=ALL",
                f"--chdir={Path.cwd()}"]
        given = self.sbatch_options()
        args += [*given, str(self.script), array.name]
        # Ctrl-C waits until the array's id is written down: an array submitted but not recorded
        # could not be cancelled by terminate() nor by a later driver
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            proc = _run(args, timeout=60)
            if proc.returncode != 0:
                said = f" ({' '.join(given)})" if given else ""
                raise SlurmError(f"sbatch refused the job array{said}: {_first_line(proc.stderr or proc.stdout)}")
            array.job_id = proc.stdout.strip().split(";")[0]
            with open(self.generation / "jobs", "a", encoding="utf-8") as jobs:  # for a later driver to cancel
                jobs.write(array.job_id + "\n")
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        self.arrays.append(array)
        for task in tasks:
            self.tasks[(array.name, task.index)] = task
            self.task_states[task.key] = "PENDING"
        self.waiting = []
        self.emit("slurm_array_submitted", job_id=array.job_id, tasks=array.size, throttle=throttle,
                  entities=sum(len(task.chunk) for task in tasks))

    # -- following -------------------------------------------------------------------------------

    def _read_parts(self) -> list[Completed]:
        completed: list[Completed] = []
        for key, task in list(self.tasks.items()):
            outcomes = self._read_part(task)
            if outcomes:
                start = task.consumed
                task.consumed += len(outcomes)
                completed.append(Completed(task.chunk_id, task.chunk[start:task.consumed], outcomes, task.seconds))
            if task.ended and task.consumed >= len(task.chunk):
                self._retire(key, task, "COMPLETED")
        return completed

    def _read_part(self, task: _Task) -> list[Outcome]:
        """New whole lines of a task's part file (a last line without its newline waits)."""
        if task.handle is None:
            try:
                task.handle = open(task.part, "rb")  # noqa: SIM115 - kept open while the task runs
            except FileNotFoundError:
                return []
        task.handle.seek(task.offset)
        data = task.handle.read()
        end = data.rfind(b"\n")
        if end < 0:
            return []
        task.offset += end + 1
        outcomes: list[Outcome] = []
        for line in data[: end + 1].splitlines():
            record = json.loads(line)
            if isinstance(record, dict):
                if "ready" in record:
                    task.ready = True
                    if task.state == "PENDING":
                        task.state = "RUNNING"
                elif "end" in record:
                    task.ended = True
                elif "fatal" in record:
                    raise TaskStartError(f"Slurm task {task.key} could not start the plugin: {record['fatal']}")
                continue
            entity_id, fields, logs, error, seconds = record
            task.seconds += seconds
            outcomes.append((entity_id, fields, logs, tuple(error) if error else None))
        return outcomes

    def _retire(self, key: tuple[str, int], task: _Task, state: str) -> None:
        del self.tasks[key]
        if task.handle is not None:
            task.handle.close()
        self.task_states[task.key] = state

    def _queue_states(self, tasks: list[_Task]) -> dict[str, str]:
        """job_id_index -> state for the given tasks, from squeue, then sacct for those not listed."""
        states = _squeue_states(sorted({task.array.job_id for task in tasks}))
        missing = [task for task in tasks if task.key not in states]
        if missing:
            states.update(_sacct_states(sorted({task.array.job_id for task in missing})))
        return states

    def _poll_queue(self, final: bool = False) -> list[Completed]:
        """Tasks that ended without their end line: what they finished, then their unfinished entities."""
        completed: list[Completed] = []
        if final:  # the report: the state Slurm gives every task of this run, once all have ended
            self._final_states()
            return completed
        watched = [task for task in self.tasks.values() if not task.ended]
        if not watched:
            return completed
        states = self._queue_states(watched)
        now = time.monotonic()
        for key, task in list(self.tasks.items()):
            if task.ended:
                continue
            state = states.get(task.key)
            if state is None:
                task.gone_since = task.gone_since or now
                if now - task.gone_since < VANISHED_SECONDS:
                    continue
                state = "VANISHED"
            task.state = state
            self.task_states[task.key] = state
            if state not in TERMINAL_STATES and state != "VANISHED":
                continue
            # the part file may still be growing on a shared filesystem: read it to the end first
            outcomes = self._read_part(task)
            if task.ended:
                if outcomes:
                    start = task.consumed
                    task.consumed += len(outcomes)
                    completed.append(Completed(task.chunk_id, task.chunk[start:task.consumed], outcomes, task.seconds))
                continue  # the end line was there: _read_parts retires it
            if state == "COMPLETED" and now - (task.gone_since or now) < 5.0:
                task.gone_since = task.gone_since or now  # exited 0 but no end line yet: NFS lag, look again
                if outcomes:
                    start = task.consumed
                    task.consumed += len(outcomes)
                    completed.append(Completed(task.chunk_id, task.chunk[start:task.consumed], outcomes, task.seconds))
                continue
            start = task.consumed
            task.consumed += len(outcomes)
            done_part = task.chunk[start:task.consumed]
            rest = task.chunk[task.consumed:]
            if outcomes:
                completed.append(Completed(task.chunk_id, done_part, outcomes, task.seconds))
            if rest:
                completed.append(Completed(task.chunk_id, rest, self._lost_outcomes(task, state, rest), 0.0))
            self.workers_lost += 1
            self.emit("slurm_task_ended", task=task.key, state=state, unfinished=len(rest),
                      finished=task.consumed, log=str(self._log_path(task)))
            self._retire(key, task, state)
        return completed

    def _final_states(self, timeout: float = 10.0) -> None:
        """Every task of this run as Slurm ends it (a task that wrote its end line is still
        exiting for a moment: wait for COMPLETED, bounded)."""
        job_ids = [array.job_id for array in self.arrays]
        if not job_ids:
            return
        deadline = time.monotonic() + timeout
        while True:
            known = _squeue_states(job_ids)
            missing = [key for key in self.task_states if key not in known]
            if missing:
                known = {**_sacct_states(sorted({key.split("_")[0] for key in missing})), **known}
            for key in self.task_states:
                if key in known:
                    self.task_states[key] = known[key]
            if all(state in TERMINAL_STATES for state in self.task_states.values()) or time.monotonic() > deadline:
                return
            time.sleep(0.3)

    def _log_path(self, task: _Task) -> Path:
        return self.generation / "logs" / f"{task.array.job_id}_{task.index}.log"

    def _lost_outcomes(self, task: _Task, state: str, rest: Chunk) -> list[Outcome]:
        """The unfinished entities of a task that ended early, as the engine's retry rules want them."""
        log_path = self._log_path(task)
        if not task.ready and state not in ("CANCELLED", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "VANISHED"):
            raise TaskStartError(f"Slurm task {task.key} ended {state} before loading the plugin: "
                                 f"{_log_tail(log_path)} (log: {log_path})")
        reason = f"Slurm task {task.key} ended {state} (log: {log_path})"
        if state == "CANCELLED":
            return [(item[0], None, [], (CANCELLED, reason, "")) for item in rest]
        if not task.ready:  # lost before it began: nobody to blame
            return [(item[0], None, [], (NOT_STARTED, reason, "")) for item in rest]
        first = "Timeout" if state in ("TIMEOUT", "DEADLINE") or _exit_code(task.key) == 75 else "WorkerLost"
        return [(item[0], None, [], (first if i == 0 else NOT_STARTED, reason, "")) for i, item in enumerate(rest)]

    def _close(self, clean: bool) -> None:
        if self._closed:
            return
        self._closed = True
        for task in self.tasks.values():
            if task.handle is not None:
                task.handle.close()
        if clean:  # everything is merged into --out: keep only the logs of tasks that did not complete
            _clean_generation(self.generation, keep_logs={k for k, s in self.task_states.items() if s != "COMPLETED"})
            if [entry.name for entry in self.workdir.iterdir()] == ["driver.lock"]:
                (self.workdir / "driver.lock").unlink()  # still held: no other driver can be inside
                self.workdir.rmdir()
        self._lock.close()


def _clean_generation(generation: Path, keep_logs: set[str] | None) -> None:
    """Remove a generation's inputs, parts and copies; its logs stay (all, or those of ``keep_logs``)."""
    for entry in generation.iterdir():
        if entry.name == "logs":
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    logs = generation / "logs"
    if logs.is_dir():
        for log in logs.iterdir():
            if keep_logs is not None and log.stem not in keep_logs:
                log.unlink(missing_ok=True)
        if not any(logs.iterdir()):
            logs.rmdir()
    if not any(generation.iterdir()):
        generation.rmdir()


def _squeue_states(job_ids: list[str]) -> dict[str, str]:
    """job_id_index -> state of every task of these arrays that the controller still keeps."""
    states: dict[str, str] = {}
    if not job_ids:
        return states
    try:
        proc = _run(["squeue", "-h", "-r", "-t", "all", "-j", ",".join(job_ids), "-o", "%i|%T"], timeout=30)
    except subprocess.TimeoutExpired:
        return states
    for line in proc.stdout.splitlines():
        name, _, state = line.partition("|")
        if name.strip():
            states[name.strip()] = state.strip()
    return states


def run_key(config: RunnerConfig, state_bytes: bytes) -> str:
    """What makes two generations' results interchangeable: the plugin (its source file's or
    built library's sha256), parameters, output datatypes, state and timeout; not paths of copies."""
    spec = config.spec
    source = Path(spec.source)
    source_sha = sha256_file(source) if source.is_file() else ""
    facts = (spec.lang, spec.source, source_sha, spec.artifact_sha256, spec.options, sorted(config.params.items()),
             config.datatypes, config.output_names, config.uses_state, config.per_worker_state, config.timeout)
    return sha256_bytes(repr(facts).encode() + state_bytes)


def _finished_in(parts: Path) -> dict[str, tuple[list[str], list[str]]]:
    """The entities computed without error in a generation's part files (whole lines only)."""
    finished: dict[str, tuple[list[str], list[str]]] = {}
    for path in sorted(parts.glob("*.jsonl")) if parts.is_dir() else []:
        data = path.read_bytes()
        for line in data[: data.rfind(b"\n") + 1].splitlines():
            record = json.loads(line)
            if isinstance(record, list) and record[3] is None:
                finished[record[0]] = (record[1], record[2])
    return finished


def _sacct_states(job_ids: list[str]) -> dict[str, str]:
    """States of finished tasks: sacct from the accounting database, else from the job completion
    log (``sacct -c``, clusters without slurmdbd)."""
    states: dict[str, str] = {}
    if not job_ids:
        return states
    for extra in ([], ["-c"]):
        try:
            proc = _run(["sacct", *extra, "-n", "-X", "-P", "-j", ",".join(job_ids), "-o", "JobID,State"], timeout=30)
        except subprocess.TimeoutExpired:
            continue
        if proc.returncode != 0:
            continue
        for line in proc.stdout.splitlines():
            name, _, state = line.partition("|")
            if name and state:
                states[name.strip()] = state.split()[0].strip()  # "CANCELLED by 0" -> CANCELLED
        if states:
            break
    return states


def _exit_code(task_key: str) -> int | None:
    """The exit status of an ended task (scontrol, while the controller keeps the job)."""
    try:
        proc = _run(["scontrol", "-o", "show", "job", task_key], timeout=15)
    except subprocess.TimeoutExpired:
        return None
    for field_text in proc.stdout.split():
        if field_text.startswith("ExitCode="):
            try:
                return int(field_text.split("=", 1)[1].split(":")[0])
            except ValueError:
                return None
    return None


def _log_tail(path: Path) -> str:
    try:
        return _first_line(path.read_text(errors="replace"))
    except OSError:
        return "(no task log)"


# --------------------------------------------------------------------------- the task's side


def task_main(generation: Path, array: str, index: int) -> int:
    """An array task: compute the chunk ``array_index`` of the generation, one part line per entity."""
    payload = pickle.loads(read_private(generation / "config.pkl", WHAT))  # the driver's, checked before unpickling
    config: RunnerConfig = payload["config"]
    items = [tuple(json.loads(line)) for line in (generation / "in" / f"{array}_{index}.jsonl").open(encoding="utf-8")]
    part_path = generation / "parts" / f"{array}_{index}.jsonl"
    fd = os.open(part_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with open(fd, "w", encoding="utf-8", newline="\n") as part:
        def put(record: Any) -> None:
            part.write(json.dumps(record, ensure_ascii=False) + "\n")  # one write per line, flushed
            part.flush()

        try:
            runner = ChunkRunner(config)
            if not config.per_worker_state:
                runner.state = pickle.loads(payload["state"])
        except BaseException as exc:  # noqa: BLE001 - told to the driver, which stops the batch
            put({"fatal": f"{type(exc).__name__}: {exc}"})
            return 3
        # scancel and the time limit send SIGTERM: unwind so the plugin's children die with the task
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        put({"ready": os.getpid(), "host": socket.gethostname()})
        started = time.perf_counter()
        try:
            for item in items:
                outcomes, seconds = runner.run_chunk([item])
                entity_id, fields, logs, error = outcomes[0]
                put([entity_id, fields, logs, list(error) if error else None, seconds])
            state = runner.finish(payload["return_state"])
        finally:
            runner.cleanup()
        if payload["return_state"] and state is not None:
            atomic_write(generation / "states" / f"{array}_{index}.pkl", pickle.dumps(state, protocol=5))
        put({"end": time.perf_counter() - started})
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or "SLURM_ARRAY_TASK_ID" not in os.environ:
        print("usage: python -m provbatch.execution.slurm GENERATION_DIR ARRAY (inside a Slurm array task)",
              file=sys.stderr)
        return 2
    return task_main(Path(args[0]), args[1], int(os.environ["SLURM_ARRAY_TASK_ID"]))


if __name__ == "__main__":
    sys.exit(main())
