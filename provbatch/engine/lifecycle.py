"""initialize -> compute on a backend -> finish the workers -> merge -> finalize.

Keeps the state rules in one place (docs/user-guide.md, "State"):

- ``initialize`` runs once, in the driver; its state goes to each worker once.
- Each worker computes on its own copy. Without a ``merge`` hook, changes
  made in parallel workers do not reach ``finalize`` (it gets the driver's
  state); with ``merge(states) -> state``, finalize gets the merge of the
  states of every worker that computed.
- A state that cannot be pickled, or a plugin whose state is process-local
  (a Nim handle), is made per worker: each worker runs initialize and
  finalize itself; the driver finalizes the one it made for itself.
"""

from __future__ import annotations

import copy
import os
import pickle
import sys
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ..contract.parameters import STATE
from ..errors import UsageError
from ..execution.base import Completed, Pool
from ..execution.capture import OutputCapture
from ..execution.runner import ChunkRunner, Item, RunnerConfig
from ..execution.scheduler import ChunkSizer, Scheduler
from ..execution.serial import SerialPool
from ..outputs.report import Report
from ..plugins.loading import LoadedPlugin

BACKENDS = ("auto", "serial", "pool", "ray", "slurm")
#: how long ``auto`` computes in the driver before deciding whether workers pay off
AUTO_PROBE_SECONDS = 0.2
#: below this compute time per entity, shipping entities to worker processes costs more than it saves
AUTO_MIN_SECONDS_PER_ENTITY = 50e-6
#: chunks computed in the driver stay small: there is no transfer to amortize, and a chunk's
#: outcomes that outlive a few garbage collections make the collector walk them again and
#: again (20,000-entity chunks cost 3 µs per entity in collections, 256-entity ones nothing)
DRIVER_MAX_CHUNK = 1024


#: modules through which Python code calls native code directly (a crash there ends the process)
NATIVE_CALL_MODULES = ("ctypes", "_ctypes", "cffi", "_cffi_backend")


def safe_in_driver(plugin: LoadedPlugin) -> bool:
    """Whether a crash of compute can only be an exception, so that computing in the driver is safe.

    Rust and Nim plugins are native code: a nil dereference or a panic across
    the boundary ends the process. A Python plugin that holds ctypes or cffi
    objects can segfault too. Those compute in a worker process under serial and
    auto. Pure Python (and Bash, whose shell is a child process) computes in the
    driver, where sys.exit, os._exit and os.abort are turned into failures of the
    entity (see execution/runner.py).
    """
    if plugin.lang in ("rust", "nim"):
        return False
    if plugin.lang != "python":
        return True
    for value in vars(plugin.module).values():
        if isinstance(value, types.ModuleType):
            origin = value.__name__
        else:  # a function or class imported from it (from ctypes import CDLL), or an instance (a loaded library)
            origin = getattr(value, "__module__", None) or type(value).__module__
        if isinstance(origin, str) and origin.split(".")[0] in NATIVE_CALL_MODULES:
            return False
    return True


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def picklable(state: Any) -> bool:
    """Whether the state can be sent to other processes (out-of-band buffers: no copy of big arrays)."""
    try:
        pickle.dumps(state, protocol=5, buffer_callback=lambda _buffer: None)
        return True
    except Exception:  # noqa: BLE001 - any failure means "cannot travel"
        return False


def ray_import_problem() -> str | None:
    """None when Ray can be imported, else why not."""
    try:
        import ray  # noqa: F401
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {exc}"
    return None


def ray_requested_by_environment(address: str | None) -> bool:
    if address or os.environ.get("RAY_ADDRESS"):
        return True
    ray = sys.modules.get("ray")
    return bool(ray is not None and getattr(ray, "is_initialized", lambda: False)())


@dataclass
class ExecutionOptions:
    backend: str = "auto"
    workers: int | None = None
    address: str | None = None
    timeout: float | None = None
    #: --backend slurm: the --slurm-* options (workdir resolved), what check_slurm found, the entity count if known
    slurm: Any = None
    slurm_config: dict[str, str] | None = None
    expected_entities: int | None = None


