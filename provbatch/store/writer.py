"""Bulk writing of values: entities created as needed, current values inserted or replaced, replaced ones kept.

On the hot path of ``provbatch load`` and ``batch-compute --store``, so it
talks to the driver directly (``executemany`` of tuples, in batches of
:data:`BATCH_ROWS`; PostgreSQL ``COPY`` through psycopg 3), bypassing
SQLAlchemy's per-row parameter processing. Everything written for a batch
goes in the caller's transaction: a value never exists without its
computation row (written and committed before).

Schema revision 0002 (see :mod:`.schema`): the value now is the row of
``provbatch_current``; writing a computation C's value of (attribute, entity)

- for an entity this transaction created: a plain insert (no other
  transaction can hold rows for it before this one commits);
- otherwise: a current row of another computation moves to
  ``provbatch_history``; C's own row in history (a reload of an earlier
  computation) moves back to current, with its stored value; else C's value
  becomes current. A current row that already is C's stays as it is
  (a reload changes nothing).
"""

from __future__ import annotations

import gc
import hashlib
import json
import re
import sqlite3
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from itertools import count, repeat
from typing import Any

BATCH_ROWS = 50_000
_SELECT_CHUNK = {"sqlite": 500, "postgresql": 5_000, "mysql": 5_000}


#: the longest entity name that is its own key (``provbatch_entities.name_key`` is VARCHAR(255))
KEY_CHARS = 255
#: the first character of a hashed key; a name that is its own key has no control character
HASHED_KEY = "\x1f"


