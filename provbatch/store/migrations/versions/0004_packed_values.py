"""Values are packed: one row per (outset, entity, computation), not one per value; outsets say what a row holds.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

A database's cost of a bulk write is per row (InnoDB ~2-3 us of server CPU a
row, wide or narrow; SQLite and PostgreSQL a b-tree insert), and revision
0003 wrote a row per value: a first load of ten attributes was eleven rows
per entity (ten values and the entity). Here a computation's attributes are
split into *outsets* of at most 63 (``provbatch_outsets``: their attribute ids
in the computation's column order, shared by the computations that write the
same list), and the values one computation wrote for one entity are one row
per outset: its stored texts tab-joined ('' for no value; a one-attribute
outset's row holds the value itself), with a bit mask of which of them are
current. ``provbatch_current`` (outset, entity) holds the latest computation
of the outset for the entity; the rows of the outset's other computations are
in ``provbatch_history`` (every bit clear).

The old rows are moved a range of entities at a time (the old tables are
renamed aside first, their rows read in primary-key order attribute by
attribute, and dropped at the end), so a big store is never in memory at once:

- a computation's outsets are the attributes its old rows have, in the order
  of its ``output`` (ids not named there after, by id), split into runs of 63;
  computations with the same list share an outset;
- each (computation, entity) with old rows gets one row per outset that has
  some of them (a missing value is no value); bit i is set iff the old current
  row of (attribute i, entity) is that computation's;
- of an (outset, entity)'s rows, the one with bits set is current (were several
  to have some, which 0003's writer never left: the one with the most, then the
  latest computation; the others lose their bits and go to history); without
  bits, the latest computation's. The others go to history.

So each (attribute, entity, computation) is stored once, as before, and the
current value of (attribute, entity) is the one whose bit is set. The
downgrade unpacks every row again: a value is current iff its bit is set.

Written out in full (tables and the packing, not imported from schema.py or
packs.py), like 0001-0003, so that this revision stays what it was.
"""

import hashlib
import json
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

MYSQL: dict[str, Any] = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin", "mysql_engine": "InnoDB"}
CLUSTERED: dict[str, Any] = {**MYSQL, "sqlite_with_rowid": False}
#: the most attributes an outset holds: its current bits fit a signed 64-bit integer
OUTSET_ATTRIBUTES = 63
#: entities whose rows are moved at a time
_CHUNK = 10_000

#: a computation's packed row of an outset for an entity: (computation, current bits, values text)
Packed = tuple[int, int, "str | None"]


# --------------------------------------------------------------------------- the tables of 0004 and of 0003

def _create_outsets() -> sa.Table:
    return op.create_table(
        "provbatch_outsets",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("digest", sa.String(64), nullable=False, unique=True),
        sa.Column("attributes", sa.Text, nullable=False),
        **MYSQL,
    )


