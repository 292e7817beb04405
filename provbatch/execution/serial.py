"""The serial backend: chunks computed in the calling process, one at a time.

What ``--backend serial`` uses, and what ``auto`` computes with while it
measures whether worker processes would pay off.
"""

from __future__ import annotations

from typing import Any

from .base import Completed, Pool
from .runner import Chunk


class SerialPool(Pool):
    """Computes in the calling process, on the driver's own plugin module and state."""

    name = "serial"
    depth = 1

    def __init__(self, runner: Any) -> None:
        self.runner = runner
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
