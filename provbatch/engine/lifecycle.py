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
import pickle
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ..contract.parameters import STATE
from ..errors import UsageError
from ..execution import registry
from ..execution.base import Completed, Pool, PoolOptions, default_workers
from ..execution.capture import OutputCapture
from ..execution.runner import Item, RunnerConfig
from ..execution.scheduler import RequeueQueue, Scheduler
from ..execution.serial import DRIVER_ROWS_MAX_CHUNK
from ..outputs.report import Report
from ..plugins.loading import LoadedPlugin

__all__ = ["ExecutionOptions", "Lifecycle", "default_workers", "picklable", "safe_in_driver"]


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


def picklable(state: Any) -> bool:
    """Whether the state can be sent to other processes (out-of-band buffers: no copy of big arrays)."""
    try:
        pickle.dumps(state, protocol=5, buffer_callback=lambda _buffer: None)
        return True
    except Exception:  # noqa: BLE001 - any failure means "cannot travel"
        return False


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
    """One batch's plugin lifecycle and backend; :meth:`scheduled` gives the completed chunks."""

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
        #: the pool the scheduler feeds (any backend: :mod:`provbatch.execution.registry`)
        self.pool: Pool | None = None
        #: the worker processes when there are any (a parallel backend, auto once it started them, an isolated worker)
        self.parallel: Pool | None = None
        self.per_worker = False
        self.finished = False
        self.uses_state = self.has_initialize or self.has_user_state
        #: what the plugin writes to stdout/stderr in the driver (see execution/capture.py)
        self.capture = OutputCapture()
        #: the largest chunk the driver computes (None: the backend's own); see :meth:`scheduled`
        self.driver_chunk: int | None = None
        in_driver = registry.backend(self.backend).in_driver
        #: serial/auto with a plugin that runs native code: computed in a worker process (see safe_in_driver)
        self.isolated = in_driver and not safe_in_driver(plugin)
        driver_computes = in_driver and not self.isolated
        if self.has_initialize and (driver_computes or not self.process_local):
            init_params = dict(params)
            if self.has_user_state:
                init_params[STATE] = self.user_state
            with self.capture:
                self.driver_state = self.module.initialize(**init_params)
            self.driver_initialized = True

    # ---------------------------------------------------------------- backend
    def _choose_backend(self) -> str:
        # an error naming the choices for an unknown name; auto decides here between Ray, serial and itself
        requested = registry.chosen_backend(self.options.backend, self.options.address, self.workers)
        entry = registry.backend(requested)
        why = registry.import_problem(requested)
        if why is not None and entry.fallback is not None:
            fallback = registry.backend(entry.fallback)
            message = f"{entry.title} cannot be imported ({why}): using the {fallback.title} backend instead"
            print(f"provbatch: {message}", file=sys.stderr)
            self.report.remarks.append(message)
            self.emit("backend_fallback", requested=requested, used=fallback.name, reason=why)
            requested = fallback.name
        self.report.backend = requested
        return requested

    @property
    def single_worker(self) -> bool:
        """The batch is computed by one isolated worker: finalize gets that worker's state, as in the driver."""
        return self.isolated and self.pool is not None and self.pool.n_workers == 1

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

    def _pool_options(self) -> PoolOptions:
        options = self.options
        return PoolOptions(
            address=options.address, slurm=options.slurm, slurm_config=options.slurm_config,
            expected_entities=options.expected_entities, module=self.module, capture=self.capture,
            return_state=self.has_merge and not self.per_worker, job_name=f"provbatch-{self.plugin.id}"[:64],
            isolated=self.isolated, workers=self.workers, start_workers=self._start_workers,
            remark=self.report.remarks.append, driver_chunk=self.driver_chunk,
        )

    def _start_pool(self, kind: str, n_workers: int | None) -> Pool:
        """Start parallel workers, deciding whether the state is shared or made per worker."""
        self.per_worker = self.has_initialize and (self.process_local or not picklable(self.driver_state))
        if not self.per_worker and self.has_user_state and not self.has_initialize and not picklable(self.user_state):
            raise UsageError.naming("the 'state' parameter cannot be sent to worker processes: use {backend} serial")
        state = None if self.per_worker else self.driver_state
        self.report.state_mode = "per_worker" if self.per_worker else ("shared" if self.uses_state else None)
        if self.per_worker:
            self.report.remarks.append(
                "the state cannot leave the process that made it: each worker ran initialize and finalize itself"
            )
        pool = registry.make_pool(kind, n_workers, self._config(self.per_worker, in_worker=True), state,
                                  self._pool_options())
        pool.emit = self.emit
        self.report.workers = pool.n_workers
        self.parallel = pool
        return pool

    def _start_workers(self, n_workers: int) -> Pool:
        """What a backend that computes in the driver calls to start local worker processes (auto, isolation)."""
        self.capture.restore()  # the workers are forked with the real fds 1 and 2; the driver computes no more
        return self._start_pool("pool", n_workers)

    def _open_pool(self) -> Pool:
        """The chosen backend's pool, through the registry."""
        if not registry.backend(self.backend).in_driver:
            return self._start_pool(self.backend, self.options.workers)  # None: the backend's own default
        self.report.workers = 1
        self.report.state_mode = "shared" if self.uses_state else None
        state = self.driver_state
        if registry.backend(self.backend).copies_state and self.has_merge and self.uses_state:
            state = copy.deepcopy(self.driver_state)  # workers it may start must start from the pristine state
        pool = registry.make_pool(self.backend, self.workers, self._config(False, in_worker=False), state,
                                  self._pool_options())
        pool.emit = self.emit
        return pool

    # ---------------------------------------------------------------- compute
    def scheduled(self, entities: Iterator[Item], requeued: RequeueQueue, hold_capture: bool = False,
                  rows_to_caller: bool = False) -> Iterator[Completed]:
        """The completed chunks of ``entities`` and of the items requeued meanwhile (by the retry policy).

        ``hold_capture``: the caller writes to stdout/stderr only through
        :func:`~provbatch.execution.capture.unredirected` streams and runs no
        code of its user between chunks (``batch-compute``): the chunks computed
        in the driver then keep fds 1 and 2 on the capture from the first to
        the last, instead of pointing them away and back around each chunk
        (the cost that counts on trivial entities; see execution/capture.py).
        Workers are started with the real fds 1 and 2 (:meth:`_start_workers`).

        ``rows_to_caller``: each chunk's rows are built for the caller (``iter_batch``,
        ``run_batch``): the chunks computed in the driver are then smaller
        (:data:`~provbatch.execution.serial.DRIVER_ROWS_MAX_CHUNK`), workers' chunks are not.
        """
        if rows_to_caller:
            self.driver_chunk = DRIVER_ROWS_MAX_CHUNK
        self.pool = self._open_pool()
        scheduler = Scheduler(entities, self.pool, requeued=requeued)
        if hold_capture and registry.backend(self.backend).in_driver and not self.isolated:
            self.capture.hold()
        try:
            yield from scheduler
        finally:
            self.capture.restore()  # also done by close(): a generator left suspended by an exception keeps its finally

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
                self.report.workers = self.pool.n_workers
                if self.pool.label:  # what auto decided, an isolated serial
                    self.report.backend = self.pool.label
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
            contributors = list(worker_states)  # the driver's own first when it computed (serial, auto)
            if contributors:
                with self.capture:
                    final = self.module.merge(contributors)
        elif self.parallel is not None and not self.per_worker and finalize is not None:
            self.report.remarks.append(
                "state changes made in worker processes do not reach finalize: define merge(states) to gather them"
            )
        if finalize is not None:
            with self.capture:
                finalize(final)
