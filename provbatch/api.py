"""The Python API: :func:`run_batch` and :func:`iter_batch`, and :class:`BatchResult`; :func:`rerun`.

Thin over the engine (:class:`~provbatch.engine.batch.BatchRun`): what a
caller writes in a script or a notebook, with the same options as the
command line in Python words. :func:`rerun` runs what
:func:`provbatch.provenance.rerun.plan_rerun` checked and planned: provenance
sits below the engine, so running a batch again lives here, above it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .engine.batch import BatchRun, Failure
from .errors import OptionError, UsageError
from .inputs.entities import EntitySource
from .outputs import report as reporting
from .plugins.loading import LoadedPlugin
from .provenance.rerun import InputCheck, RerunPlan, artifact_notes, plan_rerun


def iter_batch(plugin: str | Path | LoadedPlugin, entities: Iterable[str] | EntitySource, **options: Any) -> BatchRun:
    """Start a batch; iterate over the result to get ``(entity_id, results, logs)`` as they complete.

    ``entities`` is an iterable of entity strings, or an :class:`EntitySource`
    (file, column, glob). ``options`` are the fields of
    :class:`~provbatch.options.RunOptions`, where each is declared once with
    its help (or ``options=RunOptions(...)`` itself). Values are typed by their
    datatypes (int, float, bool, str, lists for arrays, tuples
    for composites). Nothing is computed until iterated; bad input raises here. When ``out=``
    already holds some of the entities they are skipped (a resume) and a
    :class:`~provbatch.errors.SkippedEntitiesWarning` says how many.
    """
    if isinstance(entities, (str, Path)):
        raise UsageError("entities must be an iterable of entities or an EntitySource, not a single string")
    run = BatchRun(plugin, entities, **{"typed": True, **options})
    if run.options.dry_run:
        raise OptionError("dry_run", "is for run_batch, which returns the plan; iter_batch computes")
    run.prepare()
    return run


@dataclass
class BatchResult:
    """The outcome of :func:`run_batch`: iterable as ``(entity_id, values, logs)``, values typed by
    their datatypes; ``to_pandas()`` / ``to_arrow()`` give them with the OUTPUT names as columns."""

    rows: list[tuple[str, list[Any], list[str]]]
    failures: list[Failure]
    report: reporting.Report
    #: the OUTPUT names and their datatypes (None when the attribute definitions have none)
    names: tuple[str, ...] = ()
    datatypes: tuple[str | None, ...] = ()
    #: entities not computed because they were already done (in ``out=``) or in the skip file
    skipped: int = 0

    @property
    def columns(self) -> list[str]:
        return ["entity", *self.names]

    def __iter__(self) -> Iterator[tuple[str, list[Any], list[str]]]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        return (f"<BatchResult {self.report.plugin_id}: computed {len(self.rows)}, failed {len(self.failures)}, "
                f"skipped {self.skipped}>")

    def as_dict(self) -> dict[str, list[Any]]:
        """entity_id -> values."""
        return {entity_id: results for entity_id, results, _logs in self.rows}

    def to_pandas(self) -> Any:
        """A pandas DataFrame: ``entity`` and the OUTPUT names as columns (needs the ``dataframe`` extra)."""
        from .outputs.frames import to_pandas

        return to_pandas(self.names, self.datatypes, [(entity, values) for entity, values, _logs in self.rows])

    def to_arrow(self) -> Any:
        """A pyarrow Table: ``entity`` and the OUTPUT names as columns (needs the ``dataframe`` extra)."""
        from .outputs.frames import to_arrow

        return to_arrow(self.names, self.datatypes, [(entity, values) for entity, values, _logs in self.rows])


def run_batch(
    plugin: str | Path | LoadedPlugin,
    entities: Iterable[str] | EntitySource,
    params: Mapping[str, Any] | None = None,
    backend: str = "auto",
    workers: int | None = None,
    **options: Any,
) -> BatchResult:
    """Run a whole batch and return every result, typed (for batches whose results fit in memory;
    use :func:`iter_batch` or ``out=`` for large ones). With ``dry_run=True`` nothing is computed
    or written: the :class:`~provbatch.engine.dryrun.DryRunPlan` (counts, destinations) is returned."""
    if options.pop("dry_run", False):
        return BatchRun(plugin, entities, params=params, backend=backend, workers=workers, **options).plan()  # type: ignore[return-value]
    run = iter_batch(plugin, entities, params=params, backend=backend, workers=workers, **options)
    rows = run.rows_to_end()
    return BatchResult(rows, run.failures, run.report, tuple(run.loaded.output), run.datatypes, run.stream.counts.skipped)


@dataclass
class Rerun:
    """A prepared rerun (see :mod:`provbatch.provenance.rerun`): the checked plan and its batch,
    the plugin loaded (built) from the captured source; iterate :attr:`batch` or call :meth:`run`."""

    plan: RerunPlan
    batch: BatchRun

    @property
    def source_run(self) -> Path:
        return self.plan.source_run

    @property
    def config(self) -> dict[str, Any]:
        return self.plan.config

    @property
    def out(self) -> Path:
        return self.plan.out

    @property
    def resuming(self) -> bool:
        return self.plan.resuming

    @property
    def check(self) -> InputCheck:
        return self.plan.check

    @property
    def notes(self) -> list[str]:
        return self.plan.notes

    def run(self) -> Rerun:
        for _row in self.batch:
            pass
        return self

    def same_as_original(self) -> bool | None:
        """Whether the results equal the original run's results file, as multisets of lines;
        None when there is nothing to compare with (results went to stdout, or the file is gone)."""
        return self.plan.same_as_original()


def prepare_rerun(run_dir: str | Path, out: str | Path | None = None, allow_changed_inputs: bool = False,
                  **options: Any) -> Rerun:
    """Check the record and the inputs, rebuild the plugin from the captured source and prepare the batch.

    ``options`` are those of :func:`~provbatch.provenance.rerun.plan_rerun` (backend, workers,
    record_dir, command, progress, write_std_streams). Raises
    :class:`~provbatch.provenance.rerun.InputsChangedError` when inputs differ and
    ``allow_changed_inputs`` is False; nothing is written then.
    """
    plan = plan_rerun(run_dir, out, allow_changed_inputs, **options)
    batch = BatchRun(plan.plugin, plan.entities, plan.options)
    batch.prepare()
    plan.check.notes += artifact_notes(plan.config, batch.loaded.spec)
    return Rerun(plan, batch)


def rerun(run_dir: str | Path, out: str | Path | None = None, allow_changed_inputs: bool = False, **options: Any) -> Rerun:
    """Redo the run recorded in ``run_dir`` from its run_config.json alone (see
    :mod:`provbatch.provenance.rerun`); returns the finished :class:`Rerun`."""
    return prepare_rerun(run_dir, out, allow_changed_inputs, **options).run()
