"""Feeding a pool: adaptive chunk sizes and a bounded amount of work in flight.

Written once for every backend (see :mod:`.base`). Chunks start at one entity
and grow while chunks finish faster than :attr:`ChunkSizer.target_seconds`,
so cheap entities travel in large chunks (little overhead per entity) and
expensive ones in small chunks (good balance between workers). Memory stays
bounded: at most ``pool.depth`` chunks per worker exist at any time, and the
entity stream is read only as fast as chunks are submitted.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice
from typing import Iterator

from .base import Completed, Pool


@dataclass
class ChunkSizer:
    """Chooses the next chunk size from the measured cost per entity."""

    target_seconds: float = 0.1
    size: int = 1
    max_size: int = 20_000
    #: growth is limited per observation so one fast chunk does not make a huge next one
    max_growth: int = 4

    def observe(self, n_entities: int, seconds: float) -> None:
        if n_entities <= 0:
            return
        per_entity = max(seconds / n_entities, 1e-7)
        wanted = int(self.target_seconds / per_entity)
        self.size = max(1, min(wanted, self.size * self.max_growth, self.max_size))


def run_chunks(entities: Iterator[tuple[str, str]], pool: Pool, sizer: ChunkSizer) -> Iterator[Completed]:
    """Submit chunks of ``entities`` to ``pool`` as capacity frees up; yield chunks as they complete.

    Stops reading ``entities`` when the consumer stops iterating (the caller
    then terminates or finishes the pool).
    """
    chunk_id = 0
    exhausted = False
    while True:
        while not exhausted and pool.capacity() > 0:
            chunk = list(islice(entities, sizer.size))
            if not chunk:
                exhausted = True
                break
            pool.submit(chunk_id, chunk)
            chunk_id += 1
        if pool.in_flight() == 0:
            return
        for completed in pool.wait():
            sizer.observe(len(completed.outcomes), completed.seconds)
            yield completed
