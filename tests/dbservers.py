"""Real PostgreSQL and MariaDB servers for the store tests and benchmarks, in temporary directories.

Each server is initialised in a fresh data directory, listens on a free
loopback port (and a unix socket inside the temp dir), and is stopped by
:meth:`Server.stop`. Debian's packages provide the binaries (``make test``
installs them). PostgreSQL refuses to run as root, so as root it runs as an
unprivileged user (``nobody``, created with useradd on a machine that lacks
it); MariaDB runs as the current user (``--user=root`` when root).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PG_BIN = Path(os.environ.get("PROVBATCH_PG_BIN", "/usr/lib/postgresql/15/bin"))
SERVICE_USER = "nobody"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _service_user() -> pwd.struct_passwd | None:
    """The unprivileged user PostgreSQL runs as when we are root (None when we are not root)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER],
                       check=True, capture_output=True)
        return pwd.getpwnam(SERVICE_USER)


def _wait_for_port(port: int, process: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}: {log.read_text(errors='replace')[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server did not listen on port {port} within {timeout} s: {log.read_text(errors='replace')[-2000:]}")


@dataclass
class Server:
    """A running database server; :meth:`url` gives a SQLAlchemy URL for one of its databases."""

    kind: str
    port: int
    root: Path
    process: subprocess.Popen
    admin_url: str
    _counter: int = field(default=0)

    def url(self, database: str) -> str:
        if self.kind == "postgresql":
            return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"
        return f"mysql+pymysql://root@127.0.0.1:{self.port}/{database}?charset=utf8mb4"

    def create_database(self, prefix: str = "t") -> str:
        """A new empty database; returns its URL."""
        import sqlalchemy as sa

        self._counter += 1
        name = f"{prefix}{os.getpid()}_{self._counter}"
        engine = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                connection.execute(sa.text(f"CREATE DATABASE {name}"))
        finally:
            engine.dispose()
        return self.url(name)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # postgres: smart shutdown; mariadbd: normal shutdown
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgresql(fast: bool = True) -> Server:
    """initdb in a temp dir, then ``postgres`` on a free port. ``fast`` turns fsync off (tests)."""
    user = _service_user()
    root = Path(tempfile.mkdtemp(prefix="provbatch-pg-"))
    data, sockets, log = root / "data", root / "sock", root / "server.log"
    sockets.mkdir()
    log.touch()
    kwargs: dict[str, Any] = {}
    if user is not None:
        for path in (root, sockets, log):
            os.chown(path, user.pw_uid, user.pw_gid)
        kwargs = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    subprocess.run([str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                    "--no-sync", "--locale=C.UTF-8"], check=True, capture_output=True, env=env, cwd=root, **kwargs)
    port = free_port()
    settings = ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"] if fast else []
    handle = open(log, "ab")
    process = subprocess.Popen(
        [str(PG_BIN / "postgres"), "-D", str(data), "-p", str(port), "-h", "127.0.0.1", "-k", str(sockets),
         "-c", "max_connections=200", *settings],
        stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=root, **kwargs,
    )
    handle.close()
    _wait_for_port(port, process, log)
    server = Server("postgresql", port, root, process, f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres")
    _wait_until_accepting(server)
    return server


def start_mariadb(fast: bool = True, options: tuple[str, ...] = ()) -> Server:
    """mariadb-install-db in a temp dir, then ``mariadbd`` on a free port, without grant tables (loopback only).

    ``fast`` turns the redo log's flush at each commit and the doublewrite buffer off (tests);
    ``options`` are more server options, after ours (the benchmarks' server settings).
    """
    root = Path(tempfile.mkdtemp(prefix="provbatch-mariadb-"))
    data, log = root / "data", root / "server.log"
    user = ["--user=root"] if os.geteuid() == 0 else []
    subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={data}", "--skip-test-db",
                    "--auth-root-authentication-method=normal", *user],
                   check=True, capture_output=True, cwd=root)
    port = free_port()
    settings = ["--innodb-flush-log-at-trx-commit=0", "--innodb-doublewrite=0"] if fast else []
    # the server's temporary tables in its own folder, not the machine's /tmp, where another process's
    # clean-up once removed one under a running query ("Error on delete of '/tmp/#sql-temptable-...'")
    (root / "tmp").mkdir()
    handle = open(log, "ab")
    process = subprocess.Popen(
        ["mariadbd", "--no-defaults", f"--datadir={data}", f"--socket={root / 'mysqld.sock'}", f"--port={port}",
         "--bind-address=127.0.0.1", f"--pid-file={root / 'mysqld.pid'}", "--skip-grant-tables", "--skip-name-resolve",
         "--local-infile=1", "--innodb-buffer-pool-size=256M", "--max-connections=200", "--skip-log-bin",
         f"--log-error={log}", f"--tmpdir={root / 'tmp'}", *settings, *options, *user],
        stdout=handle, stderr=subprocess.STDOUT, cwd=root,
    )
    handle.close()
    _wait_for_port(port, process, log)
    server = Server("mariadb", port, root, process, f"mysql+pymysql://root@127.0.0.1:{port}/mysql")
    _wait_until_accepting(server)
    return server


def _wait_until_accepting(server: Server, timeout: float = 60.0) -> None:
    """The port opens slightly before the server accepts queries (PostgreSQL's startup recovery)."""
    import sqlalchemy as sa

    deadline = time.monotonic() + timeout
    while True:
        engine = sa.create_engine(server.admin_url)
        try:
            with engine.connect() as connection:
                connection.execute(sa.text("SELECT 1"))
            return
        except sa.exc.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
        finally:
            engine.dispose()
