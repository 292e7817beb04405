"""One batch computation, from the PLUGIN and ENTITIES arguments to the results, logs and report.

:class:`BatchRun` is the engine; the command line and the Python API
(:func:`run_batch`, :func:`iter_batch`) are thin layers over it.

Order of work, so that bad input fails before anything is computed or
written: load the plugin -> check it -> resolve the parameters -> open the
entities, the skip list and the resume list -> open the outputs ->
initialize -> compute (streamed through a backend) -> finalize -> report.

State semantics (see docs/user-guide.md, "State"):
- ``initialize`` runs once, in the driver; its state goes to each worker once.
- Each worker computes on its own copy. Without a ``merge`` hook, mutations
  made in parallel workers do not reach ``finalize`` (it gets the driver's
  state); with ``merge(states) -> state``, finalize gets the merge of the
  states of every worker that computed.
- A state that cannot be pickled (or a plugin whose state is process-local,
  like a Nim handle) is made per worker instead: each worker runs
  initialize and finalize itself.
"""

from __future__ import annotations

import copy
import os
import pickle
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from . import report as reporting
from .attributes import AttributeDefinitions
from .entities import EntitySource, EntityStream, SeenIds, iter_column, load_idsproc
from .errors import UsageError
from .execution.base import Completed, Pool, SerialPool
from .execution.runner import ChunkRunner, RunnerConfig
from .execution.scheduler import ChunkSizer, run_chunks
from .outputs import TsvSink, existing_ids
from .params import STATE, resolve_params
from .plugin import LoadedPlugin, load_plugin, require_valid, resolve_attributes

BACKENDS = ("auto", "serial", "pool", "ray")
#: how long ``auto`` computes in the driver before deciding whether workers pay off
AUTO_PROBE_SECONDS = 0.2
#: below this compute time per entity, shipping entities to worker processes costs more than it saves
AUTO_MIN_SECONDS_PER_ENTITY = 50e-6


@dataclass(frozen=True)
class Failure:
    """An entity whose computation failed."""

    entity: str
    error_class: str
    message: str
    traceback: str = ""


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _picklable(state: Any) -> bool:
    """Whether the state can be sent to other processes (out-of-band buffers: no copy of big arrays)."""
    try:
        pickle.dumps(state, protocol=5, buffer_callback=lambda _buffer: None)
        return True
    except Exception:  # noqa: BLE001 - any failure means "cannot travel"
        return False


def _ray_importable() -> str | None:
    """None when Ray can be imported, else why not."""
    try:
        import ray  # noqa: F401
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {exc}"
    return None


def _ray_requested_by_environment(address: str | None) -> bool:
    if address or os.environ.get("RAY_ADDRESS"):
        return True
    ray = sys.modules.get("ray")
    return bool(ray is not None and getattr(ray, "is_initialized", lambda: False)())


