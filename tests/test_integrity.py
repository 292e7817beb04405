"""Issue 13: every results line true, complete and written once.

Each numbered case of the issue is run here as a user meets it: the
``batch-compute`` command on real files (and the Python API where it
applies), with exact counts of the rows written.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import time
import subprocess
from pathlib import Path

import pytest
import yaml

import provbatch

from conftest import BIN, read_tsv, run_cli

ECHO_MD5 = '''\
import hashlib
ID = "echo_md5"
VERSION = "1.0.0"
INPUT = "any entity id"
OUTPUT = ["md5"]
METHOD = "md5 of the id"
PARAMETERS = []

def compute(entity, **kwargs):
    return [hashlib.md5(entity.encode()).hexdigest()], []
'''

#: a case of issue 13 whose fix has not landed yet (strict: the mark must go when it passes)
PENDING = pytest.mark.xfail(strict=True, reason="issue 13: fix not landed yet")

MD5_ATTRIBUTES = 'md5: {definition: md5 of the id, datatype: "String(32)"}\n'


@pytest.fixture
def md5_plugin(tmp_path: Path) -> Path:
    with open(tmp_path / "attribute_definitions.yaml", "a") as definitions:  # beside those of attributes_file
        definitions.write(MD5_ATTRIBUTES)
    path = tmp_path / "echo_md5.py"
    path.write_text(ECHO_MD5)
    return path


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def seq_ids(path: Path, n: int, start: int = 1) -> list[str]:
    ids = [f"id{i:07d}" for i in range(start, start + n)]
    path.write_text("".join(i + "\n" for i in ids))
    return ids


def cli(*args: str, cwd: Path, timeout: float = 120, stdin: str | None = None) -> subprocess.CompletedProcess:
    """batch-compute with a time limit: a hang is a failure, not a stuck test session."""
    return subprocess.run([str(BIN / "batch-compute"), *map(str, args)], cwd=cwd, input=stdin,
                          capture_output=True, text=True, timeout=timeout)


# --------------------------------------------------------------------------- 1. no deadlock


@pytest.mark.parametrize("backend", ["pool", "auto"])
def test_100k_cheap_entities_finish_on_the_pool(tmp_path: Path, md5_plugin: Path, backend: str) -> None:
    """Before the fix, the pool hung after ~2,100 lines: driver and workers blocked sending."""
    ids = seq_ids(tmp_path / "ids.txt", 100_000)
    args = ["echo_md5.py", "ids.txt", "--out", "o.tsv", "--backend", backend, "--workers", "2"]
    result = cli(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = read_tsv(tmp_path / "o.tsv")  # asserts no duplicate
    assert len(rows) == 100_000
    assert all(rows[i] == [md5(i)] for i in ids[::997])


def test_100k_resume_from_35_percent_on_the_pool(tmp_path: Path, md5_plugin: Path) -> None:
    ids = seq_ids(tmp_path / "ids.txt", 100_000)
    (tmp_path / "o.tsv").write_text("".join(f"{i}\t{md5(i)}\n" for i in ids[:35_000]))
    result = cli("echo_md5.py", "ids.txt", "--out", "o.tsv", "--backend", "pool", "--workers", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = (tmp_path / "o.tsv").read_text().splitlines()
    assert len(lines) == 100_000
    assert sorted(line.split("\t")[0] for line in lines) == ids


@pytest.mark.parametrize("backend", ["pool", "auto"])
def test_100k_resume_from_35_percent(tmp_path: Path, md5_plugin: Path, backend: str) -> None:
    ids = seq_ids(tmp_path / "ids.txt", 100_000)
    first = cli("echo_md5.py", "ids.txt", "--out", "o.tsv", "--backend", backend, "--workers", "2", cwd=tmp_path,
                stdin=None)
    assert first.returncode == 0, first.stderr
    lines = (tmp_path / "o.tsv").read_text().splitlines(keepends=True)
    (tmp_path / "o.tsv").write_text("".join(lines[:35_000]))  # as a run killed at 35 % leaves it
    result = cli("echo_md5.py", "ids.txt", "--out", "o.tsv", "--backend", backend, "--workers", "2", "--log", "o.log",
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = read_tsv(tmp_path / "o.tsv")
    assert sorted(rows) == ids and all(rows[i] == [md5(i)] for i in ids[::991])
    assert "65000 computed, 0 failed, 35000 skipped" in result.stderr


# --------------------------------------------------------------------------- 2. plugin output

NOISY = '''\
import ctypes, os, sys
ID = "noisy"
VERSION = "1.0.0"
INPUT = "any entity id"
OUTPUT = ["length"]
METHOD = "len() of the id, printing all the way"
PARAMETERS = []

def initialize():
    print("init says hello")
    return {"n": 0}

def compute(entity, state, **kwargs):
    print("compute", entity)
    print("to stderr", entity, file=sys.stderr)
    if entity.endswith("0"):
        os.system(f"echo child {entity}")
        ctypes.CDLL(None).printf(b"printf %s\\n", entity.encode())
    return [len(entity)], []

def finalize(state):
    print("finalize says bye")
'''


def assert_each_line_captured_once(err: list[str], ids: list[str]) -> list[str]:
    """The noisy plugins' lines on stderr, marked, each exactly once: compute's print and its print to
    stderr for every entity, a child process's echo for every tenth; returns those tenth ids."""
    assert sorted(line for line in err if line.startswith("\t[plugin stdout] compute ")) == sorted(
        f"\t[plugin stdout] compute {e}" for e in ids)
    assert sorted(line for line in err if line.startswith("\t[plugin stderr] to stderr ")) == sorted(
        f"\t[plugin stderr] to stderr {e}" for e in ids)
    tens = sorted(e for e in ids if e.endswith("0"))
    assert sorted(line for line in err if "] child " in line) == sorted(f"\t[plugin stdout] child {e}" for e in tens)
    return tens


