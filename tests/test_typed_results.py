"""Results for pipelines: typed values from the API for every datatype, DataFrames with the OUTPUT
names as columns, read_results from the run record, --header, and a warned resume."""

from __future__ import annotations

import warnings

import pytest

import provbatch
from conftest import run_cli, write_source

DEFINITIONS = """\
n: {definition: length of the id, datatype: Integer}
ratio: {definition: a fraction, datatype: Float}
even: {definition: length is even, datatype: Boolean}
tag: {definition: a short tag, datatype: "String(8)"}
note: {definition: free text, datatype: Text}
pair: {definition: length and its half, datatype: "Integer;Float"}
digits: {definition: the digits of the length, datatype: "Integer[4]"}
flags: {definition: booleans, datatype: "Boolean[2]"}
maybe: {definition: missing for short ids, datatype: Integer}
"""
PLUGIN = """\
ID = "types"
VERSION = "1.0"
INPUT = "an id"
OUTPUT = ["n", "ratio", "even", "tag", "note", "pair", "digits", "flags", "maybe"]

def compute(entity, **kwargs):
    n = len(entity)
    return [n, n / 4, n % 2 == 0, "t" + entity[:3], "A!" + entity, (n, n / 2), [int(d) for d in str(n * 7)],
            [True, n > 2], n * 10 if n > 2 else None], []
"""
IDS = ["ab", "abcde", "abcdefghijkl"]
EXPECTED = {
    "ab": [2, 0.5, True, "tab", "A!ab", (2, 1.0), [1, 4], [True, False], None],
    "abcde": [5, 1.25, False, "tabc", "A!abcde", (5, 2.5), [3, 5], [True, True], 50],
    "abcdefghijkl": [12, 3.0, True, "tabc", "A!abcdefghijkl", (12, 6.0), [8, 4], [True, True], 120],
}
COLUMNS = ["entity", "n", "ratio", "even", "tag", "note", "pair", "digits", "flags", "maybe"]


