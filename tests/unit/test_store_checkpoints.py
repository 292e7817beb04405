"""SQLite's write-ahead log checkpointed by a thread of the writer (provbatch/store/checkpoints.py), on real files."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from provbatch.store import ComputationRecord, PluginRecord, Store
from provbatch.store.checkpoints import DEFAULT_AUTOCHECKPOINT, BackgroundCheckpoints
from provbatch.store.store import ComputationWriter

PAGE = 4096


def _writer_database(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute(f"PRAGMA page_size = {PAGE}")
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = NORMAL")
    connection.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
    return connection


def _write_batches(path: Path, connection: sqlite3.Connection, checkpoints: BackgroundCheckpoints, batches: int) -> int:
    """Transactions of ~12 new pages each, back to back, as a bulk writer's are; returns the log's most pages."""
    most = 0
    for batch in range(batches):
        checkpoints.leave_to_thread(connection, True)
        connection.execute("BEGIN IMMEDIATE")
        connection.executemany("INSERT INTO t VALUES (?, ?)", ((batch * 100 + i, "x" * 400) for i in range(100)))
        connection.execute("COMMIT")
        most = max(most, (path.with_name(path.name + "-wal").stat().st_size - 32) // (PAGE + 24))
        checkpoints.leave_to_thread(connection, False)
        checkpoints.committed()
    return most


def test_the_log_stays_near_its_bound_while_a_writer_writes_without_pause(tmp_path):
    """A thread that checkpoints while the writer writes copies every frame and never starts the log anew;
    past reset_bytes the writer copies the last batch itself, and its next transaction starts a new log."""
    path = tmp_path / "s.sqlite"
    connection = _writer_database(path)
    checkpoints = BackgroundCheckpoints(str(path), timeout=10, reset_bytes=100 * (PAGE + 24))
    try:
        most_pages = _write_batches(path, connection, checkpoints, 400)  # ~4,800 pages written in all
    finally:
        checkpoints.close()
    # the bound, and the batch that took the log past it (~14 frames: 10 leaves, their parents, the header)
    assert most_pages <= 100 + 20, most_pages
    assert checkpoints.runs > 100
    assert connection.execute("SELECT count(*), sum(length(v)) FROM t").fetchone() == (40_000, 40_000 * 400)
    assert connection.execute("PRAGMA wal_autocheckpoint").fetchone() == (DEFAULT_AUTOCHECKPOINT,)
    assert connection.execute("PRAGMA journal_size_limit").fetchone() == (-1,)
    connection.close()


def _writer_of_a_new_computation(store: Store) -> ComputationWriter:
    """The writer of a new computation of one Integer attribute 'n', as batch-compute --store makes it."""
    store.apply_attributes({"n": {"datatype": "Integer"}})
    plugin = PluginRecord("p", "1", "python", "s", {"OUTPUT": ["n"]})
    computation, _existed = store.record_computation(ComputationRecord(
        uuid="00000000-0000-0000-0000-000000000001", plugin=plugin, output=["n"], plugin_sha256="s",
        comp_status="completed"))
    return store.writer(computation, ["n"], fresh=True)


def test_a_store_writer_leaves_checkpoints_to_its_thread_and_stops_it_with_the_store(tmp_path):
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    Store.init(url)
    with Store(url) as store:
        writer = _writer_of_a_new_computation(store)
        for start in range(0, 30_000, 10_000):
            names = [f"e{i:06d}" for i in range(start, start + 10_000)]
            writer.write_encoded((names, writer.encode_columns(names, [[str(i) for i in range(start, start + 10_000)]])))
        assert any(thread.name == "provbatch-wal-checkpoints" for thread in threading.enumerate())
        with store.engine.connect() as connection:  # the pooled connection is as SQLite made it
            assert connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == DEFAULT_AUTOCHECKPOINT
        values = {row["entity"]: row["value"] for row in store.iter_values(["n"])}
    assert not any(thread.name == "provbatch-wal-checkpoints" for thread in threading.enumerate())
    assert len(values) == 30_000 and values["e000000"] == 0 and values["e029999"] == 29_999


def test_a_store_opened_by_a_file_uri_is_checkpointed_by_sqlite_itself(tmp_path, monkeypatch):
    """``sqlite:///file:PATH?uri=true``: a checkpoint connection of our own would not open that database
    (it would make a file named 'file:...' and copy nothing); SQLite's automatic checkpoints stay on."""
    monkeypatch.chdir(tmp_path)
    url = "sqlite:///file:s.sqlite?uri=true"  # relative: the folder check takes an absolute 'file:/...' as a folder name
    Store.init(url)
    with Store(url) as store:
        writer = _writer_of_a_new_computation(store)
        names = [f"e{i}" for i in range(5_000)]
        writer.write_encoded((names, writer.encode_columns(names, [["7"] * 5_000])))
        assert not any(thread.name == "provbatch-wal-checkpoints" for thread in threading.enumerate())
        assert {row["value"] for row in store.iter_values(["n"])} == {7}
    assert sorted(path.name for path in tmp_path.iterdir()) == ["s.sqlite"]