def _create_packed() -> tuple[sa.Table, sa.Table]:
    current = op.create_table(
        "provbatch_current",
        sa.Column("outset", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("entity", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("computation", sa.Integer, nullable=False),
        sa.Column("current_bits", sa.BigInteger, nullable=False),
        sa.Column("values_text", sa.Text),
        **CLUSTERED,
    )
    history = op.create_table(
        "provbatch_history",
        sa.Column("outset", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("entity", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("computation", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("values_text", sa.Text),
        **CLUSTERED,
    )
    return current, history


def _create_per_value() -> tuple[sa.Table, sa.Table]:
    """0003's tables (0001's provbatch_current with 0002's value column; 0002's provbatch_history)."""
    current = op.create_table(
        "provbatch_current",
        sa.Column("attribute", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("entity", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("computation", sa.Integer, nullable=False),
        sa.Column("value", sa.Text),
        **CLUSTERED,
    )
    history = op.create_table(
        "provbatch_history",
        sa.Column("attribute", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("entity", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("computation", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("value", sa.Text),
        **CLUSTERED,
    )
    return current, history


def _move_aside(table: str, suffix: str) -> str:
    """Rename ``table`` to ``table_suffix``; on PostgreSQL its primary key too (the index keeps its name
    through a table's rename, and the new table's ``<table>_pkey`` would collide with it)."""
    aside = f"{table}_{suffix}"
    op.rename_table(table, aside)
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        name = sa.inspect(bind).get_pk_constraint(aside).get("name")
        if name and name != f"{aside}_pkey":
            op.execute(f'ALTER TABLE {aside} RENAME CONSTRAINT "{name}" TO "{aside}_pkey"')
    return aside


# --------------------------------------------------------------------------- packing (as packs.py of 0004)

def _outset_text(attribute_ids: Sequence[int | None]) -> str:
    return json.dumps(list(attribute_ids), separators=(",", ":"))


def _digest(attribute_ids: Sequence[int]) -> str:
    return hashlib.sha256(_outset_text(attribute_ids).encode("ascii")).hexdigest()


def _pack(texts: Sequence[str | None]) -> str | None:
    if any(text is not None and "\t" in text for text in texts):
        raise RuntimeError(f"a stored value holds a tab, which packed rows cannot hold: {texts!r}")
    if len(texts) == 1:
        return texts[0]
    return "\t".join(text or "" for text in texts)


def _unpack(values_text: str | None, width: int) -> list[str | None]:
    if width == 1:
        return [values_text]
    texts = [text or None for text in (values_text or "").split("\t")]
    if len(texts) != width:
        raise RuntimeError(f"a packed row holds {len(texts)} values, its outset {width}: {values_text!r}")
    return texts


# --------------------------------------------------------------------------- reading a range of entities

def _entity_ranges(connection: Any) -> Iterator[tuple[int | None, int | None]]:
    """(after, up to) bounds of entity ids, _CHUNK entities of provbatch_entities each; the first has no lower
    bound and the last no upper one, so that together they cover every id (a value's entity has no foreign key)."""
    after: int | None = None
    while True:
        where = "" if after is None else f" WHERE id > {after}"
        up_to = connection.execute(sa.text(
            f"SELECT id FROM provbatch_entities{where} ORDER BY id LIMIT 1 OFFSET {_CHUNK - 1}")).scalar()
        yield after, None if up_to is None else int(up_to)
        if up_to is None:
            return
        after = int(up_to)


def _rows(connection: Any, columns: str, table: str, key: str, key_value: int,
          bounds: tuple[int | None, int | None]) -> Any:
    """Rows of ``table`` with ``key`` = ``key_value`` (the leading column of its primary key) and an entity
    in ``bounds``, in primary-key order: a range of the primary key."""
    after, up_to = bounds
    where = f"{key} = {int(key_value)}"
    if after is not None:
        where += f" AND entity > {int(after)}"
    if up_to is not None:
        where += f" AND entity <= {int(up_to)}"
    return connection.execute(sa.text(f"SELECT {columns} FROM {table} WHERE {where} ORDER BY entity"))


# --------------------------------------------------------------------------- upgrade

def _computation_attributes(connection: Any, current: str, history: str) -> dict[int, list[int]]:
    """computation id -> the attribute ids of its old rows, in its output's order (others after, by id)."""
    names = dict(connection.execute(sa.text("SELECT id, name FROM provbatch_attributes")).all())
    outputs = dict(connection.execute(sa.text("SELECT id, output FROM provbatch_computations")).all())
    found: dict[int, set[int]] = {}
    for table in (current, history):
        for computation, attribute in connection.execute(sa.text(f"SELECT DISTINCT computation, attribute FROM {table}")):
            found.setdefault(int(computation), set()).add(int(attribute))
    ordered: dict[int, list[int]] = {}
    for computation in sorted(found):
        try:
            output = json.loads(outputs.get(computation) or "[]")
        except ValueError:
            output = []
        position: dict[str, int] = {}
        for index, name in enumerate(output if isinstance(output, list) else []):
            position.setdefault(str(name), index)

        def order(attribute: int, position: dict[str, int] = position) -> tuple[int, int, int]:
            name = names.get(attribute)
            return (0, position[name], attribute) if name in position else (1, 0, attribute)

        ordered[computation] = sorted(found[computation], key=order)
    return ordered


def _make_outsets(connection: Any, table: sa.Table, ordered: dict[int, list[int]]) -> dict[int, list[tuple[int, list[int]]]]:
    """computation id -> its outsets (id, attribute ids), created in the order of the computations."""
    by_digest: dict[str, int] = {}
    outsets: dict[int, list[tuple[int, list[int]]]] = {}
    for computation, attribute_ids in ordered.items():
        outsets[computation] = []
        for start in range(0, len(attribute_ids), OUTSET_ATTRIBUTES):
            ids = attribute_ids[start:start + OUTSET_ATTRIBUTES]
            digest = _digest(ids)
            if digest not in by_digest:
                inserted = connection.execute(table.insert().values(digest=digest, attributes=_outset_text(ids)))
                by_digest[digest] = int(inserted.inserted_primary_key[0])
            outsets[computation].append((by_digest[digest], ids))
    return outsets


def _choose(rows: list[Packed]) -> tuple[Packed, list[Packed]]:
    """The current row of an (outset, entity) and the rows that go to history."""
    with_bits = [row for row in rows if row[1]]
    if with_bits:
        chosen = max(with_bits, key=lambda row: (row[1].bit_count(), row[0]))
    else:
        chosen = max(rows, key=lambda row: row[0])
    return chosen, [row for row in rows if row is not chosen]


def _pack_range(connection: Any, old_current: str, old_history: str, attributes: Sequence[int],
                outsets: dict[int, list[tuple[int, list[int]]]],
                bounds: tuple[int | None, int | None]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The new current and history rows of the entities in ``bounds``."""
    values: dict[tuple[int, int], dict[int, str | None]] = {}  # (entity, computation) -> attribute -> value
    current_of: dict[tuple[int, int], int] = {}  # (attribute, entity) -> its current computation
    for attribute in attributes:
        for entity, computation, value in _rows(connection, "entity, computation, value", old_current,
                                                "attribute", attribute, bounds):
            values.setdefault((int(entity), int(computation)), {})[attribute] = value
            current_of[(attribute, int(entity))] = int(computation)
        for entity, computation, value in _rows(connection, "entity, computation, value", old_history,
                                                "attribute", attribute, bounds):
            values.setdefault((int(entity), int(computation)), {})[attribute] = value
    packed: dict[tuple[int, int], list[Packed]] = {}  # (outset, entity) -> its computations' rows
    for (entity, computation), stored in values.items():
        for outset, ids in outsets[computation]:
            if not any(attribute in stored for attribute in ids):
                continue
            bits = sum(1 << position for position, attribute in enumerate(ids)
                       if current_of.get((attribute, entity)) == computation)
            texts = [stored.get(attribute) for attribute in ids]
            packed.setdefault((outset, entity), []).append((computation, bits, _pack(texts)))
    current_rows: list[dict[str, Any]] = []
    history_rows: list[dict[str, Any]] = []
    for (outset, entity), rows in sorted(packed.items()):
        (computation, bits, text), others = _choose(rows)
        current_rows.append({"outset": outset, "entity": entity, "computation": computation,
                             "current_bits": bits, "values_text": text})
        history_rows.extend({"outset": outset, "entity": entity, "computation": other, "values_text": other_text}
                            for other, _bits, other_text in sorted(others))
    return current_rows, history_rows


def upgrade() -> None:
    connection = op.get_bind()
    old_current = _move_aside("provbatch_current", "0003")
    old_history = _move_aside("provbatch_history", "0003")
    outsets_table = _create_outsets()
    current, history = _create_packed()

    ordered = _computation_attributes(connection, old_current, old_history)
    outsets = _make_outsets(connection, outsets_table, ordered)
    attributes = sorted({attribute for ids in ordered.values() for attribute in ids})
    if attributes:
        for bounds in _entity_ranges(connection):
            current_rows, history_rows = _pack_range(connection, old_current, old_history, attributes, outsets, bounds)
            if current_rows:
                connection.execute(current.insert(), current_rows)
            if history_rows:
                connection.execute(history.insert(), history_rows)
    op.drop_table(old_current)
    op.drop_table(old_history)


# --------------------------------------------------------------------------- downgrade

def _unpack_range(connection: Any, packed_current: str, packed_history: str,
                  outsets: Sequence[tuple[int, list[int | None]]],
                  bounds: tuple[int | None, int | None]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The per-value current and history rows of the entities in ``bounds``."""
    current_rows: list[dict[str, Any]] = []
    history_rows: list[dict[str, Any]] = []
    for outset, ids in outsets:
        rows = [(entity, computation, bits, text) for entity, computation, bits, text in _rows(
            connection, "entity, computation, current_bits, values_text", packed_current, "outset", outset, bounds)]
        rows += [(entity, computation, 0, text) for entity, computation, text in _rows(
            connection, "entity, computation, values_text", packed_history, "outset", outset, bounds)]
        for entity, computation, bits, text in rows:
            for position, (attribute, value) in enumerate(zip(ids, _unpack(text, len(ids)))):
                if attribute is None:  # a dropped attribute: no value of it is left
                    continue
                row = {"attribute": attribute, "entity": int(entity), "computation": int(computation), "value": value}
                (current_rows if int(bits) >> position & 1 else history_rows).append(row)
    current_rows.sort(key=lambda row: (row["attribute"], row["entity"]))
    history_rows.sort(key=lambda row: (row["attribute"], row["entity"], row["computation"]))
    return current_rows, history_rows


def downgrade() -> None:
    connection = op.get_bind()
    packed_current = _move_aside("provbatch_current", "0004")
    packed_history = _move_aside("provbatch_history", "0004")
    current, history = _create_per_value()

    outsets = [(int(outset), list(json.loads(text))) for outset, text in connection.execute(
        sa.text("SELECT id, attributes FROM provbatch_outsets ORDER BY id"))]
    if outsets:
        for bounds in _entity_ranges(connection):
            current_rows, history_rows = _unpack_range(connection, packed_current, packed_history, outsets, bounds)
            if current_rows:
                connection.execute(current.insert(), current_rows)
            if history_rows:
                connection.execute(history.insert(), history_rows)
    op.drop_table(packed_current)
    op.drop_table(packed_history)
    op.drop_table("provbatch_outsets")
