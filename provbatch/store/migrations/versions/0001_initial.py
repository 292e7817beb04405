"""The first schema of the results store: attributes, plugins, computations, entities, values, current, inputs.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Written out in full (not imported from schema.py), so that this revision
stays what it was when schema.py changes; tests check that the migrated
database equals schema.py.
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

MYSQL: dict[str, Any] = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin", "mysql_engine": "InnoDB"}
CLUSTERED: dict[str, Any] = {**MYSQL, "sqlite_with_rowid": False}
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "provbatch_attributes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("datatype", sa.String(1024), nullable=False),
        sa.Column("definition", sa.Text),
        sa.Column("unit", sa.String(255)),
        sa.Column("ontology_xref", sa.String(255)),
        sa.Column("related_ontology_terms", sa.Text),
        sa.Column("remark", sa.Text),
        sa.Column("computation_group", sa.String(255)),
        **MYSQL,
    )
    op.create_index("ix_provbatch_attributes_computation_group", "provbatch_attributes", ["computation_group"])
    op.create_table(
        "provbatch_plugins",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("plugin_id", sa.String(255), nullable=False),
        sa.Column("version", sa.String(255), nullable=False),
        sa.Column("lang", sa.String(32)),
        sa.Column("sha256", sa.String(64)),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("recorded_at", sa.String(40), nullable=False),
        sa.UniqueConstraint("plugin_id", "version", name="uq_provbatch_plugins_id_version"),
        **MYSQL,
    )
    op.create_table(
        "provbatch_computations",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("uuid", sa.String(36), nullable=False, unique=True),
        sa.Column("plugin", sa.Integer, sa.ForeignKey("provbatch_plugins.id", name="fk_provbatch_computations_plugin"),
                  nullable=False),
        sa.Column("plugin_sha256", sa.String(64)),
        sa.Column("plugin_path", sa.Text),
        sa.Column("parameters", sa.Text, nullable=False),
        sa.Column("signature", sa.String(64), nullable=False),
        sa.Column("output", sa.Text, nullable=False),
        sa.Column("user_id", sa.String(255)),
        sa.Column("system_id", sa.String(255)),
        sa.Column("reason", sa.String(32)),
        sa.Column("time_start", sa.String(40)),
        sa.Column("time_end", sa.String(40)),
        sa.Column("comp_status", sa.String(16), nullable=False),
        sa.Column("n_units", sa.Integer),
        sa.Column("run_dir", sa.Text),
        sa.Column("command", sa.Text),
        sa.Column("remarks", sa.Text),
        sa.Column("origin", sa.String(32), nullable=False),
        sa.Column("loaded_at", sa.String(40), nullable=False),
        **MYSQL,
    )
    op.create_index("ix_provbatch_computations_plugin", "provbatch_computations", ["plugin"])
    op.create_index("ix_provbatch_computations_signature", "provbatch_computations", ["signature"])
    op.create_table(
        "provbatch_entities",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("name_key", sa.String(32), nullable=False, unique=True),
        sa.Column("name", sa.Text, nullable=False),
        **MYSQL,
    )
    op.create_table(
        "provbatch_values",
        sa.Column("attribute", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("entity", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("computation", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("value", sa.Text),
        **CLUSTERED,
    )
    op.create_table(
        "provbatch_current",
        sa.Column("attribute", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("entity", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("computation", sa.Integer, nullable=False),
        **CLUSTERED,
    )
    op.create_table(
        "provbatch_inputs",
        sa.Column("computation", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("entity", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("size", sa.BigInteger),
        sa.Column("sha256", sa.String(64)),
        sa.Column("mtime", sa.Double),
        **CLUSTERED,
    )


def downgrade() -> None:
    for table in ("provbatch_inputs", "provbatch_current", "provbatch_values", "provbatch_entities",
                  "provbatch_computations", "provbatch_plugins", "provbatch_attributes"):
        op.drop_table(table)
