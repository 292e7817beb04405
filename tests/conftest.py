"""Shared fixtures: the CLI run as a user runs it, plugin files written on the fly, one Ray per session."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/dbservers.py

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# Compiled plugins are built once per test session (one shared build cache);
# tests of a cold build point PROVBATCH_CACHE at a tmp dir themselves.
os.environ.setdefault("PROVBATCH_CACHE", str(REPO / ".pytest_cache" / "provbatch-build"))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# run records of the tests go to the test cache, not to the user's state dir
os.environ.setdefault("PROVBATCH_RUNS", str(REPO / ".pytest_cache" / "provbatch-runs"))

#: results of plugins/gc_content.py on examples/genomes.txt (digits=4)
GC_EXPECTED = {
    "examples/genomes/ecoli_like.fna": ["0.5066", "5000"],
    "examples/genomes/staph_like.fna": ["0.328", "3000"],
    "examples/genomes/strepto_like.fna": ["0.713", "4000"],
    "examples/genomes/tiny.fna": ["0.4083", "120"],
    "examples/genomes/plasmid_mix.fna": ["0.4147", "3200"],
    "examples/genomes/gzipped.fna.gz": ["0.5066", "5000"],
}
#: the same as the Python API gives them: typed by the datatypes (gc_content Float, genome_size Integer)
GC_TYPED = {entity: [float(gc), int(size)] for entity, (gc, size) in GC_EXPECTED.items()}


def run_cli(*args: str, cwd: Path | str = REPO, stdin: str | None = None, env: dict | None = None, prog: str = "batch-compute") -> subprocess.CompletedProcess:
    """Run a console script of the installed package, as a user would."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [str(BIN / prog), *map(str, args)], cwd=cwd, input=stdin, capture_output=True, text=True, env=full_env, timeout=300
    )


def read_tsv(path: Path) -> dict[str, list[str]]:
    rows = {}
    for line in Path(path).read_text().splitlines():
        fields = line.split("\t")
        assert fields[0] not in rows, f"duplicate row for {fields[0]}"
        rows[fields[0]] = fields[1:]
    return rows


def write_source(folder: Path, name: str, source: str) -> Path:
    """Write a (dedented) source file into ``folder``; returns its path."""
    path = folder / name
    path.write_text(textwrap.dedent(source))
    return path


def install_plugin_package(root: Path, package: str, files: dict[str, str], entry_points: dict[str, str]) -> Path:
    """pip-install a small package registering plugins under 'provbatch.plugins' into ``root/site``
    (put it on PYTHONPATH to use it); ``files`` are the package's modules, by file name."""
    (root / package).mkdir()
    for name, source in {"__init__.py": "", **files}.items():
        (root / package / name).write_text(textwrap.dedent(source))
    points = "\n".join(f'{name} = "{value}"' for name, value in entry_points.items())
    (root / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
        f'[project]\nname = "{package.replace("_", "-")}"\nversion = "0.1"\n'
        f'[project.entry-points."provbatch.plugins"]\n{points}\n'
        f'[tool.setuptools]\npackages = ["{package}"]\n'
    )
    target = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(root)], check=True, capture_output=True)
    return target


# --------------------------------------------------------------------------- parallel runs (pytest-xdist)
# `make test` runs the suite on two pytest-xdist workers with `--dist loadgroup`: most of its wall time
# is spent waiting (on builds, servers, subprocesses, Slurm), so one process leaves a core idle. Every
# test gets a group, and a group runs on one worker only, so that what a session or module fixture
# starts is started once for the whole run, as in a one-process run:
#   - the tests of a session-wide server or cluster share one group (one PostgreSQL and one MariaDB,
#     one Slurm cluster, one Ray instance for the whole run, not one per worker);
#   - every other test stays with its module (its module fixtures' builds, and the plugin files
#     the modules keep at stable paths beside the build cache, are made by one worker).
# The build cache ($PROVBATCH_CACHE) is shared by the workers: provbatch's own file lock makes one
# build of a plugin when several processes load it at once. Without -n the groups change nothing.

#: session fixture -> the group of every test that uses it (directly or through another fixture)
SESSION_GROUPS = {"db_servers": "dbservers", "slurm_cluster": "slurm", "ray_session": "ray"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    grouped: dict[str, list[pytest.Item]] = {}
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        group = next((name for fixture, name in SESSION_GROUPS.items() if fixture in fixtures), None)
        if group is None:
            group = item.nodeid.split("::", 1)[0]
        item.add_marker(pytest.mark.xdist_group(group))
        grouped.setdefault(group, []).append(item)
    if os.environ.get("PYTEST_XDIST_WORKER"):  # the workers collect; the scheduler hands groups out in this order
        # the server and cluster groups are the longest: handed out first, they do not end the run alone
        first = [group for group in SESSION_GROUPS.values() if group in grouped]
        items[:] = [item for group in [*first, *(g for g in grouped if g not in first)] for item in grouped[group]]


@pytest.fixture
def write_plugin(tmp_path: Path):
    """Write a plugin file from a dedented source; returns its path."""

    def write(source: str, name: str = "plugin.py") -> Path:
        return write_source(tmp_path, name, source)

    return write


@pytest.fixture
def attributes_file(tmp_path: Path) -> Path:
    """Definitions for the attributes the test plugins output."""
    path = tmp_path / "attribute_definitions.yaml"
    path.write_text(textwrap.dedent("""\
        length: {definition: number of characters of the entity, datatype: Integer}
        upper: {definition: the entity in upper case, datatype: "String(256)"}
        pid: {definition: process id of the worker, datatype: Integer}
        flag: {definition: a boolean, datatype: Boolean}
        """))
    return path


@pytest.fixture
def ids_file(tmp_path: Path):
    def write(lines: list[str], name: str = "ids.txt") -> Path:
        path = tmp_path / name
        path.write_text("".join(line + "\n" for line in lines))
        return path

    return write


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance for the tests of the Python API on the Ray backend."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


# --------------------------------------------------------------------------- results store
# Real PostgreSQL and MariaDB servers, started once per session when a store test asks for
# them (tests/dbservers.py), stopped at the end; each test gets a fresh database.

STORE_BACKENDS = ("sqlite", "postgresql", "mariadb")


@pytest.fixture(scope="session")
def db_servers():
    import dbservers

    started: dict = {}

    def get(kind: str):
        if kind not in started:
            started[kind] = dbservers.start_postgresql() if kind == "postgresql" else dbservers.start_mariadb()
        return started[kind]

    yield get
    for server in started.values():
        server.stop()


@pytest.fixture(params=STORE_BACKENDS)
def store_url(request, tmp_path: Path, db_servers) -> str:
    """A URL of a new, empty database: a SQLite file, or a database on the session's PostgreSQL/MariaDB."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite'}"
    return db_servers(request.param).create_database()


# --------------------------------------------------------------------------- Slurm

@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """One real single-node Slurm cluster (munged, slurmctld, slurmd of its own) for the whole test run,
    stopped by its PID files at the end. It fails, never skips, when the daemons do not come up."""
    from slurm_cluster import ClusterError, SlurmCluster

    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
    except ClusterError as exc:
        pytest.fail(f"the Slurm test cluster did not start: {exc}", pytrace=False)
    yield cluster
    cluster.stop()


@pytest.fixture
def slurm(slurm_cluster, monkeypatch):
    """The session's Slurm cluster, with SLURM_CONF set for this test (CLI subprocesses and the API)
    and every job of the test cancelled afterwards."""
    monkeypatch.setenv("SLURM_CONF", slurm_cluster.env["SLURM_CONF"])
    yield slurm_cluster
    slurm_cluster.cancel_all()