@dataclass
class BatchRun:
    """A batch computation; iterate over it to run it.

    Yields ``(entity_id, results, logs)`` for each entity computed, as it
    completes; results are the TSV texts of the values, in OUTPUT order.
    After the iteration, :attr:`failures` and :attr:`report` tell how it went.
    """

    plugin: str | Path | LoadedPlugin
    entities: EntitySource | Iterable[str]
    params: Mapping[str, Any] | None = None
    backend: str = "auto"
    workers: int | None = None
    address: str | None = None
    attributes: str | Path | AttributeDefinitions | None = None
    idsproc: str | None = None
    skip: str | Path | None = None
    out: str | Path | None = None
    log: str | Path | None = None
    report_path: str | Path | None = None
    user: str | None = None
    system: str | None = None
    reason: str | None = None
    progress: bool = False
    #: write results and logs to stdout/stderr when no file is given (the CLI); the API writes nothing then
    write_std_streams: bool = False
    failures: list[Failure] = field(default_factory=list, init=False)
    report: reporting.Report = field(default_factory=reporting.Report, init=False)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise UsageError(f"--backend must be one of {', '.join(BACKENDS)}, got '{self.backend}'")
        if self.workers is not None and self.workers < 1:
            raise UsageError(f"--workers must be 1 or more, got {self.workers}")
        reporting.check_reason(self.reason)
        self._prepared = False

    # ----------------------------------------------------------------- set-up
    def prepare(self) -> None:
        """Everything that can fail on bad input, before any compute or output."""
        if self._prepared:
            return
        self.loaded = self.plugin if isinstance(self.plugin, LoadedPlugin) else load_plugin(self.plugin)
        definitions = (
            self.attributes if isinstance(self.attributes, AttributeDefinitions) else resolve_attributes(self.attributes, self.loaded)
        )
        require_valid(self.loaded, definitions)
        self.definitions = definitions
        self.resolved = resolve_params(self.params or {}, self.loaded.parameters, origin="parameters")
        self.stream = self._entity_stream()
        self.sinks = self._open_sinks()
        self._prepared = True

    def _entity_stream(self) -> EntityStream:
        source = self.entities
        if isinstance(source, EntitySource) and source.path not in (None, "-") and not source.pattern:
            path = Path(source.path)
            if not path.exists():
                raise UsageError(f"{source.path}: entities file not found")
            if path.is_dir():
                raise UsageError(f"{source.path}: is a directory, not an entities file (use --glob for files in a directory)")
            if not os.access(path, os.R_OK):
                raise UsageError(f"{source.path}: entities file is not readable")
        skip = SeenIds()
        if self.skip is not None:
            if not Path(self.skip).is_file():
                raise UsageError(f"{self.skip}: skip file not found")
            skip = SeenIds(iter_column(str(self.skip), 1, "skip file"))
        if self.out is not None and Path(self.out).is_file():
            existing_ids(Path(self.out), into=skip)  # resume: what the results file holds is done
        idsproc = load_idsproc(self.idsproc) if self.idsproc else None
        return EntityStream(source, idsproc=idsproc, skip=skip)

    def _open_sinks(self) -> tuple[TsvSink | None, TsvSink | None]:
        """Results and logs destinations: the files given, else stdout/stderr for the CLI, else none."""
        results = TsvSink(self.out, sys.stdout, "results") if self.out or self.write_std_streams else None
        try:
            logs = TsvSink(self.log, sys.stderr, "logs") if self.log or self.write_std_streams else None
        except Exception:
            if results is not None:
                results.close()
            raise
        return results, logs

    # -------------------------------------------------------------- execution
    def __iter__(self) -> Iterator[tuple[str, list[str], list[str]]]:
        self._iterator = self._execute()
        return self._iterator

    def close(self) -> None:
        """Stop a run that is being iterated: workers stop, finalize runs, the report is written."""
        iterator = getattr(self, "_iterator", None)
        if iterator is not None:
            iterator.close()

    def __enter__(self) -> "BatchRun":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def _execute(self) -> Iterator[tuple[str, list[str], list[str]]]:
        self.prepare()
        plugin = self.loaded
        report = self.report
        report.plugin_id, report.plugin_version, report.plugin_lang = plugin.id, plugin.version, plugin.lang
        report.plugin_sha256 = plugin.sha256() if plugin.path else ""
        report.plugin_path = str(plugin.path or plugin.label)
        report.parameters = dict(self.resolved)
        report.user_id = self.user or report.user_id
        report.system_id = self.system or report.system_id
        report.reason = self.reason
        report.entities = self.entities.describe() if isinstance(self.entities, EntitySource) else "<python iterable>"
        report.outputs = {"results": str(self.out) if self.out else None, "logs": str(self.log) if self.log else None}

        results_sink, logs_sink = self.sinks
        progress = None
        if self.progress:
            from .progress import Progress, count_lines

            total = count_lines(self.entities.path) if isinstance(self.entities, EntitySource) and self.entities.path else None
            progress = Progress(total)

        status = "aborted"
        ran_to_end = False
        self._lifecycle = _Lifecycle(self, plugin)
        n_done = 0
        try:
            for completed in self._lifecycle.completed_chunks(iter(self.stream)):
                lines: list[str] = []
                log_lines: list[str] = []
                for entity_id, fields, logs, error in completed.outcomes:
                    if error is None:
                        lines.append(entity_id + "\t" + "\t".join(fields) + "\n")
                    else:
                        self.failures.append(Failure(entity_id, *error))
                        log_lines.append(f"{entity_id}\terror\t{error[0]}: {error[1]}".replace("\n", "\\n") + "\n")
                    for message in logs:
                        log_lines.append(f"{entity_id}\t{message}\n")
                if results_sink is not None:
                    results_sink.write_lines(lines)
                if logs_sink is not None:
                    if progress is not None and log_lines and logs_sink.path is None:
                        progress.clear()
                    logs_sink.write_lines(log_lines)
                n_done += len(lines)
                report.n_units = n_done
                if progress is not None:
                    progress.update(n_done, len(self.failures))
                for entity_id, fields, logs, error in completed.outcomes:
                    if error is None:
                        yield entity_id, fields, logs
            status = "partial" if self.failures else "completed"
            ran_to_end = True
        except GeneratorExit:
            status = "partial"
            raise
        except KeyboardInterrupt:
            status = "partial"
            report.remarks.append("interrupted")
            raise
        finally:
            try:
                self._lifecycle.close(abandon=not ran_to_end)
            finally:
                if progress is not None:
                    progress.close()
                for sink in (results_sink, logs_sink):
                    if sink is not None:
                        sink.close()
                counts = self.stream.counts
                report.n_failed = len(self.failures)
                report.n_skipped = counts.skipped
                report.n_duplicates = counts.duplicates
                report.comp_status = status
                report.time_end = reporting.now_iso()
                if self.report_path is not None:
                    reporting.write_report(report, self.report_path)


