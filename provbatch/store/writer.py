"""Bulk writing of values: entities created as needed, value rows added, current pointers moved.

On the hot path of ``provbatch load`` and ``batch-compute --store``, so it
talks to the driver directly (``executemany`` of tuples, in batches of
:data:`BATCH_ROWS`; PostgreSQL ``COPY`` through psycopg 3), bypassing
SQLAlchemy's per-row parameter processing. Everything written for a batch
goes in the caller's transaction: a value never exists without its
computation row (written and committed before) and its current pointer.
"""

from __future__ import annotations

import gc
import hashlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from itertools import repeat
from typing import Any

BATCH_ROWS = 50_000
_SELECT_CHUNK = {"sqlite": 500, "postgresql": 5_000, "mysql": 5_000}


def entity_key(name: str) -> str:
    """The fixed-size unique key of an entity name (blake2b-128, hex)."""
    return hashlib.blake2b(name.encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()


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
        self.insert_value_new = f"INSERT INTO provbatch_values (attribute, entity, computation, value) VALUES ({p}, {p}, {p}, {p})"
        self.insert_value_ignore = (f"{ignore} provbatch_values (attribute, entity, computation, value) "
                                    f"VALUES ({p}, {p}, {p}, {p}){tail}")
        self.insert_input = (f"{ignore} provbatch_inputs (computation, entity, path, size, sha256, mtime) "
                             f"VALUES ({p}, {p}, {p}, {p}, {p}, {p}){tail}")
        if self.name == "mysql":
            self.upsert_current = (f"INSERT INTO provbatch_current (attribute, entity, computation) VALUES ({p}, {p}, {p}) "
                                   "ON DUPLICATE KEY UPDATE computation = VALUES(computation)")
        else:
            self.upsert_current = (f"INSERT INTO provbatch_current (attribute, entity, computation) VALUES ({p}, {p}, {p}) "
                                   "ON CONFLICT (attribute, entity) DO UPDATE SET computation = excluded.computation")
        self.select_chunk = _SELECT_CHUNK[self.name]
        #: MySQL/MariaDB: the connection may LOAD DATA LOCAL INFILE (set by the store after a probe)
        self.local_infile = False


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


def _chunks(rows: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(rows), size):
        yield rows[start:start + size]


class EntityIds:
    """Entity name -> id, creating missing entities; ids are cached (entities are never renumbered)."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._ids: dict[str, int] = {}
        #: ids of the entities the last :meth:`ids` call created itself, in this transaction: no other
        #: transaction can have rows for them before it commits, so their current pointers are plain inserts
        self.created: set[int] = set()

    def forget(self) -> None:
        """After a rollback: ids created in it are gone."""
        self._ids.clear()

    def ids(self, cursor: Any, names: Sequence[str]) -> list[int]:
        cache = self._ids
        self.created = set()
        missing = list(dict.fromkeys(name for name in names if name not in cache))
        if missing:
            keyed = {entity_key(name): name for name in missing}
            self._select(cursor, keyed)
            absent = [(key, name) for key, name in keyed.items() if name not in cache]
            if absent and self.dialect.name == "sqlite":
                # one writer at a time (the transaction holds the write lock): the ids can be
                # given here, in input order (the value inserts then append), without a second SELECT
                first = cursor.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM provbatch_entities").fetchone()[0]
                rows = [(first + i, key, name) for i, (key, name) in enumerate(absent)]
                for chunk in _chunks(rows, BATCH_ROWS):
                    cursor.executemany("INSERT INTO provbatch_entities (id, name_key, name) VALUES (?, ?, ?)", chunk)
                cache.update((name, entity_id) for entity_id, _key, name in rows)
                self.created = {row[0] for row in rows}
            elif absent and self.dialect.name == "postgresql" and len(absent) > 1000:
                self._create_postgresql(cursor, absent)
            elif absent:
                absent.sort()  # concurrent writers creating overlapping entities lock them in one order (no deadlock)
                for chunk in _chunks(absent, BATCH_ROWS):
                    cursor.executemany(self.dialect.insert_entity, chunk)
                self._select(cursor, {key: name for key, name in absent})
        return [cache[name] for name in names]

    def _create_postgresql(self, cursor: Any, absent: list[tuple[str, str]]) -> None:
        """Many new entities in four statements: COPY into a staging table, one set-based insert (in key
        order, so that concurrent writers lock overlapping entities in one order), one join for the ids."""
        cursor.execute("CREATE TEMPORARY TABLE IF NOT EXISTS provbatch_entities_load "
                       "(name_key varchar(32), name text) ON COMMIT DELETE ROWS")
        with cursor.copy("COPY provbatch_entities_load (name_key, name) FROM STDIN") as copy:
            for row in absent:
                copy.write_row(row)
        cursor.execute("INSERT INTO provbatch_entities (name_key, name) SELECT name_key, name FROM provbatch_entities_load "
                       "ORDER BY name_key ON CONFLICT DO NOTHING RETURNING id")
        self.created = {entity_id for (entity_id,) in cursor.fetchall()}
        cursor.execute("SELECT l.name, e.id FROM provbatch_entities_load l JOIN provbatch_entities e ON e.name_key = l.name_key")
        self._ids.update(cursor.fetchall())
        cursor.execute("DELETE FROM provbatch_entities_load")

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
    ``fresh``: the computation has no value
    rows yet (plain inserts, COPY); otherwise rows already there are kept.
    The batch must name each entity once. Runs in the connection's transaction.
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
    ids = entity_ids.ids(cursor, names)
    value_rows: list[tuple[Any, ...]] = []
    current_rows: list[tuple[int, int, int]] = []
    n = len(ids)
    # attribute by attribute: in primary-key order, so that new rows append to the b-trees
    for attribute_id, column in zip(attribute_ids, columns):
        value_rows.extend(zip(repeat(attribute_id, n), ids, repeat(computation, n), column))
        current_rows.extend(zip(repeat(attribute_id, n), ids, repeat(computation, n)))
    if dialect.name == "postgresql" and fresh and len(value_rows) > 1000:
        created = entity_ids.created
        new_current = [row for row in current_rows if row[1] in created] if created else []
        if new_current:
            current_rows = [row for row in current_rows if row[1] not in created] if len(new_current) < len(current_rows) else []
        _copy_postgresql(cursor, value_rows, current_rows, new_current)
    elif dialect.name == "mysql" and fresh and len(value_rows) > 1000 and dialect.local_infile:
        _load_data_mysql(cursor, value_rows, current_rows)
    else:
        insert = dialect.insert_value_new if fresh else dialect.insert_value_ignore
        for chunk in _chunks(value_rows, BATCH_ROWS):
            cursor.executemany(insert, chunk)
        for chunk in _chunks(current_rows, BATCH_ROWS):
            cursor.executemany(dialect.upsert_current, chunk)
    if inputs:
        input_ids = entity_ids.ids(cursor, [row[0] for row in inputs])
        cursor.executemany(dialect.insert_input, [(computation, entity_id, *row[1:])
                                                 for entity_id, row in zip(input_ids, inputs)])
    return len(value_rows)


def _copy_text(rows: Iterable[tuple[Any, ...]]) -> str:
    """Rows in the text format of PostgreSQL COPY and MySQL LOAD DATA: tab-separated, \\N for NULL.

    Only the value (last column) can hold text; it has no tab or newline (it
    comes from a TSV field), so only backslashes need escaping.
    """
    null, backslash, escaped = "\\N", "\\", "\\\\"
    lines: list[str] = []
    add = lines.append
    for row in rows:
        if len(row) == 4:
            value = row[3]
            text = null if value is None else (value.replace(backslash, escaped) if backslash in value else value)
            add(f"{row[0]}\t{row[1]}\t{row[2]}\t{text}\n")
        else:
            add(f"{row[0]}\t{row[1]}\t{row[2]}\n")  # the current pointers: three integers
    return "".join(lines)


def _copy_postgresql(cursor: Any, value_rows: list[tuple[Any, ...]], current_rows: list[tuple[int, int, int]],
                     new_current: list[tuple[int, int, int]]) -> None:
    """COPY the values in (a text block: psycopg's per-row write costs more than our formatting);
    the current pointers of the entities this transaction created COPYed in too (none can exist),
    the others via a temporary table (COPY cannot upsert)."""
    with cursor.copy("COPY provbatch_values (attribute, entity, computation, value) FROM STDIN") as copy:
        for start in range(0, len(value_rows), BATCH_ROWS):
            copy.write(_copy_text(value_rows[start:start + BATCH_ROWS]))
    if new_current:
        with cursor.copy("COPY provbatch_current (attribute, entity, computation) FROM STDIN") as copy:
            for start in range(0, len(new_current), BATCH_ROWS):
                copy.write(_copy_text(new_current[start:start + BATCH_ROWS]))
    if not current_rows:
        return
    cursor.execute("CREATE TEMPORARY TABLE IF NOT EXISTS provbatch_current_load "
                   "(attribute integer, entity bigint, computation integer) ON COMMIT DELETE ROWS")
    with cursor.copy("COPY provbatch_current_load (attribute, entity, computation) FROM STDIN") as copy:
        for start in range(0, len(current_rows), BATCH_ROWS):
            copy.write(_copy_text(current_rows[start:start + BATCH_ROWS]))
    cursor.execute("INSERT INTO provbatch_current (attribute, entity, computation) "
                   "SELECT attribute, entity, computation FROM provbatch_current_load "
                   "ON CONFLICT (attribute, entity) DO UPDATE SET computation = excluded.computation")
    cursor.execute("DELETE FROM provbatch_current_load")


def _load_data_mysql(cursor: Any, value_rows: list[tuple[Any, ...]], current_rows: list[tuple[int, int, int]]) -> None:
    """LOAD DATA LOCAL INFILE from temporary files (as prenacs loads), the current pointers via a temporary table."""
    import os
    import tempfile

    fields = "FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n'"
    with tempfile.TemporaryDirectory(prefix="provbatch-load-") as folder:
        values_file, current_file = os.path.join(folder, "values.tsv"), os.path.join(folder, "current.tsv")
        with open(values_file, "w", encoding="utf-8", newline="") as handle:
            handle.writelines(_copy_text(value_rows[start:start + BATCH_ROWS]) for start in range(0, len(value_rows), BATCH_ROWS))
        with open(current_file, "w", encoding="utf-8", newline="") as handle:
            handle.writelines(_copy_text(current_rows[start:start + BATCH_ROWS]) for start in range(0, len(current_rows), BATCH_ROWS))
        cursor.execute(f"LOAD DATA LOCAL INFILE %s INTO TABLE provbatch_values CHARACTER SET utf8mb4 {fields} "
                       "(attribute, entity, computation, value)", (values_file,))
        cursor.execute("CREATE TEMPORARY TABLE IF NOT EXISTS provbatch_current_load "
                       "(attribute integer, entity bigint, computation integer)")
        cursor.execute(f"LOAD DATA LOCAL INFILE %s INTO TABLE provbatch_current_load {fields} "
                       "(attribute, entity, computation)", (current_file,))
    cursor.execute("INSERT INTO provbatch_current (attribute, entity, computation) "
                   "SELECT attribute, entity, computation FROM provbatch_current_load "
                   "ON DUPLICATE KEY UPDATE computation = VALUES(computation)")
    # dropped, not emptied: DELETE of a batch's rows cost a tenth of a load; a temporary table's DROP
    # does not commit the transaction (MySQL/MariaDB), and the next batch creates it again
    cursor.execute("DROP TEMPORARY TABLE provbatch_current_load")
