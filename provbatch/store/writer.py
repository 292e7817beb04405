"""Bulk writing of values: entities created as needed, current values inserted or replaced, replaced ones kept.

On the hot path of ``provbatch load`` and ``batch-compute --store``, so it
talks to the driver directly (``executemany`` of tuples, in batches of
:data:`BATCH_ROWS`; PostgreSQL ``COPY`` through psycopg 3), bypassing
SQLAlchemy's per-row parameter processing. Everything written for a batch
goes in the caller's transaction: a value never exists without its
computation row (written and committed before).

Schema revision 0005 (see :mod:`.schema`): a new entity's row holds its name
only when the name is not its own key (:func:`stored_name`). A computation C
writes, for each of its outsets O and each entity, one row of O's values
(:mod:`.packs`):

- for an entity this transaction created: a plain insert (no other
  transaction can hold rows for it before this one commits);
- otherwise: in the current rows of other outsets that hold some of O's
  attributes, those attributes' bits are cleared (their values are history
  now); a current row of O from another computation moves to
  ``provbatch_history``; C's own row in history (a reload of an earlier
  computation) moves back to current, with its stored values; else C's row
  becomes current. A current row that already is C's keeps its values, and
  gets every bit back.
"""

from __future__ import annotations

import gc
import hashlib
import json
import re
import sqlite3
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from itertools import count
from typing import Any

from .packs import Outset, pack
from .schema import OUTSET_ATTRIBUTES

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


def stored_name(key: str, name: str) -> str | None:
    """``provbatch_entities.name`` of an entity: None when the name is its own key (stored once, as the key)."""
    return None if name == key else name


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
    """A JSON array of texts for SQLite's json_each, not ASCII-escaped: shorter, and faster to read back.

    The usual batch (names, numbers) needs no escape at all: its texts are then
    joined between quotes, a third of ``json.dumps``' time (0.3 s of the child's
    ~2.6 s for 1,000,000 values of ``batch-compute --store``). A text holds
    nothing to escape when it has no quote, no backslash and no control
    character; ``isprintable`` (also False for a few characters JSON would not
    escape, which then take the exact way) checks the last in one C loop.
    """
    try:
        joined = '","'.join(texts)  # type: ignore[arg-type]
    except TypeError:  # a None (no value) among them
        return json.dumps(texts, ensure_ascii=False)
    if "\\" in joined or joined.count('"') != 2 * (len(texts) - 1) or not joined.isprintable():
        return json.dumps(texts, ensure_ascii=False)
    return f'["{joined}"]'