class _Lifecycle:
    """initialize -> compute on a backend -> finish the workers -> merge -> finalize.

    Keeps the state rules of the module docstring in one place.
    """

    def __init__(self, run: BatchRun, plugin: LoadedPlugin) -> None:
        self.run = run
        self.plugin = plugin
        self.module = plugin.module
        self.report = run.report
        params = dict(run.resolved)
        self.user_state = params.pop(STATE, None)
        self.has_user_state = STATE in run.resolved
        self.params = params
        self.has_initialize = plugin.has("initialize")
        self.has_merge = plugin.has("merge")
        self.workers = run.workers or default_workers()
        self.backend = self._choose_backend()
        self.process_local = plugin.spec.process_local_state
        self.driver_state: Any = self.user_state
        self.driver_initialized = False
        self.pool: Pool | None = None
        self.per_worker = False
        self.probe_runner: ChunkRunner | None = None
        self.finished = False
        driver_computes = self.backend in ("serial", "auto")
        if self.has_initialize and (driver_computes or not self.process_local):
            init_params = dict(params)
            if self.has_user_state:
                init_params[STATE] = self.user_state
            self.driver_state = self.module.initialize(**init_params)
            self.driver_initialized = True
        self.uses_state = self.has_initialize or self.has_user_state

    # ---------------------------------------------------------------- backend
    def _choose_backend(self) -> str:
        requested = self.run.backend
        if requested == "auto" and _ray_requested_by_environment(self.run.address):
            requested = "ray"
        if requested == "ray":
            why = _ray_importable()
            if why is not None:
                message = f"Ray cannot be imported ({why}): using the local pool backend instead"
                print(f"provbatch: {message}", file=sys.stderr)
                self.report.remarks.append(message)
                requested = "pool"
        if requested == "auto" and self.workers == 1:
            requested = "serial"
        self.report.backend = requested
        return requested

    def _config(self, per_worker: bool) -> RunnerConfig:
        return RunnerConfig(
            spec=self.plugin.spec,
            params=self.params,
            n_outputs=len(self.plugin.output),
            uses_state=self.uses_state,
            per_worker_state=per_worker,
            initial_state=self.user_state if per_worker else None,
        )

    def _start_pool(self, kind: str) -> Pool:
        """Start parallel workers, deciding whether the state is shared or made per worker."""
        self.per_worker = self.has_initialize and (self.process_local or not _picklable(self.driver_state))
        if not self.per_worker and self.has_user_state and not self.has_initialize and not _picklable(self.user_state):
            raise UsageError("the 'state' parameter cannot be sent to worker processes: use --backend serial")
        state = None if self.per_worker else self.driver_state
        self.report.state_mode = "per_worker" if self.per_worker else ("shared" if self.uses_state else None)
        if self.per_worker:
            self.report.remarks.append(
                "the state cannot leave the process that made it: each worker ran initialize and finalize itself"
            )
        if kind == "ray":
            from .execution.ray_backend import RayPool

            pool: Pool = RayPool(self.run.workers, self._config(self.per_worker), state, self.run.address)
        else:
            from .execution.pool import LocalPool

            pool = LocalPool(self.workers, self._config(self.per_worker), state, module=self.module)
        self.report.workers = pool.n_workers
        return pool

    # ---------------------------------------------------------------- compute
    def completed_chunks(self, entities: Iterator[tuple[str, str]]) -> Iterator[Completed]:
        sizer = ChunkSizer()
        if self.backend in ("pool", "ray"):
            self.pool = self._start_pool(self.backend)
            yield from run_chunks(entities, self.pool, sizer)
            return
        self.report.workers = 1
        self.report.state_mode = "shared" if self.uses_state else None
        probe_state = self.driver_state
        if self.backend == "auto" and self.has_merge and self.uses_state:
            probe_state = copy.deepcopy(self.driver_state)  # workers must start from the pristine state
        self.probe_runner = ChunkRunner(self._config(False), state=probe_state, module=self.module)
        serial = SerialPool(self.probe_runner)
        if self.backend == "serial":
            yield from run_chunks(entities, serial, sizer)
            return
        # auto: compute in the driver first; start workers only if they pay off
        started = time.perf_counter()
        probe_sizer = ChunkSizer(target_seconds=0.02)
        seconds = 0.0
        n_probe = 0
        for completed in run_chunks(entities, serial, probe_sizer):
            seconds += completed.seconds
            n_probe += len(completed.outcomes)
            yield completed
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
            yield from run_chunks(entities, serial, sizer)
            return
        self.pool = self._start_pool("pool")
        self.report.backend = "auto (pool)"
        self.report.remarks.append(
            f"auto: {per_entity * 1e3:.2f} ms per entity: {n_probe} entities computed in the driver, the rest by {self.pool.n_workers} worker processes"
        )
        yield from run_chunks(entities, self.pool, ChunkSizer(size=sizer.size))

    # ----------------------------------------------------------------- finish
    def close(self, abandon: bool) -> None:
        """Stop the workers and finalize, whatever happened before (finalize runs also after failures)."""
        if self.finished:
            return
        self.finished = True
        states: list[Any] = []
        try:
            if self.pool is not None:
                if abandon:
                    self.pool.terminate()
                else:
                    states = self.pool.finish(return_state=self.has_merge and not self.per_worker)
        finally:
            if self.probe_runner is not None:
                self.probe_runner.cleanup()
            self._finalize(states, abandon)

    def _finalize(self, worker_states: list[Any], abandon: bool) -> None:
        finalize = self.module.finalize
        if not self.driver_initialized:
            return
        final = self.driver_state
        if self.has_merge and not self.per_worker:
            contributors = list(worker_states)
            if self.probe_runner is not None:
                contributors.insert(0, self.probe_runner.state)
            if contributors:
                final = self.module.merge(contributors)
        elif self.pool is not None and not self.per_worker and finalize is not None:
            self.report.remarks.append(
                "state changes made in worker processes do not reach finalize: define merge(states) to gather them"
            )
        if finalize is not None:
            finalize(final)