def entity_key(name: str) -> str:
    """The unique key of an entity name: the name itself when it can be, else ``\\x1f`` + its blake2b-128 (hex).

    The name itself, so that keys sort as the names do: the entities of a
    sorted ids file (or of a glob, sorted) append to the key index instead of
    landing at random places in it, which is what a hash key made every
    insert do (1,000,000 new entities on SQLite: 12 s of CPU with hash keys,
    2 s with these). A name is its own key when it has at most
    :data:`KEY_CHARS` characters, all printable (no control character, no
    surrogate escape of a non-UTF-8 file name) and no trailing space
    (MariaDB's binary collations ignore trailing spaces in comparisons, so
    ``'a'`` and ``'a '`` would be one key). Any other name is hashed; a hashed
    key starts with a control character, so it is never a name's own key.
    """
    if len(name) <= KEY_CHARS and name.isprintable() and not name.endswith(" "):
        return name
    return HASHED_KEY + hashlib.blake2b(name.encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()


def entity_keys(names: Sequence[str]) -> Sequence[str]:
    """The keys of ``names``, in order: ``names`` itself when every name is its own key (checked in a few C loops)."""
    if names and max(map(len, names)) <= KEY_CHARS and "".join(names).isprintable() and " \t" not in "\t".join(names) + "\t":
        return names
    return [entity_key(name) for name in names]


class Dialect:
    """The SQL of one database kind for the few statements the writer runs."""

    def __init__(self, name: str) -> None:
        self.name = "mysql" if name in ("mysql", "mariadb") else name
        p = "?" if self.name == "sqlite" else "%s"
        self.p = p
        if self.name == "sqlite":
            ignore, tail = "INSERT OR IGNORE INTO", ""
        elif self.name == "postgresql":
            ignore, tail = "INSERT INTO", " ON CONFLICT DO NOTHING"
        else:
            ignore, tail = "INSERT IGNORE INTO", ""
        self.insert_entity = f"{ignore} provbatch_entities (name_key, name) VALUES ({p}, {p}){tail}"
        self.insert_input = (f"{ignore} provbatch_inputs (computation, entity, path, size, sha256, mtime) "
                             f"VALUES ({p}, {p}, {p}, {p}, {p}, {p}){tail}")
        self.select_chunk = _SELECT_CHUNK[self.name]
        #: MySQL/MariaDB: the connection may LOAD DATA LOCAL INFILE (set by the store after a probe)
        self.local_infile = False
        #: MySQL/MariaDB: the auto-increment ids one statement generates are consecutive (probed once, on
        #: first use: ``innodb_autoinc_lock_mode`` 0 or 1 and ``auto_increment_increment`` 1; None: not probed)
        self.consecutive_ids: bool | None = None
        #: SQLite: json_each is there (it is built in since 3.38; switched off at the first "no such table")
        self.sqlite_json = True


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a batch's row tuples are built and written.

    The rows are hundreds of thousands of fresh tuples, none in a cycle; each
    collection the allocations trigger walks every live object (the entity id
    cache among them), which profiling showed costing as much as building the rows.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _json_array(texts: Sequence[str | None]) -> str:
    """A JSON array of texts for SQLite's json_each, not ASCII-escaped: shorter, and faster to read back."""
    return json.dumps(texts, ensure_ascii=False)


def _chunks(rows: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(rows), size):
        yield rows[start:start + size]


class EntityIds:
    """Entity name -> id, creating missing entities; ids are cached (entities are never renumbered)."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._ids: dict[str, int] = {}
        #: ids of the entities the last :meth:`ids` call created itself, in this transaction: no other
        #: transaction can have rows for them before it commits, so their values are plain inserts
        self.created: Collection[int] = ()
        #: MySQL/MariaDB: the last batch's entities were all new, so the next batch's are created without
        #: first looking them up (a first load: the lookup of 100,000 absent keys cost ~1 s of server time)
        self._expect_new = False
        #: PostgreSQL: an entity this writer was creating existed already (the plain insert is not tried again)
        self._existing_met = False
        #: ids of entities :meth:`prepare` created, not yet asked for by :meth:`ids`
        self._prepared: set[int] = set()

    def forget(self) -> None:
        """After a rollback: ids created in it are gone."""
        self._ids.clear()
        self._prepared.clear()

    def prepare(self, cursor: Any, names: Sequence[str]) -> None:
        """Server databases: the missing entities of ``names`` created ahead of the :meth:`ids` call that asks
        for them, which counts them in :attr:`created` (a load creates them while it reads the rest of its file)."""
        self._ids_server(cursor, names)
        self._prepared.update(self.created)

    def ids(self, cursor: Any, names: Sequence[str]) -> Sequence[int]:
        """The ids of ``names`` (distinct names), in order; the missing entities are created (:attr:`created`)."""
        if self.dialect.name == "sqlite":
            return self._ids_sqlite(cursor, names)
        ids = self._ids_server(cursor, names)
        if self._prepared:
            prepared, created = self._prepared, self.created
            self._prepared = set()
            self.created = {entity_id for entity_id in ids if entity_id in prepared or entity_id in created}
        return ids

    def _ids_server(self, cursor: Any, names: Sequence[str]) -> Sequence[int]:
        cache = self._ids
        self.created = ()
        missing = list(dict.fromkeys(name for name in names if name not in cache))
        if missing:
            keyed = {entity_key(name): name for name in missing}
            if self.dialect.name == "postgresql" and len(keyed) > 1000:
                self._create_postgresql(cursor, list(keyed.items()))
            elif self._expect_new and len(keyed) > 1000 and self._create_mysql(cursor, sorted(keyed.items())):
                pass
            else:
                self._select(cursor, keyed)
                # sorted: concurrent writers creating overlapping entities lock them in one order (no deadlock)
                absent = sorted((key, name) for key, name in keyed.items() if name not in cache)
                if len(absent) > 1000 and self._create_mysql(cursor, absent):
                    self._expect_new = self._expect_new and len(absent) == len(keyed)
                    return [cache[name] for name in names]
                for chunk in _chunks(absent, BATCH_ROWS):
                    cursor.executemany(self.dialect.insert_entity, chunk)
                if absent:
                    self._select(cursor, dict(absent))
        return [cache[name] for name in names]

    def _ids_sqlite(self, cursor: Any, names: Sequence[str]) -> Sequence[int]:
        """SQLite: one writer at a time (the transaction holds the write lock), so the ids are given here,
        in input order, and no id is cached (each batch asks the database, which costs less than a cache
        of every name written: profiling showed the cache's dict operations costing as much as the SQL).

        The batch is inserted or ignored (the entity exists) by one statement over a JSON array, its
        rows numbered by position inside SQLite: when every row went in, which is a first write's case,
        the ids are ``first, first + 1, ...`` and no SELECT is needed at all; otherwise one join of the
        batch's keys with the key index gives them all.
        """
        keys = entity_keys(names)
        first = cursor.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM provbatch_entities").fetchone()[0]
        if self.dialect.sqlite_json:
            try:
                if keys is names:
                    cursor.execute("INSERT OR IGNORE INTO provbatch_entities (id, name_key, name) "
                                   "SELECT ? + key, value, value FROM json_each(?)", (first, _json_array(names)))
                else:  # some names are hashed: an array of [key, name] pairs (a join of two arrays is quadratic)
                    cursor.execute("INSERT OR IGNORE INTO provbatch_entities (id, name_key, name) "
                                   "SELECT ? + key, json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?)",
                                   (first, json.dumps(list(zip(keys, names)), ensure_ascii=False)))
            except sqlite3.OperationalError as exc:  # an SQLite built without JSON: nothing was inserted
                if "json_each" not in str(exc):
                    raise
                self.dialect.sqlite_json = False
        if not self.dialect.sqlite_json:
            cursor.executemany("INSERT OR IGNORE INTO provbatch_entities (id, name_key, name) VALUES (?, ?, ?)",
                               zip(count(first), keys, names))
        if cursor.rowcount == len(names):
            self.created = range(first, first + len(names))
            return self.created
        ids: list[int] = [0] * len(names)
        if self.dialect.sqlite_json:
            for position, entity_id in cursor.execute("SELECT k.key, e.id FROM json_each(?) k JOIN provbatch_entities e "
                                                      "ON e.name_key = k.value", (_json_array(keys),)):
                ids[position] = entity_id
        else:
            position_of = {key: position for position, key in enumerate(keys)}
            for chunk in _chunks(list(position_of), self.dialect.select_chunk):
                cursor.execute(f"SELECT name_key, id FROM provbatch_entities WHERE name_key IN ({', '.join('?' * len(chunk))})",
                               tuple(chunk))
                for key, entity_id in cursor.fetchall():
                    ids[position_of[key]] = entity_id
        self.created = {entity_id for entity_id in ids if entity_id >= first}  # ids below ``first`` existed before
        return ids

    def _create_postgresql(self, cursor: Any, absent: list[tuple[str, str]]) -> None:
        """Many entities in a few statements, without a SELECT first: COPY into a staging table, one
        set-based insert (in key order, so that concurrent writers lock overlapping entities in one
        order) whose RETURNING gives the ids of the entities this transaction created; the others'
        ids by one join.

        The insert is a plain one first (a first load's case; ``ON CONFLICT`` costs a speculative
        insertion per row, measured 1.6x slower), in a savepoint: when an entity exists already, it
        is rolled back to the savepoint and done with ``ON CONFLICT DO NOTHING``, as is every later
        batch of this writer.
        """
        from psycopg import errors

        cursor.execute("CREATE TEMPORARY TABLE IF NOT EXISTS provbatch_entities_load "
                       "(name_key varchar(255) COLLATE \"C\", name text) ON COMMIT DELETE ROWS")
        with cursor.copy("COPY provbatch_entities_load (name_key, name) FROM STDIN") as copy:
            text = _pairs_text(absent)
            if text is not None:
                copy.write(text)
            else:
                for row in absent:
                    copy.write_row(row)
        insert = ("INSERT INTO provbatch_entities (name_key, name) SELECT name_key, name FROM provbatch_entities_load "
                  "ORDER BY name_key")
        created: list[tuple[int, str]] | None = None
        if not self._existing_met:
            cursor.execute("SAVEPOINT provbatch_entities")
            try:
                cursor.execute(f"{insert} RETURNING id, name")
                created = cursor.fetchall()
                cursor.execute("RELEASE SAVEPOINT provbatch_entities")
            except errors.UniqueViolation:
                cursor.execute("ROLLBACK TO SAVEPOINT provbatch_entities")
                self._existing_met = True
        if created is None:
            cursor.execute(f"{insert} ON CONFLICT DO NOTHING RETURNING id, name")
            created = cursor.fetchall()
        self.created = {entity_id for entity_id, _name in created}
        self._ids.update((name, entity_id) for entity_id, name in created)
        if len(created) < len(absent):
            cursor.execute("SELECT l.name, e.id FROM provbatch_entities_load l JOIN provbatch_entities e "
                           "ON e.name_key = l.name_key")
            self._ids.update(cursor.fetchall())
        cursor.execute("DELETE FROM provbatch_entities_load")

    def _create_mysql(self, cursor: Any, absent: list[tuple[str, str]]) -> bool:
        """MySQL/MariaDB: many entities created by one ``LOAD DATA ... IGNORE`` into ``provbatch_entities``,
        their ids computed instead of selected; False when this path does not apply (nothing done).

        ``absent`` is sorted by key: concurrent writers creating overlapping entities lock them in one
        order. With ``innodb_autoinc_lock_mode`` 0 or 1 a LOAD DATA holds the table's AUTO-INC lock to
        its end, so the ids it generates are consecutive, in file order, from ``LAST_INSERT_ID()``.
        When every row went in, the ids are those; otherwise (some existed, another writer's or ours
        from an earlier batch) all are selected, and the created ones are those from ``LAST_INSERT_ID()``
        on (no id of the range can be another statement's). A row changed on the way in (a warning:
        e.g. a name longer than the column) is an error, as the INSERT would have raised it.
        """
        dialect = self.dialect
        if dialect.name != "mysql" or not dialect.local_infile:
            return False
        if dialect.consecutive_ids is None:
            cursor.execute("SELECT @@innodb_autoinc_lock_mode, @@auto_increment_increment")
            mode, increment = cursor.fetchone()
            dialect.consecutive_ids = int(mode) in (0, 1) and int(increment) == 1
        if not dialect.consecutive_ids:
            return False
        try:
            # a key may hold a backslash (a name that is its own key): escaped like the name
            text = "".join([f"{_escape(key) if _SPECIAL.search(key) else key}\t{_escape(name) if _SPECIAL.search(name) else name}\n"
                            for key, name in absent]).encode("utf-8")
        except UnicodeEncodeError:
            return False  # a name that is not UTF-8 (surrogate escapes): the INSERT path reports it
        created = _load_data_mysql_text(cursor, "provbatch_entities", "(name_key, name)", text, ignore=True)
        self._expect_new = created == len(absent)
        if created == len(absent):
            cursor.execute("SELECT @@warning_count")  # a diagnostics statement: the LOAD DATA's count
            warnings = int(cursor.fetchone()[0])
            if warnings:
                cursor.execute("SHOW WARNINGS LIMIT 1")
                raise RuntimeError(f"MariaDB/MySQL changed {warnings} entity name(s) on the way in: {cursor.fetchone()[2]}")
        if created == 0:
            self.created = set()
            self._select(cursor, dict(absent))
            return True
        cursor.execute("SELECT LAST_INSERT_ID()")
        first = int(cursor.fetchone()[0])
        if created == len(absent):
            self._ids.update((name, first + index) for index, (_key, name) in enumerate(absent))
            self.created = set(range(first, first + created))
        else:
            self._select(cursor, dict(absent))
            self.created = {self._ids[name] for _key, name in absent if self._ids[name] >= first}
        return True

    def _select(self, cursor: Any, keyed: dict[str, str]) -> None:
        keys = list(keyed)
        p = self.dialect.p
        for chunk in _chunks(keys, self.dialect.select_chunk):
            cursor.execute(f"SELECT name_key, id FROM provbatch_entities WHERE name_key IN ({', '.join([p] * len(chunk))})",
                           tuple(chunk))
            for key, entity_id in cursor.fetchall():
                self._ids[keyed[key]] = entity_id


#: a batch of encoded values: (entity names, one column of stored texts per attribute)
Columns = tuple[Sequence[str], Sequence[Sequence[Any]]]


def write_values(connection: Any, dialect: Dialect, entity_ids: EntityIds, computation: int,
                 attribute_ids: Sequence[int], batch: Columns,
                 fresh: bool, inputs: Sequence[tuple[str, str, int | None, str | None, float | None]] = ()) -> int:
    """Write a batch ``(entities, [stored texts of each attribute])`` of one computation; returns the values written.

    Columns, not rows: they are encoded column by column (:attr:`.codec.Codec.encode_column`)
    and written attribute by attribute, so no transposition is needed.
    ``fresh``: the computation has no value rows yet, so none of its rows can
    wait in history (a reload's two statements are skipped); rows already
    there are kept either way. The batch must name each entity once. Runs in
    the connection's transaction.
    """
    raw = connection.connection.driver_connection
    cursor = raw.cursor()
    try:
        with gc_paused():
            return _write(cursor, dialect, entity_ids, computation, attribute_ids, batch, fresh, inputs)
    finally:
        cursor.close()


def _write(cursor: Any, dialect: Dialect, entity_ids: EntityIds, computation: int, attribute_ids: Sequence[int],
           batch: Columns, fresh: bool,
           inputs: Sequence[tuple[str, str, int | None, str | None, float | None]]) -> int:
    names, columns = batch
    if not names:
        return 0
    if dialect.name != "sqlite":
        lock_attributes(cursor, dialect, attribute_ids)
    ids = entity_ids.ids(cursor, names)
    created = entity_ids.created
    new_ids: Sequence[int]
    old_ids: Sequence[int]
    new_columns: Sequence[Sequence[Any]]
    old_columns: Sequence[Sequence[Any]]
    if len(created) == len(ids):
        new_ids, old_ids, new_columns, old_columns = ids, [], columns, [[] for _column in columns]
    elif not created:
        new_ids, old_ids, new_columns, old_columns = [], ids, [[] for _column in columns], columns
    else:
        is_new = [entity_id in created for entity_id in ids]
        new_ids = [entity_id for entity_id, new in zip(ids, is_new) if new]
        old_ids = [entity_id for entity_id, new in zip(ids, is_new) if not new]
        new_columns = [[value for value, new in zip(column, is_new) if new] for column in columns]
        old_columns = [[value for value, new in zip(column, is_new) if not new] for column in columns]
    computation = int(computation)
    attribute_ids = [int(attribute_id) for attribute_id in attribute_ids]
    if new_ids:
        _insert_new(cursor, dialect, computation, attribute_ids, new_ids, new_columns)
    if old_ids:
        if dialect.name == "sqlite":
            _replace_sqlite(cursor, computation, attribute_ids, old_ids, old_columns, fresh)
        else:
            _replace_set_based(cursor, dialect, computation, attribute_ids, old_ids, old_columns, fresh)
    if inputs:
        input_ids = entity_ids.ids(cursor, [row[0] for row in inputs])
        cursor.executemany(dialect.insert_input, [(computation, entity_id, *row[1:])
                                                 for entity_id, row in zip(input_ids, inputs)])
    return len(ids) * len(attribute_ids)


def lock_attributes(cursor: Any, dialect: Dialect, attribute_ids: Sequence[int]) -> None:
    """Server databases: the attributes' rows locked for the transaction, in id order.

    Writers of one attribute then take turns a transaction at a time, so that
    the current row a writer moves to history is the one it replaces (two
    writers replacing the same value at once would otherwise lose one);
    writers of different attributes do not wait for each other. SQLite's
    write lock already serialises writers.
    """
    marks = ", ".join([dialect.p] * len(attribute_ids))
    cursor.execute(f"SELECT id FROM provbatch_attributes WHERE id IN ({marks}) ORDER BY id FOR UPDATE",
                   tuple(sorted(attribute_ids)))
    cursor.fetchall()


def _copy_columns(cursor: Any, table: str, computation: int, attribute_ids: Sequence[int],
                  ids: Sequence[int], columns: Sequence[Sequence[Any]]) -> None:
    """PostgreSQL: a batch's value rows into ``table`` by one COPY, attribute by attribute (primary-key order)."""
    with cursor.copy(f"COPY {table} (attribute, entity, computation, value) FROM STDIN") as copy:
        for attribute_id, column in zip(attribute_ids, columns):
            for start in range(0, len(ids), BATCH_ROWS):
                copy.write(_copy_text(attribute_id, computation, ids[start:start + BATCH_ROWS],
                                      column[start:start + BATCH_ROWS]))


def _insert_new(cursor: Any, dialect: Dialect, computation: int, attribute_ids: Sequence[int],
                ids: Sequence[int], columns: Sequence[Sequence[Any]]) -> None:
    """The values of entities this transaction created: plain inserts (COPY on PostgreSQL), attribute by
    attribute, so that in primary-key order the rows append to the b-tree."""
    if dialect.name == "postgresql":
        _copy_columns(cursor, "provbatch_current", computation, attribute_ids, ids, columns)
        return
    if dialect.name == "mysql" and dialect.local_infile and len(ids) * len(attribute_ids) > 1000:
        _load_data_mysql(cursor, "provbatch_current", computation, attribute_ids, ids, columns)
        return
    if dialect.name == "sqlite" and dialect.sqlite_json and _consecutive(ids):
        # consecutive ids (a batch of entities this transaction numbered): a column is one JSON array,
        # its rows numbered by position inside SQLite, no Python object per row (3x executemany's rate)
        try:
            for attribute_id, column in zip(attribute_ids, columns):
                cursor.execute(f"INSERT INTO provbatch_current (attribute, entity, computation, value) SELECT "
                               f"{attribute_id}, {ids[0]} + key, {computation}, value FROM json_each(?)",
                               (_json_array(column),))
            return
        except sqlite3.OperationalError as exc:  # an SQLite built without JSON: nothing was inserted
            if "json_each" not in str(exc):
                raise
            dialect.sqlite_json = False
    p = dialect.p
    for attribute_id, column in zip(attribute_ids, columns):
        # the attribute and computation as literals (our own integers): two parameters per row
        insert = (f"INSERT INTO provbatch_current (attribute, entity, computation, value) "
                  f"VALUES ({attribute_id}, {p}, {computation}, {p})")
        if dialect.name == "sqlite":
            cursor.executemany(insert, zip(ids, column))  # the driver takes an iterator: no list of tuples
        else:
            for start in range(0, len(ids), BATCH_ROWS):
                cursor.executemany(insert, list(zip(ids[start:start + BATCH_ROWS], column[start:start + BATCH_ROWS])))


def _consecutive(ids: Sequence[int]) -> bool:
    """Whether ``ids`` are ``ids[0], ids[0] + 1, ...`` (a range of entities this transaction numbered)."""
    if isinstance(ids, range):
        return ids.step == 1
    return ids[-1] - ids[0] == len(ids) - 1 and list(ids) == list(range(ids[0], ids[0] + len(ids)))


def _replace_sqlite(cursor: Any, computation: int, attribute_ids: Sequence[int], ids: Sequence[int],
                    columns: Sequence[Sequence[Any]], fresh: bool) -> None:
    """Existing entities on SQLite: a few primary-key statements per value, run by ``executemany`` (the
    write lock is held: nothing changes between them). ``fresh``: the computation has no rows yet,
    so none can wait in history."""
    keys = [(entity_id,) for entity_id in ids]
    for attribute_id, column in zip(attribute_ids, columns):
        same = f"attribute = {attribute_id} AND entity = ? AND computation"
        cursor.executemany("INSERT INTO provbatch_history (attribute, entity, computation, value) "
                           f"SELECT attribute, entity, computation, value FROM provbatch_current WHERE {same} <> {computation}",
                           keys)
        if not fresh:
            # a reload of an earlier computation: its values come back from history, as they were stored
            cursor.executemany("INSERT INTO provbatch_current (attribute, entity, computation, value) "
                               f"SELECT attribute, entity, computation, value FROM provbatch_history WHERE {same} = {computation} "
                               "ON CONFLICT (attribute, entity) DO UPDATE SET computation = excluded.computation, "
                               "value = excluded.value", keys)
            cursor.executemany(f"DELETE FROM provbatch_history WHERE {same} = {computation}", keys)
        cursor.executemany("INSERT INTO provbatch_current (attribute, entity, computation, value) "
                           f"VALUES ({attribute_id}, ?, {computation}, ?) "
                           "ON CONFLICT (attribute, entity) DO UPDATE SET computation = excluded.computation, "
                           "value = excluded.value WHERE provbatch_current.computation <> excluded.computation",
                           zip(ids, column))


#: the rows of a batch for existing entities, before they are merged (PostgreSQL, MySQL/MariaDB)
_LOAD_TABLE = {
    "postgresql": "CREATE TEMPORARY TABLE IF NOT EXISTS provbatch_load "
                  "(attribute integer, entity bigint, computation integer, value text) ON COMMIT DELETE ROWS",
    "mysql": "CREATE TEMPORARY TABLE IF NOT EXISTS provbatch_load "
             "(attribute integer, entity bigint, computation integer, value text, PRIMARY KEY (attribute, entity)) "
             "CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
}
_JOIN_CURRENT = "c.attribute = l.attribute AND c.entity = l.entity"
_JOIN_HISTORY = "h.attribute = l.attribute AND h.entity = l.entity AND h.computation = l.computation"
#: the merge, set-based: replaced current rows to history; rows of this computation in history back to
#: current (a reload); the batch's values made current where the current row is another computation's
_MERGE = {
    "postgresql": (
        "INSERT INTO provbatch_history (attribute, entity, computation, value) SELECT c.attribute, c.entity, "
        f"c.computation, c.value FROM provbatch_current c JOIN provbatch_load l ON {_JOIN_CURRENT} "
        "WHERE c.computation <> l.computation",
        "INSERT INTO provbatch_current (attribute, entity, computation, value) SELECT h.attribute, h.entity, "
        f"h.computation, h.value FROM provbatch_history h JOIN provbatch_load l ON {_JOIN_HISTORY} "
        "ON CONFLICT (attribute, entity) DO UPDATE SET computation = excluded.computation, value = excluded.value",
        f"DELETE FROM provbatch_history h USING provbatch_load l WHERE {_JOIN_HISTORY}",
        "INSERT INTO provbatch_current (attribute, entity, computation, value) "
        "SELECT attribute, entity, computation, value FROM provbatch_load "
        "ON CONFLICT (attribute, entity) DO UPDATE SET computation = excluded.computation, value = excluded.value "
        "WHERE provbatch_current.computation <> excluded.computation",
    ),
    "mysql": (
        "INSERT INTO provbatch_history (attribute, entity, computation, value) SELECT c.attribute, c.entity, "
        f"c.computation, c.value FROM provbatch_current c JOIN provbatch_load l ON {_JOIN_CURRENT} "
        "WHERE c.computation <> l.computation",
        "INSERT INTO provbatch_current (attribute, entity, computation, value) SELECT h.attribute, h.entity, "
        f"h.computation, h.value FROM provbatch_history h JOIN provbatch_load l ON {_JOIN_HISTORY} "
        "ON DUPLICATE KEY UPDATE computation = VALUES(computation), value = VALUES(value)",
        f"DELETE h FROM provbatch_history h JOIN provbatch_load l ON {_JOIN_HISTORY}",
        # the value first: MySQL assigns left to right, and it is compared with the computation before
        "INSERT INTO provbatch_current (attribute, entity, computation, value) "
        "SELECT attribute, entity, computation, value FROM provbatch_load l ON DUPLICATE KEY UPDATE "
        "value = IF(provbatch_current.computation <> VALUES(computation), VALUES(value), provbatch_current.value), "
        "computation = VALUES(computation)",
    ),
}


def _replace_set_based(cursor: Any, dialect: Dialect, computation: int, attribute_ids: Sequence[int], ids: Sequence[int],
                       columns: Sequence[Sequence[Any]], fresh: bool) -> None:
    """Existing entities on PostgreSQL and MySQL/MariaDB: the batch into a temporary table (COPY, LOAD DATA
    or executemany), then four set-based statements (:data:`_MERGE`; the two of a reload skipped when
    ``fresh``). The attributes are locked (:func:`lock_attributes`)."""
    cursor.execute(_LOAD_TABLE[dialect.name])
    n_rows = len(ids) * len(attribute_ids)
    if dialect.name == "postgresql":
        _copy_columns(cursor, "provbatch_load", computation, attribute_ids, ids, columns)
        cursor.execute("ANALYZE provbatch_load")  # else the planner guesses its size, and may scan provbatch_current
    elif n_rows > 1000 and dialect.local_infile:
        _load_data_mysql(cursor, "provbatch_load", computation, attribute_ids, ids, columns)
    else:
        insert = f"INSERT INTO provbatch_load (attribute, entity, computation, value) VALUES (%s, %s, {computation}, %s)"
        for attribute_id, column in zip(attribute_ids, columns):
            cursor.executemany(insert, list(zip(repeat(attribute_id, len(ids)), ids, column)))
    to_history, back_from_history, delete_from_history, upsert = _MERGE[dialect.name]
    cursor.execute(to_history)
    if not fresh:
        cursor.execute(back_from_history)
        cursor.execute(delete_from_history)
    cursor.execute(upsert)
    if dialect.name == "postgresql":
        cursor.execute("DELETE FROM provbatch_load")
    else:
        # dropped, not emptied: DELETE of a batch's rows cost a tenth of a load; a temporary table's DROP
        # does not commit the transaction (MySQL/MariaDB), and the next batch creates it again
        cursor.execute("DROP TEMPORARY TABLE provbatch_load")


def _pairs_text(pairs: Sequence[tuple[str, str]]) -> str | None:
    """(key, name) rows in COPY's text format, built by one join; None when a name needs escaping (a tab, a
    newline, a carriage return or a backslash in it: then psycopg's ``write_row``, ~7x the client CPU)."""
    text = "".join([f"{key}\t{name}\n" for key, name in pairs])
    if text.count("\t") != len(pairs) or text.count("\n") != len(pairs) or "\\" in text or "\r" in text:
        return None
    return text


def _copy_text(attribute_id: int, computation: int, ids: Sequence[int], values: Sequence[str | None]) -> str:
    """Rows (attribute, entity, computation, value) in the text format of PostgreSQL COPY and MySQL LOAD DATA:
    tab-separated, \\N for NULL.

    The value has no tab or newline (it comes from a TSV field), so only
    backslashes need escaping.
    """
    null, backslash, escaped = "\\N", "\\", "\\\\"
    head, middle = f"{attribute_id}\t", f"\t{computation}\t"
    return "".join([
        f"{head}{entity_id}{middle}{null if value is None else (value.replace(backslash, escaped) if backslash in value else value)}\n"
        for entity_id, value in zip(ids, values)])


#: what LOAD DATA's text format needs escaped in a field: an entity name may hold anything (a file path)
_SPECIAL = re.compile(r"[\\\t\n]")


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def _load_data_mysql(cursor: Any, table: str, computation: int, attribute_ids: Sequence[int], ids: Sequence[int],
                     columns: Sequence[Sequence[Any]]) -> None:
    """Rows (attribute, entity, computation, value) into ``table`` by one LOAD DATA LOCAL INFILE (as prenacs
    loads): the current values of new entities, or a batch into the temporary table of the merge."""
    text = "".join([_copy_text(attribute_id, computation, ids[start:start + BATCH_ROWS], column[start:start + BATCH_ROWS])
                    for attribute_id, column in zip(attribute_ids, columns) for start in range(0, len(ids), BATCH_ROWS)])
    _load_data_mysql_text(cursor, table, "(attribute, entity, computation, value)", text.encode("utf-8"))


def _load_data_mysql_text(cursor: Any, table: str, columns: str, text: bytes, ignore: bool = False) -> int:
    """LOAD DATA LOCAL INFILE of ``text`` (rows in :func:`_copy_text`'s format) into ``table``, from a
    private temporary file; returns the rows inserted."""
    import os
    import tempfile

    fields = "FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n'"
    with tempfile.NamedTemporaryFile(prefix="provbatch-load-", suffix=".tsv") as handle:
        handle.write(text)
        handle.flush()
        cursor.execute(f"LOAD DATA LOCAL INFILE %s {'IGNORE ' if ignore else ''}INTO TABLE {table} CHARACTER SET utf8mb4 "
                       f"{fields} {columns}", (os.fspath(handle.name),))
    return int(cursor.rowcount)
