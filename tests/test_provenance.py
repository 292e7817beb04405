"""Provenance as a user meets it: run_config.json written by every run, ``provbatch show``,
and ``provbatch rerun`` redoing a run from its record alone (the plugin changed or gone,
inputs checked by size and sha256, refused with the list of differences unless allowed).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import GC_EXPECTED, REPO, read_tsv, run_cli, write_source

SCALE = """\
ID = "scale"
VERSION = "2.1"
INPUT = "an id"
OUTPUT = ["length"]
PARAMETERS = [("times", "Integer", "1", "multiplier")]

def compute(entity, times=1, **kwargs):
    return [len(entity) * times], ["seen " + entity]
"""
IDS = ["a", "bb", "ccc", "dddd"]


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def provbatch(*args, cwd) -> subprocess.CompletedProcess:
    return run_cli(*args, cwd=cwd, prog="provbatch")


@pytest.fixture
def scale_run(tmp_path, attributes_file, ids_file):
    """A finished CLI run of SCALE (times=3) with relative paths, in tmp_path; returns its paths."""
    plugin = write_source(tmp_path, "scale.py", SCALE)
    ids = ids_file(IDS)
    proc = run_cli("scale.py", "ids.txt", "--attributes", "attribute_definitions.yaml", "--param", "times=3",
                   "--out", "out.tsv", "--run-dir", "run", "--reason", "new_entities", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    return dict(tmp=tmp_path, plugin=plugin, ids=ids, attrs=attributes_file, out=tmp_path / "out.tsv", run=tmp_path / "run")


def load_config(run_dir: Path) -> dict:
    return json.loads((run_dir / "run_config.json").read_text())


# --------------------------------------------------------------------------- capture


def test_run_config_records_plugin_inputs_parameters_and_environment(scale_run):
    config = load_config(scale_run["run"])
    plugin = config["plugin"]
    assert (plugin["id"], plugin["version"], plugin["lang"], plugin["path"]) == ("scale", "2.1", "python", str(scale_run["plugin"]))
    assert plugin["sources"] == [{"name": "scale.py", "size": len(SCALE), "sha256": sha256(scale_run["plugin"]), "text": SCALE}]
    assert config["parameters"] == {"times": 3}
    assert config["unrestorable_parameters"] == {}
    entities = config["entities"]
    assert entities == {"kind": "file", "column": 1, "path": "ids.txt", "abs_path": str(scale_run["ids"]),
                        "size": scale_run["ids"].stat().st_size, "sha256": sha256(scale_run["ids"])}
    attributes = config["attributes"]
    assert attributes["sha256"] == sha256(scale_run["attrs"])
    assert attributes["definitions"] == {"length": {"definition": "number of characters of the entity", "datatype": "Integer"}}
    assert config["cwd"] == str(scale_run["tmp"])
    assert config["reason"] == "new_entities"
    assert config["outputs"]["results"] == "out.tsv"
    assert config["execution"]["backend"] == "auto" and config["execution"]["backend_used"] == "auto (serial)"
    environment = config["environment"]
    assert environment["provbatch"] and environment["python"].count(".") == 2
    assert any(p.startswith("pyyaml==") for p in environment["packages"])
    assert config["time_start"] and config["time_end"] and config["time_start"] <= config["time_end"]


def test_report_manifest_and_run_config_share_the_uuid(scale_run):
    report = yaml.safe_load(Path(f"{scale_run['out']}.report.yaml").read_text())
    manifest = json.loads((scale_run["run"] / "manifest.json").read_text())
    config = load_config(scale_run["run"])
    assert report["uuid"] == manifest["uuid"] == config["uuid"]
    assert len(config["uuid"]) == 36


def test_crate_directory_captures_every_source(tmp_path, ids_file):
    """A Rust crate directory: Cargo.toml and every source file the build reads, each with its sha256
    (a real build of rust_plugins/state_counter, shared with the Rust tests through the build cache)."""
    crate = tmp_path / "state_counter"
    shutil.copytree(REPO / "rust_plugins" / "state_counter", crate, ignore=shutil.ignore_patterns("target"))
    ids = ids_file(["x", "yy"])
    proc = run_cli(crate, ids, "--attributes", REPO / "attribute_definitions.yaml", "--out", tmp_path / "o.tsv",
                   "--run-dir", tmp_path / "run", cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr  # the ids are no files: both entities fail (EXIT_ENTITIES_FAILED); the capture is what counts
    plugin = load_config(tmp_path / "run")["plugin"]
    assert plugin["lang"] == "rust" and plugin["layout"] == {"kind": "directory", "name": "state_counter"}
    names = {entry["name"] for entry in plugin["sources"]}
    expected = {p.relative_to(crate).as_posix() for p in crate.rglob("*") if p.is_file()}
    assert "Cargo.toml" in names and "src/lib.rs" in names
    assert names == expected
    for entry in plugin["sources"]:
        assert entry["sha256"] == sha256(crate / entry["name"])
    assert plugin["artifact"]["sha256"] and Path(plugin["artifact"]["path"]).is_file()
    assert {"rustc", "cargo", "maturin"} <= set(load_config(tmp_path / "run")["environment"]["toolchain"])


def test_api_run_stores_a_list_of_entities_and_replays_it(tmp_path, write_plugin, attributes_file):
    from provbatch import run_batch
    from provbatch.api import rerun

    plugin = write_plugin(SCALE)
    result = run_batch(plugin, ["x", "yyy"], params={"times": 2}, backend="serial", attributes=attributes_file,
                       run_dir=tmp_path / "run")
    assert result.as_dict() == {"x": [2], "yyy": [6]}
    entities = load_config(tmp_path / "run")["entities"]
    assert (entities["kind"], entities["count"], entities["values"]) == ("iterable", 2, ["x", "yyy"])
    plugin.unlink()
    again = rerun(tmp_path / "run", out=tmp_path / "again.tsv", record_dir=tmp_path / "run2")
    assert again.same_as_original() is None  # the API run wrote no results file to compare with
    assert read_tsv(tmp_path / "again.tsv") == {"x": ["2"], "yyy": ["6"]}
    assert load_config(tmp_path / "run2")["rerun_of"] == result.report.uuid


def test_idsproc_and_skip_are_captured(tmp_path, write_plugin, attributes_file, ids_file):
    write_plugin(SCALE)
    write_source(tmp_path, "idsproc.py", "def compute_id(entity):\n    return entity.upper()\n")
    ids_file(["a", "bb", "ccc"])
    ids_file(["BB"], name="skip.txt")
    proc = run_cli("plugin.py", "ids.txt", "--attributes", attributes_file, "--idsproc", "idsproc.py", "--skip", "skip.txt",
                   "--out", "out.tsv", "--run-dir", "run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert read_tsv(tmp_path / "out.tsv") == {"A": ["1"], "CCC": ["3"]}
    config = load_config(tmp_path / "run")
    assert config["skip"]["sha256"] == sha256(tmp_path / "skip.txt")
    assert config["idsproc"]["sha256"] == sha256(tmp_path / "idsproc.py")
    assert "return entity.upper()" in config["idsproc"]["source"]["text"]
    # the rerun uses the captured idsproc even after the module changed... which is an input difference
    (tmp_path / "idsproc.py").write_text("def compute_id(entity):\n    return entity\n")
    refused = provbatch("rerun", "run", cwd=tmp_path)
    assert refused.returncode == 1
    assert "idsproc.py: size" in refused.stderr
    allowed = provbatch("rerun", "run", "--allow-changed-inputs", "--out", "again.tsv", cwd=tmp_path)
    assert allowed.returncode == 0, allowed.stderr
    assert read_tsv(tmp_path / "again.tsv") == {"A": ["1"], "CCC": ["3"]}


# --------------------------------------------------------------------------- rerun


def test_rerun_after_the_plugin_changed_reproduces_the_original(scale_run):
    tmp = scale_run["tmp"]
    original = scale_run["out"].read_text()
    scale_run["plugin"].write_text(SCALE.replace("len(entity) * times", "len(entity) * times + 1000"))
    proc = provbatch("rerun", "run", "--out", "again.tsv", cwd=tmp)
    assert proc.returncode == 0, proc.stderr
    assert sorted((tmp / "again.tsv").read_text().splitlines()) == sorted(original.splitlines())
    assert read_tsv(tmp / "again.tsv") == {"a": ["3"], "bb": ["6"], "ccc": ["9"], "dddd": ["12"]}
    assert "scale.py: changed since the run; re-running from the source captured" in proc.stderr
    assert "the results are the same as the original run's" in proc.stderr
    assert (tmp / "again.tsv.log.tsv").read_text().count("seen ") == 4
    report = yaml.safe_load((tmp / "again.tsv.report.yaml").read_text())
    assert report["reason"] == "recompute"
    rerun_record = Path(report["run_dir"])
    assert load_config(rerun_record)["rerun_of"] == load_config(scale_run["run"])["uuid"]
    # the user's files are untouched: the changed plugin is still the changed one, the original results too
    assert "+ 1000" in scale_run["plugin"].read_text()
    assert scale_run["out"].read_text() == original


def test_rerun_after_the_plugin_was_deleted_writes_a_fresh_file_beside_the_record(scale_run):
    scale_run["plugin"].unlink()
    first = provbatch("rerun", "run", cwd=scale_run["tmp"])
    second = provbatch("rerun", "run", cwd=scale_run["tmp"])
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert "gone since the run" in first.stderr
    expected = {"a": ["3"], "bb": ["6"], "ccc": ["9"], "dddd": ["12"]}
    assert read_tsv(scale_run["run"] / "rerun-results.tsv") == expected
    assert read_tsv(scale_run["run"] / "rerun-results.2.tsv") == expected  # never overwrites the first rerun


def test_rerun_refuses_changed_inputs_with_the_list_and_accepts_them_with_the_flag(scale_run):
    tmp = scale_run["tmp"]
    scale_run["ids"].write_text("a\nbb\nccc\neeee\n")  # same size, other content
    scale_run["attrs"].write_text(scale_run["attrs"].read_text() + "# a comment\n")
    proc = provbatch("rerun", "run", "--out", "again.tsv", cwd=tmp)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert "2 input(s) differ from the run; refusing to re-run (--allow-changed-inputs re-runs anyway)" in lines[0]
    assert f"  - {scale_run['ids']}: sha256 changed, same size (entities file)" in lines
    assert any(line.startswith(f"  - {scale_run['attrs']}: size ") and "(attribute definitions" in line for line in lines)
    assert not (tmp / "again.tsv").exists()

    proc = provbatch("rerun", "run", "--out", "again.tsv", "--allow-changed-inputs", cwd=tmp)
    assert proc.returncode == 0, proc.stderr
    assert "input differs (allowed)" in proc.stderr
    assert read_tsv(tmp / "again.tsv") == {"a": ["3"], "bb": ["6"], "ccc": ["9"], "eeee": ["12"]}
    assert "DIFFER from the original" in proc.stderr


def test_rerun_refuses_a_missing_input_and_another_working_directory(scale_run, tmp_path_factory):
    other = tmp_path_factory.mktemp("elsewhere")
    proc = provbatch("rerun", scale_run["run"], cwd=other)
    assert proc.returncode == 1
    assert "working directory: the run was in" in proc.stderr
    scale_run["ids"].unlink()
    proc = provbatch("rerun", "run", cwd=scale_run["tmp"])
    assert proc.returncode == 1
    assert f"  - {scale_run['ids']}: missing (entities file)" in proc.stderr.splitlines()


def test_rerun_refuses_to_resume_into_the_original_results(scale_run):
    proc = provbatch("rerun", "run", "--out", "out.tsv", cwd=scale_run["tmp"])
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "provbatch rerun: error: out.tsv: is the original run's results file; give another --out "
        "(an existing --out is resumed into, so nothing would be computed)"]


def test_rerun_of_a_glob_checks_every_matched_file(tmp_path):
    genomes = tmp_path / "genomes"
    shutil.copytree(REPO / "examples" / "genomes", genomes)
    shutil.copy(REPO / "plugins" / "gc_content.py", tmp_path)
    shutil.copy(REPO / "attribute_definitions.yaml", tmp_path)
    proc = run_cli("gc_content.py", "--glob", "genomes/*.fna*", "--out", "gc.tsv", "--run-dir", "run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    expected = {key.replace("examples/", ""): value for key, value in GC_EXPECTED.items()}
    assert read_tsv(tmp_path / "gc.tsv") == expected
    entities = load_config(tmp_path / "run")["entities"]
    assert entities["kind"] == "glob" and entities["pattern"] == "genomes/*.fna*" and entities["count"] == 6
    assert {f["path"]: f["sha256"] for f in entities["files"]} == {
        f"genomes/{p.name}": sha256(p) for p in genomes.iterdir()}

    proc = provbatch("rerun", "run", "--out", "same.tsv", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert read_tsv(tmp_path / "same.tsv") == expected

    (genomes / "tiny.fna").write_text(">t\nGGGG\n")
    write_source(genomes, "new.fna", ">n\nAT\n")
    proc = provbatch("rerun", "run", "--out", "changed.tsv", cwd=tmp_path)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert "3 input(s) differ" in lines[0]
    assert "  - glob genomes/*.fna*: now matches 7 file(s), the run matched 6 (1 new, 0 no longer matched)" in lines
    assert f"  - {tmp_path / 'genomes/tiny.fna'}: size 132 -> 8 bytes (matched by glob genomes/*.fna*)" in lines
    assert f"  - {tmp_path / 'genomes/new.fna'}: new file matched by glob genomes/*.fna*, not at the run" in lines

    proc = provbatch("rerun", "run", "--out", "changed.tsv", "--allow-changed-inputs", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert read_tsv(tmp_path / "changed.tsv") == {**expected, "genomes/tiny.fna": ["1.0", "4"], "genomes/new.fna": ["0.0", "2"]}


@pytest.mark.parametrize("lang, plugin", [("rust", "rust_plugins/gc_content.rs"), ("nim", "nim_plugins/gc_content.nim"),
                                          ("bash", "plugins/gc_content.sh")])
def test_rerun_of_a_compiled_or_bash_plugin_builds_from_the_captured_source(tmp_path, lang, plugin):
    source = tmp_path / Path(plugin).name
    shutil.copy(REPO / plugin, source)
    shutil.copytree(REPO / "examples" / "genomes", tmp_path / "genomes")
    (tmp_path / "ids.txt").write_text("genomes/ecoli_like.fna\ngenomes/gzipped.fna.gz\ngenomes/tiny.fna\n")
    proc = run_cli(source.name, "ids.txt", "--attributes", REPO / "attribute_definitions.yaml", "--out", "gc.tsv",
                   "--run-dir", "run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    results = read_tsv(tmp_path / "gc.tsv")
    assert results["genomes/tiny.fna"][1] == "120" and results["genomes/gzipped.fna.gz"][1] == "5000"
    config = load_config(tmp_path / "run")
    assert config["plugin"]["lang"] == lang
    assert config["plugin"]["sources"][0]["text"] == (REPO / plugin).read_text()
    source.unlink()
    proc = provbatch("rerun", "run", "--out", "again.tsv", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert read_tsv(tmp_path / "again.tsv") == results
    assert "the results are the same as the original run's" in proc.stderr


# --------------------------------------------------------------------------- show


def test_show_prints_the_provenance_summary(scale_run, monkeypatch):
    config = load_config(scale_run["run"])
    proc = provbatch("show", "run", cwd=scale_run["tmp"])
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    lines = text.splitlines()
    assert lines[0] == f"run          {config['uuid']}"
    assert lines[1] == "status       finished, completed"
    assert "plugin       scale 2.1 (python)" in lines
    assert f"  sha256     {config['plugin']['sha256']}" in lines
    assert "parameters   times=3" in lines
    assert f"entities     file ids.txt ({scale_run['ids'].stat().st_size} bytes, sha256 {sha256(scale_run['ids'])}), column 1" in lines
    assert "counts       computed 4, failed 0, retried 0, skipped 0, duplicates 0, id collisions 0, workers lost 0, no value 0" in lines
    assert f"who          {config['user']} on {config['system']}, reason new_entities" in lines
    assert any(line.startswith("command      ") and "--param times=3" in line for line in lines)


def test_show_finds_a_run_by_its_uuid_under_the_runs_root(tmp_path, write_plugin, attributes_file, ids_file):
    runs = tmp_path / "runs"
    write_plugin(SCALE)
    ids_file(["a"])
    env = {"PROVBATCH_RUNS": str(runs)}
    proc = run_cli("plugin.py", "ids.txt", "--attributes", attributes_file, "--out", "o.tsv", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    (record,) = runs.iterdir()
    uuid = load_config(record)["uuid"]
    shown = run_cli("show", uuid[:8], cwd=tmp_path, env=env, prog="provbatch")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[0] == f"run          {uuid}"
    missing = run_cli("show", "deadbeef", cwd=tmp_path, env=env, prog="provbatch")
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        "provbatch show: error: deadbeef: no such run directory (give its path, or the uuid of a run under $PROVBATCH_RUNS)"]


def test_rerun_of_a_directory_without_run_config_is_a_one_line_error(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = provbatch("rerun", "empty", cwd=tmp_path)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert "empty/run_config.json: not found" in line


def test_nim_plugin_beside_the_bridge_captures_only_its_own_source(tmp_path):
    """nim_plugins/ also holds our bridge: it is provbatch's, not the plugin's, so it is not captured."""
    (tmp_path / "ids.txt").write_text(f"{REPO / 'examples/genomes/tiny.fna'}\n")
    proc = run_cli(REPO / "nim_plugins" / "gc_content.nim", "ids.txt", "--attributes", REPO / "attribute_definitions.yaml",
                   "--out", "gc.tsv", "--run-dir", "run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    plugin = load_config(tmp_path / "run")["plugin"]
    assert [entry["name"] for entry in plugin["sources"]] == ["gc_content.nim"]
    assert all(not dep["path"].startswith(str(REPO)) for dep in plugin["build_dependencies"])


def test_installed_packages_agree_with_importlib_metadata():
    """The fast read of dist-info names gives what importlib.metadata gives (first on sys.path wins)."""
    from importlib.metadata import distributions

    from provbatch.provenance.capture import installed_packages

    expected: dict[str, str] = {}
    for dist in distributions():
        expected.setdefault(dist.metadata["Name"].replace("_", "-").lower(), dist.version)
    assert installed_packages() == tuple(f"{name}=={version}" for name, version in sorted(expected.items()))
    assert any(p.startswith("provbatch==") for p in installed_packages())


def test_loader_options_through_the_api_are_captured_and_used_by_rerun(tmp_path, attributes_file):
    """A Rust plugin whose constants live in a class named Meta: plugin_options reaches the loader,
    run_config records it, and the rerun loads the captured source with it."""
    from test_rust_plugins import META_PLUGIN

    from provbatch import run_batch
    from provbatch.api import rerun

    plugin = write_source(tmp_path, "meta.rs", META_PLUGIN)
    result = run_batch(plugin, ["ab", "c"], params={"times": 2}, backend="serial", attributes=attributes_file,
                       plugin_options={"constants_class": "Meta"}, out=tmp_path / "meta.tsv", run_dir=tmp_path / "run")
    assert result.report.comp_status == "completed"
    assert read_tsv(tmp_path / "meta.tsv") == {"ab": ["4", "AB"], "c": ["2", "C"]}
    assert load_config(tmp_path / "run")["plugin"]["options"] == {"constants_class": "Meta"}
    plugin.unlink()
    again = rerun(tmp_path / "run", out=tmp_path / "again.tsv", record_dir=tmp_path / "run2")
    assert again.same_as_original() is True
    assert read_tsv(tmp_path / "again.tsv") == {"ab": ["4", "AB"], "c": ["2", "C"]}
