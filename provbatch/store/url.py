"""Which store, and the engine that talks to it.

``--store URL`` takes a SQLAlchemy URL (``postgresql+psycopg://...``,
``mysql+pymysql://...``, ``sqlite:///path``) or a plain path, which means an
embedded SQLite file. Without ``--store``, ``PROVBATCH_STORE`` is used, and
the store commands fall back to ``./provbatch.sqlite``.

SQLite runs in WAL mode (readers never block the writer, and two writers
wait for each other instead of failing: ``busy_timeout``), with
``synchronous=NORMAL`` (a commit survives a killed process; only a power
loss may lose the last commits, never consistency).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from ..errors import UsageError, literal

ENV_VAR = "PROVBATCH_STORE"
DEFAULT_STORE = "provbatch.sqlite"
#: milliseconds a SQLite writer waits for another one before giving up
SQLITE_BUSY_TIMEOUT_MS = 120_000

#: the extra that brings the driver of each backend
_EXTRAS = {"postgresql": "postgresql", "mysql": "mysql", "mariadb": "mysql"}
#: backends whose default SQLAlchemy driver is not the one we install: pick ours
_DEFAULT_DRIVERS = {"postgresql": "postgresql+psycopg", "mysql": "mysql+pymysql", "mariadb": "mysql+pymysql"}


def store_url(explicit: str | None, default: str | None = DEFAULT_STORE) -> str | None:
    """The store to use: ``explicit`` (``--store``), else ``$PROVBATCH_STORE``, else ``default``."""
    value = explicit or os.environ.get(ENV_VAR) or default
    if not value:
        return None
    return normalize_url(value)


def normalize_url(value: str) -> str:
    """A SQLAlchemy URL; a plain path becomes ``sqlite:///ABSOLUTE/PATH``."""
    if "://" not in value:
        return f"sqlite:///{Path(value).expanduser().resolve()}"
    scheme, rest = value.split("://", 1)
    if scheme in _DEFAULT_DRIVERS:
        return f"{_DEFAULT_DRIVERS[scheme]}://{rest}"
    return value


def new_sqlite_file(url: str) -> bool:
    """Whether ``url`` (a path, or a plain ``sqlite:///PATH`` URL) is an SQLite file not there yet, in a
    folder that is: a store nothing is in, so nothing of it needs asking before a run starts (without
    SQLAlchemy: see :mod:`provbatch.outputs.store_sink`). Any other URL (a query, a server): False."""
    url = normalize_url(url)
    for scheme in ("sqlite:///", "sqlite+pysqlite:///"):
        if url.startswith(scheme):
            path = url[len(scheme):]
            break
    else:
        return False
    if not path or path == ":memory:" or "?" in path:
        return False
    return not os.path.lexists(path) and os.path.isdir(os.path.dirname(os.path.abspath(path)))


def display_url(url: str) -> str:
    """The URL with its password hidden as SQLAlchemy hides it (``user:***@host``), for messages and records.

    Written out, not SQLAlchemy's ``make_url(url).render_as_string(hide_password=True)``:
    the engine of ``batch-compute --store`` records the URL of its run, and importing
    SQLAlchemy for that cost it 0.35-0.45 s before its first entity (the store itself is
    opened by its writer process). The rest of the URL is shown as given (SQLAlchemy
    would also percent-encode the query's values, a socket's ``/`` as ``%2F``).
    """
    match = _CREDENTIALS.match(url)
    if match is None:
        return url
    return f"{match['scheme']}://{match['user']}:***@{match['rest']}"


#: a URL with a password, split as SQLAlchemy's ``make_url`` splits it (the user has no ``:`` or ``/``,
#: the password runs to the first ``@``)
_CREDENTIALS = re.compile(r"(?P<scheme>[\w+]+)://(?P<user>[^:/]*):(?P<password>[^@]*)@(?P<rest>.*)", re.DOTALL)


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # autocommit off at the DBAPI level, and BEGIN issued by us below: pysqlite's own
    # transaction handling would start transactions late (after a SELECT), which makes
    # two writers deadlock instead of waiting (the documented SQLAlchemy recipe).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    # a new database gets 16 KiB pages (before WAL mode, which fixes the size; an existing one keeps its own):
    # a bulk write of 1,000,000 values costs 20 % less CPU than with the default 4 KiB
    cursor.execute("PRAGMA page_size = 16384")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.execute("PRAGMA cache_size = -131072")  # 128 MiB at most: bulk loads touch many pages of the key index
    cursor.close()


#: execution option of connections that only read: their transactions take no write lock
READ_ONLY = "provbatch_read_only"


def _on_sqlite_begin(connection: Any) -> None:
    # IMMEDIATE: a writing transaction takes the write lock at its start, so a
    # concurrent writer waits (busy_timeout) rather than failing with "database is
    # locked" when it upgrades a read lock; readers take none (WAL: they never block)
    read_only = connection.get_execution_options().get(READ_ONLY, False)
    connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def create_engine(url: str) -> Any:
    """A SQLAlchemy engine for ``url``; a missing driver is a one-line error naming the extra."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception as exc:
        raise UsageError.naming(f"{{store}} {literal(url)}: not a database URL or path ({literal(exc)})") from exc
    backend = parsed.get_backend_name()
    kwargs: dict[str, Any] = {}
    if backend == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            folder = Path(database).parent
            if not folder.is_dir():
                raise UsageError.naming(f"{{store}} {literal(url)}: folder {literal(folder)} does not exist")
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
    elif backend in ("postgresql", "mysql", "mariadb"):
        kwargs["pool_pre_ping"] = True
        # MariaDB's default (REPEATABLE READ) would hide an entity another writer just
        # created from the SELECT that follows our INSERT IGNORE; PostgreSQL's default is this
        kwargs["isolation_level"] = "READ COMMITTED"
        if backend in ("mysql", "mariadb") and parsed.get_driver_name() == "pymysql":
            kwargs["connect_args"] = {"local_infile": True}  # bulk loads (LOAD DATA LOCAL INFILE), when the server allows
    try:
        engine = sa.create_engine(parsed, **kwargs)
    except ModuleNotFoundError as exc:
        extra = _EXTRAS.get(backend, backend)
        raise UsageError.naming(
            f"{{store}} {literal(display_url(url))}: the database driver '{literal(exc.name)}' is not installed: "
            f"pip install 'provbatch[{literal(extra)}]'"
        ) from exc
    except sa.exc.NoSuchModuleError as exc:
        raise UsageError.naming(f"{{store}} {literal(display_url(url))}: unknown database kind '{literal(parsed.drivername)}'") from exc
    if backend == "sqlite":
        sa.event.listen(engine, "connect", _on_sqlite_connect)
        sa.event.listen(engine, "begin", _on_sqlite_begin)
    return engine