class Lifecycle:
    """One batch's plugin lifecycle and backend; :meth:`scheduler` gives the chunks to drive."""

    def __init__(
        self,
        plugin: LoadedPlugin,
        resolved_params: dict[str, Any],
        datatypes: tuple[str | None, ...],
        options: ExecutionOptions,
        report: Report,
        emit: Callable[..., None],
    ) -> None:
        self.plugin = plugin
        self.module = plugin.module
        self.report = report
        self.options = options
        self.emit = emit
        self.datatypes = datatypes
        params = dict(resolved_params)
        self.user_state = params.pop(STATE, None)
        self.has_user_state = STATE in resolved_params
        self.params = params
        self.has_initialize = plugin.has("initialize")
        self.has_merge = plugin.has("merge")
        self.workers = options.workers or default_workers()
        self.backend = self._choose_backend()
        self.process_local = plugin.spec.process_local_state
        self.driver_state: Any = self.user_state
        self.driver_initialized = False
        self.pool: Pool | None = None
        self.per_worker = False
        self.probe_runner: ChunkRunner | None = None
        self.finished = False
        self.uses_state = self.has_initialize or self.has_user_state
        #: what the plugin writes to stdout/stderr in the driver (see execution/capture.py)
        self.capture = OutputCapture()
        #: serial/auto with a plugin that runs native code: computed in one worker process (see safe_in_driver)
        self.isolated = self.backend in ("serial", "auto") and not safe_in_driver(plugin)
        #: the batch is computed by one isolated worker: finalize gets that worker's state, as in the driver
        self.single_worker = False
        driver_computes = self.backend in ("serial", "auto") and not self.isolated
        if self.has_initialize and (driver_computes or not self.process_local):
            init_params = dict(params)
            if self.has_user_state:
                init_params[STATE] = self.user_state
            with self.capture:
                self.driver_state = self.module.initialize(**init_params)
            self.driver_initialized = True

    # ---------------------------------------------------------------- backend
    def _choose_backend(self) -> str:
        requested = self.options.backend
        if requested == "auto" and ray_requested_by_environment(self.options.address):
            requested = "ray"
        if requested == "ray":
            why = ray_import_problem()
            if why is not None:
                message = f"Ray cannot be imported ({why}): using the local pool backend instead"
                print(f"provbatch: {message}", file=sys.stderr)
                self.report.remarks.append(message)
                self.emit("backend_fallback", requested="ray", used="pool", reason=why)
                requested = "pool"
        if requested == "auto" and self.workers == 1:
            requested = "serial"
        self.report.backend = requested
        return requested

    def _config(self, per_worker: bool, in_worker: bool) -> RunnerConfig:
        return RunnerConfig(
            spec=self.plugin.spec,
            params=self.params,
            datatypes=self.datatypes,
            output_names=tuple(self.plugin.output),
            uses_state=self.uses_state,
            per_worker_state=per_worker,
            initial_state=self.user_state if per_worker else None,
            timeout=self.options.timeout,
            hard_timeout=in_worker,
        )

    def _start_pool(self, kind: str, n_workers: int | None = None) -> Pool:
        """Start parallel workers, deciding whether the state is shared or made per worker."""
        self.per_worker = self.has_initialize and (self.process_local or not picklable(self.driver_state))
        if not self.per_worker and self.has_user_state and not self.has_initialize and not picklable(self.user_state):
            raise UsageError("the 'state' parameter cannot be sent to worker processes: use --backend serial")
        state = None if self.per_worker else self.driver_state
        self.report.state_mode = "per_worker" if self.per_worker else ("shared" if self.uses_state else None)
        if self.per_worker:
            self.report.remarks.append(
                "the state cannot leave the process that made it: each worker ran initialize and finalize itself"
            )
        config = self._config(self.per_worker, in_worker=True)
        if kind == "ray":
            from ..execution.ray import RayPool

            pool: Pool = RayPool(self.options.workers, config, state, self.options.address)
        elif kind == "slurm":
            pool = self._start_slurm(config, state)
        else:
            from ..execution.local_pool import LocalPool

            pool = LocalPool(n_workers or self.workers, config, state, module=self.module)
        pool.emit = self.emit
        self.report.workers = pool.n_workers
        return pool

    def _start_slurm(self, config: RunnerConfig, state: Any) -> Pool:
        from pathlib import Path

        from ..execution.slurm import SlurmPool, default_chunk, partition_cpus

        slurm = self.options.slurm
        workers = self.options.workers or partition_cpus(slurm.partition) or default_workers()
        chunk = slurm.chunk or default_chunk(self.options.expected_entities, workers)
        return SlurmPool(workers, config, state, slurm, Path(slurm.workdir), chunk,
                         return_state=self.has_merge and not self.per_worker,
                         slurm_config=self.options.slurm_config, job_name=f"provbatch-{self.plugin.id}"[:64])

    # ---------------------------------------------------------------- compute
    def scheduled(self, entities: Iterator[Item], hold_capture: bool = False) -> Iterator[tuple[Scheduler, Completed]]:
        """Completed chunks, each with the scheduler that can requeue its items.

        ``hold_capture``: the caller writes to stdout/stderr only through
        :func:`~provbatch.execution.capture.unredirected` streams and runs no
        code of its user between chunks (``batch-compute``): the chunks computed
        in the driver then keep fds 1 and 2 on the capture from the first to
        the last, instead of pointing them away and back around each chunk
        (the cost that counts on trivial entities; see execution/capture.py).
        """
        sizer = ChunkSizer()
        if self.isolated:
            yield from self._isolated(entities)
            return
        if self.backend in ("pool", "ray", "slurm"):
            self.pool = self._start_pool(self.backend)
            size = getattr(self.pool, "chunk_size", None)  # a job array's chunks are sized once
            if size:
                sizer = ChunkSizer(size=size, max_size=size, fixed=True)
            scheduler = Scheduler(entities, self.pool, sizer)
            for completed in scheduler:
                yield scheduler, completed
            return
        self.report.workers = 1
        self.report.state_mode = "shared" if self.uses_state else None
        probe_state = self.driver_state
        if self.backend == "auto" and self.has_merge and self.uses_state:
            probe_state = copy.deepcopy(self.driver_state)  # workers must start from the pristine state
        self.probe_runner = ChunkRunner(self._config(False, in_worker=False), state=probe_state, module=self.module,
                                        capture=self.capture)
        if hold_capture:
            self.capture.hold()
        try:
            yield from self._in_driver(entities)
        finally:
            self.capture.restore()  # also done by close(): a generator left suspended by an exception keeps its finally

    def _in_driver(self, entities: Iterator[Item]) -> Iterator[tuple[Scheduler, Completed]]:
        """serial, and auto: chunks computed by the driver's probe runner; auto may go on in a pool."""
        assert self.probe_runner is not None
        serial = SerialPool(self.probe_runner)
        if self.backend == "serial":
            scheduler = Scheduler(entities, serial, ChunkSizer(max_size=DRIVER_MAX_CHUNK))
            for completed in scheduler:
                yield scheduler, completed
            return
        # auto: compute in the driver first; start workers only if they pay off
        started = time.perf_counter()
        probe = Scheduler(entities, serial, ChunkSizer(target_seconds=0.02, max_size=DRIVER_MAX_CHUNK))
        seconds = 0.0
        n_probe = 0
        for completed in probe:
            seconds += completed.seconds
            n_probe += len(completed.chunk)
            yield probe, completed
            if time.perf_counter() - started > AUTO_PROBE_SECONDS:
                break
        else:
            self.report.backend = "auto (serial)"
            self.report.remarks.append(f"auto: the batch finished within {AUTO_PROBE_SECONDS} s in the driver")
            return
        per_entity = seconds / max(n_probe, 1)
        if per_entity < AUTO_MIN_SECONDS_PER_ENTITY:
            self.report.backend = "auto (serial)"
            self.report.remarks.append(
                f"auto: {per_entity * 1e6:.1f} µs per entity is too cheap for worker processes to pay off; computed in the driver"
            )
            for completed in probe:
                yield probe, completed
            return
        self.capture.restore()  # the workers are forked with the real fds 1 and 2; the driver computes no more
        self.pool = self._start_pool("pool")
        self.report.backend = "auto (pool)"
        self.report.remarks.append(
            f"auto: {per_entity * 1e3:.2f} ms per entity: {n_probe} entities computed in the driver, "
            f"the rest by {self.pool.n_workers} worker processes"
        )
        parallel = Scheduler(entities, self.pool, ChunkSizer(size=probe.sizer.size))
        parallel._retries = probe._retries  # retries scheduled during the probe go on in the pool
        for completed in parallel:
            yield parallel, completed

    def _isolated(self, entities: Iterator[Item]) -> Iterator[tuple[Scheduler, Completed]]:
        """serial/auto for a plugin that may crash its process: one worker process computes, the driver survives.

        A segfault, abort or exit in compute then ends only that worker: its entity
        fails with the cause, a new worker goes on. ``auto`` adds workers after the
        probe when entities are expensive enough for them to pay off.
        """
        self.pool = self._start_pool("pool", n_workers=1)
        self.single_worker = True
        self.report.backend = f"{self.backend} (isolated)"
        self.report.remarks.append(
            f"{self.backend}: the plugin runs native code, so it computed in a worker process (a crash fails only its entity)"
        )
        scheduler = Scheduler(entities, self.pool, ChunkSizer())
        started = time.perf_counter()
        seconds, n_probe, decided = 0.0, 0, self.backend == "serial" or self.workers == 1
        for completed in scheduler:
            yield scheduler, completed
            if decided:
                continue
            seconds += completed.seconds
            n_probe += len(completed.chunk)
            if time.perf_counter() - started > AUTO_PROBE_SECONDS:
                decided = True
                if seconds / max(n_probe, 1) >= AUTO_MIN_SECONDS_PER_ENTITY:
                    self.pool.add_workers(self.workers - 1)  # type: ignore[attr-defined]
                    self.single_worker = False
                    self.report.backend = "auto (pool)"
                    self.report.workers = self.pool.n_workers

    def take_output(self) -> list[str]:
        """Plugin output captured outside of chunks (initialize, finalize, merge, workers that ended), as log lines."""
        output = self.capture.take() if not self.capture.closed else []
        if self.pool is not None:
            output.extend(self.pool.take_output())
        return output

    def release(self) -> None:
        """Close the driver's capture files (after the last :meth:`take_output`)."""
        self.capture.close()

    @property
    def workers_lost(self) -> int:
        return self.pool.workers_lost if self.pool is not None else 0

    # ----------------------------------------------------------------- finish
    def close(self, abandon: bool) -> None:
        """Stop the workers and finalize, whatever happened before (finalize runs also after failures)."""
        if self.finished:
            return
        self.finished = True
        self.capture.restore()  # a held capture ends with the computing (the driver writes its own lines next)
        states: list[Any] = []
        try:
            if self.pool is not None:
                if abandon:
                    self.pool.terminate()
                else:
                    wanted = (self.has_merge or self.single_worker) and not self.per_worker
                    states = self.pool.finish(return_state=wanted)
        finally:
            if self.pool is not None:
                self.report.backend_details = self.pool.details()
            if self.probe_runner is not None:
                self.probe_runner.cleanup()
            self._finalize(states)

    def _finalize(self, worker_states: list[Any]) -> None:
        finalize = self.module.finalize
        if not self.driver_initialized:
            return
        final = self.driver_state
        if self.single_worker and not self.has_merge and not self.per_worker:
            if worker_states:  # the one worker's state, as if the driver had computed (serial semantics)
                final = worker_states[0]
        elif self.has_merge and not self.per_worker:
            contributors = list(worker_states)
            if self.probe_runner is not None:
                contributors.insert(0, self.probe_runner.state)
            if contributors:
                with self.capture:
                    final = self.module.merge(contributors)
        elif self.pool is not None and not self.per_worker and finalize is not None:
            self.report.remarks.append(
                "state changes made in worker processes do not reach finalize: define merge(states) to gather them"
            )
        if finalize is not None:
            with self.capture:
                finalize(final)
