"""One batch computation, from the PLUGIN and ENTITIES arguments to the results, logs and records.

:class:`BatchRun` is the engine; the command line (:mod:`provbatch.cli`) and
the Python API (:mod:`provbatch.api`: ``run_batch``, ``iter_batch``) are thin
layers over it.

Order of work, so that bad input fails before anything is computed or
written: load the plugin -> check it -> resolve the parameters -> open the
entities, the skip and resume lists -> open the outputs and the run record
-> initialize -> compute (streamed through a backend, failed entities
retried) -> finalize -> report. The lifecycle and state rules are in
:mod:`.lifecycle`.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import sys
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..contract.attributes import AttributeDefinitions
from ..contract.results import one_line, row_problem, rows_are_clean
from ..errors import FinalizeError, OptionError, OutputClosed, SkippedEntitiesWarning, UsageError, literal
from ..inputs.entities import EntitySource, EntityStream, ScanResult, is_stream, iter_column, scan_text_file
from ..inputs.idsproc import load_idsproc
from ..inputs.seen_ids import SeenIds
from ..options import RunOptions
from ..outputs import report as reporting
from ..outputs.failures import FailuresFile
from ..outputs.identity import ResultsIdentity
from ..outputs.identity import claim as claim_results
from ..outputs.lock import OutputLock
from ..outputs.sink import ResultChunk, ResultSink, SinkPlan, open_sinks
from ..outputs.tsv import TsvSink, keep_log_lines_of
from ..plugins.loading import LoadedPlugin, load_plugin, require_valid, resolve_attributes
from ..provenance import capture as provenance
from ..provenance.record import RunRecord
from ..provenance.rundirs import default_run_dir
from .lifecycle import ExecutionOptions, Lifecycle, default_workers
from .retry import Failure, RetryPolicy

if TYPE_CHECKING:  # pragma: no cover
    from .dryrun import DryRunPlan

TAB = "\t"
#: parts of an outcome (execution.runner.Outcome), for the C loops of the common chunk
_ID, _FIELDS, _LOGS = (itemgetter(i) for i in range(3))
_ENTITY = itemgetter(1)  # of an item (execution.runner.Item)
#: a collection threshold never reached (the collector's thresholds are C ints)
_NEVER = 2**31 - 1


def _each_row(chunks: Generator[list[tuple[str, list[Any], list[str]]], None, None]) -> Iterator[tuple[str, list[Any], list[str]]]:
    """The rows of the chunks, one at a time (iterating a :class:`BatchRun`); closing it stops the run."""
    try:
        for rows in chunks:
            yield from rows
    finally:
        chunks.close()


@contextmanager
def _full_collections_deferred() -> Iterator[None]:
    """No automatic full (oldest-generation) collection inside the block; the young ones go on.

    For :meth:`BatchRun.rows_to_end`, where no code of the caller runs until it returns. The
    caller's thresholds are restored at the end, also after an error; with the collector
    disabled or thresholds that are not CPython's three, nothing is changed.
    """
    thresholds = gc.get_threshold()
    if not gc.isenabled() or len(thresholds) != 3 or not thresholds[0]:
        yield
        return
    gc.set_threshold(thresholds[0], thresholds[1], _NEVER)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


class StopBatch(Exception):
    """--fail-fast / --max-failures reached: stop computing, finalize, report aborted."""


@dataclass
class BatchRun:
    """A batch computation; iterate over it to run it.

    Yields ``(entity_id, results, logs)`` for each entity computed, as it
    completes; results are the TSV texts of the values, in OUTPUT order.
    After the iteration, :attr:`failures` and :attr:`report` tell how it went.

    The options are a :class:`~provbatch.options.RunOptions`, or its fields
    as keyword arguments (which also amend a given ``options``).
    """

    def __init__(
        self,
        plugin: str | Path | LoadedPlugin,
        entities: EntitySource | Iterable[str],
        options: RunOptions | None = None,
        **option_values: Any,
    ) -> None:
        if options is None:
            options = RunOptions(**option_values)
        elif option_values:
            options = dataclasses.replace(options, **option_values)
        self.plugin = plugin
        self.entities = entities
        self.options = options
        self.failures: list[Failure] = []
        self.report = reporting.Report()
        self.run_config: dict[str, Any] | None = None
        self.slurm = self._slurm_options()
        # Paths stay as the user gave them (messages and records show them so); files are
        # opened by their absolute path, resolved now: a compute or initialize that changes
        # the working directory must move neither the report nor the failures file nor the record.
        self.start_dir = os.getcwd()
        self.policy = RetryPolicy(self.options.retries)
        self._prepared = self._checked = self._report_filled = False
        self._warnings: list[str] = []
        self.record: RunRecord | None = None
        #: the result sinks the options ask for (outputs/sink.py: the registry), opened by check_inputs
        self.sinks: list[ResultSink] = []
        #: the logs TSV (or stderr), opened by prepare: the engine's own output, not a result sink
        self.logs: TsvSink | None = None
        self.locks: list[OutputLock] = []
        #: the plugin's lifecycle and backend, once the run computes
        self.lifecycle: Lifecycle | None = None

    def _slurm_options(self) -> Any:
        given = {name: getattr(self.options, f"slurm_{name}") for name in ("partition", "time", "mem", "chunk", "opt", "workdir")}
        if self.options.backend != "slurm":
            used = ["{slurm_" + name + "}" for name, value in given.items() if value is not None]
            if used:
                raise UsageError.naming(f"{', '.join(used)} only apply to {{backend}} slurm")
            return None
        from ..execution.slurm import SlurmOptions, default_workdir

        given["workdir"] = str(Path(given["workdir"]).resolve()) if given["workdir"] else str(default_workdir(self.options.out))
        options = SlurmOptions(**given)
        options.check()
        return options

    def _expected_entities(self) -> int | None:
        """The entity count when it is cheap to know (sizes the Slurm chunks)."""
        if self.slurm is None or self.slurm.chunk is not None:
            return None
        if isinstance(self.entities, EntitySource):
            from .progress import count_lines

            return count_lines(self.entities.path) if self.entities.path and not self.options.retry_failed else None
        return len(self.entities) if hasattr(self.entities, "__len__") else None  # type: ignore[arg-type]

    # ----------------------------------------------------------------- set-up
    def prepare(self) -> None:
        """Everything that can fail on bad input, before any compute or output."""
        if self._prepared:
            return
        self.check_inputs()
        self.locks = self._lock_outputs()
        try:
            self._claim_results()
            self._open_outputs()
        except BaseException:
            self._release_locks()
            raise
        self._prepared = True

    def check_inputs(self, writes: bool = True) -> None:
        """The part of :meth:`prepare` that writes no output: load and check the plugin, the parameters, the
        entities, and open the result sinks to be checked (``writes=False``, a dry run: a store is neither
        created nor given attributes)."""
        if self._checked:
            return
        self.slurm_config = None
        if self.slurm is not None:  # first: no Slurm is an error within seconds, before any build
            from ..execution.slurm import check_slurm

            self.slurm_config = check_slurm()
        self.loaded = (
            self.plugin if isinstance(self.plugin, LoadedPlugin) else load_plugin(self.plugin, **self._loader_options())
        )
        definitions = (
            self.options.attributes if isinstance(self.options.attributes, AttributeDefinitions) else resolve_attributes(self.options.attributes, self.loaded)
        )
        require_valid(self.loaded, definitions)
        self.definitions = definitions
        from ..contract.parameters import resolve_params

        self.resolved = resolve_params(self.options.params or {}, self.loaded.parameters, origin="parameters")
        self._refuse_outputs_that_are_inputs()
        self.entities_scan: ScanResult | None = None
        if isinstance(self.entities, EntitySource) and not self.options.retry_failed:
            self._check_entities_file(self.entities)
        self.failures_file = self._failures_file()
        self.sinks = open_sinks(SinkPlan(self.options, self.loaded, dict(self.resolved), self.definitions,
                                         self.header_line, self._opened, writes=writes))
        try:
            self.stream = self._entity_stream()
        except BaseException:
            for sink in self.sinks:
                sink.close()
            raise
        self._checked = True

    @property
    def header_line(self) -> str:
        """The ``--header`` line: ``entity`` and the OUTPUT names (readers and resume recognise it)."""
        return "\t".join(["entity", *self.loaded.output]) + "\n"

    @property
    def trial(self) -> str | None:
        """What makes this run a trial run (for the report), or None."""
        if self.options.limit is not None:
            return f"--limit {self.options.limit}: the first {self.options.limit} entit{'y' if self.options.limit == 1 else 'ies'} to compute"
        if self.options.sample is not None:
            return f"--sample {self.options.sample} --seed {self.options.seed}: {self.options.sample} entities drawn at random from those to compute"
        return None

    def plan(self) -> DryRunPlan:
        """``--dry-run``: load, check, count; compute nothing, write nothing (call instead of iterating)."""
        from .dryrun import plan_run

        return plan_run(self)

    def _loader_options(self) -> dict[str, Any]:
        """The plugin loader's options: ``plugin_options``, with ``nim_path`` for a Nim plugin.

        ``nim_path`` also reaches a Nim idsproc module, built in this process,
        through ``$PROVBATCH_NIM_PATH`` (its directories first).
        """
        options = dict(self.options.plugin_options or {})
        if self.options.nim_path:
            from ..plugins.nim.build import NIM_PATH_ENV

            nim_path = [str(self.at_start(path)) for path in self.options.nim_path]
            if str(self.plugin).endswith(".nim"):
                options["nim_path"] = nim_path  # recorded with the plugin's options (run_config.json)
            others = [p for p in os.environ.get(NIM_PATH_ENV, "").split(os.pathsep) if p and p not in nim_path]
            os.environ[NIM_PATH_ENV] = os.pathsep.join(nim_path + others)
        return options

    def at_start(self, path: str | Path) -> Path:
        """``path`` resolved against the working directory of the run's start (what is opened)."""
        return Path(os.path.join(self.start_dir, path))

    # Output files are guarded before anything reads or repairs them: one writer at a
    # time (outputs/lock.py), and only the computation that wrote them may resume them
    # (outputs/identity.py). Standard streams and devices (/dev/full, a FIFO) have neither.
    def _output_files(self) -> list[tuple[Path, str]]:
        files = [(self.at_start(path), what) for path, what in ((self.options.out, "results"), (self.options.log, "logs"))
                 if path is not None and str(path) != "-"]
        return [(path, what) for path, what in files if path.is_file() or not path.exists()]

    def _refuse_outputs_that_are_inputs(self) -> None:
        inputs = []
        if isinstance(self.entities, EntitySource) and self.entities.path not in (None, "-"):
            inputs.append((Path(self.entities.path), "the {entities} file"))
        if self.options.skip is not None:
            inputs.append((Path(self.options.skip), "the {skip} file"))
        outputs = [(Path(path), option) for path, option in
                   ((self.options.out, "{out}"), (self.options.log, "{log}"), (self.options.report_path, "{report_path}"),
                    (self.options.failures_path, "{failures_path}"))
                   if path is not None and str(path) != "-"]
        for index, (output, option) in enumerate(outputs):
            real = os.path.realpath(output)
            for path, what in inputs:
                if real == os.path.realpath(path):
                    raise UsageError.naming(f"{literal(output)}: {option} is {what}: the results would be appended to "
                                            "the input; write them to another file")
            for other, other_option in outputs[index + 1:]:
                if real == os.path.realpath(other):
                    raise UsageError.naming(f"{literal(output)}: given to both {option} and {other_option}: use two files")

    def _lock_outputs(self) -> list[OutputLock]:
        locks: list[OutputLock] = []
        try:
            for path, what in self._output_files():
                lock = OutputLock(self.at_start(path), what).acquire()
                locks.append(lock)
                if lock.taken_over:
                    print(f"provbatch: {lock.path}: lock of a run that died (PID {lock.taken_over.split()[0]}) "
                          "taken over", file=sys.stderr)
        except BaseException:
            for lock in locks:
                lock.release()
            raise
        return locks

    def _release_locks(self) -> None:
        for lock in self.locks:
            lock.release()
        self.locks = []

    def _claim_results(self) -> None:
        if self.options.out is None or str(self.options.out) == "-" or not (self.at_start(self.options.out).is_file() or not self.at_start(self.options.out).exists()):
            return
        plugin = self.loaded
        parameters, unrestorable = provenance.capture_parameters(dict(self.resolved))
        parameters.update({name: f"<{kind}>" for name, kind in unrestorable.items()})  # a state object: by its type
        identity = ResultsIdentity(plugin.id, plugin.version, plugin.sha256() if plugin.path else "", parameters,
                                   tuple(plugin.output))
        warning = claim_results(self.at_start(self.options.out), identity)
        if warning:
            self.report.remarks.append(warning)
            self._warnings.append(warning)

    def _failures_file(self) -> FailuresFile | None:
        path = self.options.failures_path or (f"{self.options.out}.failures.tsv" if self.options.out else None)
        if path is None and self.options.retry_failed:
            raise OptionError("retry_failed", "needs {out} (the failures file is OUT.failures.tsv) or {failures_path}")
        if path is None:
            return None
        failures = FailuresFile(self.at_start(path), shown=path)
        if self.options.retry_failed and not failures.entries:
            raise UsageError(f"{path}: no failures to retry (the file is missing or empty)")
        return failures

    def _check_entities_file(self, source: EntitySource) -> None:
        if source.pattern:
            import glob

            if not any(Path(p).is_file() for p in glob.iglob(source.pattern, recursive=True)):
                raise UsageError.naming(f"{{pattern}} {literal(source.pattern)}: no file matches (relative to {literal(Path.cwd())})")
            return
        if source.path in (None, "-"):
            return
        path = Path(source.path)
        if not path.exists():
            raise UsageError(f"{source.path}: entities file not found")
        if path.is_dir():
            raise UsageError.naming(f"{literal(source.path)}: is a directory, not an entities file "
                                    "(use {pattern} for files in a directory)")
        if not is_stream(source.path):  # a bad byte stops the batch here, by line, before anything is computed
            self.entities_scan = scan_text_file(source.path)

    def _entity_stream(self) -> EntityStream:
        source: EntitySource | Iterable[str] = self.entities
        skip = SeenIds()
        only: set[str] | None = None
        for sink in self.sinks:  # resume: what a sink holds from this computation is done
            sink.add_done_ids(skip)
            sink_only = sink.only_ids()  # only_stale: the store's stale entities
            if sink_only is not None:
                only = sink_only if only is None else only & sink_only
        self.done_or_skipped = skip
        if self.options.skip is not None:
            if not self.at_start(self.options.skip).is_file():
                raise UsageError(f"{self.options.skip}: skip file not found")
            for entity_id in iter_column(str(self.at_start(self.options.skip)), 1, "skip file"):
                skip.add(entity_id)
        idsproc = load_idsproc(self.options.idsproc) if self.options.idsproc else None
        if self.options.retry_failed:
            assert self.failures_file is not None
            for entity in self.failures_file.entities():  # done meanwhile (a run killed before rewriting the file)
                if (idsproc(entity) if idsproc else entity) in skip:
                    self.failures_file.succeeded(entity)
            source = self.failures_file.entities()
        if isinstance(source, EntitySource) and source.path not in (None, "-") and not source.pattern:
            source = replace(source, path=str(self.at_start(str(source.path))))  # read after initialize, which may chdir
        return EntityStream(source, idsproc=idsproc, skip=skip, limit=self.options.limit, sample=self.options.sample, seed=self.options.seed,
                            only=only)

    def _open_outputs(self) -> None:
        """Open the result sinks for writing, then the logs: the file given, else stderr for the CLI, else none."""
        if self.options.log is not None and self.at_start(self.options.log).is_file() and len(self.done_or_skipped):
            # log lines of entities that are not done (their results were lost
            # when a run was killed) go: those entities are computed, and logged, again
            keep_log_lines_of(self.at_start(self.options.log), self.done_or_skipped)
        opened: list[ResultSink] = []
        try:
            for sink in self.sinks:
                sink.open()
                opened.append(sink)
            if self.options.log or self.options.write_std_streams:
                self.logs = TsvSink(self._opened(self.options.log), sys.stderr, "logs")
        except Exception:
            for sink in opened:
                sink.end()
            raise

    def _opened(self, path: str | Path | None) -> str | Path | None:
        """A file option as opened: absolute; None and "-" (a standard stream) as they are."""
        return path if path is None or str(path) == "-" else self.at_start(path)

    def _open_record(self) -> RunRecord:
        plugin, report = self.loaded, self.report
        run_dir = Path(self.options.run_dir) if self.options.run_dir else default_run_dir(plugin.id, report.uuid)
        report.run_dir = str(run_dir)
        return RunRecord(self.at_start(run_dir), {
            "uuid": report.uuid,
            "plugin": {"id": plugin.id, "version": plugin.version, "lang": plugin.lang,
                       "path": report.plugin_path, "sha256": report.plugin_sha256},
            "entities": report.entities,
            "outputs": {**report.outputs, "report": str(self.options.report_path) if self.options.report_path else None,
                        "failures": self.failures_file.shown if self.failures_file else None},
            "parameters": reporting.plain(report.parameters),
            "command": self.options.command,
            "counts": {},
        })

    # -------------------------------------------------------------- execution
    def __iter__(self) -> Iterator[tuple[str, list[str], list[str]]]:
        self._iterator = self._execute()
        return _each_row(self._iterator)

    def run_to_end(self) -> None:
        """Run the whole batch to its outputs, without handing each row to the caller (the CLI):
        the same run as iterating, with no Python step per row to build and yield it."""
        self._iterator = self._execute(keep_rows=False)
        for _nothing in self._iterator:
            pass

    def rows_to_end(self) -> list[tuple[str, list[Any], list[str]]]:
        """Run the whole batch and return every row, in the order iterating gives them (``run_batch``).

        The rows are taken a chunk at a time (no generator step per row), and the collector's full
        passes wait until the end: each would walk every row kept so far (three containers per
        entity, none of which can be part of a cycle), and as the kept rows grow CPython makes
        one each time they grow by a quarter, which cost more than computing trivial entities.
        The young generations are still collected, so the plugin's cyclic garbage goes as usual."""
        rows: list[tuple[str, list[Any], list[str]]] = []
        self._iterator = chunks = self._execute()
        with _full_collections_deferred():
            for chunk_rows in chunks:
                rows.extend(chunk_rows)
        return rows

    def close(self) -> None:
        """Stop a run that is being iterated: workers stop, finalize runs, the records are written."""
        iterator = getattr(self, "_iterator", None)
        if iterator is not None:
            iterator.close()

    def __enter__(self) -> BatchRun:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def _fill_report(self) -> None:
        if self._report_filled:
            return
        self._report_filled = True
        plugin, report = self.loaded, self.report
        report.plugin_id, report.plugin_version, report.plugin_lang = plugin.id, plugin.version, plugin.lang
        report.plugin_sha256 = plugin.sha256() if plugin.path else ""
        report.plugin_path = str(plugin.path or plugin.label)
        report.parameters = dict(self.resolved)
        report.user_id = self.options.user or report.user_id
        report.system_id = self.options.system or report.system_id
        report.reason = self.options.reason
        report.trial = self.trial
        if self.options.retry_failed:
            report.entities = f"failures of {self.failures_file.shown}"  # type: ignore[union-attr]
        else:
            report.entities = self.entities.describe() if isinstance(self.entities, EntitySource) else "<python iterable>"
        report.outputs = {"results": str(self.options.out) if self.options.out else None, "logs": str(self.options.log) if self.options.log else None}

    def _finish_run_config(self) -> None:
        if self.run_config is None or self.record is None:
            return
        report = self.report
        gap = provenance.finish_run_config(self.run_config, self.record.run_dir, report.time_end, report.backend,
                                           report.workers, self.stream.digest)
        if gap is not None:
            self._provenance_gap(gap)

    def run_start(self) -> provenance.RunStart:
        """What the run resolved before its first compute, for its run_config.json (the report filled)."""
        self.prepare()
        self._fill_report()
        report = self.report
        failures = self.failures_file
        return provenance.RunStart(
            cwd=self.start_dir, uuid=report.uuid, time_start=report.time_start, user=report.user_id, system=report.system_id,
            reason=report.reason, trial=self.trial, run_dir=report.run_dir, plugin=self.loaded,
            plugin_sha256=report.plugin_sha256, parameters=dict(self.resolved), definitions=self.definitions,
            entities=self.entities, failures_path=failures.shown if failures is not None else None,
            retried=list(failures.entries) if failures is not None and self.options.retry_failed else None,
        )

    def _provenance_gap(self, message: str) -> None:
        """run_config.json could not be written (or completed): say so everywhere, go on computing."""
        self.report.remarks.append(message)
        print(f"provbatch: warning: {message}", file=sys.stderr)
        if self.record is not None:
            self.record.event("run_config_failed", message=message)

    @property
    def n_retried(self) -> int:
        """Entities computed again after a failure of their own (the retry policy counts them)."""
        return self.policy.n_retried

    def _counts(self) -> dict[str, int]:
        counts = self.stream.counts
        return {
            "computed": self.report.n_units, "failed": len(self.failures), "retried": self.n_retried,
            "skipped": counts.skipped, "duplicates": counts.duplicates, "id_collisions": counts.id_collisions,
            "workers_lost": self.lifecycle.workers_lost if self.lifecycle is not None else 0,
            "no_value": self.report.n_no_value,  # computed, without a value (no row)
        }

    def _write_logs(self, lines: list[str], progress: Any = None) -> None:
        """Log lines (the plugin's own, captured output too) to the logs sink, else to stderr: never to the results."""
        if not lines:
            return
        sink = self.logs
        if progress is not None and (sink is None or sink.path is None):
            progress.clear()
        if sink is not None:
            sink.write_lines(lines)
        else:
            sys.stderr.write("".join(lines))
            sys.stderr.flush()

    def _execute(self, keep_rows: bool = True) -> Generator[list[tuple[str, list[Any], list[str]]], None, None]:
        """The batch, yielding each completed chunk's rows (``keep_rows``) or nothing (the CLI)."""
        self.prepare()
        self._fill_report()
        report = self.report
        self.record = record = self._open_record()
        self.policy.emit = record.event  # entity_retried
        self.run_config, gap = provenance.start_run_config(self.options, self.run_start(), record.run_dir)  # what rerun needs
        if gap is not None:
            self._provenance_gap(gap)
        #: where each chunk's results go (outputs/sink.py), in registration order; the caller's rows last
        result_sinks = self.sinks
        for sink in result_sinks:
            sink.start(report, self.options.command)
        wants_rows = any(sink.needs_rows for sink in result_sinks)
        handing = [sink for sink in result_sinks if sink.hands_rows] if keep_rows else []
        progress = None
        if self.options.progress:
            from .progress import Progress

            total = self.entities_scan.lines if self.entities_scan is not None else None
            if total is not None and (self.options.limit or self.options.sample):
                total = min(total, self.options.limit or self.options.sample or total)
            progress = Progress(total)
        status, failure_text, ran_to_end = "aborted", None, False
        failures_file = self.failures_file
        n_done = n_no_value = 0
        propagating = False
        items: Any = None
        try:
            self.lifecycle = lifecycle = Lifecycle(
                self.loaded, self.resolved, self._datatypes(),
                ExecutionOptions(self.options.backend, self.options.workers, self.options.address, self.options.timeout, self.slurm,
                                 self.slurm_config, self._expected_entities()), report, record.event,
            )
            self._write_logs(lifecycle.take_output())  # initialize's own output
            record.event("launch_started", backend=lifecycle.backend, workers=self.options.workers or default_workers())
            if progress is not None:
                progress.status = lambda: lifecycle.pool.status() if lifecycle.pool is not None else ""
            items = self.stream.items()
            from ..outputs.results_reader import columns_parser, row_parser, rows_of_lines

            parse = parse_columns = None
            if self.options.typed:

                parse, parse_columns = row_parser(self._datatypes()), columns_parser(self._datatypes())
            # entities that failed in earlier runs (the dict is empty in most runs: one test per entity)
            earlier_failures = failures_file.entries if failures_file is not None else {}
            n_outputs = len(self.loaded.output)
            # without rows to yield (the CLI) no code of the caller runs between chunks, and every write of
            # this loop to stdout/stderr goes through unredirected streams: the capture may be held
            for completed in lifecycle.scheduled(items, self.policy.requeued, hold_capture=not keep_rows,
                                                  rows_to_caller=keep_rows):
                log_lines: list[str] = list(completed.output)
                done: list[tuple[str, list[Any], list[str]]] = []
                stored: list[tuple[str, list[str], str]] = []
                lines: list[str] | None = None
                text = completed.lines  # the common chunk: every entity succeeded with a value, without logs
                if text is not None and not earlier_failures and rows_are_clean(text, len(completed.chunk), n_outputs):
                    lines, n_lines = [text], len(completed.chunk)
                    if wants_rows:
                        outcomes = completed.outcomes
                        stored = list(zip(map(_ID, outcomes), map(_FIELDS, outcomes), map(_ENTITY, completed.chunk)))
                        if keep_rows:
                            fields = map(_FIELDS, outcomes)
                            done = list(zip(map(_ID, outcomes), map(parse, fields) if parse else fields, map(_LOGS, outcomes)))
                    elif keep_rows:
                        done = rows_of_lines(text, n_outputs, parse_columns)
                if lines is None:
                    outcomes = completed.outcomes
                    lines, done, stored = self._chunk_lines(completed, earlier_failures, log_lines, parse, n_outputs,
                                                            wants_rows)
                    n_lines = len(lines)
                    # no value for these entities (prenacs: an empty results line): no row, their logs are kept
                    n_no_value += sum(1 for outcome in outcomes if outcome[3] is None and not outcome[1])
                # logs first: a kill between the two leaves logs that resume drops
                self._write_logs(log_lines, progress)
                chunk_results = ResultChunk(lines, stored, done)
                for sink in result_sinks:
                    sink.write(chunk_results)
                n_done += n_lines
                report.n_units = n_done + n_no_value
                report.n_no_value = n_no_value
                record.update(counts=self._counts())
                if progress is not None:
                    counts = self.stream.counts
                    progress.update(n_done, len(self.failures), counts.skipped, counts.duplicates)
                for sink in handing:
                    yield sink.take()
                if self.options.max_failures is not None and len(self.failures) >= self.options.max_failures:
                    raise StopBatch(f"stopped after {len(self.failures)} failed entit{'y' if len(self.failures) == 1 else 'ies'} "
                                    f"({'--fail-fast' if self.options.fail_fast else f'--max-failures {self.options.max_failures}'})")
            status = "partial" if self.failures else "completed"
            ran_to_end = True
            self._warn_skipped()
        except StopBatch as exc:
            failure_text = str(exc)
            report.remarks.append(failure_text)
        except GeneratorExit:
            status = "partial"
            report.remarks.append("stopped by the caller before the end")
            propagating = True
            raise
        except OutputClosed:
            status = "partial"
            failure_text = "output closed"
            report.remarks.append("interrupted: output closed")
            propagating = True
            raise
        except KeyboardInterrupt as exc:
            status = "partial"
            report.remarks.append("interrupted" if type(exc) is KeyboardInterrupt else "terminated")
            failure_text = report.remarks[-1]
            propagating = True
            raise
        except BaseException as exc:
            failure_text = f"{type(exc).__name__}: {exc}"
            propagating = True
            raise
        finally:
            finalize_error: BaseException | None = None
            if items is not None and hasattr(items, "close"):
                items.close()  # the entities file, when the run stopped before its end
            # its seen ids (a million strings in a big run: 0.2 s to free) go now, while a store's writer is
            # still committing, not after the wait for it (this frame would free them last)
            items = None
            try:
                if self.lifecycle is not None:
                    try:
                        self.lifecycle.close(abandon=not ran_to_end)
                    except Exception as exc:  # finalize, merge or a worker's finalize raised
                        finalize_error = exc
                        failure_text = f"finalize failed: {type(exc).__name__}: {exc}"
                        status = "finalize_failed"
                        report.remarks.append(failure_text)
                    finally:
                        try:
                            self._write_logs(self.lifecycle.take_output())  # finalize's own output
                        finally:
                            self.lifecycle.release()
            finally:
                self._close_outputs(progress, status, failure_text, propagating)
            if finalize_error is not None and not propagating:
                raise FinalizeError(failure_text) from finalize_error

    def _warn_skipped(self) -> None:
        """The Python API: say that a resume skipped entities (the CLI's summary line says it there)."""
        counts = self.stream.counts
        if self.options.write_std_streams or not counts.skipped or self.options.out is None:
            return
        import warnings

        where = f"already in {self.options.out} (a resume)" if self.options.skip is None else f"already in {self.options.out} or in the skip file {self.options.skip}"
        warnings.warn(f"{counts.skipped} of {counts.read} entities skipped: their results are {where}; read them with "
                      "provbatch.read_results, or use another out= to compute them again", SkippedEntitiesWarning, stacklevel=3)

    def _chunk_lines(self, completed: Any, earlier_failures: Mapping[str, Any], log_lines: list[str],
                     parse: Any, n_outputs: int, store: bool
                     ) -> tuple[list[str], list[tuple[str, list[Any], list[str]]], list[tuple[str, list[str], str]]]:
        """A chunk's result lines and rows, entity by entity, and its log lines (into ``log_lines``):
        failures requeued or recorded, earlier failures that succeeded struck off, unwritable rows failed."""
        failures_file = self.failures_file
        lines: list[str] = []
        done: list[tuple[str, list[Any], list[str]]] = []
        stored: list[tuple[str, list[str], str]] = []
        size = len(completed.chunk)
        add_line, add_done = lines.append, done.append
        no_value: list[tuple[str, list[Any], list[str]]] = []
        for item, (entity_id, fields, logs, error) in zip(completed.chunk, completed.outcomes):
            if error is None:
                if not fields:  # no value for this entity: no row (nor store values), its logs are kept
                    no_value.append((entity_id, fields, logs))
                else:
                    add_line(f"{entity_id}\t{TAB.join(fields)}\n")
                    add_done((entity_id, parse(fields) if parse else fields, logs))
                    if store:
                        stored.append((entity_id, fields, item[1]))
                if earlier_failures and item[1] in earlier_failures:
                    failures_file.succeeded(item[1])  # type: ignore[union-attr]
            else:
                failed = self.policy.handle(item, error, size)  # None: requeued by the policy
                if failed is not None:
                    self._record_failure(failed, item[1])
                    log_lines.append(f"{entity_id}\terror\t{one_line(f'{error[0]}: {error[1]}')}\n")
                    if self.options.max_failures is not None and len(self.failures) >= self.options.max_failures:
                        break  # stop here: the rest of the chunk is not written (a resume computes it)
            if logs:
                log_lines.extend(f"{entity_id}\t{message}\n" for message in logs)
        if lines and not rows_are_clean("".join(lines), len(lines), n_outputs):
            lines, done = self._drop_unwritable_rows(completed, lines, done, log_lines)
        return lines, done + no_value, stored

    def _drop_unwritable_rows(self, completed: Any, lines: list[str], done: list[Any],
                              log_lines: list[str]) -> tuple[list[str], list[Any]]:
        """The rows of a chunk that keep the TSV contract; the others fail their entity (never a torn row)."""
        items = {item[0]: item for item in completed.chunk}
        kept_lines: list[str] = []
        kept_done: list[Any] = []
        for line, row in zip(lines, done):
            problem = row_problem(row[0], line)
            if problem is None:
                kept_lines.append(line)
                kept_done.append(row)
                continue
            item = items[row[0]]
            self._record_failure(Failure(row[0], problem[0], problem[1], "", item[2]), item[1])
            log_lines.append(f"{row[0]!r}\terror\t{problem[0]}: {problem[1]}\n")
        return kept_lines, kept_done

    def _record_failure(self, failed: Failure, entity: str) -> None:
        self.failures.append(failed)
        if self.failures_file is not None:
            self.failures_file.record(entity, failed.attempts, failed.error_class, failed.message)
        assert self.record is not None
        self.record.event("entity_failed", entity=failed.entity, attempts=failed.attempts,
                          error_class=failed.error_class, message=failed.message[:500])

    @property
    def datatypes(self) -> tuple[str | None, ...]:
        """The datatype of each OUTPUT attribute (None where the definitions give none)."""
        return self._datatypes()

    def _datatypes(self) -> tuple[str | None, ...]:
        attributes = self.definitions.attributes if self.definitions else {}
        return tuple(attributes.get(name, {}).get("datatype") for name in self.loaded.output)

    def _close_outputs(self, progress: Any, status: str, failure_text: str | None, propagating: bool = False) -> None:
        """Close every output, write the report and close the record, whatever fails on the way.

        On a full disk the first write that failed is the error (it names its
        file); the later steps still run, so that the manifest is closed (failed)
        and no temporary file stays behind; a later failure does not mask it.
        """
        report = self.report
        errors: list[BaseException] = []

        def attempt(step: Callable[[], Any]) -> None:
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - kept, raised after the records are closed
                errors.append(exc)

        if progress is not None:
            attempt(progress.close)
        for sink in self.sinks:
            attempt(sink.end)
        if self.logs is not None:
            attempt(self.logs.close)
        if self.failures_file is not None:
            attempt(self.failures_file.close)
        if errors and not propagating and status not in ("aborted", "finalize_failed"):
            status, failure_text = "aborted", str(errors[0])
        counts = self.stream.counts
        if counts.id_collisions:
            examples = ", ".join(f"{entity!r} -> {entity_id!r} (as {earlier!r})" for entity, entity_id, earlier in counts.collision_examples)
            n = counts.id_collisions
            self._warnings.append(f"{n} entit{'y' if n == 1 else 'ies'} mapped by --idsproc to the id of another entity, "
                                  f"not computed: {examples}{', ...' if n > len(counts.collision_examples) else ''}")
            report.remarks.append(self._warnings[-1])
        report.n_failed = len(self.failures)
        report.n_skipped = counts.skipped
        report.n_duplicates = counts.duplicates
        report.n_retried = self.n_retried
        report.comp_status = status
        report.time_end = reporting.now_iso()
        if self.options.report_path is not None:
            attempt(lambda: reporting.write_report(report, self.at_start(self.options.report_path)))  # type: ignore[arg-type]
        # with the finished report (the store records how the run ended); a sink that waits for its own
        # process (the store's writer) after the run record, written meanwhile
        waiting = [sink for sink in self.sinks if sink.waits_at_close]
        for sink in self.sinks:
            if not sink.waits_at_close:
                attempt(lambda sink=sink: sink.close(report))  # type: ignore[misc]
        attempt(self._finish_run_config)
        if self.record is not None:
            interrupted = status == "partial" and failure_text in ("interrupted", "terminated", "output closed")
            manifest_status = "interrupted" if interrupted else ("failed" if status in ("aborted", "finalize_failed") else "finished")
            event = {"interrupted": "run_interrupted", "failed": "run_failed", "finished": "run_finished"}[manifest_status]
            attempt(lambda: self.record.event(event, comp_status=status, failure=failure_text, counts=self._counts()))  # type: ignore[union-attr]
            attempt(lambda: self.record.close(manifest_status, failure_text, counts=self._counts(),  # type: ignore[union-attr]
                                              comp_status=status, backend=report.backend, workers=report.workers,
                                              **({"backend_details": report.backend_details} if report.backend_details else {})))
        for sink in waiting:
            attempt(lambda sink=sink: sink.close(report))  # type: ignore[misc]
        self._release_locks()
        if not propagating:  # said at the end, next to the summary (a bad-input error stays one line)
            for warning in self._warnings:
                print(f"provbatch: warning: {warning}", file=sys.stderr)
        if errors and not propagating:
            raise errors[0]
