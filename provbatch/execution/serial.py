"""The serial backend: chunks computed in the calling process, one at a time.

What ``--backend serial`` uses, and what ``auto`` computes with while it
measures whether worker processes would pay off (:mod:`.auto`). A plugin
whose compute may crash its process (native code: the engine sets
``options.isolated``) computes in one worker process instead, so that a crash
fails only its entity (:func:`serial_backend`).
"""

from __future__ import annotations

from typing import Any

from .base import Completed, Pool, PoolOptions
from .runner import Chunk, ChunkRunner, RunnerConfig

#: chunks computed in the driver stay small: there is no transfer to amortize, and a chunk's
#: outcomes that outlive a few garbage collections make the collector walk them again and
#: again (20,000-entity chunks cost 3 µs per entity in collections; the chunk loop leaves no
#: tracked object per common entity, so 1,024 costs none and saves per-chunk system calls)
DRIVER_MAX_CHUNK = 1024
#: ... but 256 when each chunk's rows go to the caller (iter_batch, run_batch): a chunk's rows are
#: three containers per entity alive together, and past a few hundred entities they outlive young
#: collections and reach the oldest generation, whose full passes then walk the seen ids and the
#: caller's data (1M entities, iter_batch: 22 full passes, 1.2 us of CPU per entity at 1,024; none at 256)
DRIVER_ROWS_MAX_CHUNK = 256


class SerialPool(Pool):
    """Computes in the calling process, on the driver's own plugin module (``options.module``) and ``state``."""

    name = "serial"
    depth = 1
    max_chunk = DRIVER_MAX_CHUNK

    def __init__(self, n_workers: int | None, config: RunnerConfig, state: Any, options: PoolOptions) -> None:
        del n_workers  # one: the driver
        self.runner = ChunkRunner(config, state=state, module=options.module, capture=options.capture)
        if options.driver_chunk:
            self.max_chunk = options.driver_chunk
        self.output = []
        self._pending: tuple[int, Chunk] | None = None

    def capacity(self) -> int:
        return 0 if self._pending else 1

    def in_flight(self) -> int:
        return 1 if self._pending else 0

    def submit(self, chunk_id: int, chunk: Chunk) -> None:
        self._pending = (chunk_id, chunk)

    def wait(self) -> list[Completed]:
        assert self._pending is not None
        chunk_id, chunk = self._pending
        self._pending = None
        result, seconds = self.runner.compute_chunk(chunk)
        return [Completed.of(chunk_id, chunk, result, seconds, self.runner.take_output())]

    def finish(self, return_state: bool) -> list[Any]:
        state = self.runner.finish(return_state)
        self.output.extend(self.runner.take_output())
        return [state] if return_state else []

    def terminate(self) -> None:
        self._pending = None
        self.runner.cleanup()


def isolated_remark(backend: str) -> str:
    """What the report says when serial or auto computed in a worker process."""
    return f"{backend}: the plugin runs native code, so it computed in a worker process (a crash fails only its entity)"


def serial_backend(n_workers: int | None, config: RunnerConfig, state: Any, options: PoolOptions) -> Pool:
    """The ``serial`` backend: the driver's :class:`SerialPool`, or one isolated worker process."""
    if not options.isolated:
        return SerialPool(n_workers, config, state, options)
    assert options.start_workers is not None, "an isolated serial backend needs options.start_workers"
    pool = options.start_workers(1)
    pool.label = "serial (isolated)"
    options.remark(isolated_remark("serial"))
    return pool
