"""Packed values (:mod:`provbatch.store.packs`): a computation's values of one entity in one text, exactly."""

from __future__ import annotations

import pytest

from provbatch.store import packs
from provbatch.store.schema import OUTSET_ATTRIBUTES


def test_a_row_packs_its_values_and_each_is_read_back_at_its_position() -> None:
    columns = [["0.5", None, "a,b"], ["1", "2", None], [None, "x;y", "\\n"]]
    packed = packs.pack(columns)
    assert packed == ["0.5\t1\t", "\t2\tx;y", "a,b\t\t\\n"]
    assert [packs.unpack(text, 3) for text in packed] == [list(row) for row in zip(*columns)]
    assert [packs.column_at(packed, position, 3) for position in range(3)] == columns


def test_a_one_attribute_row_is_the_value_itself() -> None:
    column = ["0.5", None, "a b"]
    assert packs.pack([column]) is column
    assert packs.unpack(None, 1) == [None] and packs.column_at(column, 0, 1) == column


@pytest.mark.parametrize("columns", [[["a\tb"]], [[None, "a\tb"]], [["a", "b"], ["c\td", "e"]]])
def test_a_value_with_a_tab_is_refused_rather_than_split(columns: list[list[str]]) -> None:
    with pytest.raises(ValueError, match="holds a tab"):
        packs.pack(columns)


def test_a_computation_writes_outsets_of_at_most_63_attributes_and_their_bits() -> None:
    ids = list(range(1, 131))
    assert [len(chunk) for chunk in packs.split(ids)] == [OUTSET_ATTRIBUTES, OUTSET_ATTRIBUTES, 4]
    assert sum(packs.split(ids), []) == ids and packs.split([]) == []
    assert packs.bits_of([5, None, 7]) == 0b101
    assert packs.bits_of(list(range(OUTSET_ATTRIBUTES))) == 2 ** 63 - 1  # fits a signed 64-bit integer
    assert packs.outset_digest([1, 2]) == packs.outset_digest([1, 2]) != packs.outset_digest([2, 1])


def test_placements_say_where_each_attribute_is() -> None:
    outsets = [packs.Outset(1, (10, 11)), packs.Outset(2, (11,)), packs.Outset(3, (None, 12))]
    assert packs.placements(outsets) == {
        10: [packs.Placement(1, 0, 2)], 11: [packs.Placement(1, 1, 2), packs.Placement(2, 0, 1)], 12: [packs.Placement(3, 1, 2)]}
    assert packs.Placement(3, 1, 2).bit == 2
