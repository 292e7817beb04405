"""The Python API: :func:`run_batch` and :func:`iter_batch`, and :class:`BatchResult`.

Thin over the engine (:class:`~provbatch.engine.batch.BatchRun`): what a
caller writes in a script or a notebook, with the same options as the
command line in Python words.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from .engine.batch import BatchRun, Failure
from .errors import UsageError
from .inputs.entities import EntitySource
from .outputs import report as reporting
from .plugins.loading import LoadedPlugin


def iter_batch(plugin: str | Path | LoadedPlugin, entities: Iterable[str] | EntitySource, **options: Any) -> BatchRun:
    """Start a batch; iterate over the result to get ``(entity_id, results, logs)`` as they complete.

    ``entities`` is an iterable of entity strings, or an :class:`EntitySource`
    (file, column, glob). Options are those of :class:`BatchRun` (params,
    backend, workers, address, attributes, idsproc, skip, out, log,
    report_path, user, system, reason, retries, timeout, fail_fast,
    max_failures, failures_path, retry_failed, run_dir, plugin_options). Nothing is computed
    until iterated; bad input raises here.
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
