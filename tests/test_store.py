"""The results store as a library, on SQLite and on real PostgreSQL and MariaDB servers.

Schema and migrations, attribute definitions, loading overlapping
computations (prenacs semantics), history, conflicts, concurrent writers.
"""

from __future__ import annotations

import csv
import io
import multiprocessing
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from provbatch.contract import datatypes
from provbatch.errors import UsageError
from provbatch.store import (
    ComputationRecord,
    PluginRecord,
    Store,
    StoreConflict,
    migrate,
    schema,
)
from provbatch.store.writer import BATCH_ROWS, _pairs_text, entity_key

DEFINITIONS = {
    "gc": {"datatype": "Float", "definition": "GC fraction", "computation_group": "seqstats", "unit": "fraction"},
    "length": {"datatype": "Integer", "definition": "sequence length", "computation_group": "seqstats"},
    "counts": {"datatype": "Integer[3]", "definition": "A, C, G counts", "computation_group": "seqstats"},
    "pair": {"datatype": "Float;Integer[2]", "definition": "a composite"},
    "flag": {"datatype": "Boolean", "definition": "a flag"},
    "label": {"datatype": "String(8)", "definition": "a short label"},
}
U = [str(uuid.UUID(int=i)) for i in range(10)]


def record(uuid_: str, plugin_id: str, version: str, output: list[str], sha: str = "s1", **fields) -> ComputationRecord:
    return ComputationRecord(uuid=uuid_, plugin=PluginRecord(plugin_id, version, "python", sha, {"OUTPUT": output}),
                             output=output, plugin_sha256=sha, comp_status="completed", **fields)


def tsv(path: Path, rows: list[list[str]]) -> Path:
    path.write_text("".join("\t".join(row) + "\n" for row in rows))
    return path


def current(store: Store) -> dict[tuple[str, str], tuple[object, str]]:
    return {(v["entity"], v["attribute"]): (v["value"], v["computation"]) for v in store.iter_values(provenance=True)}


@pytest.fixture
def store(store_url: str):
    Store.init(store_url)
    with Store(store_url) as opened:
        opened.apply_attributes(DEFINITIONS)
        yield opened