@pytest.mark.parametrize("backend", ["serial", "pool", "auto"])
def test_plugin_output_never_reaches_the_results_stream(tmp_path: Path, attributes_file: Path, backend: str) -> None:
    (tmp_path / "noisy.py").write_text(NOISY)
    ids = [f"e{i}" for i in range(1, 201)]
    (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n")
    result = cli("noisy.py", "ids.txt", "--backend", backend, "--workers", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # stdout is the results stream: exactly one line per entity, nothing else, nothing glued
    assert sorted(result.stdout.splitlines()) == sorted(f"{e}\t{len(e)}" for e in ids)
    err = result.stderr.splitlines()
    # every line the plugin wrote is on stderr, marked, exactly once
    tens = assert_each_line_captured_once(err, ids)
    assert sorted(line for line in err if "] printf " in line) == sorted(f"\t[plugin stdout] printf {e}" for e in tens)
    assert err.count("\t[plugin stdout] finalize says bye") >= 1
    assert err.count("\t[plugin stdout] init says hello") >= 1


def test_plugin_output_goes_to_the_log_file_with_out(tmp_path: Path, attributes_file: Path) -> None:
    (tmp_path / "noisy.py").write_text(NOISY)
    ids = [f"e{i}" for i in range(1, 51)]
    (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n")
    result = cli("noisy.py", "ids.txt", "--out", "o.tsv", "--log", "o.log", "--backend", "pool", "--workers", "2",
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert read_tsv(tmp_path / "o.tsv") == {e: [str(len(e))] for e in ids}
    log = (tmp_path / "o.log").read_text().splitlines()
    assert sum(line.startswith("\t[plugin stdout] compute ") for line in log) == 50
    assert "[plugin" not in result.stderr


# --------------------------------------------------------------------------- 3. resume identity

KMER = '''\
ID = "kmer"
VERSION = "1.0.0"
INPUT = "any entity id"
OUTPUT = ["length"]
METHOD = "len() of the id times k"
PARAMETERS = [("k", "Integer", "6", "k")]

def compute(entity, k=6, **kwargs):
    return [len(entity) * k], []
'''


def test_resume_refuses_other_parameters_and_other_plugins(tmp_path: Path, attributes_file: Path, md5_plugin: Path) -> None:
    (tmp_path / "kmer.py").write_text(KMER)
    seq_ids(tmp_path / "ids100.txt", 100)
    ids300 = seq_ids(tmp_path / "ids300.txt", 300)
    first = cli("kmer.py", "ids100.txt", "--param", "k=6", "--out", "kk.tsv", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    before = (tmp_path / "kk.tsv").read_bytes()
    second = cli("kmer.py", "ids300.txt", "--param", "k=3", "--out", "kk.tsv", cwd=tmp_path)
    assert second.returncode == 2
    assert second.stderr.count("\n") == 1 and "k=6" in second.stderr and "k=3" in second.stderr
    assert (tmp_path / "kk.tsv").read_bytes() == before
    other = cli("echo_md5.py", "ids300.txt", "--out", "kk.tsv", cwd=tmp_path)
    assert other.returncode == 2 and "kmer" in other.stderr and "echo_md5" in other.stderr
    assert (tmp_path / "kk.tsv").read_bytes() == before
    same = cli("kmer.py", "ids300.txt", "--param", "k=6", "--out", "kk.tsv", cwd=tmp_path)
    assert same.returncode == 0, same.stderr
    assert read_tsv(tmp_path / "kk.tsv") == {i: [str(len(i) * 6)] for i in ids300}
    (tmp_path / "kmer.py").write_text(KMER + "\n# an edit\n")
    edited = cli("kmer.py", "ids300.txt", "--param", "k=6", "--out", "kk.tsv", cwd=tmp_path)
    assert edited.returncode == 2 and "source" in edited.stderr


def test_resume_of_a_file_written_before_identities(tmp_path: Path, attributes_file: Path) -> None:
    """A results file without identity: resumed with a warning if its rows have the plugin's shape, else refused."""
    (tmp_path / "kmer.py").write_text(KMER)
    ids = seq_ids(tmp_path / "ids.txt", 50)
    (tmp_path / "old.tsv").write_text("".join(f"{i}\t{len(i) * 6}\n" for i in ids[:20]))
    result = cli("kmer.py", "ids.txt", "--out", "old.tsv", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "no identity" in result.stderr
    assert read_tsv(tmp_path / "old.tsv") == {i: [str(len(i) * 6)] for i in ids}
    (tmp_path / "wide.tsv").write_text("".join(f"{i}\ta\tb\n" for i in ids[:20]))
    wide = cli("kmer.py", "ids.txt", "--out", "wide.tsv", cwd=tmp_path)
    assert wide.returncode == 2 and "wide.tsv:1" in wide.stderr and "3 columns" in wide.stderr


SLOW = '''\
import time
ID = "slow"
VERSION = "1.0.0"
INPUT = "any entity id"
OUTPUT = ["length"]
METHOD = "len() of the id, slowly"
PARAMETERS = []

def compute(entity, **kwargs):
    time.sleep(0.01)
    return [len(entity)], []
'''


def _wait_for_rows(path: Path, n: int, limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().count("\n") >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} never reached {n} rows")


@pytest.mark.parametrize("backend", ["serial", "pool"])
def test_sigkill_at_any_moment_then_resume_gives_the_exact_set(tmp_path: Path, attributes_file: Path, backend: str) -> None:
    (tmp_path / "slow.py").write_text(SLOW)
    ids = seq_ids(tmp_path / "ids.txt", 400)
    for wait_rows in (0, 30):
        proc = subprocess.Popen([str(BIN / "batch-compute"), "slow.py", "ids.txt", "--out", "s.tsv", "--backend", backend,
                                 "--workers", "2"], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if wait_rows:
            _wait_for_rows(tmp_path / "s.tsv", wait_rows)
        else:
            time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    result = cli("slow.py", "ids.txt", "--out", "s.tsv", "--backend", backend, "--workers", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert read_tsv(tmp_path / "s.tsv") == {i: [str(len(i))] for i in ids}


# --------------------------------------------------------------------------- 4. one writer


def test_a_second_run_on_the_same_out_is_refused_with_the_pid_of_the_first(tmp_path: Path, attributes_file: Path) -> None:
    (tmp_path / "slow.py").write_text(SLOW)
    ids = seq_ids(tmp_path / "ids.txt", 3000)
    first = subprocess.Popen([str(BIN / "batch-compute"), "slow.py", "ids.txt", "--out", "s.tsv", "--backend", "pool",
                              "--workers", "2"], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_rows(tmp_path / "s.tsv", 1)
        second = cli("slow.py", "ids.txt", "--out", "s.tsv", cwd=tmp_path)
        assert second.returncode == 2
        assert f"PID {first.pid}" in second.stderr and second.stderr.count("\n") == 1
        # a killed first run leaves its lock behind: taken over by the next run
        first.send_signal(signal.SIGKILL)
        first.wait()
        third = cli("slow.py", "ids.txt", "--out", "s.tsv", "--backend", "pool", "--workers", "2", cwd=tmp_path)
        assert third.returncode == 0, third.stderr
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    lines = (tmp_path / "s.tsv").read_text().splitlines()
    assert len(lines) == 3000 and sorted(line.split("\t")[0] for line in lines) == ids


def test_two_runs_started_together_never_duplicate(tmp_path: Path, md5_plugin: Path) -> None:
    ids = seq_ids(tmp_path / "ids.txt", 3000)
    procs = [subprocess.Popen([str(BIN / "batch-compute"), "echo_md5.py", "ids.txt", "--out", "d.tsv"], cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    codes = sorted(p.wait(timeout=120) for p in procs)
    lines = (tmp_path / "d.tsv").read_text().splitlines()
    assert codes in ([0, 0], [0, 2])  # the second either refused, or started after the first ended (nothing left)
    assert len(lines) == 3000 and sorted(line.split("\t")[0] for line in lines) == ids


# --------------------------------------------------------------------------- 5. exit codes

FAILING = '''\
ID = "failing"
VERSION = "1.0.0"
INPUT = "any entity id"
OUTPUT = ["length"]
METHOD = "fails on ids with a 7 (all ids when every=1)"
PARAMETERS = [("every", "Integer", "0", "1: every entity fails")]

def compute(entity, every=0, **kwargs):
    if every or "7" in entity:
        raise ValueError(f"no {entity}")
    return [len(entity)], []
'''

FINALIZE_FAILS = '''\
ID = "finalize_fails"
VERSION = "1.0.0"
INPUT = "any entity id"
OUTPUT = ["length"]
METHOD = "len(), then a finalize that raises"
PARAMETERS = []

def initialize():
    return {}

def compute(entity, state, **kwargs):
    return [len(entity)], []

def finalize(state):
    raise RuntimeError("cannot close the database")
'''


def test_exit_codes_for_failed_entities_and_allow_failures(tmp_path: Path, attributes_file: Path) -> None:
    (tmp_path / "failing.py").write_text(FAILING)
    ids = seq_ids(tmp_path / "ids.txt", 300)
    run_dir = tmp_path / "run"
    every = cli("failing.py", "ids.txt", "--param", "every=1", "--out", "all.tsv", "--run-dir", run_dir, cwd=tmp_path)
    assert every.returncode == 3
    assert every.stderr.splitlines()[-1].startswith(
        "batch-compute: 0 computed, 300 entities failed (listed in all.tsv.failures.tsv), 0 skipped, in ")
    report = yaml.safe_load((tmp_path / "all.tsv.report.yaml").read_text())
    assert report["comp_status"] == "partial" and report["n_failed"] == 300 and report["n_units"] == 0
    failing = [i for i in ids if "7" in i]
    some = cli("failing.py", "ids.txt", "--out", "some.tsv", cwd=tmp_path)
    assert some.returncode == 3
    allowed = cli("failing.py", "ids.txt", "--out", "allowed.tsv", "--allow-failures", cwd=tmp_path)
    assert allowed.returncode == 0, allowed.stderr
    assert f"{300 - len(failing)} computed, {len(failing)} entities failed" in allowed.stderr
    assert len(read_tsv(tmp_path / "allowed.tsv")) == 300 - len(failing)


def test_a_failed_finalize_has_its_own_exit_code_and_is_reported(tmp_path: Path, attributes_file: Path) -> None:
    (tmp_path / "fin.py").write_text(FINALIZE_FAILS)
    ids = seq_ids(tmp_path / "ids.txt", 20)
    run_dir = tmp_path / "run"
    result = cli("fin.py", "ids.txt", "--out", "f.tsv", "--run-dir", run_dir, cwd=tmp_path)
    assert result.returncode == 4
    assert "finalize" in result.stderr and "cannot close the database" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(read_tsv(tmp_path / "f.tsv")) == 20
    report = yaml.safe_load((tmp_path / "f.tsv.report.yaml").read_text())
    assert report["comp_status"] == "finalize_failed"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "cannot close the database" in manifest["failure"]


def test_summary_line_of_a_clean_run(tmp_path: Path, md5_plugin: Path) -> None:
    seq_ids(tmp_path / "ids.txt", 10)
    result = cli("echo_md5.py", "ids.txt", "--out", "o.tsv", cwd=tmp_path)
    assert result.returncode == 0
    assert re.fullmatch(r"batch-compute: 10 computed, 0 failed, 0 skipped, in \d+\.\d s\n", result.stderr), result.stderr


# --------------------------------------------------------------------------- 6. one entity never ends the batch

CRASHY = '''\
import ctypes, os, sys
ID = "crashy"
VERSION = "1.0.0"
INPUT = "any entity id"
OUTPUT = ["length"]
METHOD = "len() of the id; some ids end the process"
PARAMETERS = []

def compute(entity, **kwargs):
    if entity == "sys_exit":
        sys.exit(3)
    if entity == "os_exit":
        os._exit(7)
    if entity == "abort":
        os.abort()
    if entity == "segfault":
        ctypes.string_at(0)
    return [len(entity)], []
'''


@pytest.mark.parametrize("backend", ["auto", "serial", "pool"])
def test_a_crashing_entity_fails_alone(tmp_path: Path, attributes_file: Path, backend: str) -> None:
    (tmp_path / "crashy.py").write_text(CRASHY)
    good = [f"g{i}" for i in range(60)]
    bad = ["sys_exit", "os_exit", "abort", "segfault"]
    ids = good[:20] + bad[:2] + good[20:40] + bad[2:] + good[40:]
    (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n")
    run_dir = tmp_path / "run"
    result = cli("crashy.py", "ids.txt", "--out", "c.tsv", "--backend", backend, "--workers", "2", "--run-dir", run_dir,
                 cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    assert read_tsv(tmp_path / "c.tsv") == {g: [str(len(g))] for g in good}
    failures = {line.split("\t")[0]: line.split("\t") for line in (tmp_path / "c.tsv.failures.tsv").read_text().splitlines()}
    assert sorted(failures) == sorted(bad)
    assert "exit" in failures["sys_exit"][3] and "3" in failures["sys_exit"][3]
    assert "exit code 7" in failures["os_exit"][3] or "os._exit(7)" in failures["os_exit"][3]
    assert "signal 6" in failures["abort"][3] or "abort" in failures["abort"][3]
    assert "signal 11" in failures["segfault"][3]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "finished" and manifest["counts"]["failed"] == 4
    # a resume computes nothing new and does not die either
    again = cli("crashy.py", "ids.txt", "--out", "c.tsv", "--backend", backend, "--workers", "2", cwd=tmp_path)
    assert again.returncode == 3 and len(read_tsv(tmp_path / "c.tsv")) == 60


NIL_NIM = """\
import nimpy

const
  ID = "nil_deref"
  VERSION = "1.0.0"
  INPUT = "any entity id"
  OUTPUT = @["length"]
  METHOD = "len() of the id; the id nil dereferences a nil ref"
exportpy_consts(ID, VERSION, INPUT, OUTPUT, METHOD)

type Node = ref object
  value: int

proc compute(entity: string): tuple[results: (int, ), logs: seq[string]] {.exportpy.} =
  let node: Node = if entity == "nil": nil else: Node(value: entity.len)
  result.results = (node.value, )
"""


@pytest.mark.skipif(shutil.which("nim") is None, reason="nim is not installed (apt-get install -y nim)")
def test_a_nim_nil_dereference_fails_alone_under_the_default_backend(tmp_path: Path, attributes_file: Path) -> None:
    """Native code computes in an isolated worker under serial/auto: the segfault ends that worker, not the batch."""
    folder = Path(os.environ["PROVBATCH_CACHE"]).parent / "integrity_nim"  # stable path: built once, not per test
    folder.mkdir(parents=True, exist_ok=True)
    plugin = folder / "nil_deref.nim"
    if not plugin.exists() or plugin.read_text() != NIL_NIM:
        plugin.write_text(NIL_NIM)
    good = [f"g{i}" for i in range(1, 41)]
    (tmp_path / "ids.txt").write_text("\n".join(good[:15] + ["nil"] + good[15:]) + "\n")
    run_dir = tmp_path / "run"
    result = cli(plugin, "ids.txt", "--out", "n.tsv", "--run-dir", run_dir, cwd=tmp_path, timeout=600)
    assert result.returncode == 3, result.stderr
    assert read_tsv(tmp_path / "n.tsv") == {g: [str(len(g))] for g in good}
    failures = [line.split("\t") for line in (tmp_path / "n.tsv.failures.tsv").read_text().splitlines()]
    assert [f[:3] for f in failures] == [["nil", "1", "WorkerLost"]]
    assert "signal 11" in failures[0][3]
    assert "40 computed, 1 entity failed (listed in n.tsv.failures.tsv)" in result.stderr
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "finished" and manifest["counts"]["computed"] == 40 and manifest["counts"]["failed"] == 1


def test_api_keeps_going_after_a_crashing_entity(tmp_path: Path, attributes_file: Path) -> None:
    (tmp_path / "crashy.py").write_text(CRASHY)
    result = provbatch.run_batch(tmp_path / "crashy.py", ["a", "os_exit", "bb", "segfault", "ccc"],
                                 attributes=attributes_file)
    assert result.as_dict() == {"a": [1], "bb": [2], "ccc": [3]}
    assert sorted(f.entity for f in result.failures) == ["os_exit", "segfault"]


PURE_EXITS = '''\
import os, sys
ID = "pure_exits"
VERSION = "1.0.0"
INPUT = "any entity id"
OUTPUT = ["length"]
METHOD = "len() of the id; some ids exit"
PARAMETERS = []

def compute(entity, **kwargs):
    if entity == "sys_exit":
        sys.exit(3)
    if entity == "os_exit":
        os._exit(7)
    if entity == "abort":
        os.abort()
    if entity == "forked":  # a child the plugin forks still exits for real
        pid = os.fork()
        if pid == 0:
            os._exit(5)
        return [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])], []
    return [len(entity)], []
'''


@pytest.mark.parametrize("backend", ["auto", "serial"])
def test_exits_of_a_pure_python_plugin_fail_alone_in_the_driver(tmp_path: Path, attributes_file: Path, backend: str) -> None:
    """Pure Python computes in the driver (fast): sys.exit, os._exit and os.abort there fail only their entity."""
    (tmp_path / "pure.py").write_text(PURE_EXITS)
    good = [f"g{i}" for i in range(30)]
    (tmp_path / "ids.txt").write_text("\n".join(good[:10] + ["sys_exit", "os_exit", "forked"] + good[10:] + ["abort"]) + "\n")
    result = cli("pure.py", "ids.txt", "--out", "p.tsv", "--backend", backend, cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    assert read_tsv(tmp_path / "p.tsv") == {**{g: [str(len(g))] for g in good}, "forked": ["5"]}
    failures = {line.split("\t")[0]: line.split("\t")[2:] for line in (tmp_path / "p.tsv.failures.tsv").read_text().splitlines()}
    assert failures == {"sys_exit": ["SystemExit", "compute called sys.exit(3)"],
                        "os_exit": ["ProcessExit", "compute called os._exit(7)"],
                        "abort": ["ProcessExit", "compute called os.abort()"]}
    report = yaml.safe_load((tmp_path / "p.tsv.report.yaml").read_text())
    assert report["backend"] in ("serial", "auto (serial)")


# --------------------------------------------------------------------------- 7. streams


def test_entities_from_dev_stdin_process_substitution_and_fifo(tmp_path: Path, md5_plugin: Path) -> None:
    expected = {str(i): [md5(str(i))] for i in range(1, 1001)}
    text = "".join(f"{i}\n" for i in range(1, 1001))
    piped = cli("echo_md5.py", "/dev/stdin", "--out", "stdin.tsv", "--run-dir", "r1", cwd=tmp_path, stdin=text)
    assert piped.returncode == 0, piped.stderr
    assert read_tsv(tmp_path / "stdin.tsv") == expected
    config = json.loads((tmp_path / "r1" / "run_config.json").read_text())
    assert config["entities"]["sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert config["entities"]["size"] == len(text)
    substituted = subprocess.run(["bash", "-c", f"'{BIN / 'batch-compute'}' echo_md5.py <(seq 1 1000) --out sub.tsv"],
                                 cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert substituted.returncode == 0, substituted.stderr
    assert read_tsv(tmp_path / "sub.tsv") == expected
    fifo = tmp_path / "ids.fifo"
    os.mkfifo(fifo)
    writer = subprocess.Popen(["bash", "-c", f"seq 1 1000 > '{fifo}'"])
    from_fifo = cli("echo_md5.py", fifo, "--out", "fifo.tsv", cwd=tmp_path, timeout=60)
    writer.wait(timeout=10)
    assert from_fifo.returncode == 0, from_fifo.stderr
    assert read_tsv(tmp_path / "fifo.tsv") == expected


# --------------------------------------------------------------------------- 8. the TSV contract

IDSPROC_TAB = '''\
def compute_id(entity):
    return entity.replace("_", "\\t")
'''

SURROGATE = '''\
ID = "surrogate"
VERSION = "1.0.0"
INPUT = "any entity id"
OUTPUT = ["upper"]
METHOD = "upper case, with a lone surrogate for ids starting with x"
PARAMETERS = []

def compute(entity, **kwargs):
    return [("\\ud800" if entity.startswith("x") else "") + entity.upper()], []
'''


def test_glob_names_with_tab_or_newline_fail_alone(tmp_path: Path, attributes_file: Path) -> None:
    (tmp_path / "kmer.py").write_text(KMER)
    files = tmp_path / "files"
    files.mkdir()
    names = ["plain.txt", "tab\there.txt", "new\nline.txt", "cr\rhere.txt", "ok2.txt"]
    for name in names:
        (files / name).write_text("x")
    for attempt in range(2):  # and the same on resume: no row torn, nothing recomputed that is done
        result = cli("kmer.py", "--glob", "files/*.txt", "--out", "g.tsv", cwd=tmp_path)
        assert result.returncode == 3, result.stderr
        lines = (tmp_path / "g.tsv").read_text().split("\n")
        assert lines[-1] == "" and sorted(lines[:-1]) == sorted(
            f"files/{n}\t{len('files/' + n) * 6}" for n in ("plain.txt", "ok2.txt"))
        failures = (tmp_path / "g.tsv.failures.tsv").read_text().splitlines()
        assert len(failures) == 3 and all("EntityIdError" in line for line in failures)
        assert ("0 computed" if attempt else "2 computed") in result.stderr


def test_idsproc_ids_with_tab_fail_alone_and_cr_inside_a_line_is_one_entity(tmp_path: Path, attributes_file: Path) -> None:
    (tmp_path / "kmer.py").write_text(KMER)
    (tmp_path / "tabs.py").write_text(IDSPROC_TAB)
    (tmp_path / "ids.txt").write_bytes(b"a_b\nplain\ncr\rinside\r\nlast\r\n")
    result = cli("kmer.py", "ids.txt", "--idsproc", "tabs.py", "--out", "t.tsv", cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    assert (tmp_path / "t.tsv").read_bytes() == b"plain\t30\nlast\t24\n" or sorted(
        (tmp_path / "t.tsv").read_bytes().splitlines()) == [b"last\t24", b"plain\t30"]
    failures = (tmp_path / "t.tsv.failures.tsv").read_text().splitlines()
    assert len(failures) == 2 and all("EntityIdError" in line for line in failures)


@pytest.mark.parametrize("backend", ["serial", "pool"])
def test_an_unencodable_value_fails_only_its_entity(tmp_path: Path, attributes_file: Path, backend: str) -> None:
    (tmp_path / "sur.py").write_text(SURROGATE)
    ids = [f"a{i}" for i in range(30)] + ["x1"] + [f"b{i}" for i in range(30)] + ["x2"]
    (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n")
    for _ in range(2):
        result = cli("sur.py", "ids.txt", "--out", "u.tsv", "--backend", backend, "--workers", "2", cwd=tmp_path)
        assert result.returncode == 3, result.stderr
        assert read_tsv(tmp_path / "u.tsv") == {i: [i.upper()] for i in ids if not i.startswith("x")}
        failures = (tmp_path / "u.tsv.failures.tsv").read_text().splitlines()
        assert sorted(line.split("\t")[0] for line in failures) == ["x1", "x2"]
        assert all("UTF-8" in line for line in failures)


# --------------------------------------------------------------------------- 9. smaller holes

CHDIR = '''\
import os
ID = "chdir"
VERSION = "1.0.0"
INPUT = "any entity id"
OUTPUT = ["length"]
METHOD = "len(); moves to another directory, and fails on ids with a 7"
PARAMETERS = []

def compute(entity, **kwargs):
    os.chdir(os.path.dirname(os.path.abspath(__file__)) + "/elsewhere")
    if "7" in entity:
        raise ValueError("seven")
    return [len(entity)], []
'''


def test_outputs_that_are_inputs_are_refused(tmp_path: Path, md5_plugin: Path) -> None:
    seq_ids(tmp_path / "ids.txt", 5)
    before = (tmp_path / "ids.txt").read_bytes()
    same = cli("echo_md5.py", "ids.txt", "--out", "ids.txt", cwd=tmp_path)
    assert same.returncode == 2 and "ids.txt" in same.stderr and "ENTITIES" in same.stderr
    assert (tmp_path / "ids.txt").read_bytes() == before
    (tmp_path / "sub").mkdir()
    via_path = cli("echo_md5.py", "ids.txt", "--out", "sub/../ids.txt", cwd=tmp_path)
    assert via_path.returncode == 2
    log_is_out = cli("echo_md5.py", "ids.txt", "--out", "o.tsv", "--log", "o.tsv", cwd=tmp_path)
    assert log_is_out.returncode == 2 and not (tmp_path / "o.tsv").exists()
    assert (tmp_path / "ids.txt").read_bytes() == before


def test_paths_are_resolved_at_start_when_compute_changes_directory(tmp_path: Path, attributes_file: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "chdir.py").write_text(CHDIR)
    ids = seq_ids(tmp_path / "ids.txt", 20)
    result = cli("chdir.py", "ids.txt", "--out", "o.tsv", "--log", "o.log", "--backend", "serial", cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    assert sorted(p.name for p in (tmp_path / "elsewhere").iterdir()) == []
    assert len(read_tsv(tmp_path / "o.tsv")) == len([i for i in ids if "7" not in i])
    assert (tmp_path / "o.tsv.report.yaml").is_file() and (tmp_path / "o.tsv.failures.tsv").is_file()


def test_a_closed_stdout_ends_the_run_quietly(tmp_path: Path, md5_plugin: Path) -> None:
    seq_ids(tmp_path / "ids.txt", 200_000)
    run_dir = tmp_path / "run"
    result = subprocess.run(["bash", "-c", f"set -o pipefail; '{BIN / 'batch-compute'}' echo_md5.py ids.txt --run-dir run | head -1;"
                             " echo codes ${PIPESTATUS[@]}"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    first, codes = result.stdout.splitlines()
    assert first == f"id0000001\t{md5('id0000001')}"
    assert codes == "codes 141 0"
    assert "BrokenPipe" not in result.stderr and "Traceback" not in result.stderr and "Exception" not in result.stderr
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "interrupted" and manifest["failure"] == "output closed"


def test_a_bom_is_not_part_of_the_first_id(tmp_path: Path, md5_plugin: Path) -> None:
    (tmp_path / "ids.txt").write_bytes("\ufeffalpha\nbeta\n".encode())
    result = cli("echo_md5.py", "ids.txt", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"alpha\t{md5('alpha')}\nbeta\t{md5('beta')}\n"
    piped = cli("echo_md5.py", "-", cwd=tmp_path, stdin="\ufeffalpha\n")
    assert piped.stdout == f"alpha\t{md5('alpha')}\n"


def test_a_bad_byte_is_reported_by_line_before_anything_is_computed(tmp_path: Path, md5_plugin: Path) -> None:
    ids = [f"id{i}".encode() for i in range(5000)]
    ids[3210] = b"id\xff3210"
    (tmp_path / "ids.txt").write_bytes(b"\n".join(ids) + b"\n")
    result = cli("echo_md5.py", "ids.txt", "--out", "o.tsv", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("batch-compute: error: ids.txt:3211: not UTF-8 text")
    assert not (tmp_path / "o.tsv").exists() or (tmp_path / "o.tsv").read_text() == ""
    # from a stream it can only be found when read: the line is named, what came before is kept
    piped = subprocess.run([str(BIN / "batch-compute"), "echo_md5.py", "-", "--out", "p.tsv"], cwd=tmp_path,
                           input=b"\n".join(ids) + b"\n", capture_output=True, timeout=120)
    assert piped.returncode == 2 and b"<stdin>:3211: not UTF-8 text" in piped.stderr


IDSPROC_PREFIX = '''\
def compute_id(entity):
    return entity.split("-")[0]
'''


def test_idsproc_collisions_are_counted_apart_and_warned(tmp_path: Path, md5_plugin: Path) -> None:
    (tmp_path / "prefix.py").write_text(IDSPROC_PREFIX)
    (tmp_path / "ids.txt").write_text("a-1\nb-1\na-2\nc-1\na-1\nb-9\n")
    run_dir = tmp_path / "run"
    result = cli("echo_md5.py", "ids.txt", "--idsproc", "prefix.py", "--out", "o.tsv", "--run-dir", run_dir, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(read_tsv(tmp_path / "o.tsv")) == ["a", "b", "c"]
    assert "2 entities mapped by --idsproc to the id of another entity" in result.stderr
    assert "'a-2' -> 'a' (as 'a-1')" in result.stderr
    counts = json.loads((run_dir / "manifest.json").read_text())["counts"]
    assert counts["duplicates"] == 1 and counts["id_collisions"] == 2


def test_a_full_disk_names_the_file_and_closes_the_records(tmp_path: Path, md5_plugin: Path) -> None:
    seq_ids(tmp_path / "ids.txt", 100)
    (tmp_path / "logs.py").write_text(ECHO_MD5.replace("], []", "], ['a log line']"))
    run_dir = tmp_path / "run"
    result = cli("logs.py", "ids.txt", "--out", "o.tsv", "--log", "/dev/full", "--run-dir", run_dir, cwd=tmp_path)
    assert result.returncode == 1
    assert "/dev/full" in result.stderr and "No space left on device" in result.stderr
    assert "report" not in result.stderr.split("error:")[1]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "/dev/full" in manifest["failure"]
    assert [p.name for p in tmp_path.rglob("*.tmp*")] == []


def _process_table() -> dict[int, tuple[int, str, str, str]]:
    """pid -> (parent pid, state, start time, command line) of every live process (zombies are dead)."""
    table = {}
    for entry in os.listdir("/proc"):
        try:
            stat = Path(f"/proc/{entry}/stat").read_bytes() if entry.isdigit() else b""
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if stat:
            fields = stat[stat.rfind(b")") + 2:].split()
            if fields[0] != b"Z":
                table[int(entry)] = (int(fields[1]), fields[0].decode(), fields[19].decode(), cmdline)
    return table


def _descendants(pid: int) -> dict[int, tuple[int, str, str, str]]:
    table = _process_table()
    found = {pid}
    while True:
        more = {p for p, (ppid, *_rest) in table.items() if ppid in found and p not in found}
        if not more:
            break
        found |= more
    return {p: table[p] for p in found - {pid} if p in table}


@pytest.mark.ray
def test_no_ray_process_is_left_after_a_sigkill_of_the_driver(tmp_path: Path, attributes_file: Path) -> None:
    """The private instance's processes are those of its session directory (other engineers' Ray is left alone)."""
    (tmp_path / "slow.py").write_text(SLOW)
    seq_ids(tmp_path / "ids.txt", 5000)
    driver = subprocess.Popen([str(BIN / "batch-compute"), "slow.py", "ids.txt", "--out", "s.tsv", "--backend", "ray",
                               "--workers", "2"], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "RAY_AUTH_MODE": "disabled"})
    try:
        _wait_for_rows(tmp_path / "s.tsv", 1, limit=300)
        before = _descendants(driver.pid)
        sessions = {m.group(0) for *_rest, cmdline in before.values()
                    for m in [re.search(r"/session_\d{4}-\d\d-\d\d_[\d-]+_\d+_\d+", cmdline)] if m}
        assert len(sessions) == 1, sessions
        session = sessions.pop()
        # the two that stayed before the fix: they rename themselves (ray::...), children of the raylet
        names = [cmdline for *_rest, cmdline in before.values()]
        assert any(c.startswith(("ray::DashboardAgent", "ray::RuntimeEnvAgent")) or "dashboard/agent.py" in c
                   for c in names), names
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    deadline = time.monotonic() + 60
    while True:
        table = _process_table()
        left = sorted(f"{p} {info[3][:150]}" for p, info in table.items()
                      if session in info[3] or (p in before and before[p][2] == info[2]))
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert left == []


def test_show_tells_a_dead_run_from_a_running_one(tmp_path: Path, attributes_file: Path) -> None:
    (tmp_path / "slow.py").write_text(SLOW)
    seq_ids(tmp_path / "ids.txt", 3000)
    proc = subprocess.Popen([str(BIN / "batch-compute"), "slow.py", "ids.txt", "--out", "s.tsv", "--run-dir", "run",
                             "--backend", "serial"], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_rows(tmp_path / "s.tsv", 1)
        running = run_cli("show", tmp_path / "run", prog="provbatch")
        assert running.returncode == 0, running.stderr
        assert re.search(r"status\s+running \(process \d+ alive\)", running.stdout), running.stdout
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    dead = run_cli("show", tmp_path / "run", prog="provbatch")
    assert re.search(rf"status\s+died \(process {proc.pid} is gone", dead.stdout), dead.stdout


NOISY_SLOW = '''\
import sys, time
ID = "noisy_slow"
VERSION = "1.0.0"
INPUT = "any entity id"
OUTPUT = ["length"]
METHOD = "len() of the id, printing, slow enough for auto to start workers"
PARAMETERS = []

def compute(entity, **kwargs):
    print("compute", entity)
    print("to stderr", entity, file=sys.stderr)
    time.sleep(0.001)
    return [len(entity)], []
'''


def test_plugin_output_is_captured_once_when_auto_moves_from_the_driver_to_workers(tmp_path: Path,
                                                                                    attributes_file: Path) -> None:
    # the driver holds fds 1 and 2 on its capture while it computes; it lets go before forking the workers,
    # which capture on their own: every line once, none in the results, none lost at the switch
    (tmp_path / "noisy_slow.py").write_text(NOISY_SLOW)
    ids = [f"e{i}" for i in range(1, 1201)]
    (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n")
    result = cli("noisy_slow.py", "ids.txt", "--workers", "2", "--report", "r.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = yaml.safe_load((tmp_path / "r.yaml").read_text())
    assert "auto (pool)" in json.dumps(report), report
    assert sorted(result.stdout.splitlines()) == sorted(f"{e}\t{len(e)}" for e in ids)
    err = result.stderr.splitlines()
    assert sorted(line for line in err if line.startswith("\t[plugin stdout] ")) == sorted(
        f"\t[plugin stdout] compute {e}" for e in ids)
    assert sorted(line for line in err if line.startswith("\t[plugin stderr] ")) == sorted(
        f"\t[plugin stderr] to stderr {e}" for e in ids)
    assert err[-1].startswith("batch-compute: 1200 computed, 0 failed, 0 skipped, in ")


NOISY_PURE = NOISY.replace("import ctypes, os, sys", "import os, sys").replace(
    '        ctypes.CDLL(None).printf(b"printf %s\\n", entity.encode())\n', "")


@pytest.mark.parametrize("backend", ["serial", "auto"])
def test_plugin_output_in_the_driver_is_captured_over_the_whole_span(tmp_path: Path, attributes_file: Path,
                                                                     backend: str) -> None:
    # a pure-Python plugin computes in the driver (NOISY holds ctypes, so it computes in a worker): there
    # batch-compute keeps fds 1 and 2 on the capture from the first chunk to the last and writes its
    # results through a dup of stdout; print, print to stderr and a child's output are caught all the same
    assert "ctypes" not in NOISY_PURE and "os.system" in NOISY_PURE
    (tmp_path / "noisy.py").write_text(NOISY_PURE)
    ids = [f"e{i}" for i in range(1, 2001)]
    (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n")
    result = cli("noisy.py", "ids.txt", "--backend", backend, "--report", "r.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "(isolated)" not in (tmp_path / "r.yaml").read_text()
    assert sorted(result.stdout.splitlines()) == sorted(f"{e}\t{len(e)}" for e in ids)
    err = result.stderr.splitlines()
    tens = assert_each_line_captured_once(err, ids)
    assert err.count("\t[plugin stdout] init says hello") == 1 and err.count("\t[plugin stdout] finalize says bye") == 1
    assert err[-1].startswith("batch-compute: 2000 computed, 0 failed, 0 skipped, in ")
    assert len(err) == 2 * len(ids) + len(tens) + 3


def test_the_callers_own_output_between_rows_of_iter_batch_is_not_captured(tmp_path: Path, attributes_file: Path) -> None:
    # batch-compute holds the capture over its compute span; the API must not: its caller's code runs
    # between rows, and what the caller prints is the caller's, never "[plugin stdout]" in the logs
    (tmp_path / "noisy.py").write_text(NOISY_PURE)
    ids = [f"e{i}" for i in range(1, 601)]
    (tmp_path / "caller.py").write_text(
        "import sys\n"
        "import provbatch\n"
        f"ids = {ids!r}\n"
        "with provbatch.iter_batch('noisy.py', ids, backend='serial', log='o.log', run_dir='run') as run:\n"
        "    for entity, values, _logs in run:\n"
        "        print('caller got', entity, values[0], flush=True)\n"
        "        print('caller err', entity, file=sys.stderr)\n")
    result = subprocess.run([str(BIN / "python"), "caller.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"caller got {e} {len(e)}" for e in ids]
    assert [line for line in result.stderr.splitlines() if line.startswith("caller")] == [f"caller err {e}" for e in ids]
    log = (tmp_path / "o.log").read_text().splitlines()
    assert "caller" not in "".join(log)
    assert sorted(line for line in log if line.startswith("\t[plugin stdout] compute ")) == sorted(
        f"\t[plugin stdout] compute {e}" for e in ids)
    assert sorted(line for line in log if line.startswith("\t[plugin stderr] to stderr ")) == sorted(
        f"\t[plugin stderr] to stderr {e}" for e in ids)
