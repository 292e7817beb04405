"""SQLite: the write-ahead log checkpointed by a thread of the writer, not in the writer's commits.

In WAL mode each commit appends pages to the ``-wal`` file; a *checkpoint*
copies them into the database file and, with ``synchronous=NORMAL``, syncs
both files to disk. By default SQLite runs it inside the commit that takes the
log past 1,000 pages, so a bulk writer waits for every ``fsync``: measured
here, 1,000,000 values written by ``batch-compute --store`` spend 0.5 s of a
2.6 s write waiting in checkpoints (no CPU: the disk), on the path that bounds
the whole run.

:class:`BackgroundCheckpoints` turns the writer connection's automatic
checkpoints off and runs them on a connection of its own, in a thread, after
each commit: the ``sqlite3`` module releases the GIL while SQLite works, so the
copy and its syncs overlap the writer's next batch. It is the same checkpoint
(``PRAGMA wal_checkpoint(PASSIVE)``: it never waits for a reader or the
writer), so durability is unchanged: a committed transaction is in the log,
and a checkpoint only moves it.

The log must still be started anew now and then, or it grows by everything
written: SQLite restarts it from its start only when a write transaction begins
after a checkpoint that copied *every* frame, and a thread one batch behind
never gets there while the writer goes on. So the writer's connection also
sets ``journal_size_limit``: each time the log starts anew its file is cut back
to :data:`RESET_BYTES`, and a file larger than that (one ``stat`` after each
commit) means the log has grown past it since. Then the writer's commit waits
for the thread and copies the last frames itself (one batch, not the whole
log), and its next transaction starts the log anew. The file stays within
:data:`RESET_BYTES` plus a batch, as SQLite's own default keeps it near 1,000
pages.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from typing import Any

#: the log file's size past which the writer makes its next transaction start a new log
RESET_BYTES = 64 << 20
#: SQLite's own default, set back on the writer's connection when the writes are over
DEFAULT_AUTOCHECKPOINT = 1000


class BackgroundCheckpoints:
    """A thread that checkpoints one SQLite database's WAL after each of a writer's commits."""

    def __init__(self, database: str, timeout: float, reset_bytes: int = RESET_BYTES) -> None:
        """``database``: the file's path; ``timeout``: seconds a checkpoint waits for a lock (busy timeout);
        ``reset_bytes``: :data:`RESET_BYTES` (smaller in tests)."""
        self.reset_bytes = reset_bytes
        self._log_file = database + "-wal"
        self._connection = sqlite3.connect(database, timeout=timeout, isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()  # held while a checkpoint runs, in the thread or in the writer
        self._wanted = threading.Condition()
        self._pending = False
        self._closed = False
        #: checkpoints run, by the thread and by the writer (for tests and benchmarks)
        self.runs = 0
        self._thread = threading.Thread(target=self._run, name="provbatch-wal-checkpoints", daemon=True)
        self._thread.start()

    def leave_to_thread(self, dbapi_connection: Any, own: bool) -> None:
        """Turn the writer connection's automatic checkpoints off and bound its log (``own``: a transaction
        of the writer's), or back to SQLite's defaults (after its commit: back to the pool as it came)."""
        if own:
            dbapi_connection.execute("PRAGMA wal_autocheckpoint = 0")
            dbapi_connection.execute(f"PRAGMA journal_size_limit = {self.reset_bytes}")
        else:
            dbapi_connection.execute(f"PRAGMA wal_autocheckpoint = {DEFAULT_AUTOCHECKPOINT}")
            dbapi_connection.execute("PRAGMA journal_size_limit = -1")

    def committed(self) -> None:
        """After each commit of the writer: a checkpoint in the thread, or here when the log must start anew."""
        try:
            grown = os.stat(self._log_file).st_size > self.reset_bytes
        except OSError:  # no log file (another connection's close removed it): nothing to copy
            return
        if grown or not self._thread.is_alive():
            self._checkpoint()  # between two transactions: every frame copied, the next write starts a new log
            return
        with self._wanted:
            self._pending = True
            self._wanted.notify()

    def _checkpoint(self) -> None:
        """One passive checkpoint (after the one in progress, if any): it copies what no reader still needs."""
        with self._lock:
            self._connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self.runs += 1

    def _run(self) -> None:
        while True:
            with self._wanted:
                while not self._pending and not self._closed:
                    self._wanted.wait()
                if self._closed:
                    return
                self._pending = False
            try:
                self._checkpoint()
            except sqlite3.Error:  # (the disk, the file): the writer checkpoints itself from now on, as SQLite would
                return

    def close(self) -> None:
        """Stop the thread (a checkpoint in progress finishes); the last connection's close copies the rest."""
        with self._wanted:
            self._closed = True
            self._wanted.notify()
        self._thread.join()
        self._connection.close()