@pytest.mark.parametrize("by_migrations", [True, False], ids=["migrations", "tables"])
def test_migrated_schema_equals_the_tables_module(store_url: str, by_migrations: bool) -> None:
    """Every migration from nothing builds the tables of schema.py; a new store gets those tables at once,
    stamped with the newest migration, so that later migrations start from the right revision."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from provbatch.store.url import create_engine

    assert migrate.head_revision() == schema.SCHEMA_REVISION == "0005"
    engine = create_engine(store_url)
    assert migrate.upgrade(engine, by_migrations=by_migrations) == (None, "0005")
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": schema.VERSION_TABLE})
        differences = [d for d in compare_metadata(context, schema.metadata)]
        versions = connection.execute(sa.text(f"SELECT version_num FROM {schema.VERSION_TABLE}")).scalars().all()
    engine.dispose()
    assert differences == []
    assert versions == ["0005"]
    assert Store.init(store_url)[1:] == ("0005", "0005")  # init again: nothing to do


def _hold_schema_lock(connection: sa.Connection) -> None:
    """Take the lock migrate.upgrade takes, as another process creating the store would."""
    name = connection.dialect.name
    if name == "postgresql":
        connection.execute(sa.text(f"SELECT pg_advisory_lock({migrate.PG_SCHEMA_LOCK_KEY})"))
    elif name in ("mysql", "mariadb"):
        connection.execute(sa.text(f"SELECT GET_LOCK('{migrate.SCHEMA_LOCK_NAME}', 60)"))
    else:
        connection.execute(sa.text("SELECT 1"))  # provbatch's SQLite engine begins with BEGIN IMMEDIATE: the write lock


def test_processes_creating_one_new_store_at_once_all_open_it(store_url: str) -> None:
    """Several ``batch-compute --store`` on a new database: one creates the schema, the others wait on its
    lock and find it complete. They queue on the lock held here, so that each takes it the moment the one
    before releases it (the window in which a stamp not yet committed looked like no store: CI, stop 22)."""
    import threading
    import time

    from provbatch.store.url import create_engine

    holder = create_engine(store_url)
    outcomes: list[str] = []

    def open_creating() -> None:
        try:
            with Store(store_url, create=True) as store:
                outcomes.append("ok" if store.attributes() == {} else "not empty")
        except Exception as exc:  # noqa: BLE001 - reported by the assertion
            outcomes.append(f"{type(exc).__name__}: {exc}")

    with holder.connect() as connection:
        _hold_schema_lock(connection)
        threads = [threading.Thread(target=open_creating) for _ in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(1.0)  # all four wait on the lock
        assert outcomes == []
        if connection.dialect.name == "postgresql":
            connection.execute(sa.text(f"SELECT pg_advisory_unlock({migrate.PG_SCHEMA_LOCK_KEY})"))
        elif connection.dialect.name in ("mysql", "mariadb"):
            connection.execute(sa.text(f"SELECT RELEASE_LOCK('{migrate.SCHEMA_LOCK_NAME}')"))
        connection.rollback()
    for thread in threads:
        thread.join(timeout=120)
    holder.dispose()
    assert outcomes == ["ok"] * 4


def test_on_mariadb_the_schema_lock_is_released_only_once_the_stamp_is_committed(db_servers) -> None:
    """MariaDB's DDL commits at once, so the tables are visible before the stamp: the named lock must be
    held until the stamp commits, or the next creator sees tables without a stamp and creates them again.
    Checked at the moment of RELEASE_LOCK, from another connection (the race itself needs unlucky timing)."""
    from provbatch.store.url import create_engine

    url = db_servers("mariadb").create_database()
    engine, observer = create_engine(url), create_engine(url)
    stamps_seen_at_release: list[list[str]] = []

    @sa.event.listens_for(engine, "before_cursor_execute")
    def before_release(_conn, _cursor, statement, *_args) -> None:
        if "RELEASE_LOCK" in statement:
            with observer.connect() as other:
                stamps_seen_at_release.append(
                    other.execute(sa.text(f"SELECT version_num FROM {schema.VERSION_TABLE}")).scalars().all())

    assert migrate.upgrade(engine) == (None, "0005")
    engine.dispose()
    observer.dispose()
    assert stamps_seen_at_release == [["0005"]]


def test_open_refuses_a_database_without_a_store_and_creates_one_when_asked(store_url: str) -> None:
    with pytest.raises(UsageError, match=r"no provbatch store there yet: run 'provbatch store init' first"):
        Store(store_url)
    with Store(store_url, create=True) as store:
        assert store.attributes() == {}


def test_open_refuses_an_older_schema(store_url: str) -> None:
    Store.init(store_url)
    engine = sa.create_engine(store_url)
    with engine.begin() as connection:
        connection.execute(sa.text(f"UPDATE {schema.VERSION_TABLE} SET version_num = '0000'"))
    engine.dispose()
    with pytest.raises(UsageError, match=r"schema revision 0000, this provbatch needs 0005: run 'provbatch store init'"):
        Store(store_url)


def test_attribute_definitions_add_update_drop_missing_and_refuse_datatype_changes(store: Store) -> None:
    assert sorted(store.attributes()) == sorted(DEFINITIONS)
    assert store.attributes()["gc"] == {"datatype": "Float", "definition": "GC fraction", "unit": "fraction",
                                        "ontology_xref": None, "related_ontology_terms": None, "remark": None,
                                        "computation_group": "seqstats"}
    changed = {**DEFINITIONS, "gc": {**DEFINITIONS["gc"], "definition": "G+C fraction"}, "new": {"datatype": "Text"}}
    result = store.apply_attributes(changed)
    assert (result.added, result.differing, result.updated) == (["new"], ["gc"], [])
    assert store.attributes()["gc"]["definition"] == "GC fraction"  # without --update: kept
    result = store.apply_attributes(changed, update=True)
    assert (result.added, result.updated, sorted(result.unchanged)) == ([], ["gc"], sorted(set(changed) - {"gc"}))
    assert store.attributes()["gc"]["definition"] == "G+C fraction"
    with pytest.raises(StoreConflict, match=r"attribute 'gc': datatype changes from 'Float' to 'Integer'.*attributes drop gc"):
        store.apply_attributes({"gc": {**DEFINITIONS["gc"], "datatype": "Integer"}}, update=True)
    with pytest.raises(StoreConflict, match=r"attribute 'length': computation_group changes from 'seqstats' to 'other'"):
        store.apply_attributes({"length": {**DEFINITIONS["length"], "computation_group": "other"}}, update=True)
    with pytest.raises(UsageError, match=r"attribute 'x' has datatype 'Number'"):
        store.apply_attributes({"x": {"datatype": "Number"}})
    result = store.apply_attributes({"gc": changed["gc"], "length": DEFINITIONS["length"]}, drop_missing=True)
    assert result.dropped == sorted(set(changed) - {"gc", "length"})
    assert sorted(store.attributes()) == ["gc", "length"]


def test_overlapping_computations_partial_group_recompute_and_reload(store: Store, tmp_path: Path) -> None:
    a1 = record(U[1], "seq", "1.0", ["gc", "length", "counts"])
    store.load(tsv(tmp_path / "a1.tsv", [["e1", "0.5", "100", "1,2,3"], ["e2", "0.25", "8", "0,0,1"]]), a1)
    state = current(store)
    assert state == {("e1", "gc"): (0.5, U[1]), ("e1", "length"): (100, U[1]), ("e1", "counts"): ([1, 2, 3], U[1]),
                     ("e2", "gc"): (0.25, U[1]), ("e2", "length"): (8, U[1]), ("e2", "counts"): ([0, 0, 1], U[1])}

    # another plugin sharing the group, covering only gc and length of e1: only those change
    b1 = record(U[2], "quick", "0.1", ["gc", "length"], sha="q1")
    store.load(tsv(tmp_path / "b1.tsv", [["e1", "0.52", "101"]]), b1)
    state.update({("e1", "gc"): (0.52, U[2]), ("e1", "length"): (101, U[2])})
    assert current(store) == state

    # a new version of the first plugin, for e2 only; and composites, booleans, strings from a third plugin
    a2 = record(U[3], "seq", "2.0", ["gc", "length", "counts"], sha="s2")
    store.load(tsv(tmp_path / "a2.tsv", [["e2", "0.3", "9", "0,1,1"]]), a2)
    c1 = record(U[4], "misc", "1", ["pair", "flag", "label"], sha="m1")
    store.load(tsv(tmp_path / "c1.tsv", [["e1", "1.5;7,8", "true", "short"], ["e3", "", "False", "x"]]), c1)
    state.update({("e2", "gc"): (0.3, U[3]), ("e2", "length"): (9, U[3]), ("e2", "counts"): ([0, 1, 1], U[3]),
                  ("e1", "pair"): ([1.5, [7, 8]], U[4]), ("e1", "flag"): (True, U[4]), ("e1", "label"): ("short", U[4]),
                  ("e3", "pair"): (None, U[4]), ("e3", "flag"): (False, U[4]), ("e3", "label"): ("x", U[4])})
    assert current(store) == state

    # loading the first computation again restores its values, and their link to it
    again = store.load(tmp_path / "a1.tsv", a1)
    assert (again.already_loaded, again.values, again.entities) == (True, 6, 2)
    state.update({("e1", "gc"): (0.5, U[1]), ("e1", "length"): (100, U[1]), ("e1", "counts"): ([1, 2, 3], U[1]),
                  ("e2", "gc"): (0.25, U[1]), ("e2", "length"): (8, U[1]), ("e2", "counts"): ([0, 0, 1], U[1])})
    assert current(store) == state
    store.load(tmp_path / "a1.tsv", a1)  # idempotent
    assert current(store) == state

    # nothing was destroyed: every value of every computation stays, with its computation
    history = [(v["entity"], v["attribute"], v["value"], v["computation"], v["current"], v["plugin_id"], v["plugin_version"])
               for v in store.iter_values(["gc"], history=True)]
    assert sorted(history) == sorted([
        ("e1", "gc", 0.5, U[1], True, "seq", "1.0"), ("e1", "gc", 0.52, U[2], False, "quick", "0.1"),
        ("e2", "gc", 0.25, U[1], True, "seq", "1.0"), ("e2", "gc", 0.3, U[3], False, "seq", "2.0"),
    ])
    selected = {(v["entity"], v["attribute"]): v["value"] for v in store.iter_values(["pair", "length"], entities=["e1", "e9"])}
    assert selected == {("e1", "pair"): [1.5, [7, 8]], ("e1", "length"): 100}

    why = store.why("e1", "pair")
    assert why is not None
    assert (why["value"], why["value_text"], why["computation"], why["plugin_id"], why["plugin_version"], why["n_values"]) == (
        [1.5, [7, 8]], "1.5;7,8", U[4], "misc", "1", 1)
    assert store.why("e1", "nothing") is None and store.why("nobody", "gc") is None


def test_dropping_an_attribute_a_row_shares_keeps_the_others_values_and_a_re_added_one_starts_empty(
        store: Store, tmp_path: Path) -> None:
    """Values are packed a row per (computation, entity): dropping one attribute blanks its value out of the
    rows (current and history) and keeps the other attributes' values, history and why answers; the attribute
    added again (SQLite may give it the same id) has no value, and a computation of the old attribute list
    writes a new outset."""
    three = ["gc", "length", "counts"]
    store.load(tsv(tmp_path / "a1.tsv", [["e1", "0.5", "100", "1,2,3"], ["e2", "0.25", "8", "0,0,1"]]), record(U[1], "seq", "1.0", three))
    store.load(tsv(tmp_path / "a2.tsv", [["e1", "0.6", "101", "1,1,1"]]), record(U[2], "seq", "2.0", three, sha="s2"))
    assert store.drop_attribute("counts") == 3  # e1's two values, e2's one
    assert "counts" not in store.attributes()
    assert current(store) == {("e1", "gc"): (0.6, U[2]), ("e1", "length"): (101, U[2]),
                              ("e2", "gc"): (0.25, U[1]), ("e2", "length"): (8, U[1])}
    assert sorted((v["entity"], v["attribute"], v["value"], v["computation"], v["current"])
                  for v in store.iter_values(history=True)) == [
        ("e1", "gc", 0.5, U[1], False), ("e1", "gc", 0.6, U[2], True), ("e1", "length", 100, U[1], False),
        ("e1", "length", 101, U[2], True), ("e2", "gc", 0.25, U[1], True), ("e2", "length", 8, U[1], True)]
    assert (store.why("e1", "length")["value"], store.why("e1", "length")["n_values"]) == (101, 2)
    with store.engine.connect() as connection:
        stored = sorted(connection.execute(sa.text("SELECT values_text FROM provbatch_current UNION ALL "
                                                   "SELECT values_text FROM provbatch_history")).scalars())
    assert stored == ["0.25\t8\t", "0.5\t100\t", "0.6\t101\t"]  # the dropped values are gone, not hidden
    store.apply_attributes({"counts": DEFINITIONS["counts"]})
    assert store.why("e1", "counts") is None and list(store.iter_values(["counts"], history=True)) == []
    store.load(tsv(tmp_path / "a3.tsv", [["e2", "0.3", "9", "2,2,2"]]), record(U[3], "seq", "3.0", three, sha="s3"))
    assert current(store)[("e2", "counts")] == ([2, 2, 2], U[3])
    assert [(v["value"], v["computation"]) for v in store.iter_values(["gc"], entities=["e2"], history=True)] == [
        (0.25, U[1]), (0.3, U[3])]
    assert store.why("e2", "gc")["n_values"] == 2


def test_a_computation_of_130_attributes_writes_three_rows_an_entity_and_a_recompute_across_two_of_them_replaces_only_its_own(
        store: Store, tmp_path: Path) -> None:
    """More attributes than a row holds (63): a computation writes one row per 63 of them. Another plugin
    recomputes attributes 60-69 (they span the first two rows) of some entities, new ones among them; the
    first computation loaded again makes its values current again. Every value and its computation is checked,
    with history and why, after each step."""
    wide = [f"w{i:03d}" for i in range(130)]
    store.apply_attributes({name: {"datatype": "Integer"} for name in wide})
    first = record(U[1], "wide", "1", wide)
    store.load(tsv(tmp_path / "first.tsv", [[f"e{e}", *(str(100 * e + i) for i in range(130))] for e in range(3)]), first)
    with store.engine.connect() as connection:
        assert connection.execute(sa.text("SELECT COUNT(*) FROM provbatch_current")).scalar() == 3 * 3
    expected = {(f"e{e}", name): (100 * e + i, U[1]) for e in range(3) for i, name in enumerate(wide)}
    assert {key: value for key, value in current(store).items() if key[1] in wide} == expected

    part = wide[60:70]
    second = record(U[2], "part", "1", part, sha="p1")
    store.load(tsv(tmp_path / "second.tsv", [[f"e{e}", *(str(-i) for i in range(60, 70))] for e in (1, 5)]), second)
    expected.update({(f"e{e}", name): (-i, U[2]) for e in (1, 5) for i, name in zip(range(60, 70), part)})
    assert {key: value for key, value in current(store).items() if key[1] in wide} == expected
    assert [(v["value"], v["computation"], v["current"]) for v in store.iter_values(["w065"], entities=["e1"], history=True)] == [
        (165, U[1], False), (-65, U[2], True)]
    assert (store.why("e1", "w062")["value"], store.why("e1", "w062")["n_values"], store.why("e1", "w059")["n_values"]) == (-62, 2, 1)

    again = store.load(tmp_path / "first.tsv", first)
    assert again.already_loaded
    expected.update({("e1", name): (100 + i, U[1]) for i, name in zip(range(60, 70), part)})
    assert {key: value for key, value in current(store).items() if key[1] in wide} == expected
    assert [(v["value"], v["computation"], v["current"]) for v in store.iter_values(["w065"], history=True)] == [
        (65, U[1], True), (165, U[1], True), (-65, U[2], False), (265, U[1], True), (-65, U[2], True)]
    assert [(c["uuid"], c["n_values"]) for c in store.current_computations(wide)] == [(U[1], 390), (U[2], 10)]


def test_bad_results_are_refused_before_anything_is_written(store: Store, tmp_path: Path) -> None:
    bad = tsv(tmp_path / "bad.tsv", [["e1", "0.5", "100", "1,2,3"], ["e2", "0.5", "many", "1"]])
    with pytest.raises(UsageError, match=r"bad.tsv:2: attribute 'length' \(Integer\): 'many' is not an Integer"):
        store.load(bad, record(U[1], "seq", "1.0", ["gc", "length", "counts"]))
    short = tsv(tmp_path / "short.tsv", [["e1", "0.5"]])
    with pytest.raises(UsageError, match=r"short.tsv:1: 1 value\(s\), the plugin's OUTPUT has 3 \(gc, length, counts\)"):
        store.load(short, record(U[2], "seq", "1.0", ["gc", "length", "counts"]))
    too_many = tsv(tmp_path / "many.tsv", [["e1", "0.5", "1", "1,2,3,4"]])
    with pytest.raises(UsageError, match=r"4 values are more than Integer\[3\] holds"):
        store.load(too_many, record(U[3], "seq", "1.0", ["gc", "length", "counts"]))
    assert current(store) == {}
    with pytest.raises(UsageError, match=r"attribute\(s\) nope of plugin seq are not defined in the store"):
        store.load(short, record(U[4], "seq", "1.0", ["nope"]))


def test_plugin_and_report_records_are_checked(store: Store, tmp_path: Path) -> None:
    results = tsv(tmp_path / "r.tsv", [["e1", "0.5", "1"]])
    store.load(results, record(U[1], "quick", "1.0", ["gc", "length"], sha="aaaa" * 16))
    changed = record(U[2], "quick", "1.0", ["gc", "length"], sha="bbbb" * 16)
    with pytest.raises(StoreConflict, match=r"plugin quick 1.0 is recorded in the store with another source "
                                            r"\(sha256 aaaaaaaaaaaa -> bbbbbbbbbbbb\).*, or pass replace_plugin$"):
        store.load(results, changed)
    store.load(results, changed, replace_plugin=True)
    assert current(store)[("e1", "gc")] == (0.5, U[2])
    other = record(U[2], "quick", "1.0", ["gc", "length"], sha="bbbb" * 16, user_id="someone else")
    with pytest.raises(StoreConflict, match=rf"uuid {U[2]} is already in the store with other user_id: pass replace_report to replace its record$"):
        store.load(results, other)
    store.load(results, other, replace_report=True)
    assert store.why("e1", "gc")["user_id"] == "someone else"


def _writer_process(url: str, attribute: str, computation_uuid: str, n: int, queue, batch: int = 50) -> None:
    try:
        with Store(url) as store:
            pk, _existed = store.record_computation(record(computation_uuid, f"p_{attribute}", "1", [attribute], sha=attribute))
            writer = store.writer(pk, [attribute], fresh=True)
            for start in range(0, n, batch):  # many transactions, interleaved with the other writer's
                writer.write([(f"entity{i}", [str(i)]) for i in range(start, min(n, start + batch))])
        queue.put("ok")
    except BaseException as exc:  # noqa: BLE001 - reported to the test
        queue.put(f"{type(exc).__name__}: {exc}")


@pytest.mark.parametrize("batch", [50, 1500], ids=["small-batches", "bulk-batches"])
def test_two_writers_of_different_attributes_at_once_lose_nothing(store: Store, batch: int) -> None:
    """Small batches go row by row; batches above 1,000 values create the entities in bulk (MariaDB: LOAD DATA)."""
    store.apply_attributes({"w1": {"datatype": "Integer"}, "w2": {"datatype": "Integer"}})
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    n = 3000 if batch > 1000 else 2000
    workers = [context.Process(target=_writer_process, args=(store.url, name, U[i + 5], n, queue, batch))
               for i, name in enumerate(("w1", "w2"))]
    for worker in workers:
        worker.start()
    outcomes = [queue.get(timeout=240) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    assert outcomes == ["ok", "ok"]
    values = {(v["entity"], v["attribute"]): (v["value"], v["computation"]) for v in store.iter_values(["w1", "w2"], provenance=True)}
    assert values == {**{(f"entity{i}", "w1"): (i, U[5]) for i in range(n)}, **{(f"entity{i}", "w2"): (i, U[6]) for i in range(n)}}
    with store.engine.connect() as connection:
        assert connection.execute(sa.text("SELECT COUNT(*) FROM provbatch_entities")).scalar() == n


def test_a_first_load_waits_for_entities_another_writer_is_creating_and_takes_their_ids(store: Store, tmp_path: Path) -> None:
    """Another writer's transaction, not yet committed, created 1,500 of the 3,000 entities of a first load
    into a store without any. The load (on MariaDB it expects new entities, and creates them before any
    lookup) waits for that transaction, then finds those entities: no entity twice, their ids the other
    writer's, every value exact."""
    import threading

    names = [f"e{i:05d}" for i in range(3000)]
    theirs = names[::2]
    other = store.engine.connect()
    transaction = other.begin()
    other.execute(sa.text("INSERT INTO provbatch_entities (name_key, name) VALUES (:key, NULL)"), [{"key": n} for n in theirs])
    results = tsv(tmp_path / "first.tsv", [[name, str(i)] for i, name in enumerate(names)])
    failures: list[BaseException] = []

    def load() -> None:
        try:
            store.load(results, record(U[1], "first", "1", ["length"]))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            failures.append(exc)

    loading = threading.Thread(target=load)
    loading.start()
    loading.join(timeout=1.0)
    assert loading.is_alive()  # waiting for the other writer's entities
    transaction.commit()
    their_ids = dict(other.execute(sa.text("SELECT name_key, id FROM provbatch_entities")).all())
    other.close()
    loading.join(timeout=120)
    assert not loading.is_alive() and failures == []
    assert current(store) == {(name, "length"): (i, U[1]) for i, name in enumerate(names)}
    with store.engine.connect() as connection:
        ids = dict(connection.execute(sa.text("SELECT name_key, id FROM provbatch_entities")).all())
    assert sorted(ids) == names
    assert {name: ids[name] for name in theirs} == their_ids


