"""The one datatype grammar (provbatch.contract.datatypes) and its three users agreeing on it."""

from __future__ import annotations

import pytest

from provbatch.contract import datatypes
from provbatch.contract.attributes import is_valid_datatype
from provbatch.contract.datatypes import Array, Composite, DatatypeError, Scalar, parse
from provbatch.contract.parameters import converter_for
from provbatch.contract.results import ResultValueError, formatter_for
from provbatch.outputs.results_reader import parser_for


def test_strict_trees():
    assert parse("Integer") == Scalar("Integer")
    assert parse(" String(12) ") == Scalar("String", 12)  # attrtables' bounded string
    assert parse("String[12]") == Array(Scalar("String"), 12)  # an array of 12 strings
    assert parse("Float[3]") == Array(Scalar("Float"), 3)
    assert parse("String(5)[2]") == Array(Scalar("String", 5), 2)
    assert parse("Integer; Float[2]") == Composite((Scalar("Integer"), Array(Scalar("Float"), 2)))
    assert parse("Integer; Float[2]").text == "Integer; Float[2]"
    assert parse("Integer; Float[2]").parts[1].text == "Float[2]"


@pytest.mark.parametrize("text", ["integer", "String(0)", "String[0]", "int", "Float[]", "", "Integer;", "Integer[2][3]",
                                  "yaml", "Text [3]", "Complex"])
def test_strict_refuses(text):
    with pytest.raises(DatatypeError) as info:
        parse(text)
    assert str(info.value) == f"unknown datatype '{text}' (use {datatypes.SYNTAX})"
    assert not is_valid_datatype(text)


def test_lenient_trees():
    assert parse("INTEGER", strict=False) == Scalar("Integer")
    assert parse("str", strict=False) == Scalar("Text")
    assert parse("string", strict=False) == Scalar("Text")
    assert parse("string(4)", strict=False) == Scalar("String", 4)
    assert parse("json", strict=False) == Scalar("yaml")
    assert parse("int[2][3]", strict=False) == Array(Array(Scalar("Integer"), 2), 3)
    assert parse("bool;Text[2]", strict=False) == Composite((Scalar("Boolean"), Array(Scalar("Text"), 2)))


def test_lenient_messages_name_the_failing_piece():
    with pytest.raises(DatatypeError) as info:
        parse("Integer;Complex", strict=False)
    assert str(info.value) == f"unknown datatype 'Complex' (use {datatypes.PARAMETER_SYNTAX})"
    with pytest.raises(DatatypeError) as info:
        parse("Complex[3]", strict=False)
    assert str(info.value) == f"unknown datatype 'complex' (use {datatypes.PARAMETER_SYNTAX})"


def test_non_string():
    with pytest.raises(DatatypeError, match="a datatype is a string, not int"):
        parse(5)  # type: ignore[arg-type]
    assert not is_valid_datatype(5)  # type: ignore[arg-type]


@pytest.mark.parametrize("datatype,value,text,typed", [
    ("Integer", "42", "42", 42),
    ("Float", "0.25", "0.25", 0.25),
    ("Boolean", "yes", "true", True),
    ("String(3)", "abc", "abc", "abc"),
    ("Float[2]", "1.5,2", "1.5,2.0", [1.5, 2.0]),
    ("Integer;Float", "1;2.5", "1;2.5", (1, 2.5)),
])
def test_the_three_users_agree(datatype, value, text, typed):
    """A parameter converted, then returned as a result, formats to the text the reader reads back."""
    converted = converter_for(datatype)(value)
    assert formatter_for(datatype)(converted) == text
    assert parser_for(datatype)(text) == typed


def test_limits_are_checked_by_each_user():
    with pytest.raises(ValueError, match="longer than 3"):
        converter_for("String(3)")("abcd")
    with pytest.raises(ResultValueError, match=r"longer than String\(3\)"):
        formatter_for("String(3)")("abcd")
    with pytest.raises(ValueError, match="more than 2"):
        converter_for("Float[2]")("1,2,3")
    with pytest.raises(ResultValueError, match=r"3 values are more than Float\[2\] allows"):
        formatter_for("Float[2]")([1.0, 2.0, 3.0])


def test_rows_of_lines_are_the_rows_a_row_at_a_time_gives():
    """The API's rows of a clean chunk, built column by column, are exactly those of row_parser row by row:
    every datatype kind, empty fields (None), an id holding what a field may not; each row has a list of
    logs of its own."""
    from provbatch.contract.results import rows_are_clean
    from provbatch.outputs.results_reader import columns_parser, row_parser, rows_of_lines

    kinds = ["Integer", "Float", "Boolean", "String(5)", "Integer[3]", "Float;Boolean", None]
    lines = [["e1", "7", "0.5", "true", "abc", "1,2,3", "0.25;false", "free text"],
             ["e 2;é", "-3", "", "false", "", "", "1;true", ""],
             ["e3", "", "1e3", "", "x", "4", "-0.5;true", "t"]]
    text = "".join("\t".join(line) + "\n" for line in lines)
    assert rows_are_clean(text, len(lines), len(kinds))
    parse = row_parser(kinds)
    by_row = [(line[0], parse(line[1:]), []) for line in lines]
    assert by_row[1][1] == [-3, None, False, None, None, (1.0, True), None]
    rows = rows_of_lines(text, len(kinds), columns_parser(kinds))
    assert rows == by_row
    assert [type(value) for value in rows[0][1]] == [int, float, bool, str, list, tuple, str]
    assert len({id(logs) for _entity, _values, logs in rows}) == len(rows)
    assert rows_of_lines(text, len(kinds)) == [(line[0], line[1:], []) for line in lines]  # untyped: the texts
    assert rows_of_lines("", len(kinds), columns_parser(kinds)) == []
