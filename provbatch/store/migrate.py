"""The store's schema revision: create or upgrade it (``provbatch store init``), check it on open.

Migrations are Alembic revisions shipped inside the package
(``provbatch/store/migrations``); they run on a connection we open, so no
``alembic.ini`` is involved and a wheel carries everything needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import UsageError, literal
from .schema import SCHEMA_REVISION, VERSION_TABLE
from .url import display_url

MIGRATIONS = Path(__file__).with_name("migrations")


def _config(connection: Any) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def current_revision(connection: Any) -> str | None:
    """The revision the database is at; None for a database without a store.

    Read directly (Alembic's table has one row), so that opening a store does
    not import Alembic: every command opens one, ``why`` included.
    """
    import sqlalchemy as sa

    if not sa.inspect(connection).has_table(VERSION_TABLE):
        return None
    return connection.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(MIGRATIONS)).get_current_head() or ""


#: the lock that makes concurrent ``store init`` / first writers create the schema once
SCHEMA_LOCK_NAME = "provbatch_store_schema"
PG_SCHEMA_LOCK_KEY = 0x70726F76  # "prov"


def upgrade(engine: Any, to: str = "head", by_migrations: bool = False) -> tuple[str | None, str]:
    """Create the store, or migrate it to the newest revision (or ``to``: tests build old stores); returns
    (before, after).

    A new store gets the tables of :mod:`.schema` at once, stamped with their
    revision, as Alembic's cookbook advises ("building an up-to-date database
    from scratch"): no Alembic import and no run of every migration, which
    was most of the start-up ``batch-compute --store`` added to a run (0.4 s of
    1 s). Tests check that the migrations build the same tables
    (``by_migrations``) and that the stamp is the newest migration.

    Two processes may do it at once (two ``batch-compute --store`` on a new
    database): the migration runs under a lock, and the second finds the
    schema at head. SQLite's write lock (BEGIN IMMEDIATE) is that lock;
    PostgreSQL takes a transaction advisory lock; MariaDB/MySQL a named lock
    (its DDL is not transactional), released only after the transaction that
    stamps the revision commits: released before, the next process saw the
    tables without their stamp and created them again ("already exists").
    """
    import sqlalchemy as sa

    with engine.connect() as connection:
        named_lock = connection.dialect.name in ("mysql", "mariadb")
        if named_lock:  # a session's lock: taken before the transaction, released after its commit
            connection.execute(sa.text(f"SELECT GET_LOCK('{SCHEMA_LOCK_NAME}', 300)"))
            connection.commit()
        try:
            with connection.begin():
                if connection.dialect.name == "postgresql":
                    connection.execute(sa.text(f"SELECT pg_advisory_xact_lock({PG_SCHEMA_LOCK_KEY})"))
                before = current_revision(connection)
                if before is None and to == "head" and not by_migrations:
                    _create_at_head(connection)
                else:
                    from alembic import command

                    command.upgrade(_config(connection), to)
                after = current_revision(connection)
        finally:
            if named_lock:
                connection.execute(sa.text(f"SELECT RELEASE_LOCK('{SCHEMA_LOCK_NAME}')"))
                connection.commit()
    return before, after or ""


def _create_at_head(connection: Any) -> None:
    """The tables of :mod:`.schema` and Alembic's version table (as Alembic creates it), at :data:`SCHEMA_REVISION`."""
    import sqlalchemy as sa

    from .schema import metadata

    version = sa.Table(VERSION_TABLE, sa.MetaData(), sa.Column("version_num", sa.String(32), nullable=False),
                       sa.PrimaryKeyConstraint("version_num", name=f"{VERSION_TABLE}_pkc"))
    version.create(connection)
    metadata.create_all(connection)
    connection.execute(version.insert().values(version_num=SCHEMA_REVISION))


def check(engine: Any, url: str, create: bool) -> None:
    """Refuse a store at another revision than this provbatch's; create an empty one when ``create``."""
    with engine.connect() as connection:
        revision = current_revision(connection)
    if revision == SCHEMA_REVISION:
        return
    if revision is None:
        if create:
            upgrade(engine)
            return
        raise UsageError.naming(f"{{store}} {literal(display_url(url))}: no provbatch store there yet: run 'provbatch store init' first")
    if revision < SCHEMA_REVISION:  # revisions are zero-padded numbers: text order is their order
        raise UsageError.naming(f"{{store}} {literal(display_url(url))}: the store has schema revision {literal(revision)}, "
                                f"this provbatch needs {SCHEMA_REVISION}: run 'provbatch store init' to migrate it")
    raise UsageError.naming(f"{{store}} {literal(display_url(url))}: the store has schema revision {literal(revision)}, "
                            f"newer than this provbatch's ({SCHEMA_REVISION}): upgrade provbatch")
