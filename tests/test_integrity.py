"""Issue 13: every results line true, complete and written once.

Each numbered case of the issue is run here as a user meets it: the
``batch-compute`` command on real files (and the Python API where it
applies), with exact counts of the rows written.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

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

MD5_ATTRIBUTES = 'md5: {definition: md5 of the id, datatype: "String[32]"}\n'


@pytest.fixture
def md5_plugin(tmp_path: Path) -> Path:
    (tmp_path / "attribute_definitions.yaml").write_text(MD5_ATTRIBUTES)
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
