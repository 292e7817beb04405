"""Revision 0004 of the results store: every value of a 0003 store packed into outset rows, and back.

Each test builds a store at revision 0003 by raw inserts, as 0003's writer left it, migrates it
(``Store.init``) and checks the exact rows of ``provbatch_outsets``, ``provbatch_current`` and
``provbatch_history``; then the answers of the public API, and that the downgrade restores 0003's
tables and rows exactly. On SQLite and on real PostgreSQL and MariaDB servers (``store_url``).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from typing import Any

import pytest
import sqlalchemy as sa

from provbatch.store import Store, migrate
from provbatch.store.records import canonical_json, signature
from provbatch.store.url import create_engine

U = [str(uuid.UUID(int=i)) for i in range(10)]
ALL_BITS = (1 << 63) - 1
WIDE = [f"w{i:02d}" for i in range(70)]
#: a stored text with a backslash and a comma (and no tab: stored texts never hold one)
ODD_TEXT = "x\\y,z"


def _insert(connection: sa.Connection, table: str, **row: Any) -> None:
    connection.execute(sa.text(f"INSERT INTO {table} ({', '.join(row)}) VALUES ({', '.join(':' + key for key in row)})"), row)


def _id(connection: sa.Connection, table: str, column: str, value: str) -> int:
    return connection.execute(sa.text(f"SELECT id FROM {table} WHERE {column} = :v"), {"v": value}).scalar_one()


class OldStore:
    """The rows of a store at revision 0003, inserted raw; ids are the database's (looked up by name)."""

    def __init__(self, connection: sa.Connection) -> None:
        self.connection = connection
        self.attribute: dict[str, int] = {}
        self.computation: dict[str, int] = {}
        self.entity: dict[str, int] = {}
        self.current: dict[tuple[int, int], tuple[int, str | None]] = {}  # (attribute, entity) -> (computation, value)
        self.history: dict[tuple[int, int, int], str | None] = {}  # (attribute, entity, computation) -> value

    def attributes(self, datatypes: dict[str, str]) -> None:
        for name, datatype in datatypes.items():
            _insert(self.connection, "provbatch_attributes", name=name, datatype=datatype)
            self.attribute[name] = _id(self.connection, "provbatch_attributes", "name", name)

    def computation_of(self, key: str, uuid_: str, plugin_id: str, version: str, output: list[str]) -> None:
        plugin = self.connection.execute(sa.text("SELECT id FROM provbatch_plugins WHERE plugin_id = :p AND version = :v"),
                                         {"p": plugin_id, "v": version}).scalar()
        if plugin is None:
            _insert(self.connection, "provbatch_plugins", plugin_id=plugin_id, version=version, lang="python",
                    sha256="s1", description=canonical_json({"OUTPUT": output}), recorded_at="2026-01-01T00:00:00+00:00")
            plugin = self.connection.execute(sa.text("SELECT MAX(id) FROM provbatch_plugins")).scalar_one()
        _insert(self.connection, "provbatch_computations", uuid=uuid_, plugin=plugin, plugin_sha256="s1",
                parameters=canonical_json({}), signature=signature(plugin_id, version, "s1", {}),
                output=json.dumps(output), comp_status="completed", origin="provbatch-report",
                loaded_at="2026-01-01T00:00:00+00:00")
        self.computation[key] = _id(self.connection, "provbatch_computations", "uuid", uuid_)

    def entities(self, names: Sequence[str]) -> None:
        for name in names:
            _insert(self.connection, "provbatch_entities", name_key=name, name=name)
            self.entity[name] = _id(self.connection, "provbatch_entities", "name_key", name)

    def write(self, computation: str, entity: str, values: dict[str, str | None]) -> None:
        """What 0003's writer did when ``computation`` wrote ``values`` of ``entity``: each current row of
        another computation to history; the computation's own row in history back to current (a reload)."""
        c, e = self.computation[computation], self.entity[entity]
        for name, value in values.items():
            a = self.attribute[name]
            if (a, e) in self.current and self.current[(a, e)][0] != c:
                old_computation, old_value = self.current[(a, e)]
                self.history[(a, e, old_computation)] = old_value
            if (a, e, c) in self.history:
                value = self.history.pop((a, e, c))  # as it was stored
            self.current[(a, e)] = (c, value)

    def commit_rows(self) -> None:
        for (a, e), (c, value) in self.current.items():
            _insert(self.connection, "provbatch_current", attribute=a, entity=e, computation=c, value=value)
        for (a, e, c), value in self.history.items():
            _insert(self.connection, "provbatch_history", attribute=a, entity=e, computation=c, value=value)

    def rows(self) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        return (sorted((a, e, c, value) for (a, e), (c, value) in self.current.items()),
                sorted((a, e, c, value) for (a, e, c), value in self.history.items()))


