"""The results store: attribute definitions, plugin and computation records, values with their history.

:class:`Store` is the whole library face; the commands in
:mod:`provbatch.cli.store` and the ``batch-compute --store`` sink are thin
over it. Semantics (prenacs', plus history):

- a value belongs to the computation that produced it; loading or computing
  adds value rows and moves the *current* pointer of each (entity,
  attribute) it covers, so a computation covering only some attributes of a
  computation group updates only those;
- nothing a computation wrote is overwritten: earlier values stay, with their
  computations (``history``); loading an earlier computation again makes its
  values current again;
- a value is committed only after its computation row (no value without provenance).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from operator import methodcaller
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ..contract.datatypes import SYNTAX
from ..errors import ProvBatchError, UsageError, literal
from . import migrate
from .checkpoints import BackgroundCheckpoints
from .codec import Codec, ValueTextError, codec_for
from .packs import Placement, column_at, ensure_outsets, outset_text, placements, read_outsets, unpack
from .records import ComputationRecord, PluginRecord, canonical_json, now_iso, require_defined
from .schema import ENTITY_NAME
from .schema import attributes as t_attributes
from .schema import computations as t_computations
from .schema import current as t_current
from .schema import entities as t_entities
from .schema import history as t_history
from .schema import inputs as t_inputs
from .schema import outsets as t_outsets
from .schema import plugins as t_plugins
from .url import READ_ONLY, SQLITE_BUSY_TIMEOUT_MS, create_engine, display_url, store_url
from .writer import BATCH_ROWS, Columns, Dialect, EntityIds, entity_key, gc_paused, lock_attributes, write_values

#: the definition fields of an attribute besides its name
ATTRIBUTE_FIELDS = ("datatype", "definition", "unit", "ontology_xref", "related_ontology_terms", "remark", "computation_group")
#: fields that decide how values are stored or grouped: changing them needs drop + re-add
FIXED_FIELDS = ("datatype", "computation_group")
#: how often a writer retries a transaction that lost a deadlock or a lock wait
RETRIES = 8
#: rows fetched at a time by an export
_PARTITION = 20_000


#: the fields of an exported value's provenance, in their column order
PROVENANCE_FIELDS = ("computation", "plugin_id", "plugin_version", "time_end")


@dataclass(frozen=True)
class ValueRows:
    """A partition of exported values as tuples: one attribute's values of up to 20,000 entities.

    Each row holds the fields named by ``fields``: ``entity``, ``value``
    (+ :data:`PROVENANCE_FIELDS`, + ``current``); the attribute is the same
    for all and is held once. Tuples, not dicts: on SQLite the rows of a
    text export are the driver's own, untouched.
    """

    attribute: str
    fields: tuple[str, ...]
    rows: Sequence[tuple[Any, ...]]

    def __len__(self) -> int:
        return len(self.rows)

    def columns(self) -> dict[str, list[Any]]:
        """The rows as one list per field (a DataFrame's columns)."""
        if not self.rows:
            return {name: [] for name in self.fields}
        return {name: list(column) for name, column in zip(self.fields, zip(*self.rows))}


class StoreConflict(ProvBatchError):
    """The store holds a different record under the same key (plugin id/version, report uuid, datatype)."""

    exit_code = 1


@dataclass
class ApplyResult:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    #: existing attributes whose metadata differ from the file (not updated: no --update)
    differing: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)


@dataclass
class LoadResult:
    computation: str
    values: int
    entities: int
    already_loaded: bool


def _is_retryable(exc: BaseException) -> bool:
    """A deadlock or lock timeout: the transaction can simply be run again."""
    orig = getattr(exc, "orig", None)
    code = getattr(orig, "args", [None])[0] if orig is not None else None
    sqlstate = getattr(orig, "sqlstate", None)
    text = str(orig or exc).lower()
    return code in (1213, 1205) or sqlstate in ("40P01", "40001") or "database is locked" in text


