"""Rust plugins: real cargo/maturin builds into the session's build cache.

Each plugin is built once per session (module-scoped fixtures); the shared
cargo target dir makes every build after the first one take a few seconds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import provbatch
from conftest import GC_EXPECTED, GC_TYPED, REPO, read_tsv, run_cli, write_source
from provbatch.errors import InterfaceRequirementError, PluginLoadError
from provbatch.plugins.registry import importer, load_spec, loader_for
from provbatch.plugins.cache import artifact_bytes

GC_RS = REPO / "rust_plugins" / "gc_content.rs"
STATE_CRATE = REPO / "rust_plugins" / "state_counter"
GENOMES = sorted((REPO / "examples" / "genomes").iterdir())

#: a plugin exercising the loader's conversions: a renamed constants class,
#: arrays of arrays for PARAMETERS, vectors as results, a tuple-of-tuples return
META_PLUGIN = """\
    use pyo3::prelude::*;

    #[pyclass]
    struct Meta;

    #[pymethods]
    impl Meta {
        #[classattr]
        const ID: &'static str = "meta";
        #[classattr]
        const VERSION: &'static str = "0.1";
        #[classattr]
        const INPUT: &'static str = "any string";
        #[classattr]
        const OUTPUT: [&'static str; 2] = ["length", "upper"];
        #[classattr]
        const PARAMETERS: [[&'static str; 4]; 1] = [["times", "Integer", "1", "multiplies the length"]];
    }

    // #[pyfunction] fn commented_out() {}  -- not registered: comments are skipped
    #[pyfunction]
    #[pyo3(signature = (entity, times = 1, **_kwargs))]
    fn compute(entity: &str, times: usize, _kwargs: Option<&Bound<'_, pyo3::types::PyDict>>)
        -> ((usize, String), (String,)) {
        if entity == "boom" {
            panic!("exploded on {entity}");
        }
        ((entity.len() * times, entity.to_uppercase()), (format!("seen\\t{entity}"),))
    }

    #[pyfunction]
    fn as_vectors(entity: &str) -> (Vec<usize>, Vec<String>) {
        (vec![entity.len()], vec![])
    }
"""

BROKEN_PLUGIN = """\
    use pyo3::prelude::*;

    #[pyfunction]
    fn compute(entity: &str) -> PyResult<((u64,), Vec<String>)> {
        let n = undefined_name + 1;
        Ok(((n,), vec![]))
    }
"""


@pytest.fixture(scope="module")
def gc_module():
    return importer(GC_RS, req_const=["ID", "VERSION", "OUTPUT"], req_func=["compute"])


@pytest.fixture(scope="module")
def state_module():
    return importer(STATE_CRATE, req_func=["compute", "initialize", "finalize"])


@pytest.fixture(scope="module")
def meta_module(tmp_path_factory):
    folder = tmp_path_factory.mktemp("meta")
    return importer(write_source(folder, "meta.rs", META_PLUGIN), constants_class="Meta")


def python_gc(path: Path, digits: int = 4):
    sys.path.insert(0, str(REPO / "plugins"))
    try:
        import gc_content
    finally:
        sys.path.remove(str(REPO / "plugins"))
    return gc_content.compute(str(path), digits=digits)


# ---------------------------------------------------------------- finding the Python items (no build)


def test_scan_finds_items_outside_comments_and_strings():
    from provbatch.plugins.rust.build import scan_items

    source = textwrap.dedent(r"""
        // #[pyfunction] fn in_a_comment() {}
        /* #[pyfunction] /* nested */ fn in_a_block() {} */
        const S: &str = "#[pyfunction] fn in_a_string() {}";
        const R: &str = r#"#[pyclass] struct InARawString; "quoted""#;
        const Q: char = '"';
        fn lifetime<'a>(x: &'a str) -> &'a str { x }
        #[pyfunction]
        /// documented
        #[pyo3(signature = (entity, digits = 4, **_kwargs))]
        pub(crate) fn compute(entity: &str, digits: usize) {}
        #[pyo3::pyfunction] fn initialize() {}
        #[pyclass(eq, eq_int)]
        #[derive(PartialEq)]
        pub enum Mode { A }
        #[pyclass]
        struct Constants;
    """)
    items = scan_items(source)
    assert items.functions == ("compute", "initialize")
    assert items.classes == ("Mode", "Constants")
    assert items.user_module is None


def test_scan_reads_the_name_of_a_user_pymodule():
    from provbatch.plugins.rust.build import scan_items

    assert scan_items("#[pymodule]\nfn my_plugin(m: &Bound<'_, PyModule>) {}").user_module == "my_plugin"
    assert scan_items('#[pymodule(name = "renamed")]\nmod inner {}').user_module == "renamed"
    assert scan_items('#[pymodule]\n#[pyo3(name = "other")]\nfn x() {}').user_module == "other"
    assert scan_items("#[pymodule_export]\nuse super::compute;").user_module is None


# ---------------------------------------------------------------- results and constants


@pytest.mark.parametrize("fasta", GENOMES, ids=lambda p: p.name)
def test_gc_results_equal_the_python_plugin(gc_module, fasta):
    results, logs = gc_module.compute(str(fasta), digits=4)
    expected_results, expected_logs = python_gc(fasta)
    assert list(results) == expected_results
    assert list(logs) == expected_logs
    assert [str(value) for value in results] == GC_EXPECTED[f"examples/genomes/{fasta.name}"]


def test_gc_known_values_plain_and_gzipped(gc_module):
    genomes = REPO / "examples" / "genomes"
    assert gc_module.compute(str(genomes / "ecoli_like.fna"))[0] == (0.5066, 5000)
    assert gc_module.compute(str(genomes / "plasmid_mix.fna"))[0] == (0.4147, 3200)
    assert gc_module.compute(str(genomes / "gzipped.fna.gz"))[0] == (0.5066, 5000)  # flate2, declared by comment
    assert gc_module.compute(str(genomes / "ecoli_like.fna"), digits=2)[0] == (0.51, 5000)


def test_gc_headers_split_across_buffer_blocks(gc_module, tmp_path):
    """Records far apart and lines of every length: the block boundaries (1 MiB) fall anywhere."""
    fasta = tmp_path / "big.fna"
    with open(fasta, "w") as out:
        for i in range(40):
            out.write(f">rec{i} some > description\n")
            out.write(("ACGTTGCAnngc>" * (i + 1) + "\n") * (3000 + 17 * i))
    assert list(gc_module.compute(str(fasta), digits=6)[0]) == python_gc(fasta, digits=6)[0]


def test_gc_missing_file_names_it(gc_module, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.fna"):
        gc_module.compute(str(tmp_path / "nope.fna"))


def test_constants_become_module_attributes(gc_module):
    assert gc_module.ID == "gc_content_rs" and gc_module.VERSION == "1.0.0"
    assert gc_module.OUTPUT == ["gc_content", "genome_size"]
    assert gc_module.PARAMETERS == [("digits", "Integer", "4", "decimal digits the GC content is rounded to")]
    assert gc_module.__lang__ == "rust"
    spec = gc_module.__provbatch_spec__
    assert spec.lang == "rust" and spec.source == str(GC_RS)
    assert Path(spec.artifact).is_file() and spec.process_local_state is False


def test_constants_class_option_and_return_shapes(meta_module):
    assert meta_module.ID == "meta"
    assert meta_module.OUTPUT == ["length", "upper"]
    assert meta_module.PARAMETERS == [("times", "Integer", "1", "multiplies the length")]
    assert meta_module.compute("abc", times=2) == ((6, "ABC"), ("seen\tabc",))
    assert meta_module.as_vectors("abcd") == ([4], [])
    assert not hasattr(meta_module, "commented_out")


def test_a_panic_is_an_ordinary_error(meta_module):
    with pytest.raises(RuntimeError, match="Rust panic in compute: exploded on boom"):
        meta_module.compute("boom")
    assert meta_module.compute("ok") == ((2, "OK"), ("seen\tok",))


# ---------------------------------------------------------------- state


def test_state_lifecycle_crate_directory(state_module, tmp_path):
    summary = tmp_path / "summary.tsv"
    genomes = REPO / "examples" / "genomes"
    state = state_module.initialize(summary=str(summary))
    assert state_module.compute(str(genomes / "plasmid_mix.fna"), state=state) == ([2], ["files_in_this_worker\t1"])
    assert state_module.compute(str(genomes / "tiny.fna"), state=state) == ([1], ["files_in_this_worker\t2"])
    assert (state.files, state.records, state.finalized) == (2, 3, False)
    state_module.finalize(state)
    assert state.finalized and summary.read_text() == "files\t2\trecords\t3\n"
    assert state_module.__provbatch_spec__.process_local_state is True  # a #[pyclass] does not pickle
    assert type(state).__module__ == state_module.__name__


# ---------------------------------------------------------------- the build cache


def test_second_import_is_a_cache_hit(gc_module):
    artifact = Path(gc_module.__provbatch_spec__.artifact)
    mtime = artifact.stat().st_mtime_ns
    again = importer(GC_RS)
    assert loader_for(".rs").last_built is False
    assert again is gc_module  # the same build: the same module
    assert artifact.stat().st_mtime_ns == mtime


def test_changed_source_rebuilds_and_both_versions_load(gc_module, tmp_path, caplog):
    copy = tmp_path / "gc_copy.rs"
    copy.write_text(GC_RS.read_text().replace('"gc_content_rs"', '"gc_content_rs_v2"'))
    before = sorted(tmp_path.iterdir())
    with caplog.at_level(logging.INFO, logger="provbatch.build"):
        first = importer(copy)
    assert loader_for(".rs").last_built is True
    copy.write_text(copy.read_text() + "\n// a comment changes the source hash\n")
    with caplog.at_level(logging.INFO, logger="provbatch.build"):
        second = importer(copy)
    assert loader_for(".rs").last_built is True
    reasons = [r.getMessage() for r in caplog.records if "building" in r.getMessage()]
    assert "no cached build" in reasons[0] and "source changed" in reasons[1]
    assert first.ID == second.ID == "gc_content_rs_v2" and gc_module.ID == "gc_content_rs"
    assert first.__name__ != second.__name__ != gc_module.__name__
    fasta = str(REPO / "examples" / "genomes" / "tiny.fna")
    assert first.compute(fasta) == second.compute(fasta) == gc_module.compute(fasta)
    assert sorted(tmp_path.iterdir()) == before  # nothing written next to the plugin


def test_concurrent_loads_build_once(gc_module, tmp_path):
    plugin = tmp_path / "race.rs"
    plugin.write_text(GC_RS.read_text() + f"\n// {tmp_path.name}\n")
    code = textwrap.dedent(f"""
        import logging, sys
        logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
        from provbatch.plugins.registry import importer, loader_for
        module = importer({str(plugin)!r})
        print("BUILT" if loader_for(".rs").last_built else "LOADED", module.compute({str(GENOMES[0])!r})[0])
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    lines = [out.strip().splitlines()[-1] for out, _ in outputs]
    assert sorted(line.split()[0] for line in lines) == ["BUILT", "LOADED"]


# ---------------------------------------------------------------- errors


def test_compile_error_points_at_the_users_file(gc_module, tmp_path):
    plugin = write_source(tmp_path, "broken.rs", BROKEN_PLUGIN)
    with pytest.raises(PluginLoadError) as caught:
        importer(plugin)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{plugin}: Rust build failed: error[E0425]: cannot find value `undefined_name`")
    assert f" at {plugin}:5:13" in message
    log_path = Path(message.rsplit("full build log: ", 1)[1])
    assert log_path.is_file() and "undefined_name" in log_path.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.rs"]


def test_compile_error_in_a_crate_points_at_the_crate_file(state_module, tmp_path):
    crate = tmp_path / "crate"
    shutil.copytree(STATE_CRATE, crate, ignore=shutil.ignore_patterns("target"))
    lib = crate / "src" / "lib.rs"
    lines = lib.read_text().splitlines()
    number = next(i for i, line in enumerate(lines, start=1) if "state.files += 1;" in line)
    lines[number - 1] = lines[number - 1].replace("state.files += 1;", "state.files += not_defined;")
    lib.write_text("\n".join(lines) + "\n")
    before = sorted(p.relative_to(crate) for p in crate.rglob("*"))
    with pytest.raises(PluginLoadError, match=rf"error\[E0425\]: cannot find value `not_defined` .* at {lib}:{number}:\d+;"):
        importer(crate)
    assert sorted(p.relative_to(crate) for p in crate.rglob("*")) == before  # no Cargo.lock, no target/


def test_a_users_own_pymodule(gc_module, tmp_path):
    plugin = write_source(tmp_path, "own.rs", """\
        use pyo3::prelude::*;

        #[pyfunction]
        fn compute(entity: &str) -> ((usize,), Vec<String>) {
            ((entity.len(),), vec![])
        }

        #[pymodule]
        fn own_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
            m.add_function(wrap_pyfunction!(compute, m)?)?;
            m.add("ID", "own")?;
            Ok(())
        }
    """)
    module = importer(plugin, req_const=["ID"], req_func=["compute"])
    assert module.__name__.endswith(".own_module") and module.ID == "own"
    assert module.compute("abc") == ((3,), [])


def test_compile_error_exit_code_on_the_command_line(gc_module, tmp_path):
    plugin = write_source(tmp_path, "broken.rs", BROKEN_PLUGIN)
    proc = run_cli(plugin, REPO / "examples" / "genomes.txt")
    assert proc.returncode == 1
    assert f"{plugin}:5:13" in proc.stderr and "Traceback" not in proc.stderr


def test_bad_dependency_comment_is_reported_with_its_line(gc_module, tmp_path):
    plugin = write_source(tmp_path, "dep.rs", '// the plugin\n// [dependencies] flate2 = 1.0.0\nuse pyo3::prelude::*;\n')
    with pytest.raises(PluginLoadError, match=rf"^{plugin}:2: bad '// \[dependencies\]' line"):
        importer(plugin)  # not TOML: refused before any build
    plugin.write_text('// the plugin\n// [dependencies] flate2 = 1.0\nuse pyo3::prelude::*;\n')
    with pytest.raises(PluginLoadError, match=rf"^{plugin}: Rust build failed: error: invalid type: floating point .* at {plugin}:2;"):
        importer(plugin)  # TOML, but not a dependency cargo understands


def test_unknown_crate_is_reported_at_its_comment(gc_module, tmp_path):
    plugin = write_source(tmp_path, "dep.rs", '// [dependencies] provbatch_no_such_crate_xyz = "1"\nuse pyo3::prelude::*;\n')
    with pytest.raises(PluginLoadError, match=rf"no matching package named `provbatch_no_such_crate_xyz`.* at {plugin}:1;"):
        importer(plugin)


def test_missing_toolchain_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PluginLoadError, match=r"'cargo' was not found on PATH; install Rust .*rustup"):
        importer(GC_RS)


def test_missing_names_and_bad_options(gc_module):
    with pytest.raises(InterfaceRequirementError, match="required function 'no_such_function'"):
        importer(GC_RS, req_func=["no_such_function"])
    with pytest.raises(PluginLoadError, match="no #\\[pyclass\\] named 'Metadata'"):
        importer(GC_RS, constants_class="Metadata")
    with pytest.raises(PluginLoadError, match="unknown option"):
        importer(GC_RS, const_prefix="x")
    assert importer(GC_RS, opt_func=["initialize"]).initialize is None


# ---------------------------------------------------------------- workers


def test_load_spec_in_this_process(gc_module):
    module = load_spec(gc_module.__provbatch_spec__)
    assert module.compute(str(GENOMES[0]))[0] == (0.5066, 5000)


def test_a_worker_without_the_file_gets_the_shipped_bytes(gc_module, tmp_path):
    """Another node: its cache lacks the build; the spec carries the bytes (Ray puts an ObjectRef there)."""
    spec = gc_module.__provbatch_spec__
    moved = tmp_path / "driver" / Path(spec.artifact).parent.name / Path(spec.artifact).name
    node_cache = tmp_path / "node_cache"
    shipped = dataclasses.replace(spec, artifact=str(moved)).with_blob(artifact_bytes(spec))
    code = textwrap.dedent("""
        import pickle, sys
        from provbatch.plugins.registry import load_spec
        module = load_spec(pickle.loads(sys.stdin.buffer.read()))
        print(module.__file__)
        print(module.compute(sys.argv[1])[0])
    """)
    env = {**os.environ, "PROVBATCH_CACHE": str(node_cache), "PATH": "/nonexistent"}  # no cargo: cannot build
    proc = subprocess.run([sys.executable, "-c", code, str(GENOMES[0])], input=pickle.dumps(shipped),
                          capture_output=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    written, result = proc.stdout.decode().splitlines()
    assert Path(written).parent.parent == node_cache / "rust" and result == "(0.5066, 5000)"
    assert hashlib.sha256(Path(written).read_bytes()).hexdigest() == spec.artifact_sha256

    unshipped = dataclasses.replace(spec, artifact=str(moved))
    proc = subprocess.run([sys.executable, "-c", code, str(GENOMES[0])], input=pickle.dumps(unshipped),
                          capture_output=True, env={**env, "PROVBATCH_CACHE": str(tmp_path / "empty")}, timeout=120)
    assert proc.returncode != 0 and b"workers never build" in proc.stderr


# ---------------------------------------------------------------- through the engine


def test_cli_serial_gc_equals_expected(gc_module, tmp_path):
    out = tmp_path / "gc.tsv"
    proc = run_cli(GC_RS, "examples/genomes.txt", "--backend", "serial", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert read_tsv(out) == GC_EXPECTED


def test_cli_pool_state_counter_runs_state_per_worker(state_module, tmp_path):
    out, summary = tmp_path / "records.tsv", tmp_path / "summary.tsv"
    proc = run_cli(STATE_CRATE, "examples/genomes.txt", "--backend", "pool", "--workers", "2",
                   "--param", f"summary={summary}", "--out", out)
    assert proc.returncode == 0, proc.stderr
    rows = read_tsv(out)
    assert rows["examples/genomes/plasmid_mix.fna"] == ["2"] and rows["examples/genomes/tiny.fna"] == ["1"]
    totals = [line.split("\t") for line in summary.read_text().splitlines()]
    assert 1 <= len(totals) <= 2 and sum(int(t[1]) for t in totals) == 6  # one line per worker process


def test_check_accepts_rust_plugins(gc_module, state_module):
    for plugin in (GC_RS, STATE_CRATE):
        proc = run_cli("check", plugin, prog="provbatch")
        assert proc.returncode == 0, proc.stderr


def test_run_batch_serial_with_state(state_module, tmp_path):
    summary = tmp_path / "summary.tsv"
    genomes = [str(REPO / "examples" / "genomes" / name) for name in ("plasmid_mix.fna", "tiny.fna", "ecoli_like.fna")]
    result = provbatch.run_batch(STATE_CRATE, genomes, params={"summary": str(summary)}, backend="serial")
    assert not result.failures
    assert [row[1] for row in result] == [[2], [1], [1]]
    assert summary.read_text() == "files\t3\trecords\t4\n"


def test_run_batch_a_panic_fails_one_entity_only(meta_module, attributes_file):
    from provbatch.plugins.loading import load_plugin

    plugin = load_plugin(meta_module.__provbatch_spec__.source, constants_class="Meta")  # loader options
    result = provbatch.run_batch(plugin, ["ab", "boom", "abc"], params={"times": 2}, backend="serial",
                                 attributes=attributes_file)
    assert result.as_dict() == {"ab": [4, "AB"], "abc": [6, "ABC"]}
    assert [(f.entity, f.error_class) for f in result.failures] == [("boom", "RuntimeError")]
    assert "exploded on boom" in result.failures[0].message


@pytest.mark.ray
def test_run_batch_on_ray(gc_module, ray_session):
    genomes = [str(path) for path in GENOMES]
    result = provbatch.run_batch(GC_RS, genomes, backend="ray", workers=2)
    assert not result.failures
    assert {Path(entity).name: results for entity, results, _ in result} == {
        Path(name).name: values for name, values in GC_TYPED.items()
    }


@pytest.mark.ray
def test_a_ray_worker_writes_the_shipped_object_into_its_cache(gc_module, ray_session, tmp_path):
    """The bytes travel as a Ray ObjectRef inside the spec; the worker resolves it and never builds."""
    spec = gc_module.__provbatch_spec__
    moved = tmp_path / "elsewhere" / Path(spec.artifact).parent.name / Path(spec.artifact).name
    shipped = dataclasses.replace(spec, artifact=str(moved)).with_blob(ray_session.put(artifact_bytes(spec)))
    node_cache = tmp_path / "node_cache"

    @ray_session.remote
    def load_on_worker(spec, cache, fasta):
        saved = os.environ.get("PROVBATCH_CACHE")
        os.environ["PROVBATCH_CACHE"] = cache
        try:
            from provbatch.plugins.registry import load_spec as load

            return load(spec).compute(fasta)[0]
        finally:
            if saved is None:
                os.environ.pop("PROVBATCH_CACHE", None)
            else:
                os.environ["PROVBATCH_CACHE"] = saved

    result = ray_session.get(load_on_worker.remote(shipped, str(node_cache), str(GENOMES[0])))
    assert tuple(result) == (0.5066, 5000)
    written = node_cache / "rust" / moved.parent.name / moved.name
    assert hashlib.sha256(written.read_bytes()).hexdigest() == spec.artifact_sha256