def _own_keys_array(names: Sequence[str]) -> str | None:
    """:func:`_json_array` of ``names`` when every name is its own key (:func:`entity_keys`) and needs no
    escape, checked on one joined text (the two checks shared one ``isprintable`` pass); else None."""
    if not names or max(map(len, names)) > KEY_CHARS:
        return None
    joined = '","'.join(names)
    if ("\\" in joined or joined.count('"') != 2 * (len(names) - 1) or not joined.isprintable()
            or ' ","' in joined or joined.endswith(" ")):
        return None
    return f'["{joined}"]'


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
        #: first looking them up (a first load: the lookup of 100,000 absent keys cost ~1 s of server time);
        #: None before the first batch, which expects new entities when the store has none (:meth:`_new_expected`)
        self._expect_new: bool | None = None
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
            elif len(keyed) > 1000 and self._new_expected(cursor) and self._create_mysql(cursor, sorted(keyed.items())):
                pass
            else:
                self._select(cursor, keyed)
                # sorted: concurrent writers creating overlapping entities lock them in one order (no deadlock)
                absent = sorted((key, name) for key, name in keyed.items() if name not in cache)
                if len(absent) > 1000 and self._create_mysql(cursor, absent):
                    self._expect_new = self._expect_new and len(absent) == len(keyed)
                    return [cache[name] for name in names]
                for chunk in _chunks(absent, BATCH_ROWS):
                    cursor.executemany(self.dialect.insert_entity, [(key, stored_name(key, name)) for key, name in chunk])
                if absent:
                    self._select(cursor, dict(absent))
        return [cache[name] for name in names]

    def _new_expected(self, cursor: Any) -> bool:
        """MySQL/MariaDB: whether the batch's entities are expected to be new, so created before any lookup:
        after a batch whose entities all were, or, for the first batch, when the store has no entity yet
        (a first load; one probe: the lookup of the first batch's 50,000 keys cost 0.13 s of a 1.75 s
        load of 1,000,000 values). Only a guess: entities that exist after all are found by the lookup
        that follows the create (:meth:`_create_mysql`)."""
        if self._expect_new is None:
            self._expect_new = False
            if self.dialect.name == "mysql":
                cursor.execute("SELECT 1 FROM provbatch_entities LIMIT 1")
                self._expect_new = cursor.fetchone() is None
        return self._expect_new

    def _ids_sqlite(self, cursor: Any, names: Sequence[str]) -> Sequence[int]:
        """SQLite: one writer at a time (the transaction holds the write lock), so the ids are given here,
        in input order, and no id is cached (each batch asks the database, which costs less than a cache
        of every name written: profiling showed the cache's dict operations costing as much as the SQL).

        The batch is inserted or ignored (the entity exists) by one statement over a JSON array, its
        rows numbered by SQLite: a row inserted without an id gets the largest id so far plus one
        (https://www.sqlite.org/autoinc.html), so when every row went in, which is a first write's case,
        the ids are ``first, first + 1, ...`` in the array's order, and no SELECT of them is needed (a
        check of the first and the last costs two lookups). Giving SQLite the ids instead costs a
        search of the table per row: 1.05 s against 0.69 s per 1,000,000 new entities, measured with
        ``sqlite3`` alone. Otherwise one join of the batch's keys with the key index gives them all.
        """
        names_array = _own_keys_array(names)  # the usual batch: the names are the keys, and their JSON is a join
        keys = names if names_array is not None else entity_keys(names)
        if keys is names and names_array is None:
            names_array = _json_array(names)
        first = cursor.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM provbatch_entities").fetchone()[0]
        if self.dialect.sqlite_json:
            try:
                if names_array is not None:
                    cursor.execute("INSERT OR IGNORE INTO provbatch_entities (name_key, name) "
                                   "SELECT value, NULL FROM json_each(?)", (names_array,))
                else:  # some names are hashed: an array of [key, name] pairs (a join of two arrays is quadratic)
                    cursor.execute("INSERT OR IGNORE INTO provbatch_entities (name_key, name) "
                                   "SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?)",
                                   (json.dumps(list(zip(keys, map(stored_name, keys, names))), ensure_ascii=False),))
            except sqlite3.OperationalError as exc:  # an SQLite built without JSON: nothing was inserted
                if "json_each" not in str(exc):
                    raise
                self.dialect.sqlite_json = False
        if not self.dialect.sqlite_json:
            cursor.executemany("INSERT OR IGNORE INTO provbatch_entities (id, name_key, name) VALUES (?, ?, ?)",
                               zip(count(first), keys, map(stored_name, keys, names)))
        if cursor.rowcount == len(names) and self._numbered(cursor, first, keys):
            self.created = range(first, first + len(names))
            return self.created
        ids: list[int] = [0] * len(names)
        if self.dialect.sqlite_json:
            for position, entity_id in cursor.execute("SELECT k.key, e.id FROM json_each(?) k JOIN provbatch_entities e "
                                                      "ON e.name_key = k.value", (names_array or _json_array(keys),)):
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

    @staticmethod
    def _numbered(cursor: Any, first: int, keys: Sequence[str]) -> bool:
        """Whether the ``len(keys)`` entities just inserted are ``first, first + 1, ...`` in the keys' order
        (their first and last, checked; otherwise the batch's ids are looked up)."""
        last = first + len(keys) - 1
        found = dict(cursor.execute("SELECT id, name_key FROM provbatch_entities WHERE id IN (?, ?)", (first, last)))
        return found.get(first) == keys[0] and found.get(last) == keys[-1]

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
        insert = ("INSERT INTO provbatch_entities (name_key, name) SELECT name_key, NULLIF(name, name_key) "
                  "FROM provbatch_entities_load ORDER BY name_key")
        created: list[tuple[int, str]] | None = None
        if not self._existing_met:
            cursor.execute("SAVEPOINT provbatch_entities")
            try:
                cursor.execute(f"{insert} RETURNING id, COALESCE(name, name_key)")
                created = cursor.fetchall()
                cursor.execute("RELEASE SAVEPOINT provbatch_entities")
            except errors.UniqueViolation:
                cursor.execute("ROLLBACK TO SAVEPOINT provbatch_entities")
                self._existing_met = True
        if created is None:
            cursor.execute(f"{insert} ON CONFLICT DO NOTHING RETURNING id, COALESCE(name, name_key)")
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
        null = "\\N"
        try:
            # a key may hold a backslash (a name that is its own key): escaped; the name is \N (NULL) when it is the key
            text = "".join([f"{_escape(key) if _SPECIAL.search(key) else key}\t"
                            f"{null if name == key else _escape(name) if _SPECIAL.search(name) else name}\n"
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
#: every bit a row's current bits can have
_ALL_BITS = (1 << OUTSET_ATTRIBUTES) - 1


def write_values(connection: Any, dialect: Dialect, entity_ids: EntityIds, computation: int,
                 outsets: Sequence[Outset], batch: Columns,
                 fresh: bool, inputs: Sequence[tuple[str, str, int | None, str | None, float | None]] = ()) -> int:
    """Write a batch ``(entities, [stored texts of each attribute])`` of one computation; returns the values written.

    ``outsets``: the computation's (:func:`.packs.ensure_outsets`), whose attributes are the batch's
    columns in order. Columns, not rows: they are encoded column by column
    (:attr:`.codec.Codec.encode_column`) and packed an outset at a time, so no transposition is needed.
    ``fresh``: the computation has no rows yet, so none of its rows can wait in history (a reload's
    two statements are skipped); rows already there are kept either way. The batch must name each
    entity once. Runs in the connection's transaction.
    """
    raw = connection.connection.driver_connection
    cursor = raw.cursor()
    try:
        with gc_paused():
            return _write(cursor, dialect, entity_ids, computation, outsets, batch, fresh, inputs)
    finally:
        cursor.close()


def _write(cursor: Any, dialect: Dialect, entity_ids: EntityIds, computation: int, outsets: Sequence[Outset],
           batch: Columns, fresh: bool,
           inputs: Sequence[tuple[str, str, int | None, str | None, float | None]]) -> int:
    names, columns = batch
    if not names:
        return 0
    attribute_ids = [attribute_id for outset in outsets for attribute_id in outset.attributes if attribute_id is not None]
    if len(columns) != len(attribute_ids):
        raise ValueError(f"{len(columns)} column(s) for the {len(attribute_ids)} attribute(s) of the computation")
    if dialect.name != "sqlite":
        lock_attributes(cursor, dialect, attribute_ids)
    ids = entity_ids.ids(cursor, names)
    created = entity_ids.created
    new_ids: Sequence[int]
    old_ids: Sequence[int]
    is_new: list[bool] | None = None
    if len(created) == len(ids):
        new_ids, old_ids = ids, []
    elif not created:
        new_ids, old_ids = [], ids
    else:
        is_new = [entity_id in created for entity_id in ids]
        new_ids = [entity_id for entity_id, new in zip(ids, is_new) if new]
        old_ids = [entity_id for entity_id, new in zip(ids, is_new) if not new]
    computation = int(computation)
    stored = _stored_outsets(cursor, dialect) if old_ids else []
    at = 0
    for outset in outsets:
        packed = pack(columns[at:at + len(outset.attributes)])
        at += len(outset.attributes)
        if is_new is None:
            new_packed, old_packed = (packed, []) if new_ids else ([], packed)
        else:
            new_packed = [text for text, new in zip(packed, is_new) if new]
            old_packed = [text for text, new in zip(packed, is_new) if not new]
        if new_ids:
            _insert_new(cursor, dialect, computation, outset, new_ids, new_packed)
        if old_ids:
            others = _overlapping(outset, stored)
            if dialect.name == "sqlite":
                _replace_sqlite(cursor, computation, outset, others, old_ids, old_packed, fresh)
            else:
                _replace_set_based(cursor, dialect, computation, outset, others, old_ids, old_packed, fresh)
    if inputs:
        input_ids = entity_ids.ids(cursor, [row[0] for row in inputs])
        cursor.executemany(dialect.insert_input, [(computation, entity_id, *row[1:])
                                                 for entity_id, row in zip(input_ids, inputs)])
    return len(ids) * len(attribute_ids)


def _stored_outsets(cursor: Any, dialect: Dialect) -> list[Outset]:
    """Every outset, read in the transaction after its locks (a concurrent writer's new outset is committed
    before any row of it): on MySQL/MariaDB by a locking read, which sees the newest rows, not the
    transaction's snapshot."""
    lock = " LOCK IN SHARE MODE" if dialect.name == "mysql" else ""
    cursor.execute(f"SELECT id, attributes FROM provbatch_outsets ORDER BY id{lock}")
    return [Outset(int(outset_id), tuple(json.loads(text))) for outset_id, text in cursor.fetchall()]


def _overlapping(outset: Outset, stored: Sequence[Outset]) -> list[tuple[int, int]]:
    """(outset id, bits) of the other outsets that hold some of ``outset``'s attributes: the bits of those
    attributes, cleared in the rows of entities this outset's row becomes current for."""
    mine = {attribute_id for attribute_id in outset.attributes if attribute_id is not None}
    found = []
    for other in stored:
        if other.id != outset.id:
            bits = sum(1 << position for position, attribute_id in enumerate(other.attributes) if attribute_id in mine)
            if bits:
                found.append((other.id, bits))
    return found


def lock_attributes(cursor: Any, dialect: Dialect, attribute_ids: Sequence[int]) -> None:
    """Server databases: the attributes' rows locked for the transaction, in id order.

    Writers of one attribute then take turns a transaction at a time, so that
    the current row a writer moves to history (or whose bits it clears) is the
    one it replaces (two writers replacing the same value at once would
    otherwise lose one); writers of different attributes do not wait for each
    other. SQLite's write lock already serialises writers.
    """
    marks = ", ".join([dialect.p] * len(attribute_ids))
    cursor.execute(f"SELECT id FROM provbatch_attributes WHERE id IN ({marks}) ORDER BY id FOR UPDATE",
                   tuple(sorted(attribute_ids)))
    cursor.fetchall()


#: the columns of a current row, in the order the bulk paths write them
_CURRENT_COLUMNS = "(outset, entity, computation, current_bits, values_text)"


def _insert_new(cursor: Any, dialect: Dialect, computation: int, outset: Outset,
                ids: Sequence[int], packed: Sequence[str | None]) -> None:
    """The rows of entities this transaction created: plain inserts (COPY on PostgreSQL, LOAD DATA on
    MySQL/MariaDB), in entity order, so that they append to the b-tree."""
    bits = outset.bits
    if dialect.name == "postgresql":
        with cursor.copy(f"COPY provbatch_current {_CURRENT_COLUMNS} FROM STDIN") as copy:
            for start in range(0, len(ids), BATCH_ROWS):
                copy.write(_copy_text(f"{outset.id}\t", f"\t{computation}\t{bits}\t", ids[start:start + BATCH_ROWS],
                                      packed[start:start + BATCH_ROWS]))
        return
    if dialect.name == "mysql" and dialect.local_infile and len(ids) > 200:
        text = "".join([_copy_text(f"{outset.id}\t", f"\t{computation}\t{bits}\t", ids[start:start + BATCH_ROWS],
                                   packed[start:start + BATCH_ROWS]) for start in range(0, len(ids), BATCH_ROWS)])
        _load_data_mysql_text(cursor, "provbatch_current", _CURRENT_COLUMNS, text.encode("utf-8"))
        return
    if dialect.name == "sqlite" and dialect.sqlite_json and _consecutive(ids):
        # consecutive ids (a batch of entities this transaction numbered): the rows are one JSON array,
        # numbered by position inside SQLite, no Python object per row (3x executemany's rate)
        try:
            cursor.execute(f"INSERT INTO provbatch_current {_CURRENT_COLUMNS} SELECT "
                           f"{outset.id}, {ids[0]} + key, {computation}, {bits}, value FROM json_each(?)",
                           (_json_array(packed),))
            return
        except sqlite3.OperationalError as exc:  # an SQLite built without JSON: nothing was inserted
            if "json_each" not in str(exc):
                raise
            dialect.sqlite_json = False
    p = dialect.p
    # the outset, computation and bits as literals (our own integers): two parameters per row
    insert = f"INSERT INTO provbatch_current {_CURRENT_COLUMNS} VALUES ({outset.id}, {p}, {computation}, {bits}, {p})"
    if dialect.name == "sqlite":
        cursor.executemany(insert, zip(ids, packed))  # the driver takes an iterator: no list of tuples
    else:
        for start in range(0, len(ids), BATCH_ROWS):
            cursor.executemany(insert, list(zip(ids[start:start + BATCH_ROWS], packed[start:start + BATCH_ROWS])))


def _consecutive(ids: Sequence[int]) -> bool:
    """Whether ``ids`` are ``ids[0], ids[0] + 1, ...`` (a range of entities this transaction numbered)."""
    if isinstance(ids, range):
        return ids.step == 1
    return ids[-1] - ids[0] == len(ids) - 1 and list(ids) == list(range(ids[0], ids[0] + len(ids)))


#: the upsert of a row of computation C: its values where the row was another computation's, kept where it is
#: C's already (a reload changes nothing stored); every bit set either way (C's values are all current now)
_UPSERT_SET = ("values_text = CASE WHEN provbatch_current.computation <> excluded.computation THEN excluded.values_text "
               "ELSE provbatch_current.values_text END, computation = excluded.computation, "
               "current_bits = excluded.current_bits WHERE provbatch_current.computation <> excluded.computation "
               "OR provbatch_current.current_bits <> excluded.current_bits")


def _replace_sqlite(cursor: Any, computation: int, outset: Outset, others: Sequence[tuple[int, int]],
                    ids: Sequence[int], packed: Sequence[str | None], fresh: bool) -> None:
    """Existing entities on SQLite: a few primary-key statements per entity, run by ``executemany`` (the
    write lock is held: nothing changes between them). ``fresh``: the computation has no rows yet,
    so none can wait in history."""
    keys = [(entity_id,) for entity_id in ids]
    for other, bits in others:  # the values this outset replaces in other outsets' rows: no longer current
        cursor.executemany(f"UPDATE provbatch_current SET current_bits = current_bits & {_ALL_BITS ^ bits} "
                           f"WHERE outset = {other} AND entity = ? AND (current_bits & {bits}) <> 0", keys)
    same = f"outset = {outset.id} AND entity = ? AND computation"
    cursor.executemany("INSERT INTO provbatch_history (outset, entity, computation, values_text) "
                       f"SELECT outset, entity, computation, values_text FROM provbatch_current WHERE {same} <> {computation}",
                       keys)
    if not fresh:
        # a reload of an earlier computation: its values come back from history, as they were stored
        cursor.executemany(f"INSERT INTO provbatch_current {_CURRENT_COLUMNS} "
                           f"SELECT outset, entity, computation, {outset.bits}, values_text FROM provbatch_history "
                           f"WHERE {same} = {computation} ON CONFLICT (outset, entity) DO UPDATE SET "
                           "computation = excluded.computation, current_bits = excluded.current_bits, "
                           "values_text = excluded.values_text", keys)
        cursor.executemany(f"DELETE FROM provbatch_history WHERE {same} = {computation}", keys)
    cursor.executemany(f"INSERT INTO provbatch_current {_CURRENT_COLUMNS} "
                       f"VALUES ({outset.id}, ?, {computation}, {outset.bits}, ?) "
                       f"ON CONFLICT (outset, entity) DO UPDATE SET {_UPSERT_SET}", zip(ids, packed))


#: the rows of a batch for existing entities, before they are merged (PostgreSQL, MySQL/MariaDB)
_LOAD_TABLE = {
    "postgresql": "CREATE TEMPORARY TABLE IF NOT EXISTS provbatch_load (entity bigint, values_text text) ON COMMIT DELETE ROWS",
    "mysql": "CREATE TEMPORARY TABLE IF NOT EXISTS provbatch_load (entity bigint, values_text text, PRIMARY KEY (entity)) "
             "CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
}


def _merge(dialect: str, outset: Outset, computation: int, others: Sequence[tuple[int, int]]
           ) -> tuple[list[str], str, str, str, str]:
    """The set-based merge of a batch in ``provbatch_load`` for one outset of computation C: the bits of the
    attributes it replaces cleared in other outsets' rows; replaced current rows to history; C's rows in
    history back to current (a reload); the batch made current (:data:`_UPSERT_SET`)."""
    o, c, bits = outset.id, computation, outset.bits
    join_current = f"c.outset = {o} AND c.entity = l.entity"
    join_history = f"h.outset = {o} AND h.entity = l.entity AND h.computation = {c}"
    to_history = ("INSERT INTO provbatch_history (outset, entity, computation, values_text) SELECT c.outset, c.entity, "
                  f"c.computation, c.values_text FROM provbatch_current c JOIN provbatch_load l ON {join_current} "
                  f"WHERE c.computation <> {c}")
    back = (f"INSERT INTO provbatch_current {_CURRENT_COLUMNS} SELECT h.outset, h.entity, h.computation, {bits}, "
            f"h.values_text FROM provbatch_history h JOIN provbatch_load l ON {join_history} ")
    upsert = f"INSERT INTO provbatch_current {_CURRENT_COLUMNS} SELECT {o}, l.entity, {c}, {bits}, l.values_text FROM provbatch_load l "
    if dialect == "postgresql":
        clear = [f"UPDATE provbatch_current c SET current_bits = c.current_bits & {_ALL_BITS ^ other_bits} FROM provbatch_load l "
                 f"WHERE c.outset = {other} AND c.entity = l.entity AND (c.current_bits & {other_bits}) <> 0"
                 for other, other_bits in others]
        back += ("ON CONFLICT (outset, entity) DO UPDATE SET computation = excluded.computation, "
                 "current_bits = excluded.current_bits, values_text = excluded.values_text")
        delete = f"DELETE FROM provbatch_history h USING provbatch_load l WHERE {join_history}"
        upsert += f"ON CONFLICT (outset, entity) DO UPDATE SET {_UPSERT_SET}"
    else:
        clear = [f"UPDATE provbatch_current c JOIN provbatch_load l ON c.outset = {other} AND c.entity = l.entity "
                 f"SET c.current_bits = c.current_bits & {_ALL_BITS ^ other_bits} WHERE (c.current_bits & {other_bits}) <> 0"
                 for other, other_bits in others]
        back += ("ON DUPLICATE KEY UPDATE computation = VALUES(computation), current_bits = VALUES(current_bits), "
                 "values_text = VALUES(values_text)")
        delete = f"DELETE h FROM provbatch_history h JOIN provbatch_load l ON {join_history}"
        # the values first: MySQL assigns left to right, and they are chosen by the computation before
        upsert += ("ON DUPLICATE KEY UPDATE values_text = IF(provbatch_current.computation <> VALUES(computation), "
                   "VALUES(values_text), provbatch_current.values_text), computation = VALUES(computation), "
                   "current_bits = VALUES(current_bits)")
    return clear, to_history, back, delete, upsert


def _replace_set_based(cursor: Any, dialect: Dialect, computation: int, outset: Outset, others: Sequence[tuple[int, int]],
                       ids: Sequence[int], packed: Sequence[str | None], fresh: bool) -> None:
    """Existing entities on PostgreSQL and MySQL/MariaDB: the batch into a temporary table (COPY, LOAD DATA
    or executemany), then a few set-based statements (:func:`_merge`; the two of a reload skipped when
    ``fresh``). The attributes are locked (:func:`lock_attributes`)."""
    cursor.execute(_LOAD_TABLE[dialect.name])
    if dialect.name == "postgresql":
        with cursor.copy("COPY provbatch_load (entity, values_text) FROM STDIN") as copy:
            for start in range(0, len(ids), BATCH_ROWS):
                copy.write(_copy_text("", "\t", ids[start:start + BATCH_ROWS], packed[start:start + BATCH_ROWS]))
        cursor.execute("ANALYZE provbatch_load")  # else the planner guesses its size, and may scan provbatch_current
    elif len(ids) > 200 and dialect.local_infile:
        text = "".join([_copy_text("", "\t", ids[start:start + BATCH_ROWS], packed[start:start + BATCH_ROWS])
                        for start in range(0, len(ids), BATCH_ROWS)])
        _load_data_mysql_text(cursor, "provbatch_load", "(entity, values_text)", text.encode("utf-8"))
    else:
        for start in range(0, len(ids), BATCH_ROWS):
            cursor.executemany("INSERT INTO provbatch_load (entity, values_text) VALUES (%s, %s)",
                               list(zip(ids[start:start + BATCH_ROWS], packed[start:start + BATCH_ROWS])))
    clear, to_history, back_from_history, delete_from_history, upsert = _merge(dialect.name, outset, computation, others)
    for statement in clear:
        cursor.execute(statement)
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


def _copy_text(head: str, middle: str, ids: Sequence[int], values: Sequence[str | None]) -> str:
    """Rows ``head + entity + middle + value`` in the text format of PostgreSQL COPY and MySQL LOAD DATA:
    tab-separated, \\N for NULL.

    A value holds no newline (it comes from results-file fields); the tabs
    that join a row's values and its backslashes are escaped.
    """
    null, backslash, escaped, tab, escaped_tab = "\\N", "\\", "\\\\", "\t", "\\t"
    return "".join([
        f"{head}{entity_id}{middle}"
        f"{null if value is None else (value.replace(backslash, escaped).replace(tab, escaped_tab) if backslash in value or tab in value else value)}\n"
        for entity_id, value in zip(ids, values)])


#: what LOAD DATA's text format needs escaped in a field: an entity name may hold anything (a file path)
_SPECIAL = re.compile(r"[\\\t\n]")


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


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