class Store:
    """An open results store. ``create``: an empty database gets the schema (write commands)."""

    def __init__(self, url: str | None = None, create: bool = False) -> None:
        resolved = store_url(url)
        assert resolved is not None
        self.url = resolved
        self.engine = create_engine(resolved)
        try:
            migrate.check(self.engine, resolved, create)
        except sa.exc.OperationalError as exc:
            self.engine.dispose()
            raise UsageError.naming(f"{{store}} {literal(display_url(resolved))}: cannot connect: "
                                    f"{literal(str(exc.orig).strip().splitlines()[0])}") from exc
        except BaseException:
            self.engine.dispose()
            raise
        self.dialect = Dialect(self.engine.dialect.name)
        if self.dialect.name == "mysql":
            with self._read() as connection:  # bulk loads use LOAD DATA LOCAL INFILE when the server allows it
                self.dialect.local_infile = bool(connection.execute(sa.text("SELECT @@local_infile")).scalar())
        self._codecs: dict[str, Codec] = {}
        self._writers: list[ComputationWriter] = []

    @classmethod
    def open_existing(cls, url: str | None = None) -> Store | None:
        """The store at ``url`` when there is one there, else None; creates nothing.

        For a dry run, which must leave no trace: opening with ``create`` would
        make the SQLite file and the schema of an empty database. A store at
        another schema revision, or one that cannot be reached, is still an error.
        """
        from sqlalchemy.engine import make_url

        resolved = store_url(url)
        assert resolved is not None
        parsed = make_url(resolved)
        if parsed.get_backend_name() == "sqlite" and not (parsed.database and Path(parsed.database).is_file()):
            return None
        engine = create_engine(resolved)
        try:
            with engine.connect() as connection:
                if migrate.current_revision(connection) is None:
                    return None
        except sa.exc.OperationalError as exc:
            raise UsageError.naming(f"{{store}} {literal(display_url(resolved))}: cannot connect: "
                                    f"{literal(str(exc.orig).strip().splitlines()[0])}") from exc
        finally:
            engine.dispose()
        return cls(resolved)

    @staticmethod
    def init(url: str | None = None) -> tuple[str, str | None, str]:
        """Create the store or migrate it to this provbatch's schema; returns (url, before, after)."""
        resolved = store_url(url)
        assert resolved is not None
        engine = create_engine(resolved)
        try:
            before, after = migrate.upgrade(engine)
        except sa.exc.OperationalError as exc:
            raise UsageError.naming(f"{{store}} {literal(display_url(resolved))}: cannot connect: "
                                    f"{literal(str(exc.orig).strip().splitlines()[0])}") from exc
        finally:
            engine.dispose()
        return resolved, before, after

    def close(self) -> None:
        for writer in self._writers:
            writer.close()
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _read(self) -> Any:
        """A connection for queries (on SQLite its transactions take no write lock)."""
        return self.engine.connect().execution_options(**{READ_ONLY: True})

    def codec(self, datatype: str) -> Codec:
        codec = self._codecs.get(datatype)
        if codec is None:
            codec = self._codecs[datatype] = codec_for(datatype)
        return codec

    # ------------------------------------------------------------ attributes
    def attributes(self) -> dict[str, dict[str, Any]]:
        """name -> definition fields, by name."""
        with self._read() as connection:
            rows = connection.execute(sa.select(t_attributes).order_by(t_attributes.c.name)).mappings().all()
        return {row["name"]: {key: row[key] for key in ATTRIBUTE_FIELDS} for row in rows}

    def apply_attributes(self, definitions: dict[str, dict[str, Any]], update: bool = False,
                         drop_missing: bool = False, source: str = "definitions") -> ApplyResult:
        """Add the attributes of a definitions file; ``update`` their metadata; ``drop_missing`` the others.

        A datatype or computation-group change is refused (the stored values
        were typed and grouped by the old one): drop the attribute and apply again.
        """
        result = ApplyResult()
        for name, entry in definitions.items():
            datatype = entry.get("datatype")
            if not datatype or not _valid(datatype):
                raise UsageError(f"{source}: attribute '{name}' has datatype '{datatype}', which is not one of "
                                 f"{SYNTAX} (or prenacs' String(n))")
        with self.engine.begin() as connection:
            stored = {row["name"]: dict(row) for row in connection.execute(sa.select(t_attributes)).mappings()}
            for name, entry in definitions.items():
                wanted = {key: _field_text(entry.get(key)) for key in ATTRIBUTE_FIELDS}
                old = stored.get(name)
                if old is None:
                    connection.execute(t_attributes.insert().values(name=name, **wanted))
                    result.added.append(name)
                    continue
                for key in FIXED_FIELDS:
                    if (old[key] or None) != (wanted[key] or None):
                        raise StoreConflict(
                            f"{source}: attribute '{name}': {key} changes from '{old[key]}' to '{wanted[key]}'; "
                            f"the stored values depend on it: 'provbatch attributes drop {name}' (deletes its values), "
                            "then apply again")
                if all((old[key] or None) == (wanted[key] or None) for key in ATTRIBUTE_FIELDS):
                    result.unchanged.append(name)
                elif update:
                    connection.execute(t_attributes.update().where(t_attributes.c.id == old["id"]).values(**wanted))
                    result.updated.append(name)
                else:
                    result.differing.append(name)
            if drop_missing:
                for name in sorted(set(stored) - set(definitions)):
                    self._drop(connection, stored[name]["id"])
                    result.dropped.append(name)
        return result

    def ensure_attributes(self, names: Sequence[str], definitions: dict[str, dict[str, Any]], source: str,
                          apply: bool = True) -> None:
        """Attributes a computation outputs: added from its definitions when missing (unless not ``apply``:
        a dry run only checks); a datatype mismatch is refused."""
        stored = self.attributes()
        require_defined(names, stored, definitions, source)
        missing = {name: definitions[name] for name in names if name not in stored and name in definitions}
        for name in names:
            if name in stored and name in definitions:
                have, want = stored[name]["datatype"], _field_text(definitions[name].get("datatype"))
                if have != want:
                    raise StoreConflict(f"{source}: attribute '{name}' is {want} in the definitions but {have} in the store "
                                        f"({display_url(self.url)}); 'provbatch attributes drop {name}' and apply again, "
                                        "or fix the definitions")
        if missing and apply:
            try:
                self.apply_attributes(missing, source=source)
            except sa.exc.IntegrityError:  # another writer added them meanwhile
                pass

    def drop_attribute(self, name: str) -> int:
        """Drop an attribute with all its values (and their history); returns the values deleted."""
        with self.engine.begin() as connection:
            attribute_id = connection.execute(sa.select(t_attributes.c.id).where(t_attributes.c.name == name)).scalar()
            if attribute_id is None:
                raise UsageError(f"attribute '{name}' is not in the store ({display_url(self.url)})")
            return self._drop(connection, attribute_id)

    @staticmethod
    def _drop(connection: Any, attribute_id: int) -> int:
        """Delete the attribute and every value of it: an outset of it alone goes with its rows; in a wider
        one its entry is nulled (the outset no longer matches any computation's attributes: its digest is
        changed) and its value is blanked out of each row, which keeps the other attributes' values."""
        deleted = 0
        for outset in read_outsets(connection):
            if attribute_id not in outset.attributes:
                continue
            remaining = [other if other != attribute_id else None for other in outset.attributes]
            deleted += sum(connection.execute(sa.select(sa.func.count()).select_from(table).where(table.c.outset == outset.id)).scalar() or 0
                           for table in (t_current, t_history))
            if all(other is None for other in remaining):
                for table in (t_current, t_history):
                    connection.execute(table.delete().where(table.c.outset == outset.id))
                connection.execute(t_outsets.delete().where(t_outsets.c.id == outset.id))
                continue
            connection.execute(t_outsets.update().where(t_outsets.c.id == outset.id).values(
                attributes=outset_text(remaining), digest=f"dropped-{outset.id}"))
            width = len(outset.attributes)
            keep = sum(1 << position for position, other in enumerate(remaining) if other is not None)
            for table in (t_current, t_history):
                key = [table.c.entity] + ([table.c.computation] if table is t_history else [])
                rows = connection.execute(sa.select(*key, table.c.values_text).where(table.c.outset == outset.id)).all()
                blanked = []
                for *row_key, values_text in rows:
                    texts = unpack(values_text, width)
                    blanked.append({"b_" + column.name: value for column, value in zip(key, row_key)}
                                   | {"b_values_text": "\t".join(text or "" if other is not None else ""
                                                                 for text, other in zip(texts, remaining))})
                if blanked:
                    update = table.update().where(table.c.outset == outset.id,
                                                  *[column == sa.bindparam("b_" + column.name) for column in key])
                    connection.execute(update.values(values_text=sa.bindparam("b_values_text")), blanked)
            connection.execute(t_current.update().where(t_current.c.outset == outset.id).values(
                current_bits=t_current.c.current_bits.op("&")(keep)))
        connection.execute(t_attributes.delete().where(t_attributes.c.id == attribute_id))
        return deleted

    # --------------------------------------------------------------- records
    def _record_plugin(self, connection: Any, plugin: PluginRecord, replace: bool, where: str) -> int:
        description = canonical_json(plugin.description)
        row = connection.execute(sa.select(t_plugins).where(t_plugins.c.plugin_id == plugin.plugin_id,
                                                            t_plugins.c.version == plugin.version)).mappings().first()
        fields = {"lang": plugin.lang, "sha256": plugin.sha256, "description": description}
        if row is None:
            try:
                with connection.begin_nested():
                    return connection.execute(t_plugins.insert().values(
                        plugin_id=plugin.plugin_id, version=plugin.version, recorded_at=now_iso(), **fields
                    )).inserted_primary_key[0]
            except sa.exc.IntegrityError:  # recorded by a concurrent writer
                return self._record_plugin(connection, plugin, replace, where)
        differences = [key for key in ("sha256", "description")
                       if fields[key] is not None and row[key] is not None and fields[key] != row[key]]
        if differences and not replace:
            what = (f"source (sha256 {str(row['sha256'])[:12]} -> {str(plugin.sha256)[:12]})"
                    if "sha256" in differences else "metadata")
            raise StoreConflict.naming(  # ``where`` is ours (a label, or "{store}"): a template, not a literal
                f"{where}: plugin {literal(plugin.plugin_id)} {literal(plugin.version)} is recorded in the store with "
                f"another {literal(what)}, without a version change: increase the plugin's VERSION, or pass {{replace_plugin}}")
        if differences or any(row[key] is None and fields[key] is not None for key in fields):
            connection.execute(t_plugins.update().where(t_plugins.c.id == row["id"]).values(
                **{key: value for key, value in fields.items() if value is not None}))
        return row["id"]

    def record_computation(self, record: ComputationRecord, replace_plugin: bool = False,
                           replace_report: bool = False, where: str = "computation") -> tuple[int, bool]:
        """Insert (or find) the computation's row, committed; returns (its id, whether it was there already).

        The same uuid with different fields is refused unless ``replace_report``.
        ``where`` starts the error messages: a :meth:`~provbatch.errors.ProvBatchError.naming`
        template (an option as ``{store}``, a path through :func:`~provbatch.errors.literal`).
        """
        fields = {
            "plugin_sha256": record.plugin_sha256, "plugin_path": record.plugin_path,
            "parameters": canonical_json(record.parameters), "signature": record.signature,
            "output": json.dumps(record.output), "user_id": record.user_id, "system_id": record.system_id,
            "reason": record.reason, "time_start": record.time_start, "time_end": record.time_end,
            "comp_status": record.comp_status, "n_units": record.n_units, "run_dir": record.run_dir,
            "command": None if record.command is None else json.dumps(record.command), "remarks": record.remarks,
        }
        with self.engine.begin() as connection:
            plugin_pk = self._record_plugin(connection, record.plugin, replace_plugin, where)
            row = connection.execute(sa.select(t_computations).where(t_computations.c.uuid == record.uuid)).mappings().first()
            if row is None:
                pk = connection.execute(t_computations.insert().values(
                    uuid=record.uuid, plugin=plugin_pk, origin=record.origin, loaded_at=now_iso(), **fields
                )).inserted_primary_key[0]
                return pk, False
            compared = ("plugin_sha256", "parameters", "output", "user_id", "system_id", "reason", "time_start", "time_end")
            differences = [key for key in compared if row[key] != fields[key]]
            if row["plugin"] != plugin_pk:
                differences.insert(0, "plugin")
            if differences and not replace_report:
                raise StoreConflict.naming(
                    f"{where}: a computation with uuid {literal(record.uuid)} is already in the store with other "
                    f"{', '.join(differences)}: pass {{replace_report}} to replace its record")
            if differences:
                connection.execute(t_computations.update().where(t_computations.c.id == row["id"]).values(
                    plugin=plugin_pk, origin=record.origin, **fields))
            return row["id"], True

    def finish_computation(self, computation: int, **fields: Any) -> None:
        """Set the end fields of a computation written while computing (time_end, comp_status, n_units, remarks)."""
        for attempt in range(RETRIES):
            try:
                with self.engine.begin() as connection:
                    connection.execute(t_computations.update().where(t_computations.c.id == computation).values(**fields))
                return
            except sa.exc.OperationalError as exc:
                if not _is_retryable(exc) or attempt == RETRIES - 1:
                    raise
                time.sleep(0.05 * 2 ** attempt)

    # ---------------------------------------------------------------- writing
    def writer(self, computation: int, attributes: Sequence[str], fresh: bool = False) -> ComputationWriter:
        """A writer of the computation's values; ``fresh``: it has none yet (a new computation), so no
        row can conflict and the fastest inserts apply."""
        writer = ComputationWriter(self, computation, attributes, fresh)
        self._writers.append(writer)  # closed with the store (SQLite: its checkpoint thread)
        return writer

    def load(self, results: str | Path, record: ComputationRecord, replace_plugin: bool = False,
             replace_report: bool = False, report_path: str | None = None) -> LoadResult:
        """Load a results TSV with its computation record, in one transaction; repeating it changes nothing."""
        results = Path(results)
        where = literal(report_path or str(results))  # a path: text in the error template
        stored = self.attributes()
        undefined = [name for name in record.output if name not in stored]
        if undefined:
            raise UsageError(f"{results}: attribute(s) {', '.join(undefined)} of plugin {record.plugin.plugin_id} are not "
                             f"defined in the store: 'provbatch attributes apply DEFS.yaml' first")
        if not results.is_file():
            raise UsageError(f"{results}: results file not found")
        computation, existed = self.record_computation(record, replace_plugin, replace_report, where=where)
        writer = self.writer(computation, record.output)
        n_values = 0
        with gc_paused(), self.engine.begin() as connection:  # the whole file's rows are live: see gc_paused
            fresh = not existed or not _has_values(connection, computation)
            if self.dialect.name == "postgresql":
                names, columns = self._read_creating_entities(connection, writer, results, record.output)
            else:
                names, columns = _read_results(results, writer.codecs, record.output)
            n_entities = len(names)
            if self.dialect.name == "postgresql":
                # the whole file as one batch: its entities by one COPY and one INSERT, then every value of
                # an attribute after the one before, so that each row appends to the rightmost leaf of
                # provbatch_current's key (PostgreSQL's b-tree inserts there without a descent). Batch by
                # batch, each batch's rows of 9 of the 10 attributes went into the middle of the key:
                # 1,000,000 values took ~1 s more of server CPU (a quarter), for the same index size and WAL.
                step = max(1, n_entities)
            else:
                step = max(1, BATCH_ROWS // max(1, len(writer.outsets)))  # rows per batch: one per entity and outset
            for start in range(0, n_entities, step):
                batch = (names[start:start + step], [column[start:start + step] for column in columns])
                n_values += write_values(connection, self.dialect, writer.entity_ids, computation, writer.outsets,
                                         batch, fresh)
        return LoadResult(record.uuid, n_values, n_entities, existed)

    def _read_creating_entities(self, connection: Any, writer: ComputationWriter, results: Path,
                                output: Sequence[str]) -> tuple[list[str], list[list[Any]]]:
        """PostgreSQL: :func:`_read_results`, while another thread has the server create the file's entities.

        The names are the first field of each line, read by a quick first pass;
        creating them is the server's work (one COPY, one INSERT), and reading and
        encoding the file is the client's: one after the other, each idled for
        the other (~1 s each for 1,000,000 values). The thread does little Python
        work, so it seldom waits for the GIL. It locks the attributes first, as
        :func:`.writer.write_values` does: writers of one attribute take their
        attribute and entity locks in one order.
        """
        with _open_results(results) as handle:
            first_fields = dict.fromkeys(name for name, tab, _rest in map(methodcaller("partition", "\t"), handle) if tab)
        raw = connection.connection.driver_connection
        failed: list[BaseException] = []

        def create() -> None:
            try:
                with raw.cursor() as cursor:
                    lock_attributes(cursor, self.dialect, writer.attribute_ids)
                    writer.entity_ids.prepare(cursor, list(first_fields))
            except BaseException as exc:  # noqa: BLE001 - raised again by the reading thread
                failed.append(exc)

        thread = threading.Thread(target=create, name="provbatch-load-entities", daemon=True)
        thread.start()
        try:
            read = _read_results(results, writer.codecs, output)
        finally:
            thread.join()
        if failed:
            raise failed[0]
        return read

    # ---------------------------------------------------------------- reading
    def _placed(self, connection: Any, names: Sequence[str] = ()) -> list[tuple[str, int, list[Placement]]]:
        """(name, id, where its values are) of the named attributes (all when none is named), by name."""
        known = dict(connection.execute(sa.select(t_attributes.c.name, t_attributes.c.id)).all())
        placed = placements(read_outsets(connection))
        return [(name, known[name], placed.get(known[name], [])) for name in sorted(set(names) if names else known)
                if name in known]

    @staticmethod
    def _current_rows(where: Sequence[Placement], columns: str = "entity, computation", condition: str = "") -> str:
        """SQL of the current rows of an attribute, one SELECT per outset that holds it (UNION ALL)."""
        return " UNION ALL ".join(
            f"SELECT {columns} FROM provbatch_current WHERE outset = {place.outset} AND (current_bits & {place.bit}) <> 0{condition}"
            for place in where)

    def done_entities(self, signature: str, attributes: Sequence[str]) -> Iterator[str]:
        """Entities whose current value of every attribute comes from a computation with this signature (resume)."""
        with self._read() as connection:
            placed = self._placed(connection, attributes)
            if not attributes or len(placed) < len(set(attributes)) or any(not where for _n, _i, where in placed):
                return
            condition = (" AND computation IN (SELECT id FROM provbatch_computations WHERE signature = :signature)")
            union = " UNION ALL ".join(self._current_rows(where, "entity", condition) for _name, _id, where in placed)
            sql = (f"SELECT {ENTITY_NAME} FROM (SELECT entity FROM ({union}) u GROUP BY entity HAVING COUNT(*) = {len(placed)}) x "
                   "JOIN provbatch_entities e ON e.id = x.entity")
            result = connection.execution_options(yield_per=10_000).execute(sa.text(sql), {"signature": signature})
            for (name,) in result:
                yield name

    def iter_values(self, attributes: Sequence[str] = (), entities: Sequence[str] | None = None,
                    history: bool = False, provenance: bool = False, as_text: bool = False) -> Iterator[dict[str, Any]]:
        """The values, typed: dicts with entity, attribute, value (+ computation, plugin_id, plugin_version,
        time_end with ``provenance``; + current with ``history``, which includes every earlier value).
        ``as_text``: the value in its results-file text ('' for none) instead of a Python value.

        Ordered by attribute name, then entity (in the order they were first stored), then computation.
        A dict per value costs about as much as reading it: :meth:`iter_value_rows` gives the same
        values a partition of tuples at a time, for exports and DataFrames.
        """
        for name, rows, values, provenance_of in self._value_partitions(attributes, entities, history, provenance, as_text):
            if values is None:
                values = [row[1] for row in rows]
            if history:
                for row, value in zip(rows, values):
                    yield {"entity": row[0], "attribute": name, "value": value, "current": bool(row[3]), **provenance_of[row[2]]}
            elif provenance:
                for row, value in zip(rows, values):
                    yield {"entity": row[0], "attribute": name, "value": value, **provenance_of[row[2]]}
            else:
                yield from [{"entity": row[0], "attribute": name, "value": value} for row, value in zip(rows, values)]

    def iter_value_rows(self, attributes: Sequence[str] = (), entities: Sequence[str] | None = None,
                        history: bool = False, provenance: bool = False, as_text: bool = False) -> Iterator[ValueRows]:
        """The values of :meth:`iter_values`, in the same order, as tuples: one :class:`ValueRows` per
        partition (one attribute, up to 20,000 values). ``provbatch values`` writes TSV, CSV and Parquet
        from these; a dict per value costs more than the rest of an export."""
        fields = ("entity", "value", *(PROVENANCE_FIELDS if provenance or history else ()), *(("current",) if history else ()))
        for name, rows, decoded, provenance_of in self._value_partitions(attributes, entities, history, provenance, as_text):
            if not (history or provenance):
                # as text, the query's rows are (entity, text) already
                yield ValueRows(name, fields, rows if decoded is None else [(row[0], value) for row, value in zip(rows, decoded)])
                continue
            values = [row[1] for row in rows] if decoded is None else decoded
            of = {pk: tuple(record.values()) for pk, record in provenance_of.items()}  # a few computations
            if history:
                yield ValueRows(name, fields, [(row[0], value, *of[row[2]], bool(row[3])) for row, value in zip(rows, values)])
            else:
                yield ValueRows(name, fields, [(row[0], value, *of[row[2]]) for row, value in zip(rows, values)])

    def _value_partitions(self, attributes: Sequence[str], entities: Sequence[str] | None, history: bool,
                          provenance: bool, as_text: bool
                          ) -> Iterator[tuple[str, Sequence[Any], list[Any] | None, dict[int, dict[str, Any]]]]:
        """(attribute, rows, decoded values, provenance of each computation id) a partition at a time; a row
        is (entity name, stored value[, computation id[, is current]]). With ``as_text`` the stored value
        is the text ('' for none) and the values are None: the rows hold them.

        On the export's hot path: one query per attribute on the driver's cursor (no join but to the
        entity names), a partition of rows at a time, values decoded a column at a time
        (:attr:`.codec.Codec.decode_column`), provenance from a map of the computations read once.
        """
        known = self._attribute_ids()
        unknown = [name for name in attributes if name not in known]
        if unknown:
            raise UsageError(f"attribute(s) {', '.join(unknown)} are not in the store ({display_url(self.url)})")
        selected = sorted(set(attributes) if attributes else known)
        p = self.dialect.p
        with self._read() as connection:
            provenance_of = self._provenance(connection) if provenance or history else {}
            placed = placements(read_outsets(connection))
            id_chunks: list[list[int] | None] = [None]
            if entities is not None:
                id_chunks = [chunk for chunk in _chunked(self._entity_ids(connection, entities), 500)]
            for name in selected:
                attribute_id, datatype = known[name]
                where = placed.get(attribute_id, [])
                if not where:
                    continue
                decode = None if as_text else self.codec(datatype).decode_column
                for chunk in id_chunks:
                    condition = "" if chunk is None else f" AND entity IN ({', '.join([p] * len(chunk))})"
                    one = chunk or []
                    if len(where) == 1 and not history:
                        # the common case: one range scan of the current rows, joined only to the entity names
                        place = where[0]
                        text = ("COALESCE(c.values_text, '')" if as_text else "c.values_text") if place.width == 1 else "c.values_text"
                        sql = (f"SELECT {ENTITY_NAME}, {text}{', c.computation' if provenance else ''} FROM provbatch_current c "
                               f"JOIN provbatch_entities e ON e.id = c.entity WHERE c.outset = {place.outset} "
                               f"AND (c.current_bits & {place.bit}) <> 0{condition.replace('entity', 'c.entity')} ORDER BY c.entity")
                        for rows in self._partitions(connection, sql, tuple(one)):
                            if place.width > 1:
                                texts = column_at([row[1] for row in rows], place.position, place.width)
                                if as_text:
                                    texts = [text or "" for text in texts]
                                rows = [(row[0], text, *row[2:]) for row, text in zip(rows, texts)]
                            yield name, rows, None if decode is None else decode([row[1] for row in rows]), provenance_of
                        continue
                    parts, params = [], []
                    for place in where:
                        fields = f"entity, computation, values_text, {place.position} AS position, {place.width} AS width"
                        parts.append(f"SELECT {fields}, 1 AS is_current FROM provbatch_current WHERE outset = {place.outset} "
                                     f"AND (current_bits & {place.bit}) <> 0{condition}")
                        params += one
                        if history:
                            parts.append(f"SELECT {fields}, 0 FROM provbatch_current WHERE outset = {place.outset} "
                                         f"AND (current_bits & {place.bit}) = 0{condition}")
                            parts.append(f"SELECT {fields}, 0 FROM provbatch_history WHERE outset = {place.outset}{condition}")
                            params += one + one
                    sql = (f"SELECT {ENTITY_NAME}, x.values_text, x.computation, x.is_current, x.position, x.width FROM "
                           f"({' UNION ALL '.join(parts)}) x JOIN provbatch_entities e ON e.id = x.entity "
                           "ORDER BY x.entity, x.computation")
                    for raw in self._partitions(connection, sql, tuple(params)):
                        rows = []
                        for entity, values_text, computation, is_current, position, width in raw:
                            text = unpack(values_text, width)[position] if width > 1 else values_text
                            rows.append((entity, "" if as_text and text is None else text, computation, is_current))
                        yield name, rows, None if decode is None else decode([row[1] for row in rows]), provenance_of

    def _attribute_ids(self) -> dict[str, tuple[int, str]]:
        """name -> (id, datatype)."""
        with self._read() as connection:
            return {name: (attribute_id, datatype) for attribute_id, name, datatype in connection.execute(
                sa.select(t_attributes.c.id, t_attributes.c.name, t_attributes.c.datatype))}

    @staticmethod
    def _provenance(connection: Any) -> dict[int, dict[str, Any]]:
        """computation id -> its provenance fields of an exported value (the computations table is small)."""
        c, p = t_computations, t_plugins
        rows = connection.execute(sa.select(c.c.id, c.c.uuid, p.c.plugin_id, p.c.version, c.c.time_end)
                                  .select_from(c.join(p, p.c.id == c.c.plugin)))
        return {pk: dict(zip(PROVENANCE_FIELDS, fields)) for pk, *fields in rows}

    @staticmethod
    def _entity_ids(connection: Any, names: Sequence[str]) -> list[int]:
        """The ids of the named entities that are stored, ascending (the order values are exported in)."""
        keys = list(dict.fromkeys(entity_key(name) for name in names))
        found: list[int] = []
        for chunk in _chunked(keys, 500):
            found.extend(connection.execute(sa.select(t_entities.c.id).where(t_entities.c.name_key.in_(chunk))).scalars())
        return sorted(found)

    def _partitions(self, connection: Any, sql: str, params: tuple[Any, ...]) -> Iterator[Sequence[Any]]:
        """The rows of a query, a partition at a time: on SQLite from the driver's cursor (SQLAlchemy's
        result rows cost more than the rest of an export), elsewhere a server-side (streamed) result."""
        if self.dialect.name == "sqlite":
            cursor = connection.connection.driver_connection.cursor()
            try:
                cursor.execute(sql, params)
                while rows := cursor.fetchmany(_PARTITION):
                    yield rows
            finally:
                cursor.close()
            return
        if self.dialect.name == "postgresql":
            # a server-side cursor is planned for its first 10 % of rows by default (cursor_tuple_fraction): right
            # after a load, whose rows the statistics do not count yet, that chose a nested loop over every pair of
            # (value row, entity) for the history's UNION: 125 s for 100,000 values instead of 1 s. Every row is read.
            # (through the driver: this connection streams every statement since its first partitioned read)
            connection.connection.driver_connection.execute("SET LOCAL cursor_tuple_fraction = 1.0")
        result = connection.execution_options(stream_results=True, yield_per=_PARTITION).exec_driver_sql(sql, params)
        yield from result.partitions(_PARTITION)

    def why(self, entity: str, attribute: str) -> dict[str, Any] | None:
        """Where the current value of (entity, attribute) comes from; None when the store has none."""
        e, a, c, p, i = t_entities, t_attributes, t_computations, t_plugins, t_inputs
        with self._read() as connection:
            found = connection.execute(sa.select(a.c.id, a.c.datatype).where(a.c.name == attribute)).first()
            if found is None:
                return None
            attribute_pk, datatype = found
            where = {place.outset: place for place in placements(read_outsets(connection)).get(attribute_pk, [])}
            if not where:
                return None
            entity_pk = connection.execute(sa.select(e.c.id).where(e.c.name_key == entity_key(entity))).scalar()
            if entity_pk is None:
                return None
            # every stored value of (entity, attribute): one row of each outset that holds it, current or history
            outsets = ", ".join(str(outset) for outset in where)
            stored = connection.execute(sa.text(
                f"SELECT outset, computation, current_bits, values_text FROM provbatch_current WHERE outset IN ({outsets}) "
                "AND entity = :entity UNION ALL SELECT outset, computation, 0, NULL FROM provbatch_history "
                f"WHERE outset IN ({outsets}) AND entity = :entity"), {"entity": entity_pk}).all()
            now = [row for row in stored if row[2] & where[row[0]].bit]
            if not now:
                return None
            outset, computation_pk, _bits, values_text = now[0]
            value_text = unpack(values_text, where[outset].width)[where[outset].position]
            n_values = len(stored)
            query = (sa.select(c, p.c.plugin_id, p.c.version, p.c.lang, i.c.path.label("input_path"),
                               i.c.size.label("input_size"), i.c.sha256.label("input_sha256"))
                     .select_from(c.join(p, p.c.id == c.c.plugin)
                                  .outerjoin(i, sa.and_(i.c.computation == c.c.id, i.c.entity == entity_pk)))
                     .where(c.c.id == computation_pk))
            row = connection.execute(query).mappings().first()
        assert row is not None  # a value is committed after its computation's row, which is never deleted
        value = self.codec(datatype).decode(value_text)
        return {
            "entity": entity, "attribute": attribute, "datatype": datatype, "value": value,
            "value_text": value_text or "", "computation": row["uuid"], "plugin_id": row["plugin_id"],
            "plugin_version": row["version"], "plugin_lang": row["lang"], "plugin_sha256": row["plugin_sha256"],
            "plugin_path": row["plugin_path"], "parameters": json.loads(row["parameters"]),
            "input": None if row["input_path"] is None else
            {"path": row["input_path"], "size": row["input_size"], "sha256": row["input_sha256"]},
            "user_id": row["user_id"], "system_id": row["system_id"], "reason": row["reason"],
            "time_start": row["time_start"], "time_end": row["time_end"], "comp_status": row["comp_status"],
            "run_dir": row["run_dir"], "command": None if row["command"] is None else json.loads(row["command"]),
            "origin": row["origin"], "n_values": n_values, "store": self.url,
        }

    def current_computations(self, attributes: Sequence[str] = ()) -> list[dict[str, Any]]:
        """The computations that current values (of ``attributes``) come from, with how many values each."""
        c, p = t_computations, t_plugins
        counts: dict[int, int] = {}
        with self._read() as connection:
            for _name, _id, where in self._placed(connection, attributes):
                for place in where:
                    sql = (f"SELECT computation, COUNT(*) FROM provbatch_current WHERE outset = {place.outset} "
                           f"AND (current_bits & {place.bit}) <> 0 GROUP BY computation")
                    for computation, n_values in connection.execute(sa.text(sql)):
                        counts[computation] = counts.get(computation, 0) + n_values
            if not counts:
                return []
            query = (sa.select(c.c.id, c.c.uuid, p.c.plugin_id, p.c.version, c.c.plugin_sha256, c.c.plugin_path, c.c.parameters)
                     .select_from(c.join(p, p.c.id == c.c.plugin)).where(c.c.id.in_(list(counts))).order_by(c.c.id))
            return [dict(row, parameters=json.loads(row["parameters"]), n_values=counts[row["id"]])
                    for row in connection.execute(query).mappings()]

    def current_values_of(self, computations: Sequence[int], attributes: Sequence[str] = ()) -> Iterator[tuple[str, str, str]]:
        """(entity, attribute, computation uuid) of the current values that come from these computations."""
        if not computations:
            return
        condition = f" AND computation IN ({', '.join(str(int(pk)) for pk in computations)})"
        with self._read() as connection:
            for name, _id, where in self._placed(connection, attributes):
                if not where:
                    continue
                sql = (f"SELECT {ENTITY_NAME}, k.uuid FROM ({self._current_rows(where, condition=condition)}) x "
                       "JOIN provbatch_entities e ON e.id = x.entity JOIN provbatch_computations k ON k.id = x.computation "
                       "ORDER BY x.entity")
                for entity, uuid in connection.execution_options(yield_per=10_000).execute(sa.text(sql)):
                    yield entity, name, uuid

    def current_inputs(self, attributes: Sequence[str] = ()) -> Iterator[dict[str, Any]]:
        """The recorded input files behind current values: entity, attribute, computation uuid, path, size, sha256, mtime."""
        with self._read() as connection:
            for name, _id, where in self._placed(connection, attributes):
                if not where:
                    continue
                sql = (f"SELECT {ENTITY_NAME}, k.uuid, i.path, i.size, i.sha256, i.mtime FROM ({self._current_rows(where)}) x "
                       "JOIN provbatch_inputs i ON i.computation = x.computation AND i.entity = x.entity "
                       "JOIN provbatch_computations k ON k.id = x.computation JOIN provbatch_entities e ON e.id = x.entity "
                       "ORDER BY x.entity")
                for entity, uuid, path, size, sha256, mtime in connection.execution_options(yield_per=10_000).execute(sa.text(sql)):
                    yield {"entity": entity, "attribute": name, "computation": uuid, "path": path, "size": size,
                           "sha256": sha256, "mtime": mtime}

    def computation(self, uuid: str) -> dict[str, Any] | None:
        with self._read() as connection:
            row = connection.execute(sa.select(t_computations).where(t_computations.c.uuid == uuid)).mappings().first()
        return None if row is None else dict(row)


class ComputationWriter:
    """Writes the values of one computation, a batch per transaction (``batch-compute --store``)."""

    def __init__(self, store: Store, computation: int, attributes: Sequence[str], fresh: bool = False) -> None:
        self.store = store
        self.computation = computation
        self.names = list(attributes)
        with store._read() as connection:
            rows = dict(connection.execute(sa.select(t_attributes.c.name, t_attributes.c.id)
                                           .where(t_attributes.c.name.in_(self.names))).all())
            datatypes = dict(connection.execute(sa.select(t_attributes.c.name, t_attributes.c.datatype)
                                                .where(t_attributes.c.name.in_(self.names))).all())
        self.fresh = fresh
        missing = [name for name in self.names if name not in rows]
        if missing:
            raise UsageError(f"attribute(s) {', '.join(missing)} are not in the store ({display_url(store.url)})")
        self.attribute_ids = [rows[name] for name in self.names]
        #: the outsets its rows are written in (created now, committed, when no computation wrote these attributes)
        self.outsets = ensure_outsets(store.engine, self.attribute_ids)
        self.codecs = [store.codec(datatypes[name]) for name in self.names]
        self.entity_ids = EntityIds(store.dialect)
        self.n_values = 0
        url = store.engine.url
        database = url.database if store.dialect.name == "sqlite" else None
        # a plain file (not ":memory:", not a "file:" URI of ?uri=true, which its own connection could not open
        # as the engine does): its checkpoints must reach the same database, or its log would only grow
        self._sqlite_file = database if database and database != ":memory:" and not url.query.get("uri") else None
        #: SQLite: the log checkpointed by a thread, not in this writer's commits (:mod:`.checkpoints`), from
        #: its first batch (``Store.load`` writes through its own transaction, and starts none)
        self._checkpoints: BackgroundCheckpoints | None = None

    def close(self) -> None:
        """Stop its checkpoint thread (SQLite); :meth:`Store.close` closes the writers it made."""
        self._sqlite_file = None
        if self._checkpoints is not None:
            self._checkpoints.close()
            self._checkpoints = None

    def __enter__(self) -> ComputationWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def write(self, rows: Sequence[tuple[str, Sequence[str]]],
              inputs: Sequence[tuple[str, str, int | None, str | None, float | None]] = ()) -> int:
        """Write rows ``(entity, fields as text)`` in one transaction, retried on a deadlock; returns values written."""
        return self.write_encoded(self.encode_rows(rows), inputs)

    def encode_rows(self, rows: Sequence[tuple[str, Sequence[str]]]) -> Columns:
        """Rows checked and in their stored form, as columns (raises UsageError naming the entity and attribute)."""
        if not rows:
            return [], [[] for _name in self.names]
        with gc_paused():
            names, *columns = zip(*[(entity, *fields) for entity, fields in rows])
            return names, self.encode_columns(names, columns)

    def encode_columns(self, names: Sequence[str], columns: Sequence[Sequence[str]]) -> list[list[Any]]:
        """Columns of field texts (one per attribute, in OUTPUT order) in their stored form."""
        if len(columns) != len(self.codecs):
            raise UsageError(f"{len(columns)} value(s) per entity, the attributes are {len(self.codecs)} "
                             f"({', '.join(self.names)})")
        encoded = []
        for name, codec, column in zip(self.names, self.codecs, columns):
            try:
                encoded.append(codec.encode_column(column))
            except ValueTextError:
                for entity, text in zip(names, column):
                    try:
                        codec.encode_text(text)
                    except ValueTextError as exc:
                        raise UsageError(f"entity '{entity}', attribute '{name}' ({codec.datatype}): {exc}") from None
                raise
        return encoded

    def write_encoded(self, encoded: Columns,
                      inputs: Sequence[tuple[str, str, int | None, str | None, float | None]] = ()) -> int:
        """Write a batch of :meth:`encode_rows` in one transaction, retried on a deadlock; returns values written.

        May run in another thread than the one that encoded (the store sink's writer thread), one call at a time."""
        for attempt in range(RETRIES):
            try:
                if self._checkpoints is None and self._sqlite_file is not None:
                    self._checkpoints = BackgroundCheckpoints(self._sqlite_file, SQLITE_BUSY_TIMEOUT_MS / 1000)
                checkpoints = self._checkpoints
                with self.store.engine.connect() as connection:
                    if checkpoints is not None:  # this transaction's commit copies nothing: the thread does
                        checkpoints.leave_to_thread(connection.connection.driver_connection, True)
                    try:
                        with connection.begin():
                            written = write_values(connection, self.store.dialect, self.entity_ids, self.computation,
                                                   self.outsets, encoded, self.fresh, inputs)
                    finally:  # the connection goes back to the pool as it came
                        if checkpoints is not None:
                            checkpoints.leave_to_thread(connection.connection.driver_connection, False)
                if checkpoints is not None:
                    checkpoints.committed()
                self.n_values += written
                return written
            except sa.exc.DBAPIError as exc:
                self.entity_ids.forget()
                if not _is_retryable(exc) or attempt == RETRIES - 1:
                    raise
                time.sleep(0.05 * 2 ** attempt)
        return 0  # pragma: no cover - the loop returns or raises


def _has_values(connection: Any, computation: int) -> bool:
    """Whether the computation has rows stored (current or history): a scan, for a reload only."""
    return any(connection.execute(sa.select(table.c.entity).where(table.c.computation == computation).limit(1)).first()
               is not None for table in (t_current, t_history))


def _chunked(items: Sequence[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield list(items[start:start + size])


def _valid(datatype: str) -> bool:
    try:
        codec_for(datatype)
    except ValueTextError:
        return False
    return True


def _field_text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, (list, dict)):
        return canonical_json(value)
    return str(value)


def _open_results(path: Path) -> Any:
    try:
        return open(path, encoding="utf-8", newline="")  # noqa: SIM115 - opened apart: an open error is not a read error
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the results: {exc.strerror or exc}") from exc


def _read_results(path: Path, codecs: Sequence[Codec], output: Sequence[str]) -> tuple[list[str], list[list[Any]]]:
    """``(entities, encoded columns)`` of a results TSV; a later row of the same entity replaces an earlier one.

    Every line is checked; the check and the encoding run a column at a time
    (:attr:`.codec.Codec.encode_column`), and a bad value is looked for line by
    line only once a column is known to hold one.
    """
    n = len(output)
    rows: list[list[str]] = []
    with _open_results(path) as handle:
        add = rows.append
        for number, line in enumerate(handle, 1):
            fields = line.rstrip("\r\n").split("\t")
            if len(fields) - 1 != n or fields == [""]:
                if fields == [""]:
                    continue
                raise UsageError(f"{path}:{number}: {len(fields) - 1} value(s), the plugin's OUTPUT has {n} "
                                 f"({', '.join(output)})")
            add(fields)
    if not rows:
        return [], [[] for _codec in codecs]
    names, *texts = (list(column) for column in zip(*rows))
    del rows
    columns: list[list[Any]] = []
    for index, (codec, column) in enumerate(zip(codecs, texts)):
        try:
            columns.append(codec.encode_column(column))
        except ValueTextError:
            _raise_first_bad(path, index, codec, output[index])
            raise
    if len(set(names)) != len(names):
        last = list({name: at for at, name in enumerate(names)}.values())  # first position, last row
        names = [names[at] for at in last]
        columns = [[column[at] for at in last] for column in columns]
    return names, columns


def _raise_first_bad(path: Path, index: int, codec: Codec, name: str) -> None:
    """The one-line error of the first line whose field ``index`` does not read as its datatype."""
    with open(path, encoding="utf-8", newline="") as handle:
        for number, line in enumerate(handle, 1):
            fields = line.rstrip("\r\n").split("\t")
            if len(fields) <= index + 1:
                continue
            try:
                codec.encode_text(fields[index + 1])
            except ValueTextError as exc:
                raise UsageError(f"{path}:{number}: attribute '{name}' ({codec.datatype}): {exc}") from None


def read_definitions(path: str | Path) -> dict[str, dict[str, Any]]:
    """An attribute definitions file (provbatch's or prenacs'): name -> fields; one-line errors naming the file.

    Checked here only for what the store needs (a mapping, a datatype of the
    grammar, known keys); a missing ``definition`` is allowed, as prenacs files have it.
    """
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{path}: cannot read attribute definitions: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: attribute definitions are not valid YAML: {getattr(exc, 'problem', exc)}") from exc
    if not isinstance(data, dict):
        raise UsageError(f"{path}: attribute definitions must be a mapping of attribute name -> definition")
    definitions: dict[str, dict[str, Any]] = {}
    for name, entry in data.items():
        if not isinstance(entry, dict) or not entry.get("datatype"):
            raise UsageError(f"{path}: attribute '{name}' must be a mapping with at least a 'datatype'")
        unknown = sorted(set(entry) - set(ATTRIBUTE_FIELDS))
        if unknown:
            raise UsageError(f"{path}: attribute '{name}' has unknown key(s) {', '.join(map(str, unknown))} "
                             f"(allowed: {', '.join(ATTRIBUTE_FIELDS)})")
        definitions[str(name)] = dict(entry)
    return definitions
