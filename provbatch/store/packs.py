"""Packed values: a computation's values of one entity as one row, and the outsets that say what each holds.

A database's cost of a bulk write is per row: InnoDB spends ~2-3 us of server
CPU on a row, wide or narrow, and SQLite and PostgreSQL a b-tree insert. A row
per value made a first load of ten attributes eleven rows per entity (ten
values and the entity); packed, it is two. See :mod:`.schema` for the tables.

An *outset* is the list of attribute ids (at most
:data:`~.schema.OUTSET_ATTRIBUTES`) whose values a row holds, in the
computation's column order. A row's values are its stored texts joined by a
tab, ``''`` for no value: a stored text is never empty (an empty field is no
value) and never holds a tab (it is a results-file field), so the join is
exact. A one-attribute outset's row holds the value itself (NULL for none):
its export reads the column as it is.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from .schema import OUTSET_ATTRIBUTES
from .schema import outsets as t_outsets


def outset_digest(attribute_ids: Sequence[int]) -> str:
    """The key of an outset: the sha256 of its attribute ids as :func:`outset_text` writes them."""
    return hashlib.sha256(outset_text(attribute_ids).encode("ascii")).hexdigest()


def outset_text(attribute_ids: Sequence[int | None]) -> str:
    return json.dumps(list(attribute_ids), separators=(",", ":"))


def split(attribute_ids: Sequence[int]) -> list[list[int]]:
    """A computation's attribute ids (column order) as the outsets it writes: consecutive runs of at most 63."""
    ids = list(attribute_ids)
    return [ids[start:start + OUTSET_ATTRIBUTES] for start in range(0, len(ids), OUTSET_ATTRIBUTES)]


def bits_of(attribute_ids: Sequence[int | None]) -> int:
    """The current bits of a row whose every value is current (a dropped attribute's bit is never set)."""
    return sum(1 << position for position, attribute_id in enumerate(attribute_ids) if attribute_id is not None)


def pack(columns: Sequence[Sequence[str | None]]) -> Sequence[str | None]:
    """The rows' ``values_text`` of columns of stored texts (one column per attribute of the outset).

    Raises ValueError when a value holds a tab (not a results-file field): it would split the row.
    """
    if len(columns) == 1:
        column = columns[0]
        try:  # one join in C (half the time of a generator over the texts, on the hot path of --store)
            joined = "".join(column)  # type: ignore[arg-type]
        except TypeError:  # some are None (no value)
            joined = "".join([text for text in column if text is not None])
        if "\t" in joined:
            raise ValueError("a stored value holds a tab")
        return column
    cleaned = [[text or "" for text in column] for column in columns]
    packed = ["\t".join(row) for row in zip(*cleaned)]
    if "\n".join(packed).count("\t") != len(packed) * (len(columns) - 1):
        raise ValueError("a stored value holds a tab")
    return packed


def unpack(values_text: str | None, width: int) -> list[str | None]:
    """The stored texts of a row of an outset of ``width`` attributes (None for no value)."""
    if width == 1:
        return [values_text]
    return [text or None for text in (values_text or "").split("\t")]


def column_at(texts: Sequence[str | None], position: int, width: int) -> list[str | None]:
    """The stored texts at ``position`` of rows of an outset of ``width`` attributes (None for no value)."""
    if width == 1:
        return list(texts)
    if position == 0:
        return [text.partition("\t")[0] or None for text in texts]  # type: ignore[union-attr]
    return [text.split("\t", position + 1)[position] or None for text in texts]  # type: ignore[union-attr]


@dataclass(frozen=True)
class Placement:
    """Where an attribute's values are: at ``position`` of the rows of ``outset`` (``width`` attributes)."""

    outset: int
    position: int
    width: int

    @property
    def bit(self) -> int:
        return 1 << self.position


@dataclass(frozen=True)
class Outset:
    id: int
    attributes: tuple[int | None, ...]

    @property
    def bits(self) -> int:
        return bits_of(self.attributes)


def read_outsets(connection: Any) -> list[Outset]:
    """Every outset (a small table: one per distinct list of attributes written together)."""
    rows = connection.execute(sa.select(t_outsets.c.id, t_outsets.c.attributes).order_by(t_outsets.c.id))
    return [Outset(outset_id, tuple(json.loads(text))) for outset_id, text in rows]


def placements(outsets: Sequence[Outset]) -> dict[int, list[Placement]]:
    """attribute id -> where its values are, by outset id."""
    found: dict[int, list[Placement]] = {}
    for outset in outsets:
        for position, attribute_id in enumerate(outset.attributes):
            if attribute_id is not None:
                found.setdefault(attribute_id, []).append(Placement(outset.id, position, len(outset.attributes)))
    return found


def ensure_outsets(engine: Any, attribute_ids: Sequence[int]) -> list[Outset]:
    """The outsets a computation of these attributes (column order) writes, created when missing.

    Each in a transaction of its own, committed: another writer sees an outset
    before any row of it. When a concurrent writer creates the same outset
    first, the insert fails on the unique digest and a new transaction (a new
    snapshot, on MariaDB's repeatable reads too) finds it.
    """
    found: list[Outset] = []
    for ids in split(attribute_ids):
        digest = outset_digest(ids)
        select = sa.select(t_outsets.c.id).where(t_outsets.c.digest == digest)
        outset_id = None
        for _attempt in range(3):
            try:
                with engine.begin() as connection:
                    outset_id = connection.execute(select).scalar()
                    if outset_id is None:
                        outset_id = connection.execute(t_outsets.insert().values(
                            digest=digest, attributes=outset_text(ids))).inserted_primary_key[0]
                break
            except sa.exc.IntegrityError:  # created by a concurrent writer meanwhile
                continue
        if outset_id is None:
            raise RuntimeError(f"the outset of attributes {ids} could be neither found nor created")
        found.append(Outset(int(outset_id), tuple(ids)))
    return found
