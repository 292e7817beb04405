"""An entity's key is its name itself when it can be (hashed only when it cannot), so that keys sort as names do.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

Revision 0002 keyed every entity by the blake2b-128 of its name (32 hex
digits): a unique index of random keys, so each new entity landed at a random
place in it, and a bulk write touched (and wrote back) most of its pages in
every transaction: 1,000,000 new entities cost 12 s of CPU on SQLite, against
2 s when the keys of a sorted ids file arrive in order. Here ``name_key`` is
the name itself when it has at most 255 printable characters and no trailing
space, else ``"\\x1f"`` + blake2b-128 hex (a name that is its own key has no
control character, so the two kinds never meet). On PostgreSQL the column
compares bytewise (collation "C"), as SQLite and utf8mb4_bin do.

The keys are rewritten in two passes: first every key becomes a temporary one
that no final key can be (``"\\x1e"`` + the id), then each gets its final
value: a name of 32 hex digits is its own key now, and may be another
entity's old hashed key, so one pass could collide on the unique index.

The key function is written out here (not imported from the writer), like
the tables of 0001 and 0002, so that this revision stays what it was.
"""

import hashlib
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_CHUNK = 10_000


def _key(name: str) -> str:
    if len(name) <= 255 and name.isprintable() and not name.endswith(" "):
        return name
    return "\x1f" + hashlib.blake2b(name.encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()


def _old_key(name: str) -> str:
    return hashlib.blake2b(name.encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()


def _rekey(key: Any) -> None:
    connection = op.get_bind()
    name = connection.dialect.name
    if name == "postgresql":
        temporary = "chr(30) || CAST(id AS text)"
    elif name in ("mysql", "mariadb"):
        temporary = "CONCAT(CHAR(30), id)"
    else:
        temporary = "char(30) || id"
    op.execute(f"UPDATE provbatch_entities SET name_key = {temporary}")
    update = sa.text("UPDATE provbatch_entities SET name_key = :key WHERE id = :id")
    last = None
    while True:
        query = "SELECT id, name FROM provbatch_entities"
        query += " ORDER BY id" if last is None else f" WHERE id > {int(last)} ORDER BY id"
        rows = connection.execute(sa.text(f"{query} LIMIT {_CHUNK}")).all()
        if not rows:
            return
        connection.execute(update, [{"id": entity_id, "key": key(entity)} for entity_id, entity in rows])
        last = rows[-1][0]


def _alter(type_: Any, existing_type: Any) -> None:
    # SQLite keeps the declared type in its schema (it does not enforce it): the table is copied with the new one
    with op.batch_alter_table("provbatch_entities") as batch:
        batch.alter_column("name_key", type_=type_, existing_type=existing_type, existing_nullable=False)


def upgrade() -> None:
    key_text = sa.String(255).with_variant(sa.String(255, collation="C"), "postgresql")
    _alter(key_text, sa.String(32))
    _rekey(_key)


def downgrade() -> None:
    _rekey(_old_key)
    _alter(sa.String(32), sa.String(255))
