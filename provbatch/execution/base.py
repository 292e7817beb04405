"""The interface every execution backend implements.

A backend is a pool of workers, each holding a :class:`ChunkRunner`. The
scheduler (:mod:`.scheduler`) decides what to submit and when; a backend only
moves chunks to workers and outcomes back. Chunk sizing and in-flight bounds
are therefore written once for all backends.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field
from itertools import repeat
from operator import itemgetter
from typing import Any, Callable

from .runner import Chunk, Outcome


class WorkerLost(RuntimeError):
    """The worker computing an entity died (crash, out of memory, killed)."""


@dataclass
class Completed:
    """A chunk that came back from a worker: its items and their outcomes, in the same order."""

    chunk_id: int
    chunk: Chunk
    outcomes: list[Outcome]
    seconds: float  # compute time measured in the worker; 0 when the worker was lost
    #: what the plugin wrote to stdout/stderr meanwhile, as marked log lines (see :mod:`.capture`)
    output: list[str] = field(default_factory=list)


#: error class of the entities of a chunk that was queued on a worker that died before starting it
NOT_STARTED = "NotStarted"


def lost_outcomes(chunk: Chunk, reason: str, error_class: str = "WorkerLost") -> list[Outcome]:
    """Outcomes for the entities of a chunk whose worker died (``NOT_STARTED`` if it never began it)."""
    return [(item[0], None, [], (error_class, reason, "")) for item in chunk]


_ID, _FIELDS, _LOGS, _ERROR = (itemgetter(i) for i in range(4))


def pack_outcomes(outcomes: list[Outcome], n_outputs: int) -> str | None:
    """A chunk's outcomes as one string to send between processes, when every entity succeeded
    without logs (almost every chunk of cheap entities); None otherwise (send the outcomes).

    Unpickling a tuple and two lists per entity cost the driver 5 µs per entity, more than
    a trivial compute: one string of the fields (TAB between fields, LF between rows) costs
    a fraction of it. Fields never hold a tab or a newline (the row formatter refuses them);
    the counts are checked all the same, and a chunk that does not fit is sent as it is.
    """
    if n_outputs < 1 or not outcomes or any(map(_ERROR, outcomes)) or any(map(_LOGS, outcomes)):
        return None
    if not all(map(_FIELDS, outcomes)):  # "no value" (no fields) would come back as one empty field
        return None
    text = "\n".join(map("\t".join, map(_FIELDS, outcomes)))
    if text.count("\n") != len(outcomes) - 1 or text.count("\t") != len(outcomes) * (n_outputs - 1):
        return None
    return text


def unpack_outcomes(chunk: Chunk, text: str) -> list[Outcome]:
    """The outcomes :func:`pack_outcomes` packed, for the chunk they are of (its ids, in order).

    The garbage collector is paused meanwhile: these are three new containers per entity, none
    in a cycle, and a chunk of 20,000 would otherwise set off ~85 collections of the young
    generation, each walking the outcomes made so far (most of the cost, measured).
    """
    rows = text.split("\n")
    paused = gc.isenabled()
    gc.disable()
    try:
        return list(zip(map(_ID, chunk), map(str.split, rows, repeat("\t")), map(list, repeat((), len(rows))), repeat(None)))
    finally:
        if paused:
            gc.enable()


def no_event(_name: str, **_details: Any) -> None:
    """Default event sink of a pool."""


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
        """Block until at least one chunk is done; return all that are."""
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