def test_entities_created_in_bulk_batches_new_existing_and_mixed_with_any_name(store: Store) -> None:
    """Batches above 1,000 entities: all new; then some existing (another computation's) and some new,
    without a lookup first on MariaDB, as the batch before was all new; then new again; then all existing.
    Names with a tab, a newline and a backslash go in as they are."""

    def name(i: int) -> str:  # a name that is its own key, or one that is hashed (tab, newline, long, trailing space)
        if i % 7 == 0:
            return f"dir\\sub\tfile\n{i}"
        if i % 11 == 0:
            return f"{i}/" + "x" * 300
        if i % 13 == 0:
            return f"e{i} "
        if i % 17 == 0:
            return f"C:\\data\\e{i}"  # its own key, with backslashes (escaped in LOAD DATA's text)
        return f"e{i}"

    other, _existed = store.record_computation(record(U[2], "other", "1", ["gc"]))
    store.writer(other, ["gc"], fresh=True).write([(name(i), ["0.5"]) for i in (*range(3000, 4000), *range(7000, 8500))])
    pk, _existed = store.record_computation(record(U[1], "bulk", "1", ["length"]))
    writer = store.writer(pk, ["length"], fresh=True)
    for start, stop in ((0, 2000), (2000, 4500), (4500, 6500), (7000, 8500)):
        writer.write([(name(i), [str(i)]) for i in range(start, stop)])
    writer.write([(f"plain{i}", [str(i)]) for i in range(1500)])  # every name its own key (SQLite: one JSON array)
    writer.write([("tiny\tname", ["1"]), ("tiny", ["2"])])  # a small batch: one insert per entity
    expected = {(name(i), "length"): (i, U[1]) for i in (*range(6500), *range(7000, 8500))}
    expected.update({(name(i), "gc"): (0.5, U[2]) for i in (*range(3000, 4000), *range(7000, 8500))})
    expected.update({(f"plain{i}", "length"): (i, U[1]) for i in range(1500)})
    expected.update({("tiny\tname", "length"): (1, U[1]), ("tiny", "length"): (2, U[1])})
    assert current(store) == expected
    names = [*{entity for entity, _attribute in expected}]
    with store.engine.connect() as connection:
        assert connection.execute(sa.text("SELECT COUNT(*) FROM provbatch_entities")).scalar() == 8000 + 1500 + 2
        stored = dict(connection.execute(sa.text("SELECT name_key, name FROM provbatch_entities")).all())
    # a name is stored once: as its key (name NULL), or beside its hashed key
    assert stored == {entity_key(n): None if entity_key(n) == n else n for n in names}
    assert {value is None for value in stored.values()} == {True, False}  # both kinds are there
    assert store.why(name(14), "length")["value"] == 14