@pytest.fixture
def types(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_source(tmp_path, "attribute_definitions.yaml", DEFINITIONS)
    return write_source(tmp_path, "types.py", PLUGIN)


def test_run_batch_gives_values_typed_by_their_datatypes(types):
    result = provbatch.run_batch(types, IDS, backend="serial")
    assert result.as_dict() == EXPECTED
    for values in result.as_dict().values():
        assert [type(v) for v in values[:8]] == [int, float, bool, str, str, tuple, list, list]
        assert type(values[5][0]) is int and type(values[5][1]) is float and all(type(x) is bool for x in values[7])
    assert result.columns == COLUMNS
    assert result.skipped == 0


def test_iter_batch_streams_typed_values_on_the_pool(types):
    run = provbatch.iter_batch(types, IDS, backend="pool", workers=2)
    assert {entity: values for entity, values, _logs in run} == EXPECTED


def test_to_pandas_and_to_arrow_have_the_output_names_as_columns(types):
    result = provbatch.run_batch(types, IDS, backend="serial")
    frame = result.to_pandas()
    assert list(frame.columns) == COLUMNS
    assert frame["entity"].tolist() == IDS
    assert frame["n"].tolist() == [2, 5, 12] and str(frame["n"].dtype) == "int64"
    assert frame["ratio"].tolist() == [0.5, 1.25, 3.0] and str(frame["ratio"].dtype) == "float64"
    assert frame["even"].tolist() == [True, False, True] and str(frame["even"].dtype) == "bool"
    assert frame["pair"].tolist() == [(2, 1.0), (5, 2.5), (12, 6.0)]
    assert frame["digits"].tolist() == [[1, 4], [3, 5], [8, 4]]
    assert str(frame["maybe"].dtype) == "Int64" and frame["maybe"].isna().tolist() == [True, False, False]
    assert frame["maybe"].tolist()[1:] == [50, 120]

    table = result.to_arrow()
    assert table.column_names == COLUMNS
    assert str(table.schema.field("n").type) == "int64" and str(table.schema.field("ratio").type) == "double"
    assert str(table.schema.field("even").type) == "bool" and str(table.schema.field("tag").type) == "string"
    assert str(table.schema.field("digits").type) == "list<item: int64>"
    assert str(table.schema.field("pair").type) == "struct<1: int64, 2: double>"
    assert table.column("pair").to_pylist()[1] == {"1": 5, "2": 2.5}
    assert table.column("maybe").to_pylist() == [None, 50, 120]


def test_read_results_reads_the_file_back_typed_and_named_from_the_run_record(types, tmp_path):
    (tmp_path / "ids.txt").write_text("".join(i + "\n" for i in IDS))
    proc = run_cli("types.py", "ids.txt", "--out", "out.tsv", "--backend", "serial", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    table = provbatch.read_results(tmp_path / "out.tsv")
    assert table.columns == COLUMNS
    assert table.as_dict() == EXPECTED
    assert list(table.to_pandas().columns) == COLUMNS
    # without the report beside it, the run is found under the runs root
    (tmp_path / "out.tsv.report.yaml").unlink()
    assert provbatch.read_results(tmp_path / "out.tsv").as_dict() == EXPECTED


def test_header_line_is_written_on_request_and_understood_by_readers_and_resume(types, tmp_path):
    (tmp_path / "ids.txt").write_text("ab\nabcde\n")
    proc = run_cli("types.py", "ids.txt", "--out", "h.tsv", "--header", "--backend", "serial", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = (tmp_path / "h.tsv").read_text().splitlines()
    assert lines[0] == "\t".join(COLUMNS)
    assert lines[1] == "ab\t2\t0.5\ttrue\ttab\tA!ab\t2;1.0\t1,4\ttrue,false\t"
    # resume: the header is no entity, and is not written twice
    (tmp_path / "ids.txt").write_text("ab\nabcde\nabcdefghijkl\n")
    again = run_cli("types.py", "ids.txt", "--out", "h.tsv", "--header", "--backend", "serial", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    lines = (tmp_path / "h.tsv").read_text().splitlines()
    assert [line.split("\t")[0] for line in lines] == ["entity", "ab", "abcde", "abcdefghijkl"]
    assert provbatch.read_results(tmp_path / "h.tsv").as_dict() == EXPECTED
    # off by default: the first line is a result
    assert run_cli("types.py", "ids.txt", "--out", "plain.tsv", cwd=tmp_path).returncode == 0
    assert (tmp_path / "plain.tsv").read_text().splitlines()[0].startswith("ab\t2\t")


def test_a_second_run_into_the_same_out_warns_how_many_were_skipped(types, tmp_path):
    out = tmp_path / "pipeline.tsv"
    first = provbatch.run_batch(types, IDS, backend="serial", out=out)
    assert len(first) == 3 and first.skipped == 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        second = provbatch.run_batch(types, IDS + ["abcd"], backend="serial", out=out)
    assert [row[0] for row in second] == ["abcd"] and second.skipped == 3
    messages = [str(w.message) for w in caught if issubclass(w.category, provbatch.SkippedEntitiesWarning)]
    assert messages == [f"3 of 4 entities skipped: their results are already in {out} (a resume); "
                        "read them with provbatch.read_results, or use another out= to compute them again"]
    assert "skipped 3" in repr(second)


def test_trial_runs_header_and_a_missing_plugin_from_python(types, tmp_path):
    limited = provbatch.run_batch(types, IDS, backend="serial", limit=2, out=tmp_path / "lim.tsv", header=True)
    assert [row[0] for row in limited] == IDS[:2]
    assert limited.report.trial == "--limit 2: the first 2 entities to compute"
    assert (tmp_path / "lim.tsv").read_text().splitlines()[0] == "\t".join(COLUMNS)
    sampled = provbatch.run_batch(types, IDS, backend="serial", sample=2, seed=1)
    assert len(sampled) == 2 and {row[0] for row in sampled} <= set(IDS)
    assert sampled.as_dict() == {entity: EXPECTED[entity] for entity, _values, _logs in sampled}
    with pytest.raises(provbatch.UsageError, match="^missing.py: plugin file not found$"):
        provbatch.run_batch("missing.py", IDS)
