"""Unit tests of the retry policy (engine/retry.py): the exact decision for each failure kind and attempt,
and what handling a failure puts into the queue the scheduler drains."""

from __future__ import annotations

import pytest

from provbatch.engine.retry import Failure, Retry, RetryPolicy
from provbatch.execution.base import NOT_STARTED
from provbatch.execution.scheduler import RequeueQueue

ITEM = ("e1", "entity one", 1)


def error(error_class: str, message: str = "it failed", traceback: str = "Traceback ...") -> tuple[str, str, str]:
    return (error_class, message, traceback)


def test_backoff_doubles_from_half_a_second_up_to_thirty():
    policy = RetryPolicy(retries=10)
    assert [policy.delay(attempt) for attempt in range(1, 9)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


@pytest.mark.parametrize("retries,attempt,chunk_size,error_class,expected", [
    # an exception of the plugin: retried while attempts are left, after the backoff, in any chunk
    (0, 1, 5, "ValueError", Failure("e1", "ValueError", "it failed", "Traceback ...", 1)),
    (2, 1, 5, "ValueError", Retry(("e1", "entity one", 2), 0.5, alone=False, charged=True)),
    (2, 2, 1, "ValueError", Retry(("e1", "entity one", 3), 1.0, alone=False, charged=True)),
    (2, 3, 1, "ValueError", Failure("e1", "ValueError", "it failed", "Traceback ...", 3)),
    # a worker that died before starting the chunk: the same attempt again, at once, never charged
    (0, 1, 5, NOT_STARTED, Retry(("e1", "entity one", 1))),
    (0, 4, 1, NOT_STARTED, Retry(("e1", "entity one", 4))),
    # a crash in a chunk of several: computed again alone, the same attempt (maybe a neighbour's crash)
    (0, 1, 2, "WorkerLost", Retry(("e1", "entity one", 1), 0.0, alone=True, charged=False)),
    (0, 1, 3, "Timeout", Retry(("e1", "entity one", 1), 0.0, alone=True, charged=False)),
    # a crash alone in its chunk is its own: failed, or retried alone while attempts are left
    (0, 1, 1, "WorkerLost", Failure("e1", "WorkerLost", "it failed", "Traceback ...", 1)),
    (1, 1, 1, "WorkerLost", Retry(("e1", "entity one", 2), 0.5, alone=True, charged=True)),
    (1, 2, 1, "Timeout", Failure("e1", "Timeout", "it failed", "Traceback ...", 2)),
    # what a new attempt would return again: never retried
    (3, 1, 1, "ResultValueError", Failure("e1", "ResultValueError", "it failed", "Traceback ...", 1)),
    (3, 1, 4, "EntityIdError", Failure("e1", "EntityIdError", "it failed", "Traceback ...", 1)),
    (3, 1, 1, "UnencodableValue", Failure("e1", "UnencodableValue", "it failed", "Traceback ...", 1)),
])
def test_decisions_per_failure_kind_and_attempt(retries, attempt, chunk_size, error_class, expected):
    item = ("e1", "entity one", attempt)
    assert RetryPolicy(retries=retries).decide(item, error(error_class), chunk_size) == expected


def test_handle_requeues_what_is_computed_again_and_reports_charged_retries_only():
    events: list[tuple[str, dict]] = []
    policy = RetryPolicy(retries=1, emit=lambda name, **details: events.append((name, details)))
    assert policy.handle(("lost", "lost", 1), error("WorkerLost", "worker process 7 died (signal 11)"), 3) is None
    assert policy.handle(("queued", "queued", 1), error(NOT_STARTED), 3) is None
    assert policy.handle(("flaky", "flaky", 1), error("OSError", "x" * 600), 1) is None
    failure = policy.handle(("flaky", "flaky", 2), error("OSError", "again"), 1)
    assert failure == Failure("flaky", "OSError", "again", "Traceback ...", 2)
    assert policy.n_retried == 1
    assert events == [("entity_retried", {"entity": "flaky", "attempt": 1, "error_class": "OSError",
                                          "message": "x" * 500, "retry_in_seconds": 0.5})]
    queue = policy.requeued
    assert len(queue) == 3
    # ready now: the lost entity alone in its chunk, then the one queued behind it; the retry waits 0.5 s
    assert queue.take(10) == ([("lost", "lost", 1)], True)
    assert queue.take(10) == ([("queued", "queued", 1)], False)
    assert len(queue) == 1 and 0.0 < queue.seconds_to_next() <= 0.5


def test_requeue_queue_keeps_order_and_size_limits():
    queue = RequeueQueue()
    for name in "abcd":
        queue.push((name, name, 1))
    queue.push(("z", "z", 1), delay=60.0)
    assert queue.take(3) == ([("a", "a", 1), ("b", "b", 1), ("c", "c", 1)], False)
    assert queue.take(3) == ([("d", "d", 1)], False)
    assert queue.take(3) == ([], False)  # "z" is not ready
    assert len(queue) == 1 and queue.seconds_to_next() > 59
