"""The result sink interface: where a batch's result rows go, one completed chunk at a time.

Every destination of results implements :class:`ResultSink`, and the engine
(:mod:`provbatch.engine.batch`) treats them alike: ``start`` once the run
record exists, ``write`` once per completed chunk (after the chunk's logs, so
that a kill between the two leaves logs that a resume drops), ``flush`` when
the batch wants what was written to be durable, ``close`` at the end, with the
report (also after a failure: what was buffered is written, the store's
computation is closed with the run's status).

The sinks, listed once in :data:`SINKS` (imported only when used):

- ``tsv``: the results TSV, a file or stdout (:class:`~.tsv.TsvSink`; the
  logs TSV is the same class, fed log lines);
- ``store``: the results store, ``--store URL`` (:class:`~.store_sink.StoreSink`);
- ``rows``: the rows handed to the caller of the Python API (``iter_batch``
  yields them, ``run_batch`` keeps them in a ``BatchResult``, whose
  ``to_pandas``/``to_arrow`` frames are made from them) (:class:`RowsSink`).

Adding a sink (another database, say) is a :class:`ResultSink` subclass in
its own module and one line in :data:`SINKS`; the engine opens it beside the
others.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any


class ResultChunk:
    """One completed chunk's results, in the shapes the sinks take (each reads the one it needs).

    ``lines``: the TSV text of the rows (a string may hold many lines, each ``id<TAB>fields<LF>``);
    ``stored``: ``(entity_id, fields, entity)`` per row, filled only when a sink :attr:`~ResultSink.needs_rows`;
    ``done``: ``(entity_id, values, logs)`` per entity computed, for the caller (entities without a
    value too, with no values), filled only when the caller iterates.
    """

    __slots__ = ("lines", "stored", "done")

    def __init__(self, lines: list[str], stored: Sequence[tuple[str, Sequence[str], str]] = (),
                 done: Sequence[tuple[str, list[Any], list[str]]] = ()) -> None:
        self.lines = lines
        self.stored = stored
        self.done = done


class ResultSink:
    """A destination of result rows; see the module's docstring for when each method is called."""

    #: the sink reads :attr:`ResultChunk.stored` (the engine builds it only for such sinks)
    needs_rows: bool = False

    def start(self, report: Any, command: list[str] | None) -> None:
        """The run starts (its report has its uuid and start time): nothing by default."""

    def write(self, chunk: ResultChunk) -> None:
        """The results of one completed chunk."""
        raise NotImplementedError

    def flush(self) -> None:
        """Make what was written so far durable: nothing by default (a sink that buffers writes it out)."""

    def close(self, report: Any = None) -> None:
        """The run ended (``report``: how, when the run got that far): write what is buffered, release."""


class RowsSink(ResultSink):
    """Keeps each chunk's rows until the engine hands them to the caller (:meth:`take`)."""

    def __init__(self) -> None:
        self._rows: list[tuple[str, list[Any], list[str]]] = []

    def write(self, chunk: ResultChunk) -> None:
        self._rows.extend(chunk.done)

    def take(self) -> list[tuple[str, list[Any], list[str]]]:
        """The rows written since the last call, in order."""
        rows, self._rows = self._rows, []
        return rows


#: every result sink, by name: ``"module:Class"``, imported when used (the store needs SQLAlchemy)
SINKS: dict[str, str] = {
    "tsv": "provbatch.outputs.tsv:TsvSink",
    "store": "provbatch.outputs.store_sink:StoreSink",
    "rows": "provbatch.outputs.sink:RowsSink",
}


def sink_class(name: str) -> type[ResultSink]:
    """The class of sink ``name`` (:data:`SINKS`), imported now."""
    module_name, _, class_name = SINKS[name].partition(":")
    sink: type[ResultSink] = getattr(importlib.import_module(module_name), class_name)
    return sink
