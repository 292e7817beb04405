"""Failures isolated, retries, timeouts, lost workers, fail-fast, failures file, resume after SIGKILL,
SIGINT/SIGTERM, the run record."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import provbatch
from conftest import BIN, REPO, read_tsv, run_cli

FAULTS = REPO / "plugins" / "fault_injection.py"
sys.path.insert(0, str(REPO / "plugins"))
from fault_injection import draws  # noqa: E402  (the plugin's own draws: exact expectations)


def expected_outcome(entity: str, seed: int, fail_prob: float, retries: int) -> int | None:
    """The attempt at which the entity succeeds, or None if it fails every attempt."""
    for attempt in range(1, retries + 2):
        if draws(entity, seed, attempt)[2] >= fail_prob:
            return attempt
    return None


def events(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


def manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())


@pytest.mark.parametrize("backend", ["serial", "pool"])
def test_exceptions_are_retried_then_recorded(backend, tmp_path, ids_file):
    ids = [f"e{i}" for i in range(200)]
    seed, fail_prob, retries = 3, 0.3, 2
    expected = {e: expected_outcome(e, seed, fail_prob, retries) for e in ids}
    out, run_dir = tmp_path / "out.tsv", tmp_path / "run"
    proc = run_cli(FAULTS, ids_file(ids), "--backend", backend, "--param", f"fail_prob={fail_prob}",
                   "--param", f"seed={seed}", "--retries", retries, "--out", out, "--run-dir", run_dir)
    assert proc.returncode == 3, proc.stderr  # some entities failed: EXIT_ENTITIES_FAILED
    rows = read_tsv(out)
    assert {e: int(v[1]) for e, v in rows.items()} == {e: a for e, a in expected.items() if a is not None}
    failed = sorted(e for e, a in expected.items() if a is None)
    assert failed  # the seed makes some fail all 3 attempts
    failures = (tmp_path / "out.tsv.failures.tsv").read_text().splitlines()
    assert sorted(line.split("\t")[0] for line in failures) == failed
    assert all(line.split("\t")[1:3] == ["3", "RuntimeError"] for line in failures)
    assert "injected failure" in failures[0].split("\t")[3]
    n_retries = sum(a - 1 for a in expected.values() if a) + 2 * len(failed)
    names = [e["event"] for e in events(run_dir)]
    assert names.count("entity_retried") == n_retries and names.count("entity_failed") == len(failed)
    assert names[0] == "launch_started" and names[-1] == "run_finished"
    m = manifest(run_dir)
    assert m["status"] == "finished" and m["comp_status"] == "partial"
    assert m["counts"]["computed"] == len(rows) and m["counts"]["failed"] == len(failed)
    assert f"{len(failed)} entities failed (listed in" in proc.stderr


def test_retry_failed_recomputes_only_failures_and_empties_the_file(tmp_path, ids_file):
    ids = [f"e{i}" for i in range(100)]
    out = tmp_path / "out.tsv"
    proc = run_cli(FAULTS, ids_file(ids), "--param", "fail_prob=0.2", "--param", "seed=1", "--out", out, "--backend", "serial")
    assert proc.returncode == 3  # some entities failed (EXIT_ENTITIES_FAILED)
    failures_file = tmp_path / "out.tsv.failures.tsv"
    failed = {line.split("\t")[0] for line in failures_file.read_text().splitlines()}
    assert failed == {e for e in ids if draws(e, 1, 1)[2] < 0.2}
    journal = tmp_path / "computed"
    # retry with the failure switched off: just the failed entities are computed. fail_prob=0 is
    # another computation, which resuming refuses (issue 13); removing the identity accepts it
    (tmp_path / "out.tsv.identity.json").unlink()
    proc = run_cli(FAULTS, "--retry-failed", "--param", "fail_prob=0", "--param", "seed=1", "--out", out,
                   "--backend", "serial", "--log", journal)
    assert proc.returncode == 0, proc.stderr
    rows = read_tsv(out)
    assert set(rows) == set(ids) and len(out.read_text().splitlines()) == 100
    assert not failures_file.exists()
    report = yaml.safe_load((tmp_path / "out.tsv.report.yaml").read_text())
    assert report["n_units"] == len(failed) and report["entities"].startswith("failures of")
    proc = run_cli(FAULTS, "--retry-failed", "--param", "fail_prob=0", "--param", "seed=1", "--out", out)
    assert proc.returncode == 2 and "no failures to retry" in proc.stderr


def test_fail_fast_and_max_failures_abort(tmp_path, ids_file):
    ids = ids_file([f"e{i}" for i in range(300)])
    for flags, n in ((["--fail-fast"], 1), (["--max-failures", "3"], 3)):
        out, run_dir = tmp_path / f"out{n}.tsv", tmp_path / f"run{n}"
        proc = run_cli(FAULTS, ids, "--param", "fail_prob=0.5", "--backend", "serial", "--out", out, "--run-dir", run_dir, *flags)
        assert proc.returncode == 1
        assert f"stopped after {n} failed entit" in proc.stderr.splitlines()[-1]
        report = yaml.safe_load(Path(f"{out}.report.yaml").read_text())
        assert report["comp_status"] == "aborted" and report["n_failed"] == n
        m = manifest(run_dir)
        assert m["status"] == "failed" and m["failure"].startswith(f"stopped after {n}")
        assert events(run_dir)[-1]["event"] == "run_failed"
        assert len(read_tsv(out)) < 300


def test_wrong_value_type_fails_without_retry(tmp_path, write_plugin, attributes_file, ids_file):
    plugin = write_plugin("""
        ID = "types"; VERSION = "1"; INPUT = "x"; OUTPUT = ["length"]
        def compute(entity, **kwargs):
            return [entity if entity == "abc" else len(entity)], []
        """)
    out = tmp_path / "out.tsv"
    proc = run_cli(plugin, ids_file(["abc", "de"]), "--attributes", attributes_file, "--retries", "3", "--out", out)
    assert proc.returncode == 3  # some entities failed (EXIT_ENTITIES_FAILED)
    assert read_tsv(out) == {"de": ["2"]}
    assert (tmp_path / "out.tsv.failures.tsv").read_text() == \
        "abc\t1\tResultValueError\tlength: expected an Integer, got str 'abc'\n"


def test_lost_workers_on_local_pool(tmp_path, ids_file):
    ids = [str(i) for i in range(400)]
    out, run_dir = tmp_path / "out.tsv", tmp_path / "run"
    proc = run_cli(FAULTS, ids_file(ids), "--backend", "pool", "--workers", "2", "--param", "crash_prob=0.02",
                   "--param", "seed=5", "--retries", "3", "--out", out, "--run-dir", run_dir)
    assert proc.returncode == 0, proc.stderr
    lines = out.read_text().splitlines()
    failed = (tmp_path / "out.tsv.failures.tsv").read_text().splitlines() if (tmp_path / "out.tsv.failures.tsv").exists() else []
    assert len(lines) + len(failed) == 400 and len(set(lines)) == len(lines)
    crashes_first_try = sum(draws(e, 5, 1)[0] < 0.02 for e in ids)
    m = manifest(run_dir)
    assert m["counts"]["workers_lost"] >= crashes_first_try > 0
    assert sum(e["event"] == "worker_lost" for e in events(run_dir)) == m["counts"]["workers_lost"]
    # a crash is pinned on its entity: only entities that crashed alone are charged and retried
    assert {e["entity"] for e in events(run_dir) if e["event"] == "entity_retried"} <= \
        {x for x in ids if any(draws(x, 5, a)[0] < 0.02 for a in (1, 2, 3))}


def test_timeout_kills_hung_python_compute(tmp_path, write_plugin, attributes_file, ids_file):
    plugin = write_plugin("""
        import time
        ID = "hang"; VERSION = "1"; INPUT = "x"; OUTPUT = ["length"]
        def compute(entity, **kwargs):
            if entity.startswith("hang"):
                try:
                    time.sleep(600)
                except Exception:      # a plugin swallowing exceptions does not escape the timeout
                    time.sleep(600)
            return [len(entity)], []
        """)
    for backend in ("serial", "pool"):
        out = tmp_path / f"{backend}.tsv"
        started = time.monotonic()
        proc = run_cli(plugin, ids_file(["a", "hang1", "bb", "hang2"]), "--attributes", attributes_file,
                       "--backend", backend, "--timeout", "0.5", "--retries", "1", "--out", out)
        assert proc.returncode == 3, proc.stderr  # some entities failed: EXIT_ENTITIES_FAILED
        assert time.monotonic() - started < 30
        assert read_tsv(out) == {"a": ["1"], "bb": ["2"]}
        failures = (tmp_path / f"{backend}.tsv.failures.tsv").read_text().splitlines()
        assert sorted(f.split("\t")[:3] for f in failures) == [["hang1", "2", "Timeout"], ["hang2", "2", "Timeout"]]


def test_timeout_of_native_hang_ends_worker(tmp_path, write_plugin, attributes_file, ids_file):
    """A compute stuck where Python signals cannot reach (here: a C-level blocking call with
    signals blocked) is ended by the worker's watchdog and reported as a Timeout."""
    plugin = write_plugin("""
        import signal, time
        ID = "nativehang"; VERSION = "1"; INPUT = "x"; OUTPUT = ["length"]
        def compute(entity, **kwargs):
            if entity == "stuck":
                signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
                time.sleep(600)
            return [len(entity)], []
        """)
    out = tmp_path / "out.tsv"
    proc = run_cli(plugin, ids_file(["a", "stuck", "ccc"]), "--attributes", attributes_file, "--backend", "pool",
                   "--workers", "2", "--timeout", "0.5", "--out", out)
    assert proc.returncode == 3, proc.stderr  # some entities failed: EXIT_ENTITIES_FAILED
    assert read_tsv(out) == {"a": ["1"], "ccc": ["3"]}
    assert (tmp_path / "out.tsv.failures.tsv").read_text().startswith("stuck\t1\tTimeout\t")


