"""The result sinks: where a batch's result rows go, one completed chunk at a time, and their registry.

Every destination of results is a :class:`ResultSink`, registered once by
name (:func:`register_sink`, :data:`SINKS`) with the ``"module:Class"`` of its
class, which is imported only when a batch runs (the store sink needs
SQLAlchemy). Every sink is made the same way, ``Class.open_for(plan)`` from
the run's :class:`SinkPlan` (its :class:`~provbatch.options.RunOptions`, the
plugin, the parameters, the definitions), which returns None when the options
do not ask for it (:func:`open_sinks`). The engine
(:mod:`provbatch.engine.batch`) then treats the sinks alike, in registration
order, and never names one:

- before anything runs (also in a dry run, ``plan.writes`` False: a sink then
  creates nothing): :meth:`~ResultSink.done_ids` (through
  :meth:`~ResultSink.add_done_ids`), the entities the sink
  already holds from this computation (a resume skips them), and
  :meth:`~ResultSink.only_ids`, the entities the run is limited to (the
  store's stale ones, ``only_stale``); a dry run reads
  :meth:`~ResultSink.destination` and closes the sinks;
- :meth:`~ResultSink.open` once the output files are locked and claimed (the
  TSV opens its file here); :meth:`~ResultSink.start` once the run record
  exists;
- :meth:`~ResultSink.write` once per completed chunk (after the chunk's logs,
  so that a kill between the two leaves logs that a resume drops), then
  :meth:`~ResultSink.take` of a sink that :attr:`~ResultSink.hands_rows` (its
  rows go to the caller);
- :meth:`~ResultSink.end` when the computing is over (an error there makes the
  run aborted), :meth:`~ResultSink.close` with the finished report (also after
  a failure: what was buffered is written, the store's computation is closed
  with the run's status); a sink that :attr:`~ResultSink.waits_at_close` is
  closed after the run's own records are written.

The sinks, in the order they get each chunk:

- ``tsv``: the results TSV, a file or stdout (:class:`~.tsv.TsvSink`; the
  logs TSV is the same class, fed log lines: the engine's own output, no
  result sink);
- ``store``: the results store, ``store`` URL (:class:`~.store_sink.StoreSink`);
- ``rows``: the rows handed to the caller of the Python API (``iter_batch``
  yields them, ``run_batch`` keeps them in a ``BatchResult``, whose
  ``to_pandas``/``to_arrow`` frames are made from them) (:class:`RowsSink`).

Adding a sink (another database, say) is a :class:`ResultSink` subclass with
its ``open_for`` in its own module and one :func:`register_sink` line below
(docs/architecture.md has a worked example).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from ..inputs.seen_ids import SeenIds
    from ..options import RunOptions


@dataclass(frozen=True)
class SinkPlan:
    """What every sink is opened from (``open_for(plan)``, the one constructor shape)."""

    #: the run's options: each sink reads its own (``out``, ``store``, ``only_stale``, ...)
    options: RunOptions
    #: the loaded plugin (:class:`~provbatch.plugins.loading.LoadedPlugin`)
    plugin: Any
    #: the resolved parameters, ``state`` included
    parameters: dict[str, Any]
    #: the attribute definitions of the OUTPUT attributes (:class:`~provbatch.contract.attributes.AttributeDefinitions`)
    definitions: Any
    #: the ``header`` line of this computation (``entity`` and the OUTPUT names): resume recognises it
    header_line: str
    #: a file option as it is opened: absolute against the run's start directory; None and "-" as they are
    opened: Callable[[str | Path | None], str | Path | None]
    #: False in a dry run: the sink checks, reads and counts, and creates nothing
    writes: bool = True


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
    #: the sink hands rows back to the caller of the run (:meth:`take`, after each chunk)
    hands_rows: bool = False
    #: :meth:`close` waits for another process to finish the work :meth:`end` told it about (the store's
    #: writer, still committing the last chunks): the engine closes such a sink after writing the run
    #: record, so that this writing happens during the wait instead of after it
    waits_at_close: bool = False

    @classmethod
    def open_for(cls, plan: SinkPlan) -> ResultSink | None:
        """The sink of a run, when its options ask for it (else None); checked, nothing written yet."""
        raise NotImplementedError(f"{cls.__name__} does not define open_for(plan)")

    def done_ids(self) -> Iterable[str]:
        """Entity ids whose results this sink already holds from this computation: a resume skips them."""
        return ()

    def add_done_ids(self, into: SeenIds) -> None:
        """Add :meth:`done_ids` to ``into`` (what the engine calls); a sink holding millions (the results
        TSV) adds them itself as it reads them."""
        add = into.add
        for entity_id in self.done_ids():
            add(entity_id)

    def only_ids(self) -> set[str] | None:
        """The entity ids the run computes, None for all (the store's stale entities, ``only_stale``)."""
        return None

    def done_where(self) -> str:
        """Where a dry run says the :meth:`done_ids` are ("out.tsv", "in the store")."""
        return f"in {type(self).__name__}"

    def destination(self) -> tuple[str, str] | None:
        """What a dry run says the sink would write: ``(what, where)``, or None to say nothing."""
        return None

    def open(self) -> None:
        """The outputs are locked and claimed: open for writing (nothing by default)."""

    def start(self, report: Any, command: list[str] | None) -> None:
        """The run starts (its report has its uuid and start time): nothing by default."""

    def write(self, chunk: ResultChunk) -> None:
        """The results of one completed chunk."""
        raise NotImplementedError

    def take(self) -> list[tuple[str, list[Any], list[str]]]:
        """The rows for the caller written since the last call (a sink that :attr:`hands_rows`)."""
        return []

    def flush(self) -> None:
        """Make what was written so far durable: nothing by default (a sink that buffers writes it out)."""

    def end(self) -> None:
        """The computing is over, before the report: release what :meth:`open` took (an error aborts the run)."""

    def close(self, report: Any = None) -> None:
        """The run ended (``report``: how, when the run got that far): write what is buffered, release."""


class RowsSink(ResultSink):
    """Keeps each chunk's rows until the engine hands them to the caller (:meth:`take`).

    Opened for every run: the engine fills :attr:`ResultChunk.done` only when
    the caller iterates, so a run to the end (the CLI) keeps nothing.
    """

    hands_rows = True

    def __init__(self) -> None:
        self._rows: list[tuple[str, list[Any], list[str]]] = []

    @classmethod
    def open_for(cls, plan: SinkPlan) -> RowsSink:
        return cls()

    def write(self, chunk: ResultChunk) -> None:
        self._rows.extend(chunk.done)

    def take(self) -> list[tuple[str, list[Any], list[str]]]:
        """The rows written since the last call, in order."""
        rows, self._rows = self._rows, []
        return rows


#: every result sink, by name, in the order they get each chunk: ``"module:Class"``, imported when used
SINKS: dict[str, str] = {}


def register_sink(name: str, target: str) -> None:
    """Register (or replace) a sink; ``target`` is ``"module:Class"`` of its :class:`ResultSink` subclass."""
    module_name, colon, class_name = target.partition(":")
    if not (module_name and colon and class_name):
        raise ValueError(f"sink {name}: the target must be 'module:Class', got '{target}'")
    SINKS[name] = target


def unregister_sink(name: str) -> None:
    """Remove a sink (a test's, an extension's that is being unloaded); unknown names are ignored."""
    SINKS.pop(name, None)


register_sink("tsv", "provbatch.outputs.tsv:TsvSink")
register_sink("store", "provbatch.outputs.store_sink:StoreSink")
register_sink("rows", "provbatch.outputs.sink:RowsSink")


def sink_names() -> tuple[str, ...]:
    """The registered sinks, in the order they get each chunk."""
    return tuple(SINKS)


def sink_class(name: str) -> type[ResultSink]:
    """The class of sink ``name`` (:data:`SINKS`), imported now."""
    try:
        target = SINKS[name]
    except KeyError:
        raise LookupError(f"no sink named '{name}': the sinks are {', '.join(SINKS)}") from None
    module_name, _, class_name = target.partition(":")
    sink = getattr(importlib.import_module(module_name), class_name, None)
    if not (isinstance(sink, type) and issubclass(sink, ResultSink)):
        raise TypeError(f"sink {name}: {target} is not a ResultSink subclass")
    return sink


def open_sinks(plan: SinkPlan) -> list[ResultSink]:
    """The sinks the run's options ask for, each opened by ``open_for(plan)``, in registration order.

    When one fails to open, those opened before it are closed again and the error is raised.
    """
    sinks: list[ResultSink] = []
    try:
        for name in SINKS:
            sink = sink_class(name).open_for(plan)
            if sink is not None:
                sinks.append(sink)
    except BaseException:
        for sink in sinks:
            sink.close()
        raise
    return sinks
