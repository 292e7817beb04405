"""The interface every execution backend implements.

A backend is a pool of workers, each holding a :class:`ChunkRunner`. The
scheduler (:mod:`.scheduler`) decides what to submit and when; a backend only
moves chunks to workers and outcomes back. Chunk sizing and in-flight bounds
are therefore written once for all backends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
