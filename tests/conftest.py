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
# `make test` runs the suite on three pytest-xdist workers with `--dist loadfile`: most of its wall time
# is spent waiting (on builds, servers, subprocesses, Slurm), so one process leaves a core idle. A module
# runs on one worker, so that its module fixtures (builds) and the plugin files it keeps at stable paths
# beside the build cache are made once, by one worker; the build cache ($PROVBATCH_CACHE) is shared by
# the workers (provbatch's own file lock makes one build of a plugin when several processes load it).
# Session fixtures are per worker: Slurm (one module) and prenacs' venv (one module) start once; the
# PostgreSQL/MariaDB servers (four store modules) and Ray (six modules) at most once per worker.
# (`--dist loadgroup` would keep those on one worker too, but pytest 9.2 ignores the group that
# pytest-xdist 3.8 writes into the test's nodeid, so its groups are split like `--dist load`.)

#: session fixtures that start servers or clusters: their modules are the longest, handed out first
SERVER_FIXTURES = ("db_servers", "slurm_cluster", "prenacs_bin")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not os.environ.get("PYTEST_XDIST_WORKER"):  # one process: the usual order
        return
    # the workers collect; the scheduler hands the modules out in this order, so that the longest do
    # not start last and end the run alone
    modules: dict[str, list[pytest.Item]] = {}
    for item in items:
        modules.setdefault(item.nodeid.split("::", 1)[0], []).append(item)
    servers = [name for name, tests in modules.items()
               if any(set(SERVER_FIXTURES) & set(getattr(test, "fixturenames", ())) for test in tests)]
    items[:] = [item for name in [*servers, *(m for m in modules if m not in servers)] for item in modules[name]]


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