def _same_attribute_writer(url: str, computation_uuid: str, offset: int, n: int, queue, barrier) -> None:
    try:
        with Store(url) as store:
            pk, _existed = store.record_computation(record(computation_uuid, "p_same", "1", ["w1"], sha="same"))
            writer = store.writer(pk, ["w1"], fresh=True)
            barrier.wait(timeout=120)  # both start writing together
            for start in range(0, n, 5):  # many small transactions, interleaved with the other writer's
                writer.write([(f"entity{i}", [str(i + offset)]) for i in range(start, min(n, start + 5))])
        queue.put("ok")
    except BaseException as exc:  # noqa: BLE001 - reported to the test
        queue.put(f"{type(exc).__name__}: {exc}")


def test_two_writers_of_the_same_attribute_at_once_both_keep_their_values(store: Store, tmp_path: Path) -> None:
    """Each (entity, attribute) ends with the three computations' values (a first one loaded before, then
    the two writers' at once, replacing the same current rows), one current, two in history."""
    store.apply_attributes({"w1": {"datatype": "Integer"}})
    n = 600
    first = tmp_path / "first.tsv"
    first.write_text("".join(f"entity{i}\t{i + 20_000}\n" for i in range(n)))
    store.load(first, record(U[4], "p_same", "1", ["w1"], sha="same"))
    context = multiprocessing.get_context("spawn")
    queue, barrier = context.Queue(), context.Barrier(2)
    workers = [context.Process(target=_same_attribute_writer, args=(store.url, U[i + 5], offset, n, queue, barrier))
               for i, offset in enumerate((0, 10_000))]
    for worker in workers:
        worker.start()
    outcomes = [queue.get(timeout=240) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    assert outcomes == ["ok", "ok"]
    stored: dict[str, list[tuple[int, str, bool]]] = {}
    for v in store.iter_values(["w1"], history=True):
        stored.setdefault(v["entity"], []).append((v["value"], v["computation"], v["current"]))
    assert sorted(stored) == sorted(f"entity{i}" for i in range(n))
    for i in range(n):
        values = stored[f"entity{i}"]
        assert sorted((value, computation) for value, computation, _current in values) == [
            (i, U[5]), (i + 10_000, U[6]), (i + 20_000, U[4])]
        assert sum(current for _value, _computation, current in values) == 1
        current_one = next((value, computation) for value, computation, current in values if current)
        assert store.why(f"entity{i}", "w1")["computation"] == current_one[1]
        assert current_one[1] != U[4]
        assert store.why(f"entity{i}", "w1")["n_values"] == 3


def test_bulk_paths_copy_and_load_data_keep_every_value_exact(store: Store, tmp_path: Path) -> None:
    """Batches above 1,000 values go through COPY (PostgreSQL) / LOAD DATA LOCAL INFILE (MariaDB)."""
    store.apply_attributes({"note": {"datatype": "Text"}})
    rows = [[f"e{i}", f"{i / 7:.5f}", str(i), f"{i % 5},{i % 3},1"] for i in range(3000)]
    notes = [[f"e{i}", "" if i % 10 == 0 else f"back\\slash {i} \\N é"] for i in range(3000)]
    store.load(tsv(tmp_path / "bulk.tsv", rows), record(U[1], "seq", "1.0", ["gc", "length", "counts"]))
    store.load(tsv(tmp_path / "notes.tsv", notes), record(U[2], "notes", "1.0", ["note"]))
    expected = {}
    for name, gc, length, counts in rows:
        expected[(name, "gc")] = (float(gc), U[1])
        expected[(name, "length")] = (int(length), U[1])
        expected[(name, "counts")] = ([int(c) for c in counts.split(",")], U[1])
    for name, note in notes:
        expected[(name, "note")] = (note or None, U[2])
    assert current(store) == expected
    # a recompute of half of them (existing entities, existing current rows)
    redo = [[name, "0.5", "1", "0,0,0"] for name, *_rest in rows[:1500]]
    store.load(tsv(tmp_path / "redo.tsv", redo), record(U[3], "seq", "1.1", ["gc", "length", "counts"], sha="s2"))
    for name, *_rest in rows[:1500]:
        expected.update({(name, "gc"): (0.5, U[3]), (name, "length"): (1, U[3]), (name, "counts"): ([0, 0, 0], U[3])})
    assert current(store) == expected
    assert sum(1 for _ in store.iter_values(["gc"], history=True)) == 4500


def test_a_load_above_one_batch_of_new_and_existing_entities_keeps_every_value_exact(store: Store, tmp_path: Path) -> None:
    """More values than one batch of the writer (BATCH_ROWS): SQLite and MariaDB write them batch by batch,
    PostgreSQL as one batch (rows in key order); entities new and existing mixed, one named twice far apart."""
    n = BATCH_ROWS // 3 + 5_000  # x 3 attributes: more than BATCH_ROWS values
    earlier = [[f"e{i:06d}", f"{i / 3:.4f}", str(i), "1,2,3"] for i in range(0, n, 2)]  # every other one exists
    store.load(tsv(tmp_path / "earlier.tsv", earlier), record(U[1], "seq", "1.0", ["gc", "length", "counts"]))
    later = [[f"e{i:06d}", f"{i / 7:.5f}", str(-i), f"{i % 5},{i % 3},{i % 2}"] for i in range(n)]
    later.append(["e000003", "0.75", "33", "3,3,3"])  # a later row of the same entity replaces the earlier one
    result = store.load(tsv(tmp_path / "later.tsv", later), record(U[2], "seq", "2.0", ["gc", "length", "counts"], sha="s2"))
    assert (result.entities, result.values) == (n, 3 * n)
    expected = {}
    for name, gc, length, counts in later:
        expected[(name, "gc")] = (float(gc), U[2])
        expected[(name, "length")] = (int(length), U[2])
        expected[(name, "counts")] = ([int(c) for c in counts.split(",")], U[2])
    assert current(store) == expected
    replaced = {(v["entity"], v["attribute"]): (v["value"], v["computation"])
                for v in store.iter_values(["gc", "length", "counts"], history=True, provenance=True) if not v["current"]}
    assert replaced == {(name, attribute): (value, U[1]) for name, gc, length, counts in earlier
                        for attribute, value in (("gc", float(gc)), ("length", int(length)),
                                                 ("counts", [int(c) for c in counts.split(",")]))}
    # loading it again changes nothing
    store.load(tmp_path / "later.tsv", record(U[2], "seq", "2.0", ["gc", "length", "counts"], sha="s2"))
    assert current(store) == expected
    assert sum(1 for _ in store.iter_values(history=True)) == 3 * n + 3 * len(earlier)


def test_value_rows_are_the_values_of_iter_values_a_partition_at_a_time(store: Store, tmp_path: Path) -> None:
    """iter_value_rows (what ``provbatch values`` writes TSV, CSV and Parquet from) holds the very values,
    provenance and history of iter_values, in their order, one attribute and at most 20,000 values a partition."""
    n = 25_000
    store.load(tsv(tmp_path / "a.tsv", [[f"e{i:06d}", f"{i / 8}", str(i), "1,2,3"] for i in range(n)]),
               record(U[1], "seq", "1.0", ["gc", "length", "counts"]))
    store.load(tsv(tmp_path / "b.tsv", [[f"e{i:06d}", "0.5", str(-i), "3,3,3" if i % 2 else ""] for i in range(0, n, 3)]),
               record(U[2], "seq", "2.0", ["gc", "length", "counts"], sha="s2"))
    attributes = ["length", "gc", "counts"]
    options: list[dict] = [{}, {"provenance": True}, {"history": True}, {"history": True, "provenance": True},
                           {"as_text": True}, {"as_text": True, "history": True},
                           {"entities": ["e000004", "e000003", "nobody"], "history": True}]
    for option in options:
        parts = list(store.iter_value_rows(attributes, **option))
        rebuilt = [{"attribute": part.attribute, **dict(zip(part.fields, row))} for part in parts for row in part.rows]
        assert rebuilt == list(store.iter_values(attributes, **option)), option
        from_columns = []
        for part in parts:
            columns = part.columns()
            from_columns += [{"attribute": part.attribute, **dict(zip(columns, row))} for row in zip(*columns.values())]
        assert from_columns == rebuilt, option
        if "entities" not in option:
            n_values = n + n // 3 + 1 if option.get("history") else n
            assert [(part.attribute, len(part)) for part in parts] == [
                (name, size) for name in ("counts", "gc", "length") for size in (20_000, n_values - 20_000)], option
    gc = next(part for part in store.iter_value_rows(["gc"], provenance=True))
    assert gc.fields == ("entity", "value", "computation", "plugin_id", "plugin_version", "time_end")
    assert [tuple(row) for row in gc.rows[:2]] == [("e000000", 0.5, U[2], "seq", "2.0", None), ("e000001", 0.125, U[1], "seq", "1.0", None)]
    text = next(part for part in store.iter_value_rows(["counts"], as_text=True))
    assert text.fields == ("entity", "value") and [tuple(row) for row in text.rows[:4]] == [
        ("e000000", ""), ("e000001", "1,2,3"), ("e000002", "1,2,3"), ("e000003", "3,3,3")]
    history = list(store.iter_value_rows(["length"], entities=["e000003"], history=True))
    assert [(part.attribute, part.columns()) for part in history] == [("length", {
        "entity": ["e000003", "e000003"], "value": [3, -3], "computation": [U[1], U[2]], "plugin_id": ["seq", "seq"],
        "plugin_version": ["1.0", "2.0"], "time_end": [None, None], "current": [False, True]})]


def test_text_exports_of_names_that_need_escaping_or_quoting_are_the_csv_modules(store: Store, tmp_path: Path) -> None:
    """TSV and CSV lines are joined as they are unless a field needs escaping or quoting; a partition with
    one such name is written by the csv module, exactly as before (a backslash, a quote, a comma, a tab)."""
    from provbatch.store.export import export_values

    names = [f"e{i:05d}" for i in range(30_000)]
    names[25_001], names[25_002], names[25_003] = 'e25001 say "hi"', "e25002 a,b", "e25003 C:\\data\\x"  # in name order
    store.load(tsv(tmp_path / "n.tsv", [[name, str(i)] for i, name in enumerate(names)]), record(U[1], "p", "1", ["length"]))
    for fmt, options in (("tsv", {"delimiter": "\t", "quoting": csv.QUOTE_NONE, "escapechar": "\\"}), ("csv", {})):
        out = tmp_path / f"out.{fmt}"
        assert export_values(store, ["length"], None, fmt, str(out)) == 30_000
        expected = io.StringIO()
        writer = csv.writer(expected, lineterminator="\n", **options)
        writer.writerow(["entity", "attribute", "value"])
        writer.writerows([name, "length", str(i)] for i, name in enumerate(names))
        assert out.read_text() == expected.getvalue(), fmt
    assert ('e25000,length,25000\n"e25001 say ""hi""",length,25001\n"e25002 a,b",length,25002\n'
            'e25003 C:\\data\\x,length,25003\n') in (tmp_path / "out.csv").read_text()
    assert 'e25000\tlength\t25000\ne25001 say \\"hi\\"\tlength\t25001\ne25002 a,b\tlength\t25002\n' in (tmp_path / "out.tsv").read_text()


def test_many_entities_whose_names_need_escaping_in_copy_keep_their_names(store: Store, tmp_path: Path) -> None:
    """Above 1,000 new entities PostgreSQL COPYs them as one joined text; a name with a backslash needs
    escaping, so that batch goes row by row (``write_row``)."""
    names = [f"dir\\sub {i}" if i % 2 else f"é \\N {i}" for i in range(1_500)]
    results = tmp_path / "escaped.tsv"
    results.write_bytes("".join(f"{name}\t{i}\n" for i, name in enumerate(names)).encode())
    store.load(results, record(U[1], "esc", "1", ["length"]))
    assert current(store) == {(name, "length"): (i, U[1]) for i, name in enumerate(names)}


def test_copy_text_of_entity_keys_and_names_is_none_when_a_name_needs_escaping() -> None:
    assert _pairs_text([("a", "a"), ("b c", "b c")]) == "a\ta\nb c\tb c\n"
    for name in ("tab\there", "new\nline", "back\\slash", "carriage\rreturn"):
        assert _pairs_text([("k", "plain"), (name, name)]) is None
        assert _pairs_text([(name, name)]) is None


#: one attribute per form of the grammar (provbatch.contract.datatypes): datatype -> (results text, value, stored text)
EVERY_DATATYPE = {
    "Integer": ("-42", -42, "-42"),
    "Float": ("0.25", 0.25, "0.25"),
    "Boolean": ("yes", True, "true"),  # prenacs' spellings are normalised
    "Text": ("any text, é;", "any text, é;", "any text, é;"),
    "String": ("s p", "s p", "s p"),
    "String(3)": ("abc", "abc", "abc"),
    "Integer[3]": ("1,-2", [1, -2], "1,-2"),  # at most 3
    "Float[2]": ("1.5,2", [1.5, 2.0], "1.5,2"),
    "Boolean[2]": ("True,0", [True, False], "true,false"),
    "Text[2]": ("a,b", ["a", "b"], "a,b"),
    "String[2]": ("x,y", ["x", "y"], "x,y"),
    "String(2)[2]": ("ab,c", ["ab", "c"], "ab,c"),
    "Integer;Boolean;String(2)[2];Float": ("1;no;ab,c;", [1, False, ["ab", "c"], None], "1;false;ab,c;"),
}


def test_every_datatype_of_the_grammar_is_stored_and_read_back_exactly(store: Store, tmp_path: Path) -> None:
    """The store's codec walks the grammar's tree: each scalar, String(N), arrays of each, a composite of them."""
    scalars = {node.name for node in map(datatypes.parse, EVERY_DATATYPE) if isinstance(node, datatypes.Scalar)}
    assert scalars == set(datatypes.NAMES)  # a scalar added to the grammar must be added here
    names = {datatype: f"dt{i}" for i, datatype in enumerate(EVERY_DATATYPE)}
    store.apply_attributes({name: {"datatype": datatype} for datatype, name in names.items()})
    output = list(names.values())
    results = tsv(tmp_path / "every.tsv", [["e1", *(text for text, _value, _stored in EVERY_DATATYPE.values())]])
    assert store.load(results, record(U[1], "every", "1", output)).values == len(output)
    typed = {v["attribute"]: v["value"] for v in store.iter_values(output)}
    stored = {v["attribute"]: v["value"] for v in store.iter_values(output, as_text=True)}
    assert typed == {names[datatype]: value for datatype, (_text, value, _stored) in EVERY_DATATYPE.items()}
    assert stored == {names[datatype]: text for datatype, (_text, _value, text) in EVERY_DATATYPE.items()}
    for i, (datatype, text, problem) in enumerate([("String(3)", "abcd", "'abcd' has 4 characters, more than 3"),
                                                   ("Integer[3]", "1,2,3,4", "4 values are more than Integer[3] holds"),
                                                   ("Boolean", "maybe", "'maybe' is not a Boolean"),
                                                   ("Float", "1,5", "'1,5' is not a Float")], 2):
        bad = tsv(tmp_path / "bad.tsv", [["e2", text]])
        with pytest.raises(UsageError) as info:
            store.load(bad, record(U[i], f"bad{i}", "1", [names[datatype]]))
        assert str(info.value) == f"{bad}:1: attribute '{names[datatype]}' ({datatype}): {problem}"


def _blake2b_hex(name: str) -> str:
    """An entity's key in revisions 0001 and 0002."""
    import hashlib

    return hashlib.blake2b(name.encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()


def _insert(connection, table: str, **row) -> None:
    connection.execute(sa.text(f"INSERT INTO {table} ({', '.join(row)}) VALUES ({', '.join(':' + key for key in row)})"), row)


def test_migration_from_0001_keeps_every_value_its_computation_and_which_is_current(store_url: str, tmp_path: Path) -> None:
    """A store at revision 0001 (values in provbatch_values, pointers in provbatch_current), written as 0001's
    writer wrote it: computation 1 loads e1, e2; computation 2 recomputes part of it; 1 is loaded again;
    3 recomputes e2's gc. Migrated to 0002, every answer is what it was, and writing goes on."""
    import json

    from provbatch.store.records import canonical_json
    from provbatch.store.url import create_engine

    engine = create_engine(store_url)
    assert migrate.upgrade(engine, to="0001") == (None, "0001")
    records = {1: record(U[1], "seq", "1.0", ["gc", "length"]), 2: record(U[2], "quick", "0.1", ["gc", "length"], sha="q1"),
               3: record(U[3], "seq", "2.0", ["gc"], sha="s2")}
    values = [  # (attribute, entity, computation, stored text), every row of 0001's provbatch_values
        (1, 1, 1, "0.5"), (1, 2, 1, "0.25"), (2, 1, 1, "100"), (2, 2, 1, "8"),
        (1, 1, 2, "0.52"), (2, 1, 2, "101"), (1, 2, 2, "0.3"),
        (1, 2, 3, "0.35"),
    ]
    pointers = [(1, 1, 1), (2, 1, 1), (1, 2, 3), (2, 2, 1)]  # after the reload of 1 and the recompute by 3
    with engine.begin() as connection:
        for pk, name, datatype in ((1, "gc", "Float"), (2, "length", "Integer")):
            _insert(connection, "provbatch_attributes", id=pk, name=name, datatype=datatype,
                    computation_group="seqstats")
        plugins: dict[tuple[str, str], int] = {}
        for pk, rec in records.items():
            key = (rec.plugin.plugin_id, rec.plugin.version)
            if key not in plugins:
                plugins[key] = len(plugins) + 1
                _insert(connection, "provbatch_plugins", id=plugins[key], plugin_id=key[0], version=key[1],
                        lang=rec.plugin.lang, sha256=rec.plugin.sha256, description=canonical_json(rec.plugin.description),
                        recorded_at="2026-01-01T00:00:00+00:00")
            _insert(connection, "provbatch_computations", id=pk, uuid=rec.uuid, plugin=plugins[key],
                    plugin_sha256=rec.plugin_sha256, parameters=canonical_json(rec.parameters), signature=rec.signature,
                    output=json.dumps(rec.output), comp_status=rec.comp_status, origin=rec.origin,
                    loaded_at="2026-01-01T00:00:00+00:00")
        for pk, name in ((1, "e1"), (2, "e2")):
            _insert(connection, "provbatch_entities", id=pk, name_key=_blake2b_hex(name), name=name)
        for attribute, entity, computation, value in values:
            _insert(connection, "provbatch_values", attribute=attribute, entity=entity, computation=computation, value=value)
        for attribute, entity, computation in pointers:
            _insert(connection, "provbatch_current", attribute=attribute, entity=entity, computation=computation)
    engine.dispose()
    with pytest.raises(UsageError, match=r"schema revision 0001, this provbatch needs 0005: run 'provbatch store init'"):
        Store(store_url)

    engine = create_engine(store_url)  # the rows as 0002 moved them (0003 kept them; 0004 packs them)
    assert migrate.upgrade(engine, to="0003") == ("0001", "0003")
    with engine.connect() as connection:
        assert not sa.inspect(connection).has_table("provbatch_values")
        assert sorted(connection.execute(sa.text("SELECT attribute, entity, computation, value FROM provbatch_current"))) == [
            (1, 1, 1, "0.5"), (1, 2, 3, "0.35"), (2, 1, 1, "100"), (2, 2, 1, "8")]
        assert sorted(connection.execute(sa.text("SELECT attribute, entity, computation, value FROM provbatch_history"))) == [
            (1, 1, 2, "0.52"), (1, 2, 1, "0.25"), (1, 2, 2, "0.3"), (2, 1, 2, "101")]
    engine.dispose()
    assert Store.init(store_url)[1:] == ("0003", "0005")

    with Store(store_url) as store:
        state = {("e1", "gc"): (0.5, U[1]), ("e1", "length"): (100, U[1]), ("e2", "gc"): (0.35, U[3]),
                 ("e2", "length"): (8, U[1])}
        assert current(store) == state
        history = [(v["entity"], v["attribute"], v["value"], v["computation"], v["current"], v["plugin_id"], v["plugin_version"])
                   for v in store.iter_values(history=True)]
        assert history == [  # by attribute, entity, computation
            ("e1", "gc", 0.5, U[1], True, "seq", "1.0"), ("e1", "gc", 0.52, U[2], False, "quick", "0.1"),
            ("e2", "gc", 0.25, U[1], False, "seq", "1.0"), ("e2", "gc", 0.3, U[2], False, "quick", "0.1"),
            ("e2", "gc", 0.35, U[3], True, "seq", "2.0"),
            ("e1", "length", 100, U[1], True, "seq", "1.0"), ("e1", "length", 101, U[2], False, "quick", "0.1"),
            ("e2", "length", 8, U[1], True, "seq", "1.0"),
            # computation 2 stored e2's gc without its length: packed (0004), its row of e2 holds both, the
            # length as no value (a row has a place for each attribute of its outset)
            ("e2", "length", None, U[2], False, "quick", "0.1"),
        ]
        answers = {(entity, attribute): (why["value"], why["computation"], why["plugin_id"], why["n_values"])
                   for entity, attribute in state for why in [store.why(entity, attribute)]}
        assert answers == {("e1", "gc"): (0.5, U[1], "seq", 2), ("e1", "length"): (100, U[1], "seq", 2),
                           ("e2", "gc"): (0.35, U[3], "seq", 3), ("e2", "length"): (8, U[1], "seq", 2)}
        # writing goes on: computation 2 loaded again makes its values current again, from history, as stored
        again = store.load(tsv(tmp_path / "b.tsv", [["e1", "0.52", "101"], ["e2", "0.3", ""]]), records[2])
        assert again.already_loaded
        state.update({("e1", "gc"): (0.52, U[2]), ("e1", "length"): (101, U[2]), ("e2", "gc"): (0.3, U[2]),
                      ("e2", "length"): (None, U[2])})
        assert current(store) == state
        assert [(why["n_values"], why["computation"]) for why in [store.why("e2", "gc"), store.why("e2", "length")]] == [
            (3, U[2]), (2, U[2])]
        assert sorted((v["entity"], v["attribute"], v["computation"], v["current"]) for v in store.iter_values(history=True)) == sorted([
            ("e1", "gc", U[1], False), ("e1", "gc", U[2], True), ("e2", "gc", U[1], False), ("e2", "gc", U[2], True),
            ("e2", "gc", U[3], False), ("e1", "length", U[1], False), ("e1", "length", U[2], True),
            ("e2", "length", U[1], False), ("e2", "length", U[2], True)])


def test_entity_keys_are_the_names_themselves_when_they_can_be() -> None:
    """A key is the name (so keys sort as names do), unless the name is long, not printable or ends with a
    space: then it is hashed, behind a control character no name that is its own key has."""
    from provbatch.store.writer import entity_keys

    long_name = "d/" * 128
    hashed = {name: "\x1f" + _blake2b_hex(name) for name in (long_name, "a ", "tab\there", "x\u00a0y", "bad\udcff")}
    assert {name: entity_key(name) for name in hashed} == hashed
    plain = ["e1", "a", "0123456789abcdef0123456789abcdef", "x" * 255, "dir/genome é.fna", " lead"]
    assert [entity_key(name) for name in plain] == plain
    assert entity_keys(plain) is plain  # the batch checked at once, no list built
    assert entity_keys(["e1", "a ", long_name]) == ["e1", hashed["a "], hashed[long_name]]
    assert entity_keys([]) == []


def test_migration_from_0002_rekeys_every_entity_and_every_answer_stays(store_url: str, tmp_path: Path) -> None:
    """A store at revision 0002 (blake2b hex keys), with names of each kind: a 32-hex-digit name that is
    another entity's old key (a one-pass rekey would collide), 'a' and 'a ' (one key on MariaDB if they
    were their own keys), a long name, a name with a tab. Migrated to 0003: each key is the new one, every
    value is found by its entity's name, and writing the same entities again creates none."""
    import json

    from provbatch.store.records import canonical_json
    from provbatch.store.url import create_engine

    names = ["e1", _blake2b_hex("e1"), "a", "a ", "d/" * 200, "tab\there"]
    engine = create_engine(store_url)
    assert migrate.upgrade(engine, to="0002") == (None, "0002")
    first = record(U[1], "seq", "1.0", ["length"])
    with engine.begin() as connection:  # 0002's rows, as 0002's writer wrote them (ids by the database)
        def last_id(table: str) -> int:
            return connection.execute(sa.text(f"SELECT MAX(id) FROM {table}")).scalar()

        _insert(connection, "provbatch_attributes", name="length", datatype="Integer")
        _insert(connection, "provbatch_plugins", plugin_id="seq", version="1.0", lang="python", sha256="s1",
                description=canonical_json(first.plugin.description), recorded_at="2026-01-01T00:00:00+00:00")
        _insert(connection, "provbatch_computations", uuid=first.uuid, plugin=last_id("provbatch_plugins"),
                plugin_sha256="s1", parameters=canonical_json(first.parameters), signature=first.signature,
                output=json.dumps(first.output), comp_status="completed", origin="provbatch-report",
                loaded_at="2026-01-01T00:00:00+00:00")
        attribute, computation = last_id("provbatch_attributes"), last_id("provbatch_computations")
        for number, name in enumerate(names, start=1):
            _insert(connection, "provbatch_entities", name_key=_blake2b_hex(name), name=name)
            _insert(connection, "provbatch_current", attribute=attribute, entity=last_id("provbatch_entities"),
                    computation=computation, value=str(number))
    engine.dispose()
    assert Store.init(store_url)[1:] == ("0002", "0005")
    engine = create_engine(store_url)
    with engine.connect() as connection:
        keys = dict(connection.execute(sa.text("SELECT COALESCE(name, name_key), name_key FROM provbatch_entities")).all())
        stored = dict(connection.execute(sa.text("SELECT name_key, name FROM provbatch_entities")).all())
    engine.dispose()
    assert keys == {name: entity_key(name) for name in names}
    assert stored == {entity_key(name): None if entity_key(name) == name else name for name in names}  # 0005: stored once
    assert [keys[name] for name in names[:3]] == names[:3]  # their own keys; "a " and the others hashed
    with Store(store_url) as store:
        assert {name: store.why(name, "length")["value"] for name in names} == {name: i for i, name in enumerate(names, 1)}
        assert [v["entity"] for v in store.iter_values(["length"], entities=["a ", "e1"])] == ["e1", "a "]
        again, _existed = store.record_computation(record(U[2], "seq", "2.0", ["length"], sha="s2"))
        store.writer(again, ["length"]).write([(name, ["7"]) for name in names])
        assert current(store) == {(name, "length"): (7, U[2]) for name in names}
        with store.engine.connect() as connection:
            assert connection.execute(sa.text("SELECT COUNT(*) FROM provbatch_entities")).scalar() == len(names)


def _entity_rows(url: str) -> tuple[list[tuple[object, ...]], bool]:
    """(id, name_key, name) of every entity, and whether ``name`` may be NULL, as the database says."""
    from provbatch.store.url import create_engine

    engine = create_engine(url)
    with engine.connect() as connection:
        rows = sorted(tuple(row) for row in connection.execute(sa.text("SELECT id, name_key, name FROM provbatch_entities")))
        nullable = {c["name"]: c["nullable"] for c in sa.inspect(connection).get_columns("provbatch_entities")}["name"]
    engine.dispose()
    return rows, nullable


def test_revision_0005_stores_a_name_once_and_its_downgrade_writes_every_name_back(store: Store, store_url: str) -> None:
    """Names that are their own keys and hashed ones, written at 0005: NULL beside an own key. Downgraded to
    0004 (as 0004's writer left a store: every name in full, NOT NULL), upgraded again: the same rows as
    written, and every answer by name the same."""
    from alembic import command

    from provbatch.store.url import create_engine

    names = ["e1", "e2", "x" * 255, "a ", "d/" * 200, "tab\there"]  # three own keys, three hashed
    pk, _existed = store.record_computation(record(U[1], "seq", "1.0", ["length"]))
    store.writer(pk, ["length"], fresh=True).write([(name, [str(i)]) for i, name in enumerate(names)])
    expected = {(name, "length"): (i, U[1]) for i, name in enumerate(names)}
    assert current(store) == expected
    store.close()
    written, nullable = _entity_rows(store_url)
    assert {key: name for _id, key, name in written} == {entity_key(name): None if entity_key(name) == name else name
                                                         for name in names}
    assert nullable is True and [name for _id, _key, name in written].count(None) == 3

    engine = create_engine(store_url)
    with engine.connect() as connection, connection.begin():
        command.downgrade(migrate._config(connection), "0004")
        assert migrate.current_revision(connection) == "0004"
    engine.dispose()
    downgraded, nullable = _entity_rows(store_url)
    assert downgraded == [(pk_, key, key if name is None else name) for pk_, key, name in written]
    assert nullable is False

    assert Store.init(store_url)[1:] == ("0004", "0005")
    assert _entity_rows(store_url) == (written, True)
    with Store(store_url) as again:
        assert current(again) == expected
        assert {name: again.why(name, "length")["value"] for name in names} == {name: i for i, name in enumerate(names)}


@pytest.mark.parametrize("datatype, texts", [
    ("Integer", ["1", "-2", " 3", "1_000"]), ("Integer", ["1", "x"]), ("Integer", ["1", ""]),
    ("Integer", ["12", "007", "0"]), ("Integer", ["\u0661\u0662", "3"]), ("Integer[2]", ["12,34", "5"]), ("Integer[3]", ["1,", "2"]),
    ("Float", ["0.5", "1e3", "inf", "-0"]), ("Float", ["0.5", "1,5"]),
    ("Boolean", ["yes", "False", "1", "t"]), ("Boolean", ["true", "maybe"]),
    ("String(3)", ["abc", "ab"]), ("String(3)", ["abc", "abcd"]), ("Text", ["any, é;", "x"]),
    ("Integer[3]", ["1,2,3", "4", "5,6"]), ("Integer[3]", ["1,2,3,4"]), ("Integer[3]", ["1,,2"]), ("Integer[3]", ["1", "a"]),
    ("Float[2]", ["1.5,2", "3"]), ("Float[2]", ["1.5,x"]), ("Boolean[2]", ["True,0", "no"]), ("Text[2]", ["a,b", "c"]),
    ("Text[2]", ["a,b,c"]), ("String(2)[2]", ["ab,c"]), ("String(2)[2]", ["ab,cde"]),
    ("Float;Integer[2]", ["0.5;1,2", "1;3"]), ("Float;Integer[2]", ["0.5;1,2,3"]), ("Float;Integer[2]", ["0.5;"]),
    ("Float;Integer[2]", ["0.5"]), ("Float;Integer[2]", ["x;1"]), ("Integer;Boolean;String(2)[2];Float", ["1;no;ab,c;2", "2;YES;a;1"]),
    ("Integer;Boolean", ["1;maybe"]), ("Boolean[2];Integer", ["true,no;1"]),
])
def test_a_column_is_encoded_exactly_as_each_of_its_values(datatype: str, texts: list[str]) -> None:
    """The column encoders' C-loop fast paths give what the per-value rule gives, errors included."""
    from provbatch.store.codec import ValueTextError, codec_for

    codec = codec_for(datatype)
    try:
        expected: object = [codec.encode_text(text) for text in texts]
    except ValueTextError as exc:
        expected = f"error: {exc}"
    try:
        got: object = codec.encode_column(texts)
    except ValueTextError as exc:
        got = f"error: {exc}"
    assert got == expected
    if not isinstance(expected, str):
        assert codec.decode_column(expected) == [codec.decode(stored) for stored in expected]