def iter_batch(plugin: str | Path | LoadedPlugin, entities: Iterable[str] | EntitySource, **options: Any) -> BatchRun:
    """Start a batch; iterate over the result to get ``(entity_id, results, logs)`` as they complete.

    ``entities`` is an iterable of entity strings, or an :class:`EntitySource`
    (file, column, glob). Options are those of :class:`BatchRun` (params,
    backend, workers, address, attributes, idsproc, skip, out, log,
    report_path, user, system, reason). Nothing is computed until iterated.
    """
    if isinstance(entities, (str, Path)):
        raise UsageError("entities must be an iterable of entities or an EntitySource, not a single string")
    run = BatchRun(plugin, entities, **options)
    run.prepare()
    return run


@dataclass
class BatchResult:
    """The outcome of :func:`run_batch`: iterable as ``(entity_id, results, logs)``."""

    rows: list[tuple[str, list[str], list[str]]]
    failures: list[Failure]
    report: reporting.Report

    def __iter__(self) -> Iterator[tuple[str, list[str], list[str]]]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def as_dict(self) -> dict[str, list[str]]:
        """entity_id -> results."""
        return {entity_id: results for entity_id, results, _logs in self.rows}


def run_batch(
    plugin: str | Path | LoadedPlugin,
    entities: Iterable[str] | EntitySource,
    params: Mapping[str, Any] | None = None,
    backend: str = "auto",
    workers: int | None = None,
    **options: Any,
) -> BatchResult:
    """Run a whole batch and return every result (for batches whose results fit in memory;
    use :func:`iter_batch` or ``out=`` for large ones)."""
    run = iter_batch(plugin, entities, params=params, backend=backend, workers=workers, **options)
    rows = list(run)
    return BatchResult(rows, run.failures, run.report)
