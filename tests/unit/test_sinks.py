"""Unit tests of the result sinks (outputs/sink.py): the exact bytes each writes, and when; the registry.

Every sink is the real one: the TSV sink on real files and a real full
device, the store sink on a real SQLite database read back with sqlite3.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from provbatch.api import run_batch
from provbatch.contract.attributes import load_attribute_definitions
from provbatch.errors import OutputWriteError, SkippedEntitiesWarning, UsageError
from provbatch.outputs.report import Report
from provbatch.outputs.sink import (
    SINKS,
    ResultChunk,
    ResultSink,
    RowsSink,
    SinkPlan,
    register_sink,
    sink_class,
    sink_names,
    unregister_sink,
)
from provbatch.outputs.store_sink import StoreSink
from provbatch.outputs.tsv import TsvSink
from provbatch.plugins.loading import load_plugin
from provbatch.store import Store
from provbatch.store.schema import ENTITY_NAME


def test_sinks_are_listed_once_and_each_implements_the_interface():
    assert SINKS == {"tsv": "provbatch.outputs.tsv:TsvSink", "store": "provbatch.outputs.store_sink:StoreSink",
                     "rows": "provbatch.outputs.sink:RowsSink"}
    assert [sink_class(name) for name in SINKS] == [TsvSink, StoreSink, RowsSink]
    assert all(issubclass(sink_class(name), ResultSink) for name in SINKS)
    # the store reads the rows only with --idsproc (its open_for says so): they cost the engine a parse
    assert [sink_class(name).needs_rows for name in SINKS] == [False, False, False]


def test_tsv_sink_writes_the_header_once_then_whole_flushed_lines(tmp_path: Path):
    path = tmp_path / "out.tsv"
    sink = TsvSink(path, io.StringIO(), "results", header="entity\tlength\n")
    sink.write(ResultChunk(["a\t1\n", "bb\t2\nccc\t3\n"]))
    assert path.read_bytes() == b"entity\tlength\na\t1\nbb\t2\nccc\t3\n"  # on disk before close: flushed
    sink.write(ResultChunk([]))
    sink.flush()
    sink.close()
    assert path.read_bytes() == b"entity\tlength\na\t1\nbb\t2\nccc\t3\n"
    # appending to it (a resume): no second header, a torn last line (a killed run) cut first
    with open(path, "ab") as handle:
        handle.write(b"dddd\t")
    again = TsvSink(path, io.StringIO(), "results", header="entity\tlength\n")
    again.write(ResultChunk(["dddd\t4\n"]))
    again.close()
    assert path.read_bytes() == b"entity\tlength\na\t1\nbb\t2\nccc\t3\ndddd\t4\n"


def test_tsv_sink_on_a_standard_stream_leaves_it_open(tmp_path: Path):
    stream = io.StringIO()
    sink = TsvSink("-", stream, "results", header="entity\tlength\n")
    sink.write(ResultChunk(["a\t1\n"]))
    sink.close()
    assert not stream.closed and stream.getvalue() == "entity\tlength\na\t1\n"


def test_logs_sink_escapes_text_that_is_not_utf8(tmp_path: Path):
    path = tmp_path / "log.tsv"
    sink = TsvSink(path, io.StringIO(), "logs")
    sink.write_lines(["e\u00e9\tsaw \udcff\n"])
    sink.close()
    assert path.read_bytes() == b"e\xc3\xa9\tsaw \\udcff\n"


def test_tsv_sink_on_a_full_device_names_the_file():
    sink = TsvSink("/dev/full", io.StringIO(), "results")
    with pytest.raises(OutputWriteError) as info:
        sink.write(ResultChunk(["a\t1\n"]))
    assert str(info.value) == "/dev/full: cannot write the results: No space left on device"


def test_rows_sink_hands_over_each_chunk_once_in_order():
    sink = RowsSink()
    sink.write(ResultChunk(["a\t1\n"], done=[("a", [1], []), ("b", [], ["no value"])]))
    sink.write(ResultChunk([], done=[("c", [3], ["log"])]))
    assert sink.take() == [("a", [1], []), ("b", [], ["no value"]), ("c", [3], ["log"])]
    assert sink.take() == []


def lengths_plugin(folder: Path, outputs: tuple[str, ...] = ("length",)) -> tuple[Path, Path]:
    """A plugin whose attributes are ``outputs`` (each the entity's length), and definitions of ``length`` only."""
    plugin_path = folder / "lengths.py"
    plugin_path.write_text(f'ID = "lengths"; VERSION = "1"; INPUT = "a word"; OUTPUT = {list(outputs)!r}\n'
                           f"def compute(entity, **kwargs):\n    return [len(entity)] * {len(outputs)}, []\n")
    definitions_path = folder / "attribute_definitions.yaml"
    definitions_path.write_text("length: {definition: number of characters, datatype: Integer}\n")
    return plugin_path, definitions_path


def test_store_sink_buffers_rows_and_writes_them_at_close(tmp_path: Path):
    plugin_path, definitions_path = lengths_plugin(tmp_path)
    database = tmp_path / "store.sqlite"
    Store(str(database), create=True).close()  # an existing store: the sink waits for the child to open it
    sink = StoreSink(str(database), load_plugin(plugin_path), {}, load_attribute_definitions(definitions_path))
    assert not sink.new
    report = Report()
    sink.start(report, ["batch-compute", "lengths.py"])

    def stored_values() -> list[tuple[str, str]]:
        with sqlite3.connect(database) as db:
            return db.execute(f"SELECT {ENTITY_NAME}, v.values_text FROM provbatch_current v JOIN provbatch_entities e "
                              "ON e.id = v.entity ORDER BY 1").fetchall()

    sink.write(ResultChunk(["a\t1\n", "bb\t2\n"], stored=[("a", ["1"], "a"), ("bb", ["2"], "bb")]))
    assert stored_values() == []  # buffered: one transaction per 20,000 values or 2 s, and at the end
    sink.write(ResultChunk(["ccc\t3\n"], stored=[("ccc", ["3"], "ccc")]))
    report.comp_status, report.n_units, report.time_end = "completed", 3, report.time_start
    sink.close(report)
    assert stored_values() == [("a", "1"), ("bb", "2"), ("ccc", "3")]
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT comp_status, n_units FROM provbatch_computations").fetchall() == [("completed", 3)]


def test_a_new_store_is_opened_by_the_child_while_the_run_goes_on(tmp_path: Path):
    """A store file not there yet holds nothing to resume: the sink does not wait for the child to open it
    and record the computation; the answers are read later, and the values and record are the same."""
    plugin_path, definitions_path = lengths_plugin(tmp_path)
    database = tmp_path / "store.sqlite"
    sink = StoreSink(str(database), load_plugin(plugin_path), {}, load_attribute_definitions(definitions_path))
    assert (sink.new, sink.exists, sink.done_ids(), sink.stale_ids(load_plugin(plugin_path))) == (True, False, set(), set())
    report = Report()
    sink.start(report, ["batch-compute", "lengths.py"])
    sink.write(ResultChunk(["a\t1\n", "bb\t2\n"]))
    report.comp_status, report.n_units, report.time_end = "completed", 2, report.time_start
    sink.close(report)
    assert not os.path.exists(f"{database}-wal")  # the child closed the store before close returned
    with closing(sqlite3.connect(database)) as db:
        assert db.execute(f"SELECT {ENTITY_NAME}, v.values_text FROM provbatch_current v JOIN provbatch_entities e "
                          "ON e.id = v.entity ORDER BY 1").fetchall() == [("a", "1"), ("bb", "2")]
        assert db.execute("SELECT uuid, comp_status, n_units FROM provbatch_computations").fetchall() == [
            (report.uuid, "completed", 2)]


def test_a_new_store_refuses_an_undefined_attribute_before_the_run(tmp_path: Path):
    """What the child would refuse first in a new store is refused by the sink itself, with the same words."""
    plugin_path, definitions_path = lengths_plugin(tmp_path, ("length", "width"))
    with pytest.raises(UsageError) as info:
        StoreSink(str(tmp_path / "store.sqlite"), load_plugin(plugin_path), {}, load_attribute_definitions(definitions_path))
    assert str(info.value) == (f"{definitions_path}: attribute(s) width are neither in the store nor in the attribute "
                               "definitions: 'provbatch attributes apply DEFS.yaml' first")
    assert not (tmp_path / "store.sqlite").exists()


# ----------------------------------------------------------------------------- the registry
#: what the test sink saw, in order (the sink of a real run, registered by one line below)
EVENTS: list[tuple[Any, ...]] = []


class MemorySink(ResultSink):
    """A sink of this test module: records each call of the engine (a database sink would write instead)."""

    needs_rows = True

    def __init__(self, plan: SinkPlan) -> None:
        self.done = plan.options.user == "resume"  # the test's way to say "this sink holds entity bb"

    @classmethod
    def open_for(cls, plan: SinkPlan) -> MemorySink | None:
        EVENTS.append(("open_for", plan.writes, list(plan.plugin.output), plan.options.backend))
        return cls(plan)

    def done_ids(self) -> list[str]:
        return ["bb"] if self.done else []

    def destination(self) -> tuple[str, str]:
        return "memory", "this process"

    def open(self) -> None:
        EVENTS.append(("open",))

    def start(self, report: Any, command: list[str] | None) -> None:
        EVENTS.append(("start", len(report.uuid)))

    def write(self, chunk: ResultChunk) -> None:
        EVENTS.append(("write", "".join(chunk.lines), [tuple(row) for row in chunk.stored]))

    def end(self) -> None:
        EVENTS.append(("end",))

    def close(self, report: Any = None) -> None:
        EVENTS.append(("close", report.comp_status if report is not None else None))


@pytest.fixture
def memory_sink():
    EVENTS.clear()
    register_sink("memory", f"{__name__}:MemorySink")  # the one line that adds a sink
    yield EVENTS
    unregister_sink("memory")
    EVENTS.clear()


@pytest.fixture
def lengths(tmp_path: Path) -> tuple[Path, Path]:
    plugin_path, definitions_path = lengths_plugin(tmp_path)
    return plugin_path, definitions_path


def test_a_sink_registered_by_one_line_receives_the_rows_of_a_run(memory_sink, lengths, tmp_path: Path):
    plugin, definitions = lengths
    assert sink_names() == ("tsv", "store", "rows", "memory")
    result = run_batch(plugin, ["a", "bb", "ccc"], attributes=str(definitions), backend="serial", run_dir=tmp_path / "run")
    assert result.rows == [("a", [1], []), ("bb", [2], []), ("ccc", [3], [])]  # the caller's rows: the rows sink
    writes = [event for event in memory_sink if event[0] == "write"]
    assert "".join(event[1] for event in writes) == "a\t1\nbb\t2\nccc\t3\n"
    assert [row for event in writes for row in event[2]] == [("a", ["1"], "a"), ("bb", ["2"], "bb"), ("ccc", ["3"], "ccc")]
    assert [event for event in memory_sink if event[0] != "write"] == [
        ("open_for", True, ["length"], "serial"), ("open",), ("start", 36), ("end",), ("close", "completed")]


class WaitingSink(MemorySink):
    """A sink whose close waits for a process of its own (as the store's does): closed after the run record."""

    waits_at_close = True
    run_dir: Path | None = None

    def close(self, report: Any = None) -> None:
        manifest = json.loads((self.run_dir / "manifest.json").read_text()) if self.run_dir else None
        EVENTS.append(("waiting close", manifest["status"] if manifest else None))


def test_a_sink_that_waits_at_close_is_closed_after_the_run_record_and_the_others_before(memory_sink, lengths,
                                                                                        tmp_path: Path):
    plugin, definitions = lengths
    unregister_sink("memory")  # registered again after the waiting sink, which gets each call first
    register_sink("waiting", f"{__name__}:WaitingSink")
    register_sink("memory", f"{__name__}:MemorySink")
    WaitingSink.run_dir = tmp_path / "run"
    try:
        run_batch(plugin, ["a", "bb"], attributes=str(definitions), backend="serial", run_dir=tmp_path / "run")
    finally:
        unregister_sink("waiting")
        WaitingSink.run_dir = None
    # the waiting sink comes first in the registry, yet it is closed last, the run record finished by then
    assert [event for event in memory_sink if event[0] in ("end", "close", "waiting close")] == [
        ("end",), ("end",), ("close", "completed"), ("waiting close", "finished")]
    assert [sink_class(name).waits_at_close for name in ("tsv", "store", "rows")] == [False, True, False]


def test_what_a_sink_holds_is_skipped_and_a_dry_run_opens_it_without_writes(memory_sink, lengths, tmp_path: Path):
    plugin, definitions = lengths
    with pytest.warns(SkippedEntitiesWarning):  # out= is given: the API says a resume skipped entities
        result = run_batch(plugin, ["a", "bb", "ccc"], attributes=str(definitions), backend="serial", user="resume",
                           out=tmp_path / "out.tsv", run_dir=tmp_path / "run")
    assert result.rows == [("a", [1], []), ("ccc", [3], [])]
    assert (tmp_path / "out.tsv").read_text() == "a\t1\nccc\t3\n"
    memory_sink.clear()
    plan = run_batch(plugin, ["a", "bb", "ccc", "dddd"], attributes=str(definitions), backend="serial", user="resume",
                     out=tmp_path / "out.tsv", dry_run=True)
    assert memory_sink == [("open_for", False, ["length"], "serial"), ("close", None)]  # nothing opened, started, written
    assert (plan.done, plan.to_compute, plan.done_in) == (3, 1, f"{tmp_path / 'out.tsv'}, in MemorySink")
    assert plan.destinations[0] == ("results", f"{tmp_path / 'out.tsv'} (appending)")
    assert plan.destinations[-1] == ("memory", "this process")


def test_the_registry_errors():
    with pytest.raises(LookupError) as info:
        sink_class("parquet")
    assert str(info.value) == "no sink named 'parquet': the sinks are tsv, store, rows"
    with pytest.raises(ValueError) as value_info:
        register_sink("parquet", "provbatch.outputs.parquet_sink")
    assert str(value_info.value) == "sink parquet: the target must be 'module:Class', got 'provbatch.outputs.parquet_sink'"
    assert "parquet" not in SINKS
    register_sink("report", "provbatch.outputs.report:Report")
    try:
        with pytest.raises(TypeError) as type_info:
            sink_class("report")
        assert str(type_info.value) == "sink report: provbatch.outputs.report:Report is not a ResultSink subclass"
    finally:
        unregister_sink("report")
    assert sink_names() == ("tsv", "store", "rows")


class FailingSink(ResultSink):
    @classmethod
    def open_for(cls, plan: SinkPlan) -> ResultSink | None:
        raise OSError("the database is down")


def test_a_sink_that_cannot_open_closes_those_opened_before(memory_sink, lengths, tmp_path: Path):
    plugin, definitions = lengths
    register_sink("failing", f"{__name__}:FailingSink")
    try:
        with pytest.raises(OSError) as info:
            run_batch(plugin, ["a"], attributes=str(definitions), backend="serial", run_dir=tmp_path / "run")
    finally:
        unregister_sink("failing")
    assert str(info.value) == "the database is down"
    assert memory_sink == [("open_for", True, ["length"], "serial"), ("close", None)]
    assert not (tmp_path / "run").exists()  # bad input: nothing written


def test_store_sink_works_through_its_writer_process_flush_commits_and_a_dry_run_creates_nothing(tmp_path: Path):
    plugin_path, definitions_path = lengths_plugin(tmp_path)
    database = tmp_path / "store.sqlite"
    plugin, definitions = load_plugin(plugin_path), load_attribute_definitions(definitions_path)
    dry = StoreSink(str(database), plugin, {}, definitions, writes=False)  # opened by a child, which creates nothing
    assert dry.exists is False
    dry.close()
    assert dry.process.process.returncode == 0
    assert not database.exists()
    sink = StoreSink(str(database), plugin, {}, definitions)
    report = Report()
    sink.start(report, ["batch-compute", "lengths.py"])
    sink.write(ResultChunk(["a\t1\nbb\t2\n"], stored=[("a", ["1"], "a"), ("bb", ["2"], "bb")]))
    sink.flush()  # returns when the child has committed them
    # only now has the child surely exec'd: a new store is not waited for, so right after the spawn
    # /proc/PID/cmdline may still be the forked parent's, or empty
    child = sink.process.pid
    assert Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")[-2] == str(os.getpid()).encode()  # its parent's pid
    with closing(sqlite3.connect(database)) as db:
        assert db.execute("SELECT COUNT(*) FROM provbatch_entities").fetchall() == [(2,)]
    report.comp_status, report.n_units, report.time_end = "completed", 2, report.time_start
    sink.close(report)
    assert sink.process.process.returncode == 0  # reaped: no process left
    # the child ended the computation's record, and closed the store: its log is in the database file
    assert sorted(path.name for path in tmp_path.iterdir() if path.name.startswith("store")) == ["store.sqlite"]
    with closing(sqlite3.connect(database)) as db:
        assert db.execute("SELECT comp_status, n_units FROM provbatch_computations").fetchall() == [("completed", 2)]
