"""Every bad input: a one-line error naming the file, exit 2 (usage) or 1 (plugin), no traceback,
and nothing already written is lost."""

from __future__ import annotations

import pytest

from conftest import run_cli

GOOD = """\
ID = "good"; VERSION = "1"; INPUT = "x"; OUTPUT = ["length"]
PARAMETERS = [("times", "Integer", "1", "multiplier")]
def compute(entity, times=1, **kwargs):
    return [len(entity) * times], []
"""
PREVIOUS_RESULTS = "done_before\t42\n"


def assert_one_line_error(proc, code: int, *fragments: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture
def setup(tmp_path, write_plugin, attributes_file, ids_file):
    out = tmp_path / "out.tsv"
    out.write_text(PREVIOUS_RESULTS)
    return dict(plugin=write_plugin(GOOD), ids=ids_file(["a", "bb"]), attrs=attributes_file, out=out, tmp=tmp_path)


def run(s, plugin=None, ids=None, *extra):
    return run_cli(plugin or s["plugin"], ids or s["ids"], "--attributes", s["attrs"], "--out", s["out"], *extra)


def test_missing_plugin(setup):
    proc = run(setup, setup["tmp"] / "nope.py")
    assert_one_line_error(proc, 2, "nope.py", "plugin file not found")


def test_unknown_plugin_name(setup):
    proc = run(setup, "no_such_plugin")
    assert_one_line_error(proc, 1, "no_such_plugin", "no installed plugin")


def test_unsupported_suffix(setup):
    plugin = setup["tmp"] / "plugin.java"
    plugin.write_text("class X {}")
    assert_one_line_error(run(setup, plugin), 1, "unsupported plugin type '.java'")


def test_missing_entities_file(setup):
    assert_one_line_error(run(setup, None, setup["tmp"] / "missing.txt"), 2, "missing.txt", "entities file not found")


def test_entities_file_not_text(setup):
    ids = setup["tmp"] / "binary.txt"
    ids.write_bytes(b"ok\n\xff\xfe\x00garbage\n")
    assert_one_line_error(run(setup, None, ids), 2, "binary.txt", "not UTF-8 text")


def test_entities_directory(setup):
    assert_one_line_error(run(setup, None, setup["tmp"]), 2, "is a directory")


def test_syntax_error_shows_file_and_line(setup, write_plugin):
    plugin = write_plugin("ID = 'x'\ndef compute(entity:\n    pass\n", name="broken.py")
    assert_one_line_error(run(setup, plugin), 1, f"{plugin}:2", "SyntaxError")


def test_import_error_shows_file_and_line(setup, write_plugin):
    plugin = write_plugin("ID = 'x'\n\nimport not_a_module_anywhere\n", name="imports.py")
    assert_one_line_error(run(setup, plugin), 1, f"{plugin}:3", "ModuleNotFoundError", "not_a_module_anywhere")


def test_missing_constants_lists_all(setup, write_plugin):
    plugin = write_plugin("def compute(entity):\n    return [1], []\n", name="bare.py")
    proc = run(setup, plugin)
    assert_one_line_error(proc, 1, str(plugin), "constant ID is missing", "and 3 more problem(s)")


def test_invalid_constant(setup, write_plugin):
    plugin = write_plugin(GOOD.replace('VERSION = "1"', 'VERSION = "v" * 65'), name="longversion.py")
    assert_one_line_error(run(setup, plugin), 1, "VERSION is 65 characters long; the limit is 64")


def test_undefined_output_attribute(setup, write_plugin):
    plugin = write_plugin(GOOD.replace('["length"]', '["length", "mystery"]'), name="mystery.py")
    assert_one_line_error(run(setup, plugin), 1, "OUTPUT attribute 'mystery' is not defined in", "attribute_definitions.yaml")


def test_malformed_params_yaml(setup):
    params = setup["tmp"] / "params.yaml"
    params.write_text("times: [1, 2\n")
    assert_one_line_error(run(setup, None, None, "--params", params), 2, "params.yaml", "not valid YAML")


def test_params_yaml_not_a_mapping(setup):
    params = setup["tmp"] / "params.yaml"
    params.write_text("- 1\n- 2\n")
    assert_one_line_error(run(setup, None, None, "--params", params), 2, "params.yaml", "must be a YAML mapping")


def test_undeclared_param(setup):
    assert_one_line_error(run(setup, None, None, "--param", "speed=3"), 2, "speed", "not declared", "declared: times")


def test_param_of_wrong_type(setup):
    assert_one_line_error(run(setup, None, None, "--param", "times=many"), 2, "'times'", "not a valid Integer")


def test_col_beyond_columns(setup):
    tsv = setup["tmp"] / "table.tsv"
    tsv.write_text("a\tb\nc\n")
    proc = run(setup, None, tsv, "--col", "2")
    assert_one_line_error(proc, 2, f"{tsv}:2", "1 column(s), --col is 2")


def test_bad_attribute_definitions_file(setup):
    setup["attrs"].write_text("length: {definition: x, datatype: Integer\n")
    assert_one_line_error(run(setup), 2, "attribute_definitions.yaml", "not valid YAML")


def test_finalize_without_initialize(setup, write_plugin):
    plugin = write_plugin(GOOD + "\ndef finalize(state):\n    pass\n", name="finonly.py")
    assert_one_line_error(run(setup, plugin), 1, "finalize is defined without initialize")


def test_failing_initialize_is_one_line(setup, write_plugin):
    plugin = write_plugin(GOOD + "\ndef initialize(**kw):\n    raise OSError('database down')\n", name="initfail.py")
    proc = run(setup, plugin)
    assert_one_line_error(proc, 1, "OSError: database down", "--debug")
    proc = run(setup, plugin, None, "--debug")
    assert "Traceback" in proc.stderr and proc.returncode == 1


def test_nothing_written_is_lost(setup, write_plugin):
    """After all those failures, the user's results file is intact."""
    for args in ([setup["tmp"] / "nope.py"], [None, setup["tmp"] / "missing.txt"], [None, None, "--param", "x=1"]):
        run(setup, *args)
    assert setup["out"].read_text() == PREVIOUS_RESULTS


def test_usage_errors_exit_2(setup):
    proc = run_cli(setup["plugin"], "--attributes", setup["attrs"])
    assert_one_line_error(proc, 2, "missing ENTITIES")
    proc = run_cli(setup["plugin"], setup["ids"], "--glob", "*.fna", "--attributes", setup["attrs"])
    assert_one_line_error(proc, 2, "either ENTITIES or --glob")


def test_glob_matching_nothing(setup):
    """A typo in --glob is an error, not a silent batch of nothing; the results file is kept."""
    proc = run_cli(setup["plugin"], "--glob", str(setup["tmp"] / "no_such_dir" / "*.fna"), "--attributes", setup["attrs"],
                   "--out", setup["out"])
    assert_one_line_error(proc, 2, "--glob", "no_such_dir/*.fna", "no file matches")
    assert setup["out"].read_text() == PREVIOUS_RESULTS
