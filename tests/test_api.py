"""The Python API: run_batch, iter_batch, importer; installed plugins found by name."""

from __future__ import annotations

import gc
import os

import pytest

import provbatch
from conftest import GC_EXPECTED, GC_TYPED, REPO, install_plugin_package, run_cli
from provbatch import InterfaceRequirementError, importer
from provbatch.errors import PluginLoadError

GC = REPO / "plugins" / "gc_content.py"


def test_run_batch_serial_exact_values():
    os.chdir(REPO)
    result = provbatch.run_batch(GC, list(GC_EXPECTED), params={"digits": 3}, backend="serial")
    assert result.as_dict()["examples/genomes/ecoli_like.fna"] == [0.507, 5000]
    assert len(result) == 6 and result.failures == []
    assert result.report.comp_status == "completed" and result.report.parameters == {"digits": 3}
    entity, values, logs = next(iter(result))
    assert entity == "examples/genomes/ecoli_like.fna" and logs == ["records\t1"]


def test_iter_batch_streams_and_records_failures(tmp_path):
    os.chdir(REPO)
    entities = list(GC_EXPECTED) + [str(tmp_path / "missing.fna")]
    run = provbatch.iter_batch(GC, entities, backend="pool", workers=2)
    seen = {entity: values for entity, values, _logs in run}
    assert seen == GC_TYPED
    assert [f.entity for f in run.failures] == [str(tmp_path / "missing.fna")]
    assert run.failures[0].error_class == "FileNotFoundError" and "Traceback" in run.failures[0].traceback
    assert run.report.comp_status == "partial" and run.report.n_failed == 1


def test_iter_batch_stopped_early_still_finalizes(tmp_path, write_plugin, attributes_file):
    journal = tmp_path / "journal"
    plugin = write_plugin(f"""
        ID = "p"; VERSION = "1"; INPUT = "x"; OUTPUT = ["length"]
        def initialize(**kw):
            return []
        def compute(entity, state=None, **kw):
            return [len(entity)], []
        def finalize(state):
            open({str(journal)!r}, "a").write("finalized\\n")
        """)
    with provbatch.iter_batch(plugin, (str(i) for i in range(100000)), backend="pool", workers=2,
                              attributes=attributes_file) as run:
        for index, _row in enumerate(run):
            if index == 10:
                break
    assert journal.read_text() == "finalized\n"
    assert run.report.comp_status == "partial" and run.report.n_units >= 11


def test_iter_batch_row_iterator_closed_stops_the_run(tmp_path, write_plugin, attributes_file):
    journal = tmp_path / "journal"
    plugin = write_plugin(f"""
        ID = "p"; VERSION = "1"; INPUT = "x"; OUTPUT = ["length"]
        def initialize(**kw):
            return None
        def compute(entity, **kw):
            return [len(entity)], []
        def finalize(state):
            open({str(journal)!r}, "a").write("finalized\\n")
        """)
    run = provbatch.iter_batch(plugin, [str(i) for i in range(5000)], backend="serial", attributes=attributes_file)
    rows = iter(run)
    assert next(rows) == ("0", [1], [])
    rows.close()  # the caller's own iterator closed, without run.close()
    assert journal.read_text() == "finalized\n"
    assert run.report.comp_status == "partial" and "stopped by the caller before the end" in run.report.remarks


def test_run_batch_keeps_callers_collector_settings_and_collects_plugin_cycles(tmp_path, write_plugin, attributes_file):
    """run_batch defers the collector's full passes while it keeps rows: the caller's thresholds
    come back (also after a failed finalize), and the plugin's cyclic garbage is collected meanwhile."""
    plugin = write_plugin("""
        ID = "p"; VERSION = "1"; INPUT = "x"; OUTPUT = ["length"]
        collected = [0]
        class Cycle:
            def __init__(self):
                self.me = self
            def __del__(self):
                collected[0] += 1
        def compute(entity, **kw):
            Cycle()
            return [collected[0]], []
        """)
    failing = write_plugin("""
        ID = "p"; VERSION = "1"; INPUT = "x"; OUTPUT = ["length"]
        def initialize(**kw):
            return None
        def compute(entity, **kw):
            return [len(entity)], []
        def finalize(state):
            raise RuntimeError("finalize broke")
        """, name="failing.py")
    before = gc.get_threshold()
    gc.set_threshold(500, 7, 9)
    try:
        result = provbatch.run_batch(plugin, [str(i) for i in range(4000)], backend="serial", attributes=attributes_file)
        assert gc.get_threshold() == (500, 7, 9)
        counts = [values[0] for _entity, values, _logs in result]
        assert len(counts) == 4000 and counts == sorted(counts)
        assert counts[-1] > 3000  # collected during the run, not only after it
        with pytest.raises(provbatch.errors.FinalizeError, match="finalize broke"):
            provbatch.run_batch(failing, ["a", "bb"], backend="serial", attributes=attributes_file)
        assert gc.get_threshold() == (500, 7, 9)
    finally:
        gc.set_threshold(*before)


