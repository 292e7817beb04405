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
pinned on the entity that caused it) go through :meth:`Scheduler.requeue`
and are submitted before new entities.
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


class Scheduler:
    """Submits chunks of ``entities`` (and of requeued items) to ``pool``; iterate to get completed chunks.

    Stops reading ``entities`` when the consumer stops iterating (the caller
    then terminates or finishes the pool).
    """

    def __init__(self, entities: Iterator[Item], pool: Pool, sizer: ChunkSizer | None = None) -> None:
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
        self._retries: list[tuple[float, int, bool, Item]] = []  # (ready at, order, alone, item)
        self._order = itertools.count()
        self._chunk_ids = itertools.count()
        self.exhausted = False

    def requeue(self, item: Item, delay: float = 0.0, alone: bool = False) -> None:
        """Compute ``item`` again after ``delay`` seconds; ``alone``: in a chunk of its own."""
        heapq.heappush(self._retries, (time.monotonic() + delay, next(self._order), alone, item))

    def pending_retries(self) -> int:
        return len(self._retries)

    def _next_chunk(self) -> Chunk:
        now = time.monotonic()
        chunk: Chunk = []
        while self._retries and self._retries[0][0] <= now and len(chunk) < self.sizer.size:
            _ready, _order, alone, item = self._retries[0]
            if alone and chunk:
                break
            heapq.heappop(self._retries)
            chunk.append(item)
            if alone:
                return chunk
        if not self.exhausted and len(chunk) < self.sizer.size:
            new = self._take(self.sizer.size - len(chunk))
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
                if self._retries:
                    time.sleep(max(0.0, self._retries[0][0] - time.monotonic()))
                    continue
                if self.exhausted:
                    return
                continue
            for completed in pool.wait():
                if self._follow_pool:
                    self.sizer.target_seconds, self.sizer.max_size = pool.target_seconds, pool.max_chunk
                self.sizer.observe(len(completed.chunk), completed.seconds)
                yield completed
