"""Unit tests of the result sinks (outputs/sink.py): the exact bytes each writes, and when.

Every sink is the real one: the TSV sink on real files and a real full
device, the store sink on a real SQLite database read back with sqlite3.
"""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path

import pytest

from provbatch.contract.attributes import load_attribute_definitions
from provbatch.errors import OutputWriteError
from provbatch.outputs.report import Report
from provbatch.outputs.sink import SINKS, ResultChunk, ResultSink, RowsSink, sink_class
from provbatch.outputs.store_sink import StoreSink
from provbatch.outputs.tsv import TsvSink
from provbatch.plugins.loading import load_plugin


def test_sinks_are_listed_once_and_each_implements_the_interface():
    assert SINKS == {"tsv": "provbatch.outputs.tsv:TsvSink", "store": "provbatch.outputs.store_sink:StoreSink",
                     "rows": "provbatch.outputs.sink:RowsSink"}
    assert [sink_class(name) for name in SINKS] == [TsvSink, StoreSink, RowsSink]
    assert all(issubclass(sink_class(name), ResultSink) for name in SINKS)
    assert [sink_class(name).needs_rows for name in SINKS] == [False, True, False]


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


def test_store_sink_buffers_rows_and_writes_them_at_close(tmp_path: Path):
    plugin_path = tmp_path / "lengths.py"
    plugin_path.write_text('ID = "lengths"; VERSION = "1"; INPUT = "a word"; OUTPUT = ["length"]\n'
                           "def compute(entity, **kwargs):\n    return [len(entity)], []\n")
    definitions_path = tmp_path / "attribute_definitions.yaml"
    definitions_path.write_text("length: {definition: number of characters, datatype: Integer}\n")
    database = tmp_path / "store.sqlite"
    sink = StoreSink(str(database), load_plugin(plugin_path), {}, load_attribute_definitions(definitions_path))
    report = Report()
    sink.start(report, ["batch-compute", "lengths.py"])

    def stored_values() -> list[tuple[str, str]]:
        with sqlite3.connect(database) as db:
            return db.execute("SELECT e.name, v.value FROM provbatch_current v JOIN provbatch_entities e "
                              "ON e.id = v.entity ORDER BY e.name").fetchall()

    sink.write(ResultChunk(["a\t1\n", "bb\t2\n"], stored=[("a", ["1"], "a"), ("bb", ["2"], "bb")]))
    assert stored_values() == []  # buffered: one transaction per 20,000 values or 2 s, and at the end
    sink.write(ResultChunk(["ccc\t3\n"], stored=[("ccc", ["3"], "ccc")]))
    report.comp_status, report.n_units, report.time_end = "completed", 3, report.time_start
    sink.close(report)
    assert stored_values() == [("a", "1"), ("bb", "2"), ("ccc", "3")]
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT comp_status, n_units FROM provbatch_computations").fetchall() == [("completed", 3)]
