"""An entity's name is stored once: ``provbatch_entities.name`` is NULL when the name is its own key.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

Since 0003 the key of almost every entity is its name itself (at most 255
printable characters, no trailing space), so each row held the name twice,
and SQLite's key index a third time. A new entity's ``name`` is now NULL when
the name is its key; it holds the name only beside a hashed key (``"\\x1f"`` +
blake2b-128). Readers take ``COALESCE(name, name_key)``. A trivial run's
1,000,000 new entities make a 60.2 MB SQLite store instead of 71.2 MB.

The upgrade clears the names that equal their keys (a hashed key starts with a
control character, so a name is never equal to another entity's hashed key);
the downgrade writes them back before the column is NOT NULL again.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _nullable(nullable: bool) -> None:
    # SQLite cannot change a column's NOT NULL in place: the batch copies the table with the new column
    with op.batch_alter_table("provbatch_entities") as batch:
        batch.alter_column("name", existing_type=sa.Text(), nullable=nullable)


def upgrade() -> None:
    _nullable(True)
    op.execute("UPDATE provbatch_entities SET name = NULL WHERE name = name_key")


def downgrade() -> None:
    op.execute("UPDATE provbatch_entities SET name = name_key WHERE name IS NULL")
    _nullable(False)