@pytest.mark.ray
def test_api_reuses_callers_ray(ray_session):
    os.chdir(REPO)
    result = provbatch.run_batch(GC, list(GC_EXPECTED), backend="auto", workers=2)
    assert result.report.backend == "ray"  # Ray already initialized by the caller: used, not restarted
    assert result.as_dict() == GC_TYPED
    assert ray_session.is_initialized()


def test_importer_required_and_optional_names(write_plugin):
    plugin = write_plugin("A = 1\ndef f():\n    return 2\n")
    module = importer(plugin, req_const=["A"], opt_const=["B"], req_func=["f"], opt_func=["g"])
    assert module.A == 1 and module.B is None and module.g is None and module.__lang__ == "python"
    with pytest.raises(InterfaceRequirementError, match=f"{plugin}: required constant 'Z'"):
        importer(plugin, req_const=["Z"])
    with pytest.raises(InterfaceRequirementError, match="required function 'h'"):
        importer(plugin, req_func=["h"])


def test_importer_writes_nothing_and_keeps_cwd(tmp_path, write_plugin):
    helper = tmp_path / "helper_mod.py"
    helper.write_text("VALUE = 5\n")
    plugin = write_plugin("import helper_mod\nA = helper_mod.VALUE\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    cwd = os.getcwd()
    assert importer(plugin).A == 5
    assert os.getcwd() == cwd
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no __pycache__


def test_importer_unknown_suffix(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("")
    with pytest.raises(PluginLoadError, match="unsupported plugin type '.txt'"):
        importer(path)


@pytest.fixture(scope="module")
def installed_plugins(tmp_path_factory):
    """A small package registering two plugins under 'provbatch.plugins', pip-installed into a target dir."""
    return install_plugin_package(
        tmp_path_factory.mktemp("pkg"),
        "pbtest_plugins",
        {
            "__init__.py": "import os\nLENGTH_PLUGIN = os.path.join(os.path.dirname(__file__), 'length_file.py')\n",
            "upper.py": """
                ID = "upper_mod"; VERSION = "2.0"; INPUT = "a string"; OUTPUT = ["upper"]
                def compute(entity, **kwargs):
                    return [entity.upper()], []
                """,
            "length_file.py": """
                ID = "length_file"; VERSION = "1.0"; INPUT = "a string"; OUTPUT = ["length"]
                def compute(entity, **kwargs):
                    return [len(entity)], []
                """,
        },
        {"upper": "pbtest_plugins.upper", "length": "pbtest_plugins:LENGTH_PLUGIN"},
    )


def test_installed_plugins_by_name(installed_plugins, attributes_file, ids_file):
    env = {"PYTHONPATH": str(installed_plugins)}
    ids = ids_file(["ab", "cde"])
    for backend in ("serial", "pool"):
        proc = run_cli("upper", ids, "--attributes", attributes_file, "--backend", backend, "--workers", "2", env=env)
        assert proc.returncode == 0, proc.stderr
        assert sorted(proc.stdout.splitlines()) == ["ab\tAB", "cde\tCDE"]
    proc = run_cli("length", ids, "--attributes", attributes_file, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "ab\t2\ncde\t3\n"
    proc = run_cli("check", "upper", "--attributes", attributes_file, env=env, prog="provbatch")
    assert "OK: upper_mod 2.0 (python)" in proc.stdout
