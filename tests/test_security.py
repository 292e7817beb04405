"""Nothing runs that provbatch did not build or the user did not write (issue 14).

Each numbered attack of the issue, made as an attacker would, against real builds
(cargo/maturin and nim) and the real command line:

1. a library planted in the build cache (serial and pool backends, Rust and Nim),
   and a worker handed an artifact that is not the one the driver built;
2. cache and run directories under umask 000, owned by another user (nobody,
   uid 65534: the tests run as root), writable by others, or reached through a link;
3. a run record edited so that a captured source and its sha256 both change;
4. names in a record that point outside the rerun directory, and files a rerun
   would overwrite.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from conftest import BIN, read_tsv, run_cli, write_source

NOBODY = 65534
IDS = ["a", "bb", "ccc"]
HONEST = {"a": ["1"], "bb": ["2"], "ccc": ["3"]}
PLANTED = {"a": ["1000"], "bb": ["2000"], "ccc": ["3000"]}

COUNTER_RS = """\
use pyo3::prelude::*;

#[pyclass]
struct Constants;

#[pymethods]
impl Constants {
    #[classattr]
    const ID: &'static str = "counter";
    #[classattr]
    const VERSION: &'static str = "1.0";
    #[classattr]
    const INPUT: &'static str = "any string";
    #[classattr]
    const OUTPUT: [&'static str; 1] = ["length"];
}

const FACTOR: usize = 1;

#[pyfunction]
#[pyo3(signature = (entity, **_kwargs))]
fn compute(entity: &str, _kwargs: Option<&Bound<'_, pyo3::types::PyDict>>) -> ((usize,), Vec<String>) {
    ((entity.len() * FACTOR,), vec![])
}
"""

COUNTER_NIM = """\
import nimpy

const
  ID = "counter_nim"
  VERSION = "1.0"
  INPUT = "any string"
  OUTPUT = @["length"]
  FACTOR = 1

exportpy_consts(ID, VERSION, INPUT, OUTPUT)

proc compute(entity: string): tuple[results: seq[int], logs: seq[string]] {.exportpy.} =
  result.results = @[entity.len * FACTOR]
"""

SCALE = """\
ID = "scale"
VERSION = "2.1"
INPUT = "an id"
OUTPUT = ["length"]
PARAMETERS = [("times", "Integer", "1", "multiplier")]

def compute(entity, times=1, **kwargs):
    return [len(entity) * times], []
"""
EVIL = SCALE.replace("return [len(entity) * times], []", "open('/tmp/pwned', 'w').write('x'); return [999], []")


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def provbatch(*args, cwd, env=None) -> subprocess.CompletedProcess:
    return run_cli(*args, cwd=cwd, env=env, prog="provbatch")


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def load_config(run_dir: Path) -> dict:
    return json.loads((run_dir / "run_config.json").read_text())


def save_config(run_dir: Path, config: dict) -> None:
    (run_dir / "run_config.json").write_text(json.dumps(config, indent=1))


def stable_folder(name: str) -> Path:
    """Beside the session's build cache: build keys include the plugin's path, so a fixed
    folder keeps these plugins built across sessions (as tests/test_nim_plugins.py does)."""
    folder = Path(os.environ["PROVBATCH_CACHE"]).parent / "security_plugins" / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(autouse=True)
def no_marker():
    """EVIL's mark: it must never appear (the planted code did not run)."""
    Path("/tmp/pwned").unlink(missing_ok=True)
    yield
    Path("/tmp/pwned").unlink(missing_ok=True)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    (tmp_path / "ids.txt").write_text("".join(i + "\n" for i in IDS))
    (tmp_path / "attrs.yaml").write_text("length: {definition: number of characters of the entity, datatype: Integer}\n")
    return tmp_path


def compute(plugin: Path, cwd: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return run_cli(plugin, "ids.txt", "--attributes", "attrs.yaml", *extra, cwd=cwd, env=env)


# --------------------------------------------------------------------------- 1. planted artifacts


LANGS = {
    "rust": ("counter.rs", COUNTER_RS, "const FACTOR: usize = 1;", "const FACTOR: usize = 1000;"),
    "nim": ("counter.nim", COUNTER_NIM, "FACTOR = 1\n", "FACTOR = 1000\n"),
}


@pytest.fixture(params=sorted(LANGS))
def honest_and_planted(request, workspace):
    """The same plugin twice (same module name): honest (length) and planted (length * 1000), both built."""
    lang = request.param
    name, source, honest_line, planted_line = LANGS[lang]
    honest = write_source(stable_folder(f"{lang}-honest"), name, source)
    planted = write_source(stable_folder(f"{lang}-planted"), name, source.replace(honest_line, planted_line))
    artifacts = {}
    for label, plugin in (("honest", honest), ("planted", planted)):
        proc = compute(plugin, workspace, "--backend", "serial", "--out", f"{label}.tsv", "--run-dir", f"run-{label}")
        assert proc.returncode == 0, proc.stderr
        artifacts[label] = Path(load_config(workspace / f"run-{label}")["plugin"]["artifact"]["path"])
    assert read_tsv(workspace / "honest.tsv") == HONEST and read_tsv(workspace / "planted.tsv") == PLANTED
    return dict(lang=lang, honest=honest, planted=planted, artifacts=artifacts, workspace=workspace)


@pytest.mark.parametrize("backend", ["serial", "pool"])
def test_a_library_planted_in_the_cache_is_rebuilt_not_loaded(honest_and_planted, backend):
    case = honest_and_planted
    work, artifact = case["workspace"], case["artifacts"]["honest"]
    built_sha = sha256(artifact)
    shutil.copyfile(case["artifacts"]["planted"], artifact)  # the attack: same file name, other code
    planted_sha = sha256(artifact)
    assert planted_sha != built_sha

    proc = compute(case["honest"], work, "--backend", backend, "--workers", "2", "--out", "again.tsv", "--run-dir", "run-again")
    assert proc.returncode == 0, proc.stderr
    assert read_tsv(work / "again.tsv") == HONEST  # the planted code did not run
    assert (f"{artifact}: sha256 {planted_sha[:12]}... differs from the {built_sha[:12]}... recorded when provbatch "
            f"built it (replaced or corrupted); rebuilding") in proc.stderr
    recorded = load_config(work / "run-again")["plugin"]["artifact"]
    assert recorded["sha256"] == sha256(artifact) != planted_sha
    assert mode(artifact) == 0o600


def test_a_worker_refuses_an_artifact_other_than_the_one_the_driver_built(tmp_path):
    """The spec carries the sha256 recorded at the build; a worker checks the file (or the shipped bytes) against it."""
    from provbatch.plugins.registry import importer

    module = importer(write_source(stable_folder("rust-honest"), "counter.rs", COUNTER_RS))
    spec = module.__provbatch_spec__
    good = Path(spec.artifact).read_bytes()
    elsewhere = tmp_path / "driver" / Path(spec.artifact).parent.name / Path(spec.artifact).name
    elsewhere.parent.mkdir(parents=True)
    elsewhere.write_bytes(good + b"\0")  # not what the driver built
    code = textwrap.dedent("""
        import pickle, sys
        from provbatch.plugins.registry import load_spec
        module = load_spec(pickle.loads(sys.stdin.buffer.read()))
        print(module.compute("abcd")[0])
    """)
    env = {**os.environ, "PROVBATCH_CACHE": str(tmp_path / "node_cache"), "PATH": "/nonexistent"}

    def worker(shipped) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", code], input=pickle.dumps(shipped), capture_output=True, env=env, timeout=120)

    moved = dataclasses.replace(spec, artifact=str(elsewhere))
    proc = worker(moved)
    assert proc.returncode != 0
    assert f"{elsewhere}: its sha256 is not the one the driver built" in proc.stderr.decode()
    proc = worker(moved.with_blob(good[:-1] + b"x"))
    assert proc.returncode != 0 and b"the shipped build does not match its sha256" in proc.stderr
    proc = worker(dataclasses.replace(moved, artifact_sha256=None).with_blob(good))
    assert proc.returncode != 0 and b"no sha256 of the built plugin" in proc.stderr
    proc = worker(moved.with_blob(good))
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode().strip() == "(4,)"
    (written,) = (tmp_path / "node_cache" / "rust").rglob("counter.*.so")
    assert sha256(written) == spec.artifact_sha256 and mode(written) == 0o600 and mode(written.parent) == 0o700


# --------------------------------------------------------------------------- 2. private directories


def test_cache_and_run_directories_are_private_under_umask_000(workspace):
    env = {"PROVBATCH_CACHE": str(workspace / "cache"), "PROVBATCH_RUNS": str(workspace / "runs")}
    write_source(workspace, "scale.py", SCALE)
    proc = subprocess.run([str(BIN / "batch-compute"), "scale.py", "ids.txt", "--attributes", "attrs.yaml", "--out", "out.tsv"],
                          cwd=workspace, env={**os.environ, **env}, capture_output=True, text=True, umask=0, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (run,) = (workspace / "runs").iterdir()
    assert mode(workspace / "runs") == 0o700 and mode(run) == 0o700
    assert {p.name: mode(p) for p in run.iterdir()} == {"manifest.json": 0o600, "events.jsonl": 0o600, "run_config.json": 0o600}
    assert mode(workspace / "out.tsv") == 0o666  # the user's own outputs follow the umask
    proc = subprocess.run([str(BIN / "provbatch"), "rerun", str(run), "--out", "again.tsv"], cwd=workspace,
                          env={**os.environ, **env}, capture_output=True, text=True, umask=0, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rerun_dir = workspace / "cache" / "rerun" / load_config(run)["uuid"]
    assert [mode(p) for p in (workspace / "cache", workspace / "cache" / "rerun", rerun_dir, rerun_dir / "plugin")] == [0o700] * 4
    assert mode(rerun_dir / "plugin" / "scale.py") == 0o600


def test_a_compiled_build_is_private_under_umask_000(workspace):
    plugin = write_source(stable_folder("rust-umask"), "counter.rs", COUNTER_RS.replace("\"1.0\"", "\"1.0-umask\""))
    artifact_dir = None
    for attempt in range(2):  # a build made earlier in this cache is rebuilt fresh once
        proc = subprocess.run([str(BIN / "batch-compute"), str(plugin), "ids.txt", "--attributes", "attrs.yaml",
                               "--out", f"out{attempt}.tsv", "--run-dir", f"run{attempt}"],
                              cwd=workspace, capture_output=True, text=True, umask=0, timeout=900)
        assert proc.returncode == 0, proc.stderr
        artifact = Path(load_config(workspace / f"run{attempt}")["plugin"]["artifact"]["path"])
        if attempt == 0:
            artifact_dir = artifact.parent
            shutil.rmtree(artifact_dir)
    assert read_tsv(workspace / "out1.tsv") == HONEST
    assert mode(artifact.parent) == 0o700 and mode(artifact) == 0o600 and artifact.parent == artifact_dir
    assert mode(workspace / "run1") == 0o700 and mode(workspace / "run1" / "run_config.json") == 0o600


def one_error(proc: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.mark.parametrize("lang", sorted(LANGS))
def test_a_cache_owned_by_another_user_or_writable_by_others_is_refused(workspace, lang):
    name, source, _, _ = LANGS[lang]
    plugin = write_source(workspace, name, source)
    cache = workspace / "cache"
    cache.mkdir()
    os.chown(cache, NOBODY, NOBODY)
    proc = compute(plugin, workspace, "--out", "out.tsv", env={"PROVBATCH_CACHE": str(cache)})
    assert proc.returncode == 1
    assert one_error(proc) == (
        f"batch-compute: error: {cache}: owned by nobody (uid 65534), not by you (root (uid 0)); provbatch trusts "
        f"only a build cache of your own: remove it (rm -rf {cache}) or use another directory")
    assert list(cache.iterdir()) == [] and not (workspace / "out.tsv").exists()
    os.chown(cache, 0, 0)
    os.chmod(cache, 0o777)
    proc = compute(plugin, workspace, "--out", "out.tsv", env={"PROVBATCH_CACHE": str(cache)})
    assert proc.returncode == 1
    assert one_error(proc) == (
        f"batch-compute: error: {cache}: writable by group or others (mode 0777) in the build cache; "
        f"anyone could change what provbatch runs: chmod go-w {cache}")
    assert list(cache.iterdir()) == []


def test_a_foreign_or_linked_entry_inside_the_cache_is_refused(honest_and_planted):
    case = honest_and_planted
    work, artifact = case["workspace"], case["artifacts"]["honest"]
    entry = artifact.parent
    os.chown(entry, NOBODY, NOBODY)
    try:
        proc = compute(case["honest"], work, "--out", "o1.tsv")
        assert proc.returncode == 1
        assert one_error(proc) == (
            f"batch-compute: error: {entry}: owned by nobody (uid 65534), not by you (root (uid 0)); provbatch trusts "
            f"only a build cache of your own: remove it (rm -rf {entry}) or use another directory")
    finally:
        os.chown(entry, 0, 0)
    os.chmod(artifact, 0o646)
    proc = compute(case["honest"], work, "--out", "o2.tsv")
    assert proc.returncode == 1
    assert one_error(proc) == (f"batch-compute: error: {artifact}: writable by group or others (mode 0646) in the build cache; "
                               f"anyone could change what provbatch runs: chmod go-w {artifact}")
    artifact.unlink()
    artifact.symlink_to(case["artifacts"]["planted"])
    proc = compute(case["honest"], work, "--out", "o3.tsv")
    assert proc.returncode == 1
    assert one_error(proc) == (f"batch-compute: error: {artifact}: a symbolic link inside the build cache; "
                               f"provbatch follows none there: remove it (rm {artifact})")
    artifact.unlink()
    proc = compute(case["honest"], work, "--out", "o4.tsv")
    assert proc.returncode == 0, proc.stderr
    assert read_tsv(work / "o4.tsv") == HONEST


def test_a_run_directory_of_another_user_is_refused(workspace):
    write_source(workspace, "scale.py", SCALE)
    (workspace / "theirs").mkdir()
    os.chown(workspace / "theirs", NOBODY, NOBODY)
    proc = compute(Path("scale.py"), workspace, "--out", "out.tsv", "--run-dir", "theirs")
    assert proc.returncode == 1
    assert one_error(proc) == (
        f"batch-compute: error: {workspace / 'theirs'}: owned by nobody (uid 65534), not by you (root (uid 0)); "
        f"provbatch trusts only a run directory of your own: remove it (rm -rf {workspace / 'theirs'}) or use another directory")
    proc = compute(Path("scale.py"), workspace, "--out", "out.tsv", "--run-dir", "run")
    assert proc.returncode == 0, proc.stderr
    os.chown(workspace / "run", NOBODY, NOBODY)
    proc = provbatch("rerun", "run", "--out", "again.tsv", cwd=workspace)
    assert proc.returncode == 1
    assert "provbatch trusts only a run directory of your own" in one_error(proc)
    assert not (workspace / "again.tsv").exists()


# --------------------------------------------------------------------------- 3 and 4: the record of a run


@pytest.fixture
def scale_run(workspace):
    """A finished run of SCALE (times=3), its own build cache (so that the rerun folder is known)."""
    env = {"PROVBATCH_CACHE": str(workspace / "cache")}
    write_source(workspace, "scale.py", SCALE)
    proc = compute(Path("scale.py"), workspace, "--param", "times=3", "--out", "out.tsv", "--run-dir", "run", env=env)
    assert proc.returncode == 0, proc.stderr
    config = load_config(workspace / "run")
    return dict(tmp=workspace, run=workspace / "run", env=env, config=config,
                rerun_dir=workspace / "cache" / "rerun" / config["uuid"])


def rerun(case, *args: str) -> subprocess.CompletedProcess:
    return provbatch("rerun", "run", *args, cwd=case["tmp"], env=case["env"])


def swap_source(config: dict, text: str) -> None:
    """The edit of attack 3: a captured source's text and its sha256 (and size) both changed."""
    source = config["plugin"]["sources"][0]
    source.update(text=text, sha256=hashlib.sha256(text.encode()).hexdigest(), size=len(text.encode()))


def test_an_edited_record_is_refused_with_every_difference(scale_run):
    run, config = scale_run["run"], scale_run["config"]
    true_sha = config["plugin"]["sha256"]
    evil_sha = hashlib.sha256(EVIL.encode()).hexdigest()
    swap_source(config, EVIL)
    save_config(run, config)
    proc = rerun(scale_run, "--out", "again.tsv")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "provbatch rerun: error: run: the run record is inconsistent (1 difference); refusing to re-run "
        f"code the run may not have run (see 'provbatch show --source'):",
        f"  - plugin sha256: the captured sources hash to {evil_sha[:12]}..., run_config.json records {true_sha[:12]}...",
    ]
    assert not (scale_run["tmp"] / "again.tsv").exists() and not scale_run["rerun_dir"].exists()
    assert not Path("/tmp/pwned").exists()

    # the record's plugin sha256 edited too: the manifest and the report beside the results still hold the true one
    config["plugin"]["sha256"] = evil_sha
    save_config(run, config)
    proc = rerun(scale_run, "--out", "again.tsv")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[1:] == [
        f"  - plugin sha256: manifest.json records {true_sha[:12]}..., run_config.json {evil_sha[:12]}...",
        f"  - plugin sha256: the report {scale_run['tmp'] / 'out.tsv.report.yaml'} records {true_sha[:12]}..., "
        f"run_config.json {evil_sha[:12]}...",
    ]
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["plugin"]["sha256"] = evil_sha
    (run / "manifest.json").write_text(json.dumps(manifest))
    proc = rerun(scale_run, "--out", "again.tsv", "--allow-changed-inputs")  # not an input: the flag does not allow it
    assert proc.returncode == 1 and "(1 difference)" in proc.stderr and "the report" in proc.stderr
    assert not (scale_run["tmp"] / "again.tsv").exists()


def test_a_captured_source_that_does_not_match_its_own_sha256_is_refused(scale_run):
    run, config = scale_run["run"], scale_run["config"]
    config["plugin"]["sources"][0]["text"] = EVIL
    save_config(run, config)
    proc = rerun(scale_run)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert "(2 differences)" in lines[0]
    assert lines[1] == "  - plugin source scale.py: its captured text does not match its recorded sha256 and size"
    assert lines[2].startswith("  - plugin sha256: the captured sources hash to ")


def test_show_source_prints_the_code_a_rerun_would_execute(scale_run):
    proc = provbatch("show", "--source", "run", cwd=scale_run["tmp"], env=scale_run["env"])
    assert proc.returncode == 0, proc.stderr
    sha = scale_run["config"]["plugin"]["sha256"]
    assert proc.stdout == (f"# a rerun of {scale_run['config']['uuid']} executes this code (python plugin scale 2.1):\n"
                           f"# ---- scale.py ({len(SCALE)} bytes, sha256 {sha}) ----\n{SCALE}")
    config = scale_run["config"]
    swap_source(config, EVIL)
    save_config(scale_run["run"], config)
    proc = provbatch("show", "--source", "run", cwd=scale_run["tmp"], env=scale_run["env"])
    assert proc.returncode == 0
    assert EVIL in proc.stdout
    assert proc.stderr.strip().splitlines()[0] == (
        "provbatch show: warning: the record is inconsistent: a rerun refuses it (1 difference):")


@pytest.mark.parametrize("name", ["/tmp/provbatch-outside/escape.py", "../../escape.py", "plugin/../../escape.py", "a/b.py"])
def test_a_layout_name_pointing_outside_is_refused_and_nothing_is_written(scale_run, name, tmp_path_factory):
    outside = Path("/tmp/provbatch-outside")
    outside.mkdir(exist_ok=True)
    victim = outside / "escape.py"
    victim.write_text("precious\n")
    try:
        run, config = scale_run["run"], scale_run["config"]
        config["plugin"]["layout"]["name"] = name
        save_config(run, config)
        proc = rerun(scale_run, "--out", "again.tsv")
        assert proc.returncode == 1
        lines = proc.stderr.strip().splitlines()
        assert f"  - plugin layout name {name!r}: not a plain file name" in lines
        assert victim.read_text() == "precious\n" and sorted(p.name for p in outside.iterdir()) == ["escape.py"]
        assert not scale_run["rerun_dir"].exists() and not (scale_run["tmp"] / "escape.py").exists()
    finally:
        shutil.rmtree(outside)


def test_a_source_name_pointing_outside_is_refused(scale_run):
    run, config = scale_run["run"], scale_run["config"]
    extra = dict(config["plugin"]["sources"][0], name="../../../escape.py")
    config["plugin"]["sources"].append(extra)
    save_config(run, config)
    proc = rerun(scale_run)
    assert proc.returncode == 1
    assert "  - plugin source name '../../../escape.py': not a relative path inside the plugin" in proc.stderr.splitlines()
    assert not (scale_run["tmp"].parent / "escape.py").exists() and not scale_run["rerun_dir"].exists()


def test_a_single_file_plugin_loads_only_a_captured_file(scale_run):
    """layout.name naming a file that was never captured (planted beside the captured one) is refused."""
    run, config = scale_run["run"], scale_run["config"]
    plugin_dir = scale_run["rerun_dir"] / "plugin"
    proc = rerun(scale_run, "--out", "first.tsv")  # materializes the captured source
    assert proc.returncode == 0, proc.stderr
    write_source(plugin_dir, "other.py", EVIL)
    config["plugin"]["layout"]["name"] = "other.py"
    save_config(run, config)
    proc = rerun(scale_run, "--out", "again.tsv")
    assert proc.returncode == 1
    assert "  - plugin layout name 'other.py': not among the captured sources (scale.py)" in proc.stderr.splitlines()
    config["plugin"]["layout"]["name"] = "scale.py"
    save_config(run, config)
    proc = rerun(scale_run, "--out", "again.tsv")  # the planted file beside the captured one is not tolerated either
    assert proc.returncode == 1
    assert one_error(proc) == (
        f"provbatch rerun: error: {plugin_dir / 'other.py'}: not captured by the run; a rerun runs only the captured "
        f"files: remove it (rm -rf {plugin_dir / 'other.py'})")
    assert not (scale_run["tmp"] / "again.tsv").exists() and not Path("/tmp/pwned").exists()


def test_a_rerun_never_overwrites_a_file(scale_run):
    plugin_dir = scale_run["rerun_dir"] / "plugin"
    plugin_dir.mkdir(parents=True, mode=0o700)
    scale_run["rerun_dir"].chmod(0o700)
    write_source(plugin_dir, "scale.py", EVIL).chmod(0o600)
    proc = rerun(scale_run, "--out", "again.tsv")
    assert proc.returncode == 1
    assert one_error(proc) == (
        f"provbatch rerun: error: {plugin_dir / 'scale.py'}: exists and differs from the source the run captured; "
        f"a rerun never overwrites a file: remove {scale_run['rerun_dir']} and re-run")
    assert (plugin_dir / "scale.py").read_text() == EVIL and not (scale_run["tmp"] / "again.tsv").exists()
    shutil.rmtree(scale_run["rerun_dir"])
    proc = rerun(scale_run, "--out", "again.tsv")
    assert proc.returncode == 0, proc.stderr
    assert read_tsv(scale_run["tmp"] / "again.tsv") == {"a": ["3"], "bb": ["6"], "ccc": ["9"]}
    assert "the results are the same as the original run's" in proc.stderr


def test_a_linked_rerun_folder_is_refused_and_nothing_is_written_where_it_points(scale_run, tmp_path_factory):
    """The attack of the issue: the rerun folder redirected (a symbolic link) to where the source would land."""
    target = tmp_path_factory.mktemp("redirected")
    scale_run["rerun_dir"].parent.mkdir(parents=True, mode=0o700)
    scale_run["rerun_dir"].symlink_to(target)
    proc = rerun(scale_run, "--out", "again.tsv")
    assert proc.returncode == 1
    assert one_error(proc) == (f"provbatch rerun: error: {scale_run['rerun_dir']}: a symbolic link inside the build cache; "
                               f"provbatch follows none there: remove it (rm {scale_run['rerun_dir']})")
    assert list(target.iterdir()) == []
    scale_run["rerun_dir"].unlink()
    (scale_run["rerun_dir"] / "plugin").mkdir(parents=True, mode=0o700)
    (scale_run["rerun_dir"] / "plugin" / "scale.py").symlink_to(target / "scale.py")
    proc = rerun(scale_run, "--out", "again.tsv")
    assert proc.returncode == 1
    assert "a symbolic link inside the build cache" in one_error(proc)
    assert list(target.iterdir()) == []


def test_the_default_rerun_results_never_overwrite_a_planted_link(scale_run, tmp_path_factory):
    """RUN_DIR/rerun-results.tsv as a link to a file elsewhere (not there yet): the rerun picks the next free name."""
    victim = tmp_path_factory.mktemp("victim") / "created.tsv"
    (scale_run["run"] / "rerun-results.tsv").symlink_to(victim)
    proc = rerun(scale_run)
    assert proc.returncode == 0, proc.stderr
    assert not victim.exists()
    assert read_tsv(scale_run["run"] / "rerun-results.2.tsv") == {"a": ["3"], "bb": ["6"], "ccc": ["9"]}


def test_yaml_of_a_record_is_read_safely(scale_run):
    """The report read back for the check is YAML from disk: a python-object tag must not construct anything."""
    report = scale_run["tmp"] / "out.tsv.report.yaml"
    report.write_text("uuid: !!python/object/apply:os.system ['touch /tmp/pwned']\n---\n" + report.read_text())
    proc = rerun(scale_run, "--out", "again.tsv")
    assert not Path("/tmp/pwned").exists()
    assert proc.returncode == 1
    assert any(line.startswith(f"  - the report {report}: cannot read it") for line in proc.stderr.splitlines())
