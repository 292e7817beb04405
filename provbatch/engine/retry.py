"""The retry policy: what becomes of an entity whose computation failed. It owns requeueing.

Each failed outcome comes here (:meth:`RetryPolicy.decide`), which decides:

- computed again at once, not charged as an attempt: the entity was queued on
  a worker that died before starting it (``NotStarted``); or its chunk was
  lost with its worker (``WorkerLost``, ``Timeout``) and other entities were
  in it: it is computed again *alone*, so that a crash is pinned on the
  entity that caused it, not on its neighbours;
- computed again after a backoff (0.5 s, 1 s, 2 s, ... up to 30 s) while it
  has attempts left (``--retries``), alone if it crashed its worker: not for
  the failures a new attempt would repeat (values that do not fit OUTPUT, an
  id that cannot be written, a value that cannot be encoded);
- or failed for good: a :class:`Failure`, with the number of attempts made.

:meth:`RetryPolicy.handle` carries the decision out: the items to compute
again go into the policy's :class:`~provbatch.execution.scheduler.RequeueQueue`,
which the scheduler drains before reading new entities. The engine hands
failures to the policy and never reaches into the scheduler.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..execution.base import NOT_STARTED, no_event
from ..execution.runner import Item
from ..execution.scheduler import RequeueQueue

#: errors worth no retry: the plugin returned values that do not fit OUTPUT (or an id or value that
#: cannot be written); a new attempt would return them again
NOT_RETRIED = frozenset({"ResultValueError", "EntityIdError", "UnencodableValue"})
#: the entity's worker died (or hung in native code and was ended): a crash that may be a neighbour's
LOST = frozenset({"WorkerLost", "Timeout"})


@dataclass(frozen=True)
class Failure:
    """An entity whose computation failed, after all its attempts."""

    entity: str
    error_class: str
    message: str
    traceback: str = ""
    attempts: int = 1


@dataclass(frozen=True)
class Retry:
    """Compute ``item`` again after ``delay`` seconds; ``alone``: in a chunk of its own.

    ``charged``: the attempt counts (``item`` carries the next attempt number);
    an uncharged retry is the same attempt again (its worker died before it,
    or its chunk died, maybe not because of it).
    """

    item: Item
    delay: float = 0.0
    alone: bool = False
    charged: bool = False


@dataclass
class RetryPolicy:
    """How many times an entity is computed again after a failure, and after what delay."""

    retries: int = 0
    backoff_seconds: float = 0.5
    max_backoff_seconds: float = 30.0
    #: the items to compute again, drained by the scheduler (:meth:`handle` fills it)
    requeued: RequeueQueue = field(default_factory=RequeueQueue)
    #: where a charged retry is reported (``entity_retried``): the run record
    emit: Callable[..., None] = no_event
    #: entities computed again after a failure of their own (not the neighbours of a crash)
    n_retried: int = 0

    def delay(self, attempt: int) -> float:
        """Delay before attempt ``attempt + 1`` (exponential: 0.5 s, 1 s, 2 s, ...)."""
        return min(self.backoff_seconds * 2 ** (attempt - 1), self.max_backoff_seconds)

    def decide(self, item: Item, error: tuple[str, str, str], chunk_size: int) -> Retry | Failure:
        """What becomes of ``item`` (``(id, entity, attempt)``), failed with ``error`` (``(class, message,
        traceback)``) in a chunk of ``chunk_size`` entities. Decides only: :meth:`handle` acts."""
        entity_id, entity, attempt = item
        error_class = error[0]
        if error_class == NOT_STARTED:
            return Retry(item)  # queued on a worker that died before starting it
        if error_class in LOST and chunk_size > 1:
            return Retry(item, alone=True)  # not charged: its chunk died, maybe not because of it
        if error_class not in NOT_RETRIED and attempt <= self.retries:
            return Retry((entity_id, entity, attempt + 1), self.delay(attempt), alone=error_class in LOST, charged=True)
        return Failure(entity_id, error_class, error[1], error[2], attempt)

    def handle(self, item: Item, error: tuple[str, str, str], chunk_size: int) -> Failure | None:
        """Requeue ``item`` if it is to be computed again (None); else its final :class:`Failure`."""
        decision = self.decide(item, error, chunk_size)
        if isinstance(decision, Failure):
            return decision
        if decision.charged:
            self.n_retried += 1
            self.emit("entity_retried", entity=item[0], attempt=item[2], error_class=error[0], message=error[1][:500],
                      retry_in_seconds=decision.delay)
        self.requeued.push(decision.item, delay=decision.delay, alone=decision.alone)
        return None
