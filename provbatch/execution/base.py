"""The interface every execution backend implements.

A backend is a pool of workers, each holding a :class:`ChunkRunner`. The
scheduler (:mod:`.scheduler`) decides what to submit and when; a backend only
moves chunks to workers and outcomes back. Chunk sizing and in-flight bounds
are therefore written once for all backends.

Every backend is made the same way (:func:`.registry.make_pool`):
``Backend(n_workers, config, state, options)`` with the number of workers
(None: the backend's default), the :class:`~.runner.RunnerConfig` every worker
gets, the plugin's state the workers start from, and a :class:`PoolOptions`
(plain values: each backend reads the fields it needs).
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable
from dataclasses import dataclass
from itertools import repeat
from operator import itemgetter
from types import ModuleType
from typing import Any

from .capture import OutputCapture
from .runner import Chunk, ChunkResult, Outcome, outcomes_of_lines

_ID, _ENTITY, _ATTEMPT = (itemgetter(i) for i in range(3))


def pack_chunk(chunk: Chunk) -> str | Chunk:
    """A chunk to send to a worker process: one string of its ids (LF between them) when every
    item is a first attempt whose entity is its id (almost every chunk of an ids file), else the
    chunk as it is.

    Pickling and unpickling a tuple per entity cost the driver and the worker more than a
    trivial compute, and a long message is read by the worker's inbox thread a pipe's capacity
    at a time, each waiting for the computing thread to hand over the interpreter lock: a
    string of ids is a third of the bytes and no object per entity. An id holding a LF makes the
    count of LFs wrong, and the chunk goes as it is.
    """
    ids = list(map(_ID, chunk))
    if ids != list(map(_ENTITY, chunk)) or sum(map(_ATTEMPT, chunk)) != len(chunk):  # attempts are >= 1
        return chunk
    text = "\n".join(ids)
    if text.count("\n") != len(ids) - 1:
        return chunk
    return text


def unpack_chunk(packed: str | Chunk) -> Chunk:
    """The chunk :func:`pack_chunk` packed (in the worker). The collector is paused meanwhile:
    the items are new tuples of strings, none in a cycle, and a chunk of 20,000 would otherwise
    set off ~30 young collections, each walking the items made so far."""
    if not isinstance(packed, str):
        return packed
    ids = packed.split("\n")
    paused = gc.isenabled()
    gc.disable()
    try:
        return list(zip(ids, ids, repeat(1)))
    finally:
        if paused:
            gc.enable()


class WorkerLost(RuntimeError):
    """The worker computing an entity died (crash, out of memory, killed)."""


class Completed:
    """A chunk that came back from a worker: its items and their outcomes, in the same order.

    A chunk computed whole in the common case (every entity a value, no logs) comes back as
    its result lines, ``lines`` (see ``execution.runner.ChunkResult``): the driver writes that
    text as it is, and :attr:`outcomes` is built from it only when something asks for it (the
    store, the Python API's rows, a chunk that fails the TSV check).
    """

    __slots__ = ("chunk_id", "chunk", "_outcomes", "seconds", "output", "lines")

    def __init__(self, chunk_id: int, chunk: Chunk, outcomes: list[Outcome] | None, seconds: float,
                 output: list[str] | None = None, lines: str | None = None) -> None:
        if outcomes is None and lines is None:
            raise ValueError("a completed chunk needs its outcomes or its result lines")
        self.chunk_id = chunk_id
        self.chunk = chunk
        self._outcomes = outcomes
        #: compute time measured in the worker; 0 when the worker was lost
        self.seconds = seconds
        #: what the plugin wrote to stdout/stderr meanwhile, as marked log lines (see :mod:`.capture`)
        self.output: list[str] = output if output is not None else []
        self.lines = lines

    @classmethod
    def of(cls, chunk_id: int, chunk: Chunk, result: ChunkResult, seconds: float, output: list[str] | None = None) -> Completed:
        """From what ``ChunkRunner.compute_chunk`` gave: result lines or outcomes."""
        if isinstance(result, str):
            return cls(chunk_id, chunk, None, seconds, output, lines=result)
        return cls(chunk_id, chunk, result, seconds, output)

    @property
    def outcomes(self) -> list[Outcome]:
        """One outcome per item of :attr:`chunk` (built from :attr:`lines` at the first use)."""
        if self._outcomes is None:
            assert self.lines is not None
            self._outcomes = outcomes_of_lines(self.chunk, self.lines)
        return self._outcomes

    @outcomes.setter
    def outcomes(self, outcomes: list[Outcome]) -> None:
        self._outcomes, self.lines = outcomes, None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Completed):
            return NotImplemented
        return (self.chunk_id, self.chunk, self.outcomes, self.seconds, self.output) == (
            other.chunk_id, other.chunk, other.outcomes, other.seconds, other.output)

    def __repr__(self) -> str:
        return f"Completed({self.chunk_id}, {len(self.chunk)} items, {'lines' if self._outcomes is None else 'outcomes'})"


#: error class of the entities of a chunk that was queued on a worker that died before starting it
NOT_STARTED = "NotStarted"


def lost_outcomes(chunk: Chunk, reason: str, error_class: str = "WorkerLost") -> list[Outcome]:
    """Outcomes for the entities of a chunk whose worker died (``NOT_STARTED`` if it never began it)."""
    return [(item[0], None, [], (error_class, reason, "")) for item in chunk]


def no_event(_name: str, **_details: Any) -> None:
    """Default event sink of a pool."""


def no_remark(_text: str) -> None:
    """Default remark sink of a pool."""


def default_workers() -> int:
    """The number of workers when none is asked for: the CPUs this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass
class PoolOptions:
    """What a backend is made from beyond its workers, runner config and state: the same object for
    every backend (each reads what it needs), so that adding a backend changes no constructor call.

    The first fields are the user's run options for backends; the others are what the engine knows
    about this batch (filled by :class:`provbatch.engine.lifecycle.Lifecycle`).
    """

    #: a Ray cluster to join (``--address``)
    address: str | None = None
    #: ``--backend slurm``: the ``--slurm-*`` options (:class:`.slurm.SlurmOptions`), what
    #: :func:`.slurm.check_slurm` found, and the entity count when known (sizes the chunks)
    slurm: Any = None
    slurm_config: dict[str, str] | None = None
    expected_entities: int | None = None
    #: the driver's plugin module: forked workers inherit it, the driver's own pool computes with it
    module: ModuleType | None = None
    #: where the driver's own pool catches the plugin's output (the lifecycle's capture)
    capture: OutputCapture | None = None
    #: the engine will ask :meth:`Pool.finish` for the workers' states (merge): a remote engine must keep them
    return_state: bool = False
    #: a name for the batch's jobs (Slurm's job name)
    job_name: str = "provbatch"
    #: serial/auto: compute in a worker process, not the driver (native code may crash its process)
    isolated: bool = False
    #: how many workers ``auto`` goes to when workers pay off
    workers: int = 1
    #: auto and isolated serial: start local worker processes (the engine decides how the state travels)
    start_workers: Callable[[int], Pool] | None = None
    #: where a pool adds a line to the report's remarks (auto says what it decided and why)
    remark: Callable[[str], None] = no_remark
    #: the largest chunk computed in the driver (serial, auto before it starts workers); None: the
    #: pool's own. The engine lowers it when each chunk's rows go to the caller (serial.DRIVER_ROWS_MAX_CHUNK)
    driver_chunk: int | None = None


class Pool:
    """A set of workers that compute chunks."""

    name: str = ""
    n_workers: int = 1
    #: chunks a worker may hold at once: one computing, one queued to hide latency
    depth: int = 2
    #: where the pool reports events (worker_lost, ...): set by the batch to its run record
    emit: Callable[..., None] = staticmethod(no_event)
    workers_lost: int = 0
    #: plugin output not tied to a chunk (a worker's finalize, a worker that died idle): the batch drains it
    output: list[str]
    #: chunks are sized to take about this long on this pool (see :class:`.scheduler.ChunkSizer`) ...
    target_seconds: float = 0.1
    #: ... and to hold at most this many entities
    max_chunk: int = 20_000
    #: every chunk has this many entities (a job array's tasks, sized once for the batch); None: adaptive
    fixed_chunk: int | None = None
    #: what the report calls the backend (``auto (pool)``, ``serial (isolated)``); None: :attr:`name`
    label: str | None = None

    def take_output(self) -> list[str]:
        """Captured plugin output waiting to be written to the logs (see :mod:`.capture`)."""
        output = getattr(self, "output", None) or []
        self.output = []
        return output

    def capacity(self) -> int:
        """How many more chunks can be submitted now."""
        raise NotImplementedError

    def in_flight(self) -> int:
        raise NotImplementedError

    def submit(self, chunk_id: int, chunk: Chunk) -> None:
        raise NotImplementedError

    def wait(self) -> list[Completed]:
        """Block until at least one chunk is done; return all that are. Empty only when nothing is in
        flight any more (a Slurm task's end came after its last result was handed over): the scheduler
        then looks at :meth:`in_flight` again."""
        raise NotImplementedError

    def finish(self, return_state: bool) -> list[Any]:
        """Stop the workers after their last chunk; the per-worker states if asked (for merge)."""
        raise NotImplementedError

    def terminate(self) -> None:
        """Stop now, abandoning in-flight chunks (cancel, interrupt)."""
        raise NotImplementedError

    def status(self) -> str:
        """A few words for the progress line (Slurm: tasks pending and running); empty by default."""
        return ""

    def details(self) -> dict[str, Any]:
        """What the report and the run record say about this backend beyond its name (job ids, ...)."""
        return {}
