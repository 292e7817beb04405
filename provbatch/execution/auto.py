"""The ``auto`` backend: compute in the driver first, start worker processes only when they pay off.

Most batches are either tiny (starting workers would dominate) or made of
cheap entities (shipping them to workers costs more than computing them). So
``auto`` computes in the driver (a :class:`~.serial.SerialPool`) in small
chunks for :data:`AUTO_PROBE_SECONDS`, then decides from the measured compute
time per entity: below :data:`AUTO_MIN_SECONDS_PER_ENTITY` it stays in the
driver; above, it starts local worker processes (``options.start_workers``:
the engine decides how the plugin's state travels) and hands them the rest.

A plugin that may crash its process (``options.isolated``: native code)
computes in one worker process from the start; when its entities are
expensive enough, more workers join that pool after the probe.

Entities requeued meanwhile wait in the scheduler's queue, so they go on in
whichever pool computes next. The report says what was decided and why
(:attr:`AutoPool.label`, ``options.remark``).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from .base import Completed, Pool, PoolOptions
from .runner import Chunk, RunnerConfig
from .serial import DRIVER_MAX_CHUNK, SerialPool, isolated_remark

#: how long ``auto`` computes in the driver before deciding whether workers pay off
AUTO_PROBE_SECONDS = 0.2
#: below this compute time per entity, shipping entities to worker processes costs more than it saves
AUTO_MIN_SECONDS_PER_ENTITY = 50e-6
#: the probe's chunks are small, so that the decision comes on time
PROBE_TARGET_SECONDS = 0.02


def ray_requested_by_environment(address: str | None) -> bool:
    """Whether ``auto`` should be Ray: an address, RAY_ADDRESS, or a Ray the caller initialized (never imports Ray)."""
    if address or os.environ.get("RAY_ADDRESS"):
        return True
    ray = sys.modules.get("ray")
    return bool(ray is not None and getattr(ray, "is_initialized", lambda: False)())


def choose_backend(address: str | None, workers: int) -> str:
    """What a run asking for ``auto`` uses (the registry's ``chooser`` of auto): Ray when a Ray cluster is
    named or initialized (the user meant it), the serial backend for one worker (nothing to decide), else auto."""
    if ray_requested_by_environment(address):
        return "ray"
    if workers == 1:
        return "serial"
    return "auto"


class AutoPool(Pool):
    """The driver's serial pool (or one isolated worker) until the decision, then maybe local workers."""

    name = "auto"

    def __init__(self, n_workers: int | None, config: RunnerConfig, state: Any, options: PoolOptions) -> None:
        if options.start_workers is None:
            raise ValueError("the auto backend needs options.start_workers")
        self._start_workers = options.start_workers
        self._remark = options.remark
        #: the number of workers to go to when they pay off
        self.wanted = n_workers or options.workers
        self.isolated = options.isolated
        self._driver_chunk = options.driver_chunk or DRIVER_MAX_CHUNK
        self.first: Pool
        if self.isolated:
            self.first = options.start_workers(1)
            self.label = "auto (isolated)"
            self._remark(isolated_remark("auto"))
        else:
            self.first = SerialPool(1, config, state, options)
        #: the worker pool started after the probe (not the isolated worker, which grows instead)
        self.parallel: Pool | None = None
        #: "serial" or "pool" once decided; an isolated probe with nothing to decide is decided at once
        self.decided: str | None = "serial" if self.isolated and self.wanted <= 1 else None
        self._started = time.perf_counter()
        self._seconds = 0.0
        self._n_probe = 0
        self._due = False

    @property
    def current(self) -> Pool:
        """The pool chunks go to now."""
        return self.parallel if self.parallel is not None else self.first

    # the scheduler reads these at each chunk: they change with the decision (read-only here, hence the ignores)
    @property
    def target_seconds(self) -> float:  # type: ignore[override]
        if self.parallel is None and not self.isolated:
            return PROBE_TARGET_SECONDS
        return self.current.target_seconds

    @property
    def max_chunk(self) -> int:  # type: ignore[override]
        if self.parallel is None and not self.isolated:
            return self._driver_chunk
        return self.current.max_chunk

    @property
    def n_workers(self) -> int:  # type: ignore[override]
        return self.current.n_workers

    @property
    def workers_lost(self) -> int:  # type: ignore[override]
        return self.first.workers_lost + (self.parallel.workers_lost if self.parallel is not None else 0)

    # --------------------------------------------------------------- the decision
    def _decide_if_due(self) -> None:
        """After a probe chunk came back: decide once the probe has run for long enough."""
        if not self._due:
            return
        self._due = False
        if time.perf_counter() - self._started <= AUTO_PROBE_SECONDS:
            return
        per_entity = self._seconds / max(self._n_probe, 1)
        if per_entity < AUTO_MIN_SECONDS_PER_ENTITY:
            self.decided = "serial"
            if not self.isolated:
                self.label = "auto (serial)"
                self._remark(f"auto: {per_entity * 1e6:.1f} µs per entity is too cheap for worker processes to pay off; "
                             "computed in the driver")
            return
        self.decided = "pool"
        self.label = "auto (pool)"
        if self.isolated:
            self.first.add_workers(self.wanted - 1)  # type: ignore[attr-defined]
            return
        self.parallel = self._start_workers(self.wanted)
        self._remark(f"auto: {per_entity * 1e3:.2f} ms per entity: {self._n_probe} entities computed in the driver, "
                     f"the rest by {self.parallel.n_workers} worker processes")

    # --------------------------------------------------------------- the pool interface
    def capacity(self) -> int:
        self._decide_if_due()
        return self.current.capacity()

    def in_flight(self) -> int:
        return self.current.in_flight()  # the driver's pool holds nothing when the workers start

    def submit(self, chunk_id: int, chunk: Chunk) -> None:
        self.current.submit(chunk_id, chunk)

    def wait(self) -> list[Completed]:
        completed = self.current.wait()
        if not self.decided:
            for done in completed:
                self._seconds += done.seconds
                self._n_probe += len(done.chunk)
            self._due = True
        return completed

    def take_output(self) -> list[str]:
        output = self.first.take_output()
        if self.parallel is not None:
            output.extend(self.parallel.take_output())
        return output

    def finish(self, return_state: bool) -> list[Any]:
        """The driver's state first (it computed first), then the workers'."""
        if not self.decided:
            self.decided = "serial"
            if not self.isolated:
                self.label = "auto (serial)"
                self._remark(f"auto: the batch finished within {AUTO_PROBE_SECONDS} s in the driver")
        states = self.first.finish(return_state)
        if self.parallel is not None:
            states.extend(self.parallel.finish(return_state))
        return states

    def terminate(self) -> None:
        try:
            if self.parallel is not None:
                self.parallel.terminate()
        finally:
            self.first.terminate()

    def status(self) -> str:
        return self.current.status()

    def details(self) -> dict[str, Any]:
        return self.current.details()
