"""The tables of the results store (SQLAlchemy Core), revision 0005.

Values are *packed*: the values one computation wrote for one entity are one
row, not one row per value, because a database's cost of a bulk write is per
row (InnoDB ~2-3 us of server CPU a row, wide or narrow; see docs/store.md).
A computation's attributes are split into *outsets* of at most
:data:`OUTSET_ATTRIBUTES` (``provbatch_outsets``: their attribute ids in the
computation's column order), shared by every computation that writes the same
attributes in the same order: the runs of one plugin share theirs. A row of
``provbatch_current`` (outset, entity) holds the latest computation of that
outset for the entity, its values tab-joined (:mod:`.packs`) and a bit mask of
which of them are still current: a later computation of *another* outset that
writes some of the same attributes clears their bits. A row the same outset's
later computation replaced moves to ``provbatch_history`` (outset, entity,
computation). So the current value of (attribute, entity) is the one value of
a current row whose bit is set; each (attribute, entity, computation) is stored
exactly once, and nothing a computation wrote is deleted (only ``attributes
drop`` deletes values). A first load of an entity's ten values is one row; the
current values of an attribute are one range scan per outset that holds it
(the runs of a plugin: one). The two big tables carry no secondary index and no
foreign key: each would be one more b-tree (or trigger) per row written; the
writer guarantees what a foreign key would (a computation row is committed
before its values, entities are created in the values' transaction). See
docs/store.md for the reasons.

Every change of these tables is an Alembic revision in ``migrations/versions``;
tests compare the migrated database with this module, so they cannot drift.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

#: the Alembic revision these tables correspond to (the newest migration)
SCHEMA_REVISION = "0005"
#: the most attributes an outset holds: its current bits fit a signed 64-bit integer
OUTSET_ATTRIBUTES = 63
#: Alembic's bookkeeping table, prefixed like ours so that a store can share a database
VERSION_TABLE = "provbatch_alembic_version"

# MariaDB/MySQL: utf8mb4 with a binary collation, so that 'A' and 'a' (or 'a ')
# are different entities and attributes, as they are on SQLite and PostgreSQL
_MYSQL: dict[str, Any] = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin", "mysql_engine": "InnoDB"}
# SQLite: the big tables are clustered on their primary key (one b-tree, not two)
_CLUSTERED: dict[str, Any] = {**_MYSQL, "sqlite_with_rowid": False}

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite: INTEGER PRIMARY KEY is the rowid
Name = sa.String(255)
#: an entity's key: bytewise order and comparison everywhere (SQLite's default; utf8mb4_bin on MariaDB/MySQL)
KeyText = sa.String(255).with_variant(sa.String(255, collation="C"), "postgresql")

metadata = sa.MetaData()

attributes = sa.Table(
    "provbatch_attributes", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", Name, nullable=False, unique=True),
    sa.Column("datatype", sa.String(1024), nullable=False),
    sa.Column("definition", sa.Text),
    sa.Column("unit", Name),
    sa.Column("ontology_xref", Name),
    sa.Column("related_ontology_terms", sa.Text),
    sa.Column("remark", sa.Text),
    sa.Column("computation_group", Name, index=True),
    **_MYSQL,
)

plugins = sa.Table(
    "provbatch_plugins", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("plugin_id", Name, nullable=False),
    sa.Column("version", Name, nullable=False),
    sa.Column("lang", sa.String(32)),
    sa.Column("sha256", sa.String(64)),
    #: JSON: INPUT, OUTPUT, METHOD, IMPLEMENTATION, PARAMETERS, REQ_SOFTWARE, REQ_HARDWARE, ADVICE
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("recorded_at", sa.String(40), nullable=False),
    sa.UniqueConstraint("plugin_id", "version", name="uq_provbatch_plugins_id_version"),
    **_MYSQL,
)

computations = sa.Table(
    "provbatch_computations", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("uuid", sa.String(36), nullable=False, unique=True),
    sa.Column("plugin", sa.Integer, sa.ForeignKey("provbatch_plugins.id", name="fk_provbatch_computations_plugin"),
              nullable=False, index=True),
    #: the source hash of the plugin as this computation ran it (None: not known, e.g. a prenacs report)
    sa.Column("plugin_sha256", sa.String(64)),
    sa.Column("plugin_path", sa.Text),
    #: JSON of the parameters, keys sorted
    sa.Column("parameters", sa.Text, nullable=False),
    #: sha256 of plugin id, version, source hash and parameters: "the same computation" for resume and stale
    sa.Column("signature", sa.String(64), nullable=False, index=True),
    #: JSON list of the OUTPUT attributes, in column order
    sa.Column("output", sa.Text, nullable=False),
    sa.Column("user_id", Name),
    sa.Column("system_id", Name),
    sa.Column("reason", sa.String(32)),
    sa.Column("time_start", sa.String(40)),
    sa.Column("time_end", sa.String(40)),
    #: running (batch-compute --store writing now, or killed) | completed | partial | aborted
    sa.Column("comp_status", sa.String(16), nullable=False),
    sa.Column("n_units", sa.Integer),
    sa.Column("run_dir", sa.Text),
    #: JSON list: the command line that ran it
    sa.Column("command", sa.Text),
    sa.Column("remarks", sa.Text),
    #: batch-compute (written while computing) | provbatch-report | prenacs-report (provbatch load)
    sa.Column("origin", sa.String(32), nullable=False),
    sa.Column("loaded_at", sa.String(40), nullable=False),
    **_MYSQL,
)

entities = sa.Table(
    "provbatch_entities", metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    #: the name itself when it can be, else "\x1f" + blake2b-128 of it (:func:`.writer.entity_key`): keys sort as
    #: names do (sorted ids append to the index); PostgreSQL compares them bytewise ("C"), as the others do
    sa.Column("name_key", KeyText, nullable=False, unique=True),
    #: the name when it is not its own key (a hashed key's), else NULL: the usual name is stored once, not twice
    #: (a trivial run's 1,000,000 new entities: a 60.2 MB SQLite store, not 71.2 MB); read it as :data:`ENTITY_NAME`
    sa.Column("name", sa.Text, nullable=True),
    **_MYSQL,
)

#: an entity's name in SQL, for a query that calls ``provbatch_entities`` ``e``
ENTITY_NAME = "COALESCE(e.name, e.name_key)"

#: the attributes a computation writes together, at most :data:`OUTSET_ATTRIBUTES` (a computation with more has
#: several): shared by the computations that write the same attributes in the same order
outsets = sa.Table(
    "provbatch_outsets", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    #: sha256 of ``attributes`` as written (:func:`.packs.outset_digest`); ``dropped-<id>`` once an attribute of it is dropped
    sa.Column("digest", sa.String(64), nullable=False, unique=True),
    #: JSON list of attribute ids, in column order; a dropped attribute's entry is null
    sa.Column("attributes", sa.Text, nullable=False),
    **_MYSQL,
)

#: the latest computation of each (outset, entity): its values, and which of them are current
current = sa.Table(
    "provbatch_current", metadata,
    sa.Column("outset", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("entity", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("computation", sa.Integer, nullable=False),
    #: bit i set: the value of the outset's attribute i is the current one
    sa.Column("current_bits", sa.BigInteger, nullable=False),
    #: the values in stored form (:func:`.packs.pack`): tab-joined, '' for none; a one-attribute outset's is the value itself
    sa.Column("values_text", sa.Text),
    **_CLUSTERED,
)

#: the values of an outset's earlier computations, replaced by a later computation of the same outset
history = sa.Table(
    "provbatch_history", metadata,
    sa.Column("outset", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("entity", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("computation", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("values_text", sa.Text),
    **_CLUSTERED,
)

#: the input file of an entity, as a computation read it (files mode)
inputs = sa.Table(
    "provbatch_inputs", metadata,
    sa.Column("computation", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("entity", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("size", sa.BigInteger),
    sa.Column("sha256", sa.String(64)),
    sa.Column("mtime", sa.Double),
    **_CLUSTERED,
)
