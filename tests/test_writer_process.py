"""batch-compute --store writes through a child process (provbatch/outputs/store_process.py): its failure
modes. A value the store refuses mid-run (a real trigger of the database, on SQLite, PostgreSQL and
MariaDB), the writer process killed, the engine killed: one-line errors, exit codes, the computation's
record, no process left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import sqlalchemy as sa
from conftest import BIN, read_tsv, run_cli, write_source
from test_store_batch import DEFS, SLOW_PLUGIN, TEXT_PLUGIN

MARK = b"provbatch.outputs.store_process"


def writer_processes(cwd: Path, parent: int | None = None) -> list[int]:
    """PIDs of live store writer processes working in ``cwd`` (the test's own: other runs on the machine
    have theirs), of ``parent`` when given (its pid is their last argument)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry}/cwd") != str(cwd):
                continue
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{entry}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if state != b"Z" and any(MARK in arg for arg in argv) and (parent is None or str(parent).encode() in argv[-2:]):
            found.append(int(entry))
    return found


def wait_for(condition, seconds: float = 60.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    return condition()


def computations(url: str) -> list[tuple[str, str | None]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(sa.text(
                "SELECT comp_status, remarks FROM provbatch_computations ORDER BY id"))]
    finally:
        engine.dispose()


def n_values(url: str) -> int:
    """How many values a store holds (0 while its tables are not there yet)."""
    try:
        return len(stored(url))
    except AssertionError:
        return 0


def stored(url: str) -> dict[tuple[str, str], object]:
    result = run_cli("values", "--format", "jsonl", "--provenance", "--store", url, prog="provbatch")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len({row["computation"] for row in rows}) <= 1
    return {(row["entity"], row["attribute"]): row["value"] for row in rows}


REFUSE = {
    "sqlite": ["CREATE TRIGGER refuse BEFORE INSERT ON provbatch_entities WHEN NEW.name_key = 'e_25000' "
               "BEGIN SELECT RAISE(ABORT, 'entity e_25000 refused by a trigger'); END"],
    "postgresql": ["CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN IF NEW.name_key = 'e_25000' THEN "
                   "RAISE EXCEPTION 'entity e_25000 refused by a trigger'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
                   "CREATE TRIGGER refuse BEFORE INSERT ON provbatch_entities FOR EACH ROW EXECUTE FUNCTION refuse()"],
    "mysql": ["CREATE TRIGGER refuse BEFORE INSERT ON provbatch_entities FOR EACH ROW BEGIN IF NEW.name_key = 'e_25000' THEN "
              "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'entity e_25000 refused by a trigger'; END IF; END"],
}
#: the one line each driver's error gives (the engine's process raises the child's exception unchanged)
REFUSED = {
    "sqlite": "IntegrityError: entity e_25000 refused by a trigger (run with --debug for the traceback)",
    "postgresql": "RaiseException: entity e_25000 refused by a trigger",
    "mysql": "OperationalError: (1644, 'entity e_25000 refused by a trigger') (run with --debug for the traceback)",
}


def test_a_value_the_store_refuses_mid_run_is_one_line_exit_1_and_the_computation_aborted(store_url: str, tmp_path: Path) -> None:
    write_source(tmp_path, "attribute_definitions.yaml", DEFS)
    plugin = write_source(tmp_path, "text.py", TEXT_PLUGIN)
    n = 40_000  # 80,000 values: the refused entity is in the second transaction of 20,000 values
    (tmp_path / "ids.txt").write_text("".join(f"e_{i}\n" for i in range(n)))
    init = run_cli("store", "init", "--store", store_url, prog="provbatch")
    assert init.returncode == 0, init.stderr
    dialect = sa.engine.make_url(store_url).get_backend_name()
    engine = sa.create_engine(store_url)
    with engine.begin() as connection:
        for statement in REFUSE[dialect]:
            connection.exec_driver_sql(statement)
    engine.dispose()
    result = run_cli(plugin, "ids.txt", "--store", store_url, "--backend", "serial", "--out", "out.tsv",
                     "--run-dir", tmp_path / "run", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    last = result.stderr.splitlines()[-1] if dialect != "postgresql" else result.stderr.split("batch-compute: error: ")[-1].splitlines()[0]
    assert last == (REFUSED[dialect] if dialect == "postgresql" else f"batch-compute: error: {REFUSED[dialect]}")
    assert "Traceback" not in result.stderr
    # the computation is closed as aborted; what was committed before the refusal stays, whole and right
    assert [status for status, _remarks in computations(store_url)] == ["aborted"]
    values = stored(store_url)
    assert ("e_25000", "length") not in values
    entities = {entity for entity, _attribute in values}
    assert values == {**{(e, "length"): len(e) for e in entities}, **{(e, "upper"): e.upper() for e in entities}}
    assert writer_processes(tmp_path) == []


def test_the_writer_process_killed_mid_run_is_one_line_exit_1_and_the_store_stays_consistent(tmp_path: Path) -> None:
    from provbatch.store.url import display_url

    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    write_source(tmp_path, "attribute_definitions.yaml", DEFS)
    plugin = write_source(tmp_path, "slow.py", SLOW_PLUGIN)
    n = 3000  # 2 ms each: the run lasts several seconds
    (tmp_path / "ids.txt").write_text("".join(f"e_{i}\n" for i in range(n)))
    process = subprocess.Popen([str(BIN / "batch-compute"), str(plugin), "ids.txt", "--store", url, "--backend", "serial",
                                "--run-dir", str(tmp_path / "run")], cwd=tmp_path, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    children = wait_for(lambda: writer_processes(tmp_path, process.pid))
    assert len(children) == 1, children
    child = children[0]
    assert wait_for(lambda: n_values(url)), "no value was committed"
    assert process.poll() is None, "the run ended before its writer could be killed"
    os.kill(child, signal.SIGKILL)
    _out, err = process.communicate(timeout=120)
    assert process.returncode == 1, err
    assert err.splitlines()[-1] == (
        f"batch-compute: error: {display_url(url)}: cannot write the results: the store writer process (pid {child}) was "
        "killed by SIGKILL; the values it had not committed are not in the store")
    assert [status for status, _remarks in computations(url)] == ["aborted"]
    values = stored(url)
    assert len(values) < n
    assert values == {(e, "slow"): int(e.split("_")[1]) * 2 for e, _attribute in values}
    assert writer_processes(tmp_path) == []


def test_the_writer_process_does_not_outlive_a_killed_engine(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    write_source(tmp_path, "attribute_definitions.yaml", DEFS)
    plugin = write_source(tmp_path, "slow.py", SLOW_PLUGIN)
    (tmp_path / "ids.txt").write_text("".join(f"e_{i}\n" for i in range(3000)))
    process = subprocess.Popen([str(BIN / "batch-compute"), str(plugin), "ids.txt", "--store", url, "--backend", "serial",
                                "--run-dir", str(tmp_path / "run")], cwd=tmp_path, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    children = wait_for(lambda: writer_processes(tmp_path, process.pid))
    assert len(children) == 1, children
    assert wait_for(lambda: n_values(url)), "no value was committed"
    assert process.poll() is None
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert wait_for(lambda: not writer_processes(tmp_path), seconds=5), writer_processes(tmp_path)
    # what it had committed is whole: one computation, still running (killed), every value right
    assert [status for status, _remarks in computations(url)] == ["running"]
    values = stored(url)
    assert values == {(e, "slow"): int(e.split("_")[1]) * 2 for e, _attribute in values}


def test_a_set_up_error_after_the_store_opened_leaves_no_writer_process(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    write_source(tmp_path, "attribute_definitions.yaml", DEFS)
    plugin = write_source(tmp_path, "text.py", TEXT_PLUGIN)
    (tmp_path / "ids.txt").write_text("a\nbb\n")
    # refused after the store sink opened (and started its writer): the results' lock (its sink is not closed
    # by the engine then: the writer goes with the sink, or with the engine), and the skip file (closed)
    bad = run_cli(plugin, "ids.txt", "--store", url, "--out", "missing/out.tsv", cwd=tmp_path)
    assert bad.returncode == 2, bad.stderr
    assert bad.stderr.splitlines()[-1] == (f"batch-compute: error: {tmp_path}/missing/out.tsv.lock: cannot create the lock of the "
                                           "results: No such file or directory")
    bad = run_cli(plugin, "ids.txt", "--store", url, "--skip", "nope.txt", cwd=tmp_path)
    assert bad.returncode == 2, bad.stderr
    assert bad.stderr.splitlines()[-1] == "batch-compute: error: nope.txt: skip file not found"
    assert writer_processes(tmp_path) == []
    assert computations(url) == []
    ok = run_cli(plugin, "ids.txt", "--store", url, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert stored(url) == {("a", "length"): 1, ("a", "upper"): "A", ("bb", "length"): 2, ("bb", "upper"): "BB"}
    assert [status for status, _remarks in computations(url)] == ["completed"]
    assert writer_processes(tmp_path) == []


def test_an_error_before_the_store_opens_leaves_no_writer_process(tmp_path: Path) -> None:
    """The command line starts the writer before anything else (its start-up overlaps the engine's); a run that
    stops before its store sink opens ends that child before it exits."""
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    (tmp_path / "ids.txt").write_text("a\n")
    bad = run_cli(tmp_path / "missing.py", "ids.txt", "--store", url, cwd=tmp_path)
    assert bad.returncode == 2, bad.stderr
    assert bad.stderr.splitlines()[-1] == f"batch-compute: error: {tmp_path}/missing.py: plugin file not found"
    assert writer_processes(tmp_path) == []
    assert not (tmp_path / "store.sqlite").exists()
    # started before the command line is parsed: a usage error ends it too
    usage = run_cli("plugins/trivial.py", "ids.txt", "--store", url, "--no-such-option", cwd=tmp_path)
    assert usage.returncode == 2, usage.stderr
    assert "Error: No such option '--no-such-option'" in usage.stderr
    assert writer_processes(tmp_path) == []
    assert not (tmp_path / "store.sqlite").exists()


def test_a_writer_started_early_is_the_one_the_next_run_takes_or_is_ended() -> None:
    from provbatch.outputs.store_process import WriterProcess

    WriterProcess.start_early()
    WriterProcess.start_early()  # one at most
    early = WriterProcess.take()
    assert early.process.poll() is None
    new = WriterProcess.take()
    assert new.pid != early.pid  # none waiting: a new one
    WriterProcess.start_early()
    waiting = WriterProcess.take()
    assert waiting.pid not in (early.pid, new.pid)
    WriterProcess.start_early()
    discarded = WriterProcess.discard_early()
    assert discarded is not None and discarded.pid not in (early.pid, new.pid, waiting.pid)
    # killed at once, in its start-up: it was sent nothing, so it opened no store and is not waited for
    assert discarded.process.returncode == -signal.SIGKILL
    assert WriterProcess.discard_early() is None  # nothing left: nothing done
    for process in (early, new, waiting):
        process.abandon()
        assert process.process.returncode == 0  # its input ended before OPEN: it exits quietly


def test_files_mode_records_each_input_file_also_under_an_idsproc_id(tmp_path: Path) -> None:
    """Without --idsproc the entity is its id and the engine hands over the lines alone; with it (--glob: the
    entity is the file, the id compute_id(path)), the rows."""
    import hashlib

    from conftest import REPO

    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    (tmp_path / "idsproc.py").write_text("def compute_id(entity):\n    return entity.rsplit('/', 1)[-1]\n")
    tiny = REPO / "examples/genomes/tiny.fna"
    for extra, entity in (([], "examples/genomes/tiny.fna"), (["--idsproc", tmp_path / "idsproc.py"], "tiny.fna")):
        result = run_cli("plugins/gc_content.py", "--glob", "examples/genomes/*.fna", "--store", url, "--param", "digits=3",
                         "--run-dir", tmp_path / f"run{len(extra)}", *extra)
        assert result.returncode == 0, result.stderr
        why = run_cli("why", entity, "gc_content", "--json", "--store", url, prog="provbatch")
        assert why.returncode == 0, why.stderr
        assert json.loads(why.stdout)["input"] == {"path": str(tiny), "size": tiny.stat().st_size,
                                                   "sha256": hashlib.sha256(tiny.read_bytes()).hexdigest()}


def test_ctrl_c_to_the_whole_process_group_stores_every_row_of_the_results_file(tmp_path: Path) -> None:
    """The terminal's SIGINT reaches the writer too: it ignores it, and writes all it was sent when the engine ends it."""
    from conftest import read_tsv

    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    write_source(tmp_path, "attribute_definitions.yaml", DEFS)
    plugin = write_source(tmp_path, "slow.py", SLOW_PLUGIN)
    (tmp_path / "ids.txt").write_text("".join(f"e_{i}\n" for i in range(3000)))
    process = subprocess.Popen([str(BIN / "batch-compute"), str(plugin), "ids.txt", "--store", url, "--backend", "serial",
                                "--out", "out.tsv", "--run-dir", str(tmp_path / "run")], cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert wait_for(lambda: n_values(url)), "no value was committed"
    assert process.poll() is None
    os.killpg(process.pid, signal.SIGINT)
    _out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert err.splitlines()[-1] == "batch-compute: interrupted"
    rows = read_tsv(tmp_path / "out.tsv")
    assert 0 < len(rows) < 3000
    assert stored(url) == {(e, "slow"): int(values[0]) for e, values in rows.items()}
    assert [status for status, _remarks in computations(url)] == ["partial"]
    assert writer_processes(tmp_path) == []


def test_a_run_prepared_in_a_thread_that_ends_keeps_its_writer(tmp_path: Path) -> None:
    """The writer's parent-death signal follows the thread that started it: iter_batch prepared in a short-lived
    thread and iterated after that thread ended still stores every value (the writer is started by a thread of
    its own that lives as long as the process)."""
    import threading

    import provbatch

    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    write_source(tmp_path, "attribute_definitions.yaml", DEFS)
    plugin = write_source(tmp_path, "text.py", TEXT_PLUGIN)
    made: list = []
    thread = threading.Thread(target=lambda: made.append(provbatch.iter_batch(
        str(plugin), [f"w_{i}" for i in range(3000)], store=url, attributes=str(tmp_path / "attribute_definitions.yaml"))))
    thread.start()
    thread.join()
    time.sleep(0.5)  # a writer killed with the thread would be gone by now
    rows = list(made[0])
    assert len(rows) == 3000
    assert stored(url) == {**{(f"w_{i}", "length"): len(f"w_{i}") for i in range(3000)},
                           **{(f"w_{i}", "upper"): f"W_{i}" for i in range(3000)}}
    assert [status for status, _remarks in computations(url)] == ["completed"]


def test_a_new_store_the_writer_cannot_open_is_one_line_exit_2_and_the_results_file_stays_whole(tmp_path: Path) -> None:
    """A new store is opened by the writer while the engine computes (nothing in it to wait for): when it
    cannot be opened, the run still ends with the database's one line, and the results file it wrote is
    whole (a rerun with a store that works takes its values over)."""
    write_source(tmp_path, "attribute_definitions.yaml", DEFS)
    plugin = write_source(tmp_path, "slow.py", SLOW_PLUGIN)
    (tmp_path / "ids.txt").write_text("".join(f"e_{i}\n" for i in range(20)))
    (tmp_path / "store.sqlite-wal").mkdir()  # SQLite cannot open the store's log: "disk I/O error"
    result = run_cli(plugin, "ids.txt", "--store", "store.sqlite", "--backend", "serial", "--out", "out.tsv",
                     "--run-dir", tmp_path / "run", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1] == (f"batch-compute: error: --store sqlite:///{tmp_path / 'store.sqlite'}: "
                                              "cannot connect: disk I/O error")
    assert "Traceback" not in result.stderr
    assert read_tsv(tmp_path / "out.tsv") == {f"e_{i}": [str(2 * i)] for i in range(20)}
    assert writer_processes(tmp_path) == []
    (tmp_path / "store.sqlite-wal").rmdir()
    (tmp_path / "store.sqlite").unlink()
    again = run_cli(plugin, "ids.txt", "--store", "store.sqlite", "--backend", "serial", "--out", "out.tsv",
                    "--run-dir", tmp_path / "run2", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert stored(f"sqlite:///{tmp_path / 'store.sqlite'}") == {(f"e_{i}", "slow"): 2 * i for i in range(20)}