def _wait_for_lines(path: Path, n: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().count("\n") >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} never reached {n} lines")


@pytest.mark.parametrize("backend", ["serial", "pool"])
def test_resume_after_sigkill_at_several_points(backend, tmp_path, ids_file):
    ids = [f"id{i}" for i in range(600)]
    entities = ids_file(ids)
    out, log = tmp_path / "out.tsv", tmp_path / "log.tsv"
    args = [str(BIN / "batch-compute"), str(FAULTS), str(entities), "--backend", backend, "--workers", "2",
            "--param", "sleep_sec=[0.001, 0.004]", "--out", str(out), "--log", str(log), "--no-progress"]
    for kill_after in (50, 200, 420):
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        _wait_for_lines(out, kill_after)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    proc = subprocess.run(args, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert text.endswith("\n")
    lines = text.splitlines()
    assert len(lines) == len(set(lines)) == 600
    assert sorted(line.split("\t")[0] for line in lines) == sorted(ids)
    assert all(len(line.split("\t")) == 3 for line in lines)
    report = yaml.safe_load(Path(f"{out}.report.yaml").read_text())  # the killed runs wrote no report
    assert report["n_skipped"] >= 420


def _children(pid: int) -> list[int]:
    """The child processes of ``pid`` (Linux /proc)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def _gone(pid: int) -> bool:
    """Exited (or a zombie waiting for init to reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.parametrize("sleep_sec", ["0.002", "600"])
def test_pool_workers_do_not_outlive_a_killed_driver(sleep_sec, tmp_path, ids_file):
    """kill -9 of the driver: its workers (in process groups of their own) exit too, whether they
    wait for work (their pipe closes) or are stuck in a long compute (the parent-death signal)."""
    out = tmp_path / "out.tsv"
    args = [str(BIN / "batch-compute"), str(FAULTS), str(ids_file([f"id{i}" for i in range(5000)])), "--backend", "pool",
            "--workers", "2", "--param", f"sleep_sec={sleep_sec}", "--out", str(out), "--no-progress"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while len(workers := _children(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(workers) >= 2, "the pool never started"
        if sleep_sec != "600":
            _wait_for_lines(out, 100)
        else:
            time.sleep(1)  # both workers are inside compute, sleeping
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 30
    while not all(_gone(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    survivors = [pid for pid in workers if not _gone(pid)]
    for pid in survivors:  # do not leave them behind even when the test fails
        os.kill(pid, signal.SIGKILL)
    assert survivors == []


def test_sigint_stops_finalizes_and_reports(tmp_path, write_plugin, attributes_file, ids_file):
    journal = tmp_path / "journal"
    plugin = write_plugin(f"""
        import time
        ID = "slow"; VERSION = "1"; INPUT = "x"; OUTPUT = ["length"]
        def initialize(**kw):
            return None
        def compute(entity, state=None, **kw):
            time.sleep(0.01)
            return [len(entity)], []
        def finalize(state):
            open({str(journal)!r}, "a").write("finalized\\n")
        """)
    for sig, code, status in ((signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")):
        out, run_dir = tmp_path / f"{status}.tsv", tmp_path / f"run-{status}"
        proc = subprocess.Popen(
            [str(BIN / "batch-compute"), str(plugin), str(ids_file([f"e{i}" for i in range(5000)])), "--attributes",
             str(attributes_file), "--backend", "pool", "--out", str(out), "--run-dir", str(run_dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        _wait_for_lines(out, 20)
        proc.send_signal(sig)
        _stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == code, stderr
        assert stderr.strip().splitlines()[-1] == f"batch-compute: {status}"
        report = yaml.safe_load(Path(f"{out}.report.yaml").read_text())
        assert report["comp_status"] == "partial" and status in report["remarks"]
        assert manifest(run_dir)["status"] == "interrupted"
        assert events(run_dir)[-1]["event"] == "run_interrupted"
        lines = out.read_text().splitlines()
        assert len(lines) == len(set(lines)) < 5000
    assert journal.read_text() == "finalized\nfinalized\n"


def test_bad_sleep_sec_is_rejected_before_computing(ids_file):
    for value, message in (("[1, 2, 3]", "ValueError: random sleep bounds must be an iterable with exactly two values"),
                           ("[2, 1]", "ValueError: lower bound must be <= upper bound"),
                           ("[a, 1]", "TypeError: random sleep bounds must be numeric"),
                           ("{a: 1}", "TypeError: sleep_sec must be a number or a two-element iterable")):
        proc = run_cli(FAULTS, ids_file(["x"]), "--param", f"sleep_sec={value}")
        assert proc.returncode == 1 and message in proc.stderr, proc.stderr


@pytest.mark.ray
def test_faults_on_real_ray_workers(tmp_path, ray_session):
    ids = [str(i) for i in range(300)]
    run = provbatch.iter_batch(FAULTS, ids, params={"crash_prob": 0.01, "fail_prob": 0.05, "hang_prob": 0.01, "seed": 11},
                               backend="ray", workers=2, retries=3, timeout=1.0, run_dir=tmp_path / "run")
    rows = {entity: values for entity, values, _logs in run}
    assert len(rows) + len(run.failures) == 300
    assert not set(rows) & {f.entity for f in run.failures}
    m = manifest(tmp_path / "run")
    assert m["status"] == "finished" and m["counts"]["workers_lost"] >= 1
    names = {e["event"] for e in events(tmp_path / "run")}
    assert {"launch_started", "worker_lost", "entity_retried", "run_finished"} <= names
    hung_first = [e for e in ids if draws(e, 11, 1)[0] >= 0.01 and draws(e, 11, 1)[1] < 0.01]
    assert hung_first and all(e in rows or any(f.entity == e for f in run.failures) for e in hung_first)
    assert ray_session.is_initialized()
