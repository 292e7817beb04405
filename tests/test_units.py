"""Unit tests of the tricky parts: parameter conversion, value formatting, torn lines, chunk sizes."""

from __future__ import annotations

import pytest

from provbatch.errors import UsageError
from provbatch.execution.scheduler import ChunkSizer
from provbatch.outputs import ResultFormatError, format_results, repair_torn_tail
from provbatch.params import converter_for, parse_param_options, resolve_params

PARAMS = [
    ("n", "Integer", "3", ""), ("x", "Float", "", ""), ("flag", "Boolean", "false", ""),
    ("name", "String[4]", "abc", ""), ("pair", "Integer;Float", "", ""), ("bounds", "Float[2]", "", ""),
    ("cfg", "yaml", "", ""),
]


def test_resolve_params_converts_and_applies_defaults():
    assert resolve_params({}, PARAMS) == {"n": 3, "flag": False, "name": "abc"}
    given = {"n": "7", "x": "0.5", "flag": "YES", "pair": "2;2.5", "bounds": "[0.1, 0.3]", "cfg": "{a: 1}"}
    assert resolve_params(given, PARAMS) == {
        "n": 7, "x": 0.5, "flag": True, "name": "abc", "pair": (2, 2.5), "bounds": [0.1, 0.3], "cfg": {"a": 1},
    }
    assert resolve_params({"bounds": "1,2", "n": 4}, PARAMS)["bounds"] == [1.0, 2.0]
    assert resolve_params({"state": object()}, PARAMS).keys() >= {"state"}


@pytest.mark.parametrize("given,message", [
    ({"n": "1.5"}, "'n': value '1.5' is not a valid Integer"),
    ({"flag": "maybe"}, "is not a valid Boolean"),
    ({"name": "toolong"}, "longer than 4"),
    ({"bounds": "[1, 2, 3]"}, "more than 2"),
    ({"zzz": "1"}, "zzz not declared"),
])
def test_resolve_params_errors(given, message):
    with pytest.raises(UsageError) as info:
        resolve_params(given, PARAMS, origin="--param")
    assert message in str(info.value)


def test_param_options():
    assert parse_param_options(["a=1", "b=x=y", "a=2"]) == {"a": "2", "b": "x=y"}
    with pytest.raises(UsageError):
        parse_param_options(["novalue"])


def test_unknown_datatype():
    with pytest.raises(ValueError, match="unknown datatype 'Complex'"):
        converter_for("Complex")


def test_format_results():
    assert format_results([1, 0.25, True, None, "s", (1, 2.5), [1, 2]], 7) == ["1", "0.25", "true", "", "s", "1;2.5", "1,2"]
    assert format_results((3,), 1) == ["3"]
    with pytest.raises(ResultFormatError, match="returned 2 value"):
        format_results([1, 2], 1)
    with pytest.raises(ResultFormatError, match="tab or a newline"):
        format_results(["a\tb"], 1)


@pytest.mark.parametrize("content,kept", [
    (b"", b""), (b"a\t1\n", b"a\t1\n"), (b"a\t1\nb\t", b"a\t1\n"), (b"torn", b""),
    (b"x" * 100000 + b"\n" + b"y" * 70000, b"x" * 100000 + b"\n"),
])
def test_repair_torn_tail(tmp_path, content, kept):
    path = tmp_path / "out.tsv"
    path.write_bytes(content)
    assert repair_torn_tail(path) == len(content) - len(kept)
    assert path.read_bytes() == kept


def test_chunk_sizer_grows_for_cheap_and_stays_small_for_costly():
    sizer = ChunkSizer(target_seconds=0.1)
    sizes = []
    for _ in range(8):
        sizer.observe(sizer.size, sizer.size * 1e-6)  # 1 µs per entity
        sizes.append(sizer.size)
    assert sizes == [4, 16, 64, 256, 1024, 4096, 16384, 20000]
    costly = ChunkSizer(target_seconds=0.1)
    costly.observe(1, 0.5)
    assert costly.size == 1
