"""Feeding a pool: adaptive chunk sizes, bounded work in flight, retries.

Written once for every backend (see :mod:`.base`). Chunks start at one entity
and grow while chunks finish faster than the pool's
:attr:`~.base.Pool.target_seconds` (up to its :attr:`~.base.Pool.max_chunk`),
so cheap entities travel in large chunks (little overhead per entity) and
expensive ones in small chunks (good balance between workers). Memory stays
bounded: at most ``pool.depth`` chunks per worker exist at any time, and the
entity stream is read only as fast as chunks are submitted.

Entities to compute again (retries after a backoff, or the entities of a
chunk whose worker died, which are re-run one per chunk so that a crash is
pinned on the entity that caused it) wait in a :class:`RequeueQueue` and are
submitted before new entities. The scheduler only drains that queue: what
goes into it, and when, is the retry policy's decision
(:mod:`provbatch.engine.retry`, which owns the queue).
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice

from .base import Completed, Pool
from .runner import Chunk, Item


@dataclass
class ChunkSizer:
    """Chooses the next chunk size from the measured cost per entity."""

    target_seconds: float = 0.1
    size: int = 1
    max_size: int = 20_000
    #: growth is limited per observation so one fast chunk does not make a huge next one
    max_growth: int = 4
    #: keep ``size`` (a backend whose chunks are scheduler jobs, sized once for the whole batch)
    fixed: bool = False

    def observe(self, n_entities: int, seconds: float) -> None:
        if self.fixed or n_entities <= 0 or seconds <= 0:  # a lost chunk tells nothing about the cost
            return
        per_entity = max(seconds / n_entities, 1e-7)
        wanted = int(self.target_seconds / per_entity)
        self.size = max(1, min(wanted, self.size * self.max_growth, self.max_size))


class RequeueQueue:
    """Items to compute again, each ready at a time, some to be computed alone in a chunk.

    The public requeue mechanism: the retry policy pushes, the scheduler takes.
    Items come out in the order they were pushed among those that are ready.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, bool, Item]] = []  # (ready at, order, alone, item)
        self._order = itertools.count()

    def push(self, item: Item, delay: float = 0.0, alone: bool = False) -> None:
        """Compute ``item`` again after ``delay`` seconds; ``alone``: in a chunk of its own."""
        heapq.heappush(self._heap, (time.monotonic() + delay, next(self._order), alone, item))

    def __len__(self) -> int:
        return len(self._heap)

    def seconds_to_next(self) -> float:
        """How long until the first item is ready (0 when one is, or when the queue is empty)."""
        return max(0.0, self._heap[0][0] - time.monotonic()) if self._heap else 0.0

    def take(self, limit: int) -> tuple[Chunk, bool]:
        """The ready items, up to ``limit``, in order, and whether the chunk is closed: an item to
        compute alone comes in a chunk of its own, which nothing else may join."""
        now = time.monotonic()
        chunk: Chunk = []
        heap = self._heap
        while heap and heap[0][0] <= now and len(chunk) < limit:
            _ready, _order, alone, item = heap[0]
            if alone and chunk:
                break
            heapq.heappop(heap)
            chunk.append(item)
            if alone:
                return chunk, True
        return chunk, False


class Scheduler:
    """Submits chunks of ``entities`` (and of requeued items) to ``pool``; iterate to get completed chunks.

    Stops reading ``entities`` when the consumer stops iterating (the caller
    then terminates or finishes the pool).
    """

    def __init__(self, entities: Iterator[Item], pool: Pool, sizer: ChunkSizer | None = None,
                 requeued: RequeueQueue | None = None) -> None:
        self.entities = entities
        #: a whole chunk at a time when the entities can give one (inputs.entities.ItemReader.take)
        self._take = getattr(entities, "take", None) or (lambda n: list(islice(entities, n)))
        self.pool = pool
        if sizer is None:  # the pool's limits (they may change during the run: auto's do when it starts workers)
            fixed = pool.fixed_chunk
            sizer = (ChunkSizer(size=fixed, max_size=fixed, fixed=True) if fixed else
                     ChunkSizer(target_seconds=pool.target_seconds, max_size=pool.max_chunk))
            self._follow_pool = not fixed
        else:
            self._follow_pool = False
        self.sizer = sizer
        #: the items to compute again (the retry policy's queue, when it gives one)
        self.requeued = requeued if requeued is not None else RequeueQueue()
        self._chunk_ids = itertools.count()
        self.exhausted = False

    def requeue(self, item: Item, delay: float = 0.0, alone: bool = False) -> None:
        """Compute ``item`` again after ``delay`` seconds; ``alone``: in a chunk of its own."""
        self.requeued.push(item, delay, alone)

    def pending_retries(self) -> int:
        return len(self.requeued)

    def _next_chunk(self) -> Chunk:
        size = self.sizer.size
        chunk, closed = self.requeued.take(size)
        if not closed and not self.exhausted and len(chunk) < size:
            new = self._take(size - len(chunk))
            if not new:
                self.exhausted = True
            chunk.extend(new)
        return chunk

    def __iter__(self) -> Iterator[Completed]:
        pool = self.pool
        while True:
            while pool.capacity() > 0:
                chunk = self._next_chunk()
                if not chunk:
                    break
                pool.submit(next(self._chunk_ids), chunk)
            if pool.in_flight() == 0:
                if len(self.requeued):
                    time.sleep(self.requeued.seconds_to_next())
                    continue
                if self.exhausted:
                    return
                continue
            for completed in pool.wait():
                if self._follow_pool:
                    self.sizer.target_seconds, self.sizer.max_size = pool.target_seconds, pool.max_chunk
                self.sizer.observe(len(completed.chunk), completed.seconds)
                yield completed