def _old_rows(url: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    engine = create_engine(url)
    with engine.connect() as connection:
        current, history = (sorted(tuple(row) for row in connection.execute(sa.text(
            f"SELECT attribute, entity, computation, value FROM {table}"))) for table in ("provbatch_current", "provbatch_history"))
    engine.dispose()
    return current, history


def _packed_rows(url: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    engine = create_engine(url)
    with engine.connect() as connection:
        outsets = [tuple(row) for row in connection.execute(sa.text("SELECT id, digest, attributes FROM provbatch_outsets ORDER BY id"))]
        current = sorted(tuple(row) for row in connection.execute(sa.text(
            "SELECT outset, entity, computation, current_bits, values_text FROM provbatch_current")))
        history = sorted(tuple(row) for row in connection.execute(sa.text(
            "SELECT outset, entity, computation, values_text FROM provbatch_history")))
    engine.dispose()
    return outsets, current, history


def _outset_row(outset_id: int, attribute_ids: list[int]) -> tuple[int, str, str]:
    text = json.dumps(attribute_ids, separators=(",", ":"))
    return outset_id, hashlib.sha256(text.encode("ascii")).hexdigest(), text


def _downgrade_to_0003(url: str) -> None:
    from alembic import command

    engine = create_engine(url)
    with engine.connect() as connection, connection.begin():
        command.downgrade(migrate._config(connection), "0003")
        assert migrate.current_revision(connection) == "0003"
    engine.dispose()


def _schema(url: str) -> dict[str, Any]:
    """What a store's tables are, as the database reflects them (types, keys, indexes, options)."""
    engine = create_engine(url)
    with engine.connect() as connection:
        inspector = sa.inspect(connection)
        tables: dict[str, Any] = {}
        for table in sorted(inspector.get_table_names()):
            pk = inspector.get_pk_constraint(table)
            described: dict[str, Any] = {
                "columns": [(c["name"], str(c["type"]), c["nullable"], c.get("autoincrement")) for c in inspector.get_columns(table)],
                "pk": (pk["constrained_columns"], pk.get("name")),
                "indexes": sorted((i["name"], tuple(i["column_names"]), i["unique"]) for i in inspector.get_indexes(table)),
                "unique": sorted((u["name"] or "", tuple(u["column_names"])) for u in inspector.get_unique_constraints(table)),
            }
            if connection.dialect.name == "mysql":  # charset, collation, engine (PostgreSQL and SQLite reflect none)
                described["options"] = {key: value for key, value in inspector.get_table_options(table).items()
                                        if "auto_increment" not in key}
            if connection.dialect.name == "sqlite":
                sql = connection.execute(sa.text("SELECT sql FROM sqlite_master WHERE name = :t"), {"t": table}).scalar_one()
                described["without_rowid"] = sql.rstrip().endswith("WITHOUT ROWID")
            tables[table] = described
    engine.dispose()
    return tables


@pytest.fixture
def other_url(store_url: str, db_servers, tmp_path) -> str:
    """A second new database on the same backend as ``store_url``."""
    if store_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'other.sqlite'}"
    return db_servers("postgresql" if store_url.startswith("postgresql") else "mariadb").create_database()


def _typed(datatype: str, text: str | None) -> Any:
    if text is None:
        return None
    return {"Float": float, "Integer": int}.get(datatype, str)(text)


def test_a_0003_store_is_packed_into_outsets_and_every_answer_stays(store_url: str, other_url: str) -> None:
    """Plugin P1 [a, b]: C1 loads e1-e3; its new version C2 recomputes e1 and e2; P2 [b]: C3 recomputes e2's
    b (and writes e5's b, no value); C1 is loaded again for e1; PW: C4 writes 70 attributes of e1 and e4 (two
    outsets, 63 + 7); P3 [c, a]: C5 writes e5 (a text with a backslash and a comma, and no value). Packed:
    the exact rows; read: the same values, computations and current flags as before; downgraded: the exact
    0003 tables and rows."""
    datatypes = {"a": "Float", "b": "Integer", "c": "Text", **dict.fromkeys(WIDE, "Text")}
    engine = create_engine(store_url)
    assert migrate.upgrade(engine, to="0003") == (None, "0003")
    with engine.begin() as connection:
        old = OldStore(connection)
        old.attributes(datatypes)
        old.computation_of("C1", U[1], "P1", "1", ["a", "b"])
        old.computation_of("C2", U[2], "P1", "2", ["a", "b"])
        old.computation_of("C3", U[3], "P2", "1", ["b"])
        old.computation_of("C4", U[4], "PW", "1", WIDE)
        old.computation_of("C5", U[5], "P3", "1", ["c", "a"])
        old.entities(["e1", "e2", "e3", "e4", "e5"])
        old.write("C1", "e1", {"a": "1.0", "b": "10"})
        old.write("C1", "e2", {"a": "2.0", "b": "20"})
        old.write("C1", "e3", {"a": "3.0", "b": None})
        old.write("C2", "e1", {"a": "1.1", "b": "11"})
        old.write("C2", "e2", {"a": "2.1", "b": "21"})
        old.write("C3", "e2", {"b": "22"})
        old.write("C3", "e5", {"b": None})
        old.write("C1", "e1", {"a": "1.0", "b": "10"})  # the reload: C1's values of e1 back from history
        for entity in ("e1", "e4"):
            old.write("C4", entity, {name: None if (entity, name) == ("e4", "w65") else f"{name}:{entity}" for name in WIDE})
        old.write("C5", "e5", {"c": ODD_TEXT, "a": None})
        old.commit_rows()
    engine.dispose()
    a, b, c = (old.attribute[name] for name in "abc")
    w = [old.attribute[name] for name in WIDE]
    c1, c2, c3, c4, c5 = (old.computation[f"C{i}"] for i in range(1, 6))
    e1, e2, e3, e4, e5 = (old.entity[f"e{i}"] for i in range(1, 6))
    assert old.rows() == (  # the 0003 rows the story left (as 0003's writer did)
        sorted([(a, e1, c1, "1.0"), (b, e1, c1, "10"), (a, e2, c2, "2.1"), (b, e2, c3, "22"), (a, e3, c1, "3.0"),
                (b, e3, c1, None), (b, e5, c3, None), (c, e5, c5, ODD_TEXT), (a, e5, c5, None),
                *((w[i], e, c4, None if (e, i) == (e4, 65) else f"{WIDE[i]}:{name}")
                  for i in range(70) for e, name in ((e1, "e1"), (e4, "e4")))]),
        sorted([(a, e1, c2, "1.1"), (b, e1, c2, "11"), (a, e2, c1, "2.0"), (b, e2, c1, "20"), (b, e2, c2, "21")]))
    old_current, old_history = _old_rows(store_url)
    assert (old_current, old_history) == old.rows()
    schema_0003 = _schema(store_url)

    assert Store.init(store_url)[1:] == ("0003", "0005")

    outsets, current, history = _packed_rows(store_url)
    assert [row[2] for row in outsets] == [json.dumps(ids, separators=(",", ":")) for ids in
                                           ([a, b], [b], w[:63], w[63:], [c, a])]  # by computation, in output order
    o_ab, o_b, o_w1, o_w2, o_ca = (row[0] for row in outsets)
    assert outsets == [_outset_row(o, ids) for o, ids in zip((o_ab, o_b, o_w1, o_w2, o_ca), ([a, b], [b], w[:63], w[63:], [c, a]))]

    def wide(entity: str, start: int, stop: int) -> str:
        return "\t".join("" if (entity, i) == ("e4", 65) else f"{WIDE[i]}:{entity}" for i in range(start, stop))

    assert current == sorted([
        (o_ab, e1, c1, 0b11, "1.0\t10"),  # reloaded: C1's row is current again, every bit set
        (o_ab, e2, c2, 0b01, "2.1\t21"),  # a is C2's, b is C3's now (C2's b value stays, bit clear)
        (o_ab, e3, c1, 0b11, "3.0\t"),  # b: no value
        (o_b, e2, c3, 1, "22"),
        (o_b, e5, c3, 1, None),  # a one-attribute outset: the value itself, NULL for none
        (o_w1, e1, c4, ALL_BITS, wide("e1", 0, 63)), (o_w1, e4, c4, ALL_BITS, wide("e4", 0, 63)),
        (o_w2, e1, c4, 0b1111111, wide("e1", 63, 70)), (o_w2, e4, c4, 0b1111111, wide("e4", 63, 70)),
        (o_ca, e5, c5, 0b11, ODD_TEXT + "\t"),
    ])
    assert "\t\t" in wide("e4", 63, 70)
    assert history == sorted([(o_ab, e1, c2, "1.1\t11"), (o_ab, e2, c1, "2.0\t20")])

    # the public API gives what the 0003 rows meant (provbatch/store/store.py reads the packed rows)
    names = {pk: name for name, pk in old.attribute.items()}
    entity_names = {pk: name for name, pk in old.entity.items()}
    uuids = {old.computation[f"C{i}"]: U[i] for i in range(1, 6)}
    expected = sorted(
        [(entity_names[e], names[at], _typed(datatypes[names[at]], value), uuids[co], True) for at, e, co, value in old_current]
        + [(entity_names[e], names[at], _typed(datatypes[names[at]], value), uuids[co], False) for at, e, co, value in old_history],
        key=repr)
    with Store(store_url) as store:
        got = sorted(((v["entity"], v["attribute"], v["value"], v["computation"], v["current"])
                      for v in store.iter_values(history=True)), key=repr)
        assert got == expected
        counts: dict[tuple[int, int], int] = {}
        for at, e, _co, _value in old_current + old_history:
            counts[(at, e)] = counts.get((at, e), 0) + 1
        answers = {}
        for at, e, _co, _value in old_current:
            why = store.why(entity_names[e], names[at])
            assert why is not None
            answers[(entity_names[e], names[at])] = (why["value"], why["computation"], why["n_values"])
        assert answers == {(entity_names[e], names[at]): (_typed(datatypes[names[at]], value), uuids[co], counts[(at, e)])
                           for at, e, co, value in old_current}
        assert answers[("e2", "b")] == (22, U[3], 3) and answers[("e1", "a")] == (1.0, U[1], 2)
        assert answers[("e5", "c")] == (ODD_TEXT, U[5], 1)

    # and back: 0003's tables and rows, exactly
    _downgrade_to_0003(store_url)
    assert _old_rows(store_url) == (old_current, old_history)
    assert _schema(store_url) == schema_0003
    engine = create_engine(other_url)
    migrate.upgrade(engine, to="0003")
    engine.dispose()
    assert _schema(store_url) == _schema(other_url)  # as 0001-0003 build them


def test_inconsistent_current_rows_and_attributes_not_in_the_output_get_one_current_row(store_url: str) -> None:
    """Rows 0003's writer never left, migrated by the stated rules: two computations of one outset with
    current values of one entity: the one with more current values is current (the other's lose their
    bits and go to history), a tie goes to the later computation. Attributes not in a computation's output
    come after the output's, by id. The downgrade gives every value back, current where its bit stayed."""
    engine = create_engine(store_url)
    migrate.upgrade(engine, to="0003")
    with engine.begin() as connection:
        old = OldStore(connection)
        old.attributes({"a": "Text", "b": "Text", "c": "Text", "x": "Text", "y": "Text"})
        old.computation_of("C1", U[1], "P", "1", ["b", "a", "c"])
        old.computation_of("C2", U[2], "P", "2", ["b", "a", "c"])
        old.computation_of("C3", U[3], "Q", "1", ["a"])
        old.entities(["e1", "e2", "e3"])
        a, b, c, x, y = (old.attribute[name] for name in "abcxy")
        c1, c2, c3 = (old.computation[key] for key in ("C1", "C2", "C3"))
        e1, e2, e3 = (old.entity[name] for name in ("e1", "e2", "e3"))
        old.current = {(a, e1): (c1, "a1"), (b, e1): (c1, "b1"), (c, e1): (c2, "c2"),  # C1: two current values, C2: one
                       (a, e2): (c1, "a1"), (b, e2): (c2, "b2"),  # one each; no c values
                       (a, e3): (c3, "a3"), (x, e3): (c3, "x3")}
        old.history = {(c, e1, c1): "c1", (a, e1, c2): "a2", (b, e1, c2): "b2",
                       (b, e2, c1): "b1", (a, e2, c2): "a2",
                       (y, e3, c3): "y3"}
        old.commit_rows()
    engine.dispose()
    old_current, old_history = _old_rows(store_url)

    assert Store.init(store_url)[1:] == ("0003", "0005")
    outsets, current, history = _packed_rows(store_url)
    o_bac, o_axy = (row[0] for row in outsets)
    assert outsets == [_outset_row(o_bac, [b, a, c]), _outset_row(o_axy, [a, x, y])]
    assert current == sorted([
        (o_bac, e1, c1, 0b011, "b1\ta1\tc1"),  # two bits beat C2's one
        (o_bac, e2, c2, 0b001, "b2\ta2\t"),  # a tie: the later computation; no c value
        (o_axy, e3, c3, 0b011, "a3\tx3\ty3"),  # y3 was history
    ])
    assert history == sorted([(o_bac, e1, c2, "b2\ta2\tc2"), (o_bac, e2, c1, "b1\ta1\t")])

    _downgrade_to_0003(store_url)
    down_current, down_history = _old_rows(store_url)
    assert down_current == sorted([(b, e1, c1, "b1"), (a, e1, c1, "a1"), (b, e2, c2, "b2"), (a, e3, c3, "a3"), (x, e3, c3, "x3")])
    # every value is kept; the cleared bits (c of e1, a of e2) and the missing c of e2 (none) are history now
    assert down_history == sorted([(c, e1, c2, "c2"), (c, e1, c1, "c1"), (a, e1, c2, "a2"), (b, e1, c2, "b2"),
                                   (a, e2, c1, "a1"), (b, e2, c1, "b1"), (a, e2, c2, "a2"), (c, e2, c1, None),
                                   (c, e2, c2, None), (y, e3, c3, "y3")])
    assert set(old_current) - set(down_current) == {(c, e1, c2, "c2"), (a, e2, c1, "a1")}


def test_a_store_of_more_entities_than_one_chunk_is_moved_a_range_at_a_time(store_url: str) -> None:
    """20,001 entities (three ranges of entities, the last one short), and values of an entity id that
    provbatch_entities lacks above the last (the unbounded last range): every value is moved, and back."""
    n = 20_001
    engine = create_engine(store_url)
    migrate.upgrade(engine, to="0003")
    with engine.begin() as connection:
        old = OldStore(connection)
        old.attributes({"a": "Integer", "b": "Integer"})
        old.computation_of("C1", U[1], "P", "1", ["a", "b"])
        old.computation_of("C2", U[2], "Q", "1", ["a"])
        connection.execute(sa.text("INSERT INTO provbatch_entities (name_key, name) VALUES (:k, :n)"),
                           [{"k": f"e{i:06d}", "n": f"e{i:06d}"} for i in range(n)])
        ids = connection.execute(sa.text("SELECT id FROM provbatch_entities ORDER BY id")).scalars().all()
        a, b, c1, c2 = old.attribute["a"], old.attribute["b"], old.computation["C1"], old.computation["C2"]
        orphan = ids[-1] + 1000
        current = [(a, e, c2 if i % 2 == 0 else c1, str(i)) for i, e in enumerate([*ids, orphan])]
        current += [(b, e, c1, str(-i)) for i, e in enumerate([*ids, orphan])]
        history = [(a, e, c1, f"{i}h") for i, e in enumerate([*ids, orphan]) if i % 2 == 0]
        for table, rows in (("provbatch_current", current), ("provbatch_history", history)):
            connection.execute(sa.text(f"INSERT INTO {table} (attribute, entity, computation, value) VALUES (:a, :e, :c, :v)"),
                               [{"a": at, "e": e, "c": co, "v": value} for at, e, co, value in rows])
    engine.dispose()
    old_rows = _old_rows(store_url)
    assert old_rows == (sorted(current), sorted(history))

    assert Store.init(store_url)[1:] == ("0003", "0005")
    outsets, packed_current, packed_history = _packed_rows(store_url)
    o_ab, o_a = (row[0] for row in outsets)
    assert outsets == [_outset_row(o_ab, [a, b]), _outset_row(o_a, [a])]
    everyone = [*ids, orphan]
    assert packed_current == sorted(
        [(o_ab, e, c1, 0b10 if i % 2 == 0 else 0b11, f"{i}h\t{-i}" if i % 2 == 0 else f"{i}\t{-i}") for i, e in enumerate(everyone)]
        + [(o_a, e, c2, 1, str(i)) for i, e in enumerate(everyone) if i % 2 == 0])
    assert packed_history == []

    _downgrade_to_0003(store_url)
    assert _old_rows(store_url) == old_rows
