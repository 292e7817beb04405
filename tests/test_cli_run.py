"""batch-compute on real files: results, logs, report, params, entities, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import GC_EXPECTED, REPO, read_tsv, run_cli

LENGTH_PLUGIN = """
    ID = "length"
    VERSION = "1"
    INPUT = "any string"
    OUTPUT = ["length", "upper"]
    PARAMETERS = [("times", "Integer", "1", "multiplies the length"),
                  ("shout", "Boolean", "false", "append ! to upper")]

    def compute(entity, times=1, shout=False, **kwargs):
        assert isinstance(times, int) and isinstance(shout, bool)
        return [len(entity) * times, entity.upper() + ("!" if shout else "")], [f"seen\\t{entity}"]
"""


def test_gc_plugin_on_examples_serial(tmp_path):
    out, log, report = tmp_path / "gc.tsv", tmp_path / "gc.log", tmp_path / "gc.yaml"
    proc = run_cli("plugins/gc_content.py", "examples/genomes.txt", "--backend", "serial",
                   "--out", out, "--log", log, "--report", report, "--reason", "new_entities", "--user", "alice")
    assert proc.returncode == 0, proc.stderr
    assert read_tsv(out) == GC_EXPECTED
    assert list(read_tsv(out)) == list(GC_EXPECTED)  # serial keeps input order
    logs = log.read_text().splitlines()
    assert "examples/genomes/plasmid_mix.fna\trecords\t2" in logs and len(logs) == 6
    doc = yaml.safe_load(report.read_text())
    assert doc["plugin_id"] == "gc_content_py" and doc["plugin_version"] == "1.0.0"
    assert doc["plugin_lang"] == "python" and len(doc["plugin_sha256"]) == 64
    assert doc["n_units"] == 6 and doc["n_failed"] == 0 and doc["n_skipped"] == 0
    assert doc["comp_status"] == "completed" and doc["reason"] == "new_entities" and doc["user_id"] == "alice"
    assert doc["parameters"] == {"digits": 4} and doc["backend"] == "serial"


def test_gc_plugin_on_local_pool_with_param(tmp_path):
    out = tmp_path / "gc.tsv"
    proc = run_cli("plugins/gc_content.py", "examples/genomes.txt", "--backend", "pool", "--workers", "2",
                   "--param", "digits=2", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert read_tsv(out)["examples/genomes/ecoli_like.fna"] == ["0.51", "5000"]
    assert read_tsv(out)["examples/genomes/staph_like.fna"] == ["0.33", "3000"]
    report = yaml.safe_load((tmp_path / "gc.tsv.report.yaml").read_text())  # default report path
    assert report["backend"] == "pool" and report["workers"] == 2 and report["parameters"] == {"digits": 2}


def test_results_to_stdout_and_logs_to_stderr(write_plugin, attributes_file, ids_file):
    plugin = write_plugin(LENGTH_PLUGIN)
    ids = ids_file(["abc", "", "de", "abc"])  # a blank line and a duplicate
    proc = run_cli(plugin, ids, "--attributes", attributes_file, "--param", "times=3", "--param", "shout=yes")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "abc\t9\tABC!\nde\t6\tDE!\n"
    assert "abc\tseen\tabc" in proc.stderr.splitlines()


def test_duplicates_are_computed_once_and_counted(tmp_path, write_plugin, attributes_file, ids_file):
    plugin = write_plugin(LENGTH_PLUGIN)
    out = tmp_path / "out.tsv"
    proc = run_cli(plugin, ids_file(["a", "bb", "a", "a", "ccc"]), "--attributes", attributes_file, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert read_tsv(out) == {"a": ["1", "A"], "bb": ["2", "BB"], "ccc": ["3", "CCC"]}
    report = yaml.safe_load((tmp_path / "out.tsv.report.yaml").read_text())
    assert report["n_duplicates"] == 2 and report["n_units"] == 3


def test_params_file_and_param_override(tmp_path, write_plugin, attributes_file, ids_file):
    plugin = write_plugin(LENGTH_PLUGIN)
    params = tmp_path / "params.yaml"
    params.write_text("times: 2\nshout: true\n")
    proc = run_cli(plugin, ids_file(["xy"]), "--attributes", attributes_file, "--params", params, "--param", "times=5")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "xy\t10\tXY!\n"


def test_tsv_column_and_stdin(write_plugin, attributes_file, tmp_path):
    plugin = write_plugin(LENGTH_PLUGIN)
    tsv = tmp_path / "table.tsv"
    tsv.write_text("1\talpha\tx\n2\tbe\ty\n")
    proc = run_cli(plugin, tsv, "--col", "2", "--attributes", attributes_file)
    assert proc.stdout == "alpha\t5\tALPHA\nbe\t2\tBE\n", proc.stderr
    proc = run_cli(plugin, "-", "--attributes", attributes_file, stdin="q\nrr\n")
    assert proc.stdout == "q\t1\tQ\nrr\t2\tRR\n", proc.stderr


def test_glob_entities(tmp_path):
    out = tmp_path / "gc.tsv"
    proc = run_cli("plugins/gc_content.py", "--glob", "examples/genomes/*.fna", "--out", out)
    assert proc.returncode == 0, proc.stderr
    expected = {k: v for k, v in GC_EXPECTED.items() if k.endswith(".fna")}
    assert read_tsv(out) == expected


def test_skip_file_and_idsproc(tmp_path, write_plugin, attributes_file, ids_file):
    plugin = write_plugin(LENGTH_PLUGIN)
    idsproc = tmp_path / "idsproc.py"
    idsproc.write_text("def compute_id(entity):\n    return 'id_' + entity\n")
    skip = tmp_path / "skip.tsv"
    skip.write_text("id_bb\tsome note\n")
    out = tmp_path / "out.tsv"
    proc = run_cli(plugin, ids_file(["a", "bb", "ccc"]), "--attributes", attributes_file,
                   "--idsproc", idsproc, "--skip", skip, "--out", out)
    assert proc.returncode == 0, proc.stderr
    # ids mode, as in prenacs 1.2: compute gets the processed id, and the rows are keyed by it
    assert read_tsv(out) == {"id_a": ["4", "ID_A"], "id_ccc": ["6", "ID_CCC"]}
    report = yaml.safe_load((tmp_path / "out.tsv.report.yaml").read_text())
    assert report["n_skipped"] == 1


def test_resume_appends_and_skips_done_ids(tmp_path, write_plugin, attributes_file, ids_file):
    plugin = write_plugin(LENGTH_PLUGIN)
    out = tmp_path / "out.tsv"
    # a previous run computed "a" and was killed while writing "bb" (torn line)
    out.write_text("a\t1\tA\nbb\t2")
    proc = run_cli(plugin, ids_file(["a", "bb", "ccc"]), "--attributes", attributes_file, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert out.read_text() == "a\t1\tA\nbb\t2\tBB\nccc\t3\tCCC\n"
    first = yaml.safe_load((tmp_path / "out.tsv.report.yaml").read_text())  # one document, as prenacs writes it
    assert first["n_skipped"] == 1 and first["n_units"] == 2
    # a second resume computes nothing; the report is now that run's, the first run stays in its record
    proc = run_cli(plugin, ids_file(["a", "bb", "ccc"]), "--attributes", attributes_file, "--out", out)
    assert proc.returncode == 0 and out.read_text().count("\n") == 3
    second = yaml.safe_load((tmp_path / "out.tsv.report.yaml").read_text())
    assert second["n_units"] == 0 and second["n_skipped"] == 3 and first["uuid"] != second["uuid"]
    assert json.loads((Path(first["run_dir"]) / "manifest.json").read_text())["counts"]["computed"] == 2


def test_wrong_number_of_values_fails_that_entity_only(tmp_path, write_plugin, attributes_file, ids_file):
    plugin = write_plugin("""
        ID = "bad"; VERSION = "1"; INPUT = "x"; OUTPUT = ["length", "upper"]
        def compute(entity, **kwargs):
            if entity == "bad":
                return [1], []
            if entity == "boom":
                raise ValueError("cannot compute boom")
            return [len(entity), entity.upper()], []
        """)
    out, log = tmp_path / "out.tsv", tmp_path / "log.tsv"
    proc = run_cli(plugin, ids_file(["ok", "bad", "boom", "fine"]), "--attributes", attributes_file,
                   "--out", out, "--log", log)
    assert proc.returncode == 3, proc.stderr  # some entities failed: EXIT_ENTITIES_FAILED
    assert read_tsv(out) == {"ok": ["2", "OK"], "fine": ["4", "FINE"]}
    logs = log.read_text()
    assert "bad\terror\tResultValueError: compute returned 1 value(s), OUTPUT declares 2" in logs
    assert "boom\terror\tValueError: cannot compute boom" in logs
    assert "2 entities failed" in proc.stderr
    report = yaml.safe_load((tmp_path / "out.tsv.report.yaml").read_text())
    assert report["n_failed"] == 2 and report["comp_status"] == "partial"


def test_provbatch_run_is_batch_compute(tmp_path):
    proc = run_cli("run", "plugins/gc_content.py", "examples/genomes.txt", "--backend", "serial", prog="provbatch")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "examples/genomes/ecoli_like.fna\t0.5066\t5000"


def test_help_does_not_import_ray():
    import subprocess
    import sys

    code = "import sys; from provbatch.cli import provbatch; import provbatch as p; p.run_batch; assert 'ray' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0
    assert run_cli("--help").returncode == 0


@pytest.mark.parametrize("backend", ["serial", "pool", "auto"])
def test_boolean_and_integer_outputs_through_the_compiled_chunk_loop(tmp_path, write_plugin, attributes_file, backend):
    # the chunk loop is generated source per OUTPUT: a Boolean field beside others must compile on every
    # supported Python (a nested double quote inside the line's f-string did not before 3.12)
    write_plugin('''
        ID = "flags"
        VERSION = "1.0.0"
        INPUT = "any entity id"
        OUTPUT = ["flag", "length", "upper"]
        METHOD = "a Boolean, an Integer and a String"
        PARAMETERS = []

        def compute(entity, **kwargs):
            return [len(entity) > 3, len(entity), entity.upper()], []
        ''', "flags.py")
    (tmp_path / "ids.txt").write_text("ab\nabcd\nxyz12\n")
    result = run_cli("flags.py", "ids.txt", "--backend", backend, "--workers", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.splitlines()) == ["ab\tfalse\t2\tAB", "abcd\ttrue\t4\tABCD", "xyz12\ttrue\t5\tXYZ12"]
