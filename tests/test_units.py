"""Unit tests of the tricky parts: parameter conversion, value formatting, torn lines, chunk sizes."""

from __future__ import annotations

import re
import types

import pytest

from provbatch.errors import UsageError
from provbatch.execution.scheduler import ChunkSizer
from provbatch.outputs.tsv import repair_torn_tail
from provbatch.contract.results import ResultValueError, make_row_formatter
from provbatch.contract.parameters import converter_for, parse_param_options, resolve_params

PARAMS = [
    ("n", "Integer", "3", ""), ("x", "Float", "", ""), ("flag", "Boolean", "false", ""),
    ("name", "String(4)", "abc", ""), ("pair", "Integer;Float", "", ""), ("bounds", "Float[2]", "", ""),
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


def test_row_formatter_without_datatypes():
    fmt = make_row_formatter([None] * 7)
    assert fmt([1, 0.25, True, None, "s", (1, 2.5), [1, 2]]) == ["1", "0.25", "true", "", "s", "1;2.5", "1,2"]
    assert make_row_formatter([None])((3,)) == ["3"]
    with pytest.raises(ResultValueError, match="returned 2 value"):
        make_row_formatter([None])([1, 2])
    with pytest.raises(ResultValueError, match="tab or a newline"):
        make_row_formatter([None])(["a\tb"])


def test_row_formatter_checks_datatypes():
    import numpy as np

    fmt = make_row_formatter(["Integer", "Float", "Boolean", "String(3)", "Float[2]", "Integer;Float", "Text"],
                             ["n", "x", "b", "s", "arr", "pair", "t"])
    assert fmt([5, 0.5, False, "abc", [1.5, 2], (1, 2.5), "free text"]) == ["5", "0.5", "false", "abc", "1.5,2", "1;2.5", "free text"]
    # text from Bash plugins, numpy scalars and arrays
    assert fmt(["5", "1e-3", "true", "ab", "1,2", "3;4.5", 7]) == ["5", "1e-3", "true", "ab", "1,2", "3;4.5", "7"]
    # or one value per attrtables column, as prenacs plugins return them: the same fields
    assert fmt([5, 0.5, False, "abc", 1.5, 2, 1, 2.5, "t"]) == ["5", "0.5", "false", "abc", "1.5,2", "1;2.5", "t"]
    assert fmt([np.int64(3), np.float32(0.5), True, "", np.array([1.0]), (1, 2), None]) == ["3", "0.5", "true", "", "1.0", "1;2", ""]
    for bad, message in [
        (["x", 0.5, True, "a", [], (1, 2), ""], "n: expected an Integer, got str 'x'"),
        ([True, 0.5, True, "a", [], (1, 2), ""], "n: expected an Integer, got the boolean True"),
        ([1, "high", True, "a", [], (1, 2), ""], "x: expected a Float"),
        ([1, 0.5, "maybe", "a", [], (1, 2), ""], "b: expected a Boolean"),
        ([1, 0.5, True, "abcd", [], (1, 2), ""], "s: string of 4 characters is longer than String(3)"),
        ([1, 0.5, True, "a", [1, 2, 3], (1, 2), ""], "arr: 3 values are more than Float[2] allows"),
        ([1, 0.5, True, "a", [], (1,), ""], "pair: expected 2 components"),
        ([1, 0.5, True, "a", [], (1, 2), object()], "t: expected a string, got object"),
    ]:
        with pytest.raises(ResultValueError, match=re.escape(message)):
            fmt(bad)


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


@pytest.mark.parametrize("datatypes", [
    ["Integer"], ["Float", "Boolean"], ["String(3)", "Text", None], ["Integer", "Float", "Boolean", "String(2)", None],
])
def test_compiled_row_formatter_agrees_with_the_checked_one(datatypes):
    import itertools

    from provbatch.contract.results import _checked_row_formatter

    names = [f"a{i}" for i in range(len(datatypes))]
    fast, checked = make_row_formatter(datatypes, names), _checked_row_formatter(datatypes, names)
    samples = [0, -7, 2**70, 1.5, float("nan"), True, False, None, "", "ab", "abcd", "a\tb", "x\ny", "c\r", "12", "true", [1], object()]
    for values in itertools.islice(itertools.product(samples, repeat=len(datatypes)), 3000):
        for given in (list(values), tuple(values)):
            try:
                expected = checked(given)
            except ResultValueError as exc:
                with pytest.raises(ResultValueError, match=None) as info:
                    fast(given)
                assert str(info.value) == str(exc)
            else:
                assert fast(given) == expected
    for wrong in ([0] * (len(datatypes) + 1), "ab", 5):
        with pytest.raises(ResultValueError):
            fast(wrong)
    # no results: "no value for this entity" (prenacs), no row
    assert fast([]) == fast(()) == fast(None) == fast("") == []


def test_a_common_chunk_comes_back_as_its_result_lines_and_its_outcomes_are_the_same():
    """The chunk loop leaves the result lines of a chunk whose entities all succeeded without logs,
    outcomes for any other: the outcomes built from the lines are those of the per-entity path."""
    from provbatch.execution.base import Completed
    from provbatch.execution.runner import ChunkRunner, RunnerConfig, outcomes_of_lines
    from provbatch.plugins.base import PluginSpec

    module = types.ModuleType("plugin_under_test")
    table = {"a": ([1, "x y"], []), "b\tc": ([2, ""], []), "d\ne": ([3, "é"], None), "f": ([4, "z"], ["a log"]),
             "g": (["5", "w"], []), "h": ([], []), "i": (["six", "v"], [])}

    def compute(entity: str, **_kwargs: object) -> object:
        return table[entity]

    module.compute = compute  # type: ignore[attr-defined]
    module.finalize = None  # type: ignore[attr-defined]
    config = RunnerConfig(spec=PluginSpec("python", "x.py", {}), params={}, datatypes=("Integer", "Text"),
                          output_names=("n", "t"))
    runner = ChunkRunner(config, module=module)
    common = [("a", "a", 1), ("b\tc", "b\tc", 1), ("d\ne", "d\ne", 2)]
    result, _seconds = runner.compute_chunk(common)
    assert result == "a\t1\tx y\nb\tc\t2\t\nd\ne\t3\té\n"
    expected = [("a", ["1", "x y"], [], None), ("b\tc", ["2", ""], [], None), ("d\ne", ["3", "é"], [], None)]
    assert outcomes_of_lines(common, result) == expected
    completed = Completed.of(7, common, result, 0.5)
    assert completed.lines == result and completed.outcomes == expected
    assert completed.outcomes[0][2] is not completed.outcomes[1][2]  # each row has a log list of its own
    # any other entity (logs, a value the checked formatter converts, no value, a failure) keeps its outcome
    mixed = [("a", "a", 1), ("f", "f", 1), ("g", "g", 1), ("h", "h", 1), ("i", "i", 1)]
    result, _seconds = runner.compute_chunk(mixed)
    assert result[:4] == [("a", ["1", "x y"], [], None), ("f", ["4", "z"], ["a log"], None), ("g", ["5", "w"], [], None),
                          ("h", [], [], None)]
    assert result[4][0] == "i" and result[4][1] is None and result[4][3][0] == "ResultValueError"
    assert runner.run_chunk(common)[0] == expected
    with pytest.raises(ValueError):
        outcomes_of_lines(common[:2], "a\t1\tx y\n")


def test_a_chunk_of_first_attempts_of_ids_travels_as_one_string_and_any_other_as_it_is():
    from provbatch.execution.base import pack_chunk, unpack_chunk

    chunk = [("a", "a", 1), ("b c", "b c", 1), ("é", "é", 1)]
    assert pack_chunk(chunk) == "a\nb c\né"
    assert unpack_chunk(pack_chunk(chunk)) == chunk
    for other in ([("a", "a", 1), ("b", "b", 2)],  # a retry: its attempt number travels
                  [("a", "path/a", 1)],  # --glob / --idsproc: the entity is not its id
                  [("a\nb", "a\nb", 1), ("c", "c", 1)]):  # an id with a LF (the API): never split
        assert pack_chunk(other) is other and unpack_chunk(other) is other
