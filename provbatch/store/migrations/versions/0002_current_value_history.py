"""The current value lives in provbatch_current; replaced values in provbatch_history; provbatch_values goes.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

Revision 0001 kept every value in ``provbatch_values`` (attribute, entity,
computation) and a pointer (attribute, entity) -> computation in
``provbatch_current``: a first load was three b-tree inserts per value
(value row, pointer, entity) and every read of the current values a join.
Here the current value is in its pointer row (one insert per value, no
join), and the values a later computation replaced are in
``provbatch_history``. Each (attribute, entity, computation) is stored once
across the two tables; nothing is lost: the current rows get their value
from the old values table, every other old value row goes to history.

Written out in full (not imported from schema.py), like 0001.
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

MYSQL: dict[str, Any] = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin", "mysql_engine": "InnoDB"}
CLUSTERED: dict[str, Any] = {**MYSQL, "sqlite_with_rowid": False}
_SAME_VALUE = "v.attribute = {t}.attribute AND v.entity = {t}.entity AND v.computation = {t}.computation"


def upgrade() -> None:
    op.create_table(
        "provbatch_history",
        sa.Column("attribute", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("entity", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("computation", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("value", sa.Text),
        **CLUSTERED,
    )
    op.add_column("provbatch_current", sa.Column("value", sa.Text))
    op.execute("UPDATE provbatch_current SET value = (SELECT v.value FROM provbatch_values v WHERE "
               f"{_SAME_VALUE.format(t='provbatch_current')})")
    op.execute("INSERT INTO provbatch_history (attribute, entity, computation, value) "
               "SELECT v.attribute, v.entity, v.computation, v.value FROM provbatch_values v WHERE NOT EXISTS "
               f"(SELECT 1 FROM provbatch_current c WHERE {_SAME_VALUE.format(t='c')})")
    op.drop_table("provbatch_values")


def downgrade() -> None:
    op.create_table(
        "provbatch_values",
        sa.Column("attribute", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("entity", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("computation", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("value", sa.Text),
        **CLUSTERED,
    )
    for table in ("provbatch_current", "provbatch_history"):
        op.execute(f"INSERT INTO provbatch_values (attribute, entity, computation, value) "
                   f"SELECT attribute, entity, computation, value FROM {table}")
    op.drop_table("provbatch_history")
    op.drop_column("provbatch_current", "value")  # SQLite >= 3.35 drops a column in place
