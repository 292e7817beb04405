"""provbatch check and the validation rules of the plugin guide."""

from __future__ import annotations

import types

import pytest

from conftest import run_cli
from provbatch.contract.attributes import is_valid_datatype, load_attribute_definitions
from provbatch.contract.validation import validate_plugin


def test_check_valid_plugin_exit_0():
    proc = run_cli("check", "plugins/gc_content.py", prog="provbatch")
    assert proc.returncode == 0, proc.stderr
    assert "OK: gc_content_py 1.0.0 (python), outputs gc_content, genome_size" in proc.stdout


def test_check_lists_every_problem_exit_1(write_plugin, attributes_file):
    plugin = write_plugin("""
        ID = 7
        VERSION = "x" * 70
        OUTPUT = ["length", "undefined_attr"]
        PARAMETERS = [("n", "Integer", "many", "bad default"), ("m", "str")]
        METHOD = "m" * 5000
        def compute(entity, n, **kwargs):
            return [1, 2], []
        def finalize(state):
            pass
        """)
    proc = run_cli("check", plugin, "--attributes", attributes_file, prog="provbatch")
    assert proc.returncode == 1
    err = proc.stderr
    for expected in [
        "constant ID must be a string (max 256 characters), not int",
        "constant VERSION is 70 characters long; the limit is 64",
        "constant INPUT is missing",
        f"OUTPUT attribute 'undefined_attr' is not defined in {attributes_file}",
        "default 'many' of parameter 'n' is not a valid Integer",
        "PARAMETERS[1] must be a 4-tuple of strings",
        "constant METHOD is 5000 characters long; the limit is 4096",
        "compute has required argument(s) n besides the entity",
        "finalize is defined without initialize",
    ]:
        assert expected in err, (expected, err)
    assert err.count("\n  - ") == 9
    assert "Traceback" not in err


def make_module(**names):
    module = types.ModuleType("m")
    module.__lang__ = "python"
    for key, value in {"ID": "p", "VERSION": "1", "INPUT": "x", "OUTPUT": ["length"], **names}.items():
        setattr(module, key, value)
    return module


@pytest.fixture
def definitions(attributes_file):
    return load_attribute_definitions(attributes_file)


def test_signature_rules(definitions):
    def compute(entity, **kwargs):
        return [1], []

    assert validate_plugin(make_module(compute=compute), definitions) == []

    def initialize(x, **kwargs):
        return None

    def compute_no_state(entity):
        return [1], []

    problems = validate_plugin(make_module(compute=compute_no_state, initialize=initialize), definitions)
    assert any("initialize must take keyword arguments only" in p for p in problems)
    assert any("compute must accept the keyword argument 'state'" in p for p in problems)

    def compute_no_params(entity, state=None):
        return [1], []

    problems = validate_plugin(
        make_module(compute=compute_no_params, PARAMETERS=[("k", "Integer", "1", "doc")]), definitions
    )
    assert problems == ["compute does not accept the declared parameter(s) k: add them or **kwargs to its signature"]


def test_output_must_be_nonempty_list_of_strings(definitions):
    compute = lambda entity: ([], [])  # noqa: E731
    assert any("non-empty list" in p for p in validate_plugin(make_module(compute=compute, OUTPUT=[]), definitions))
    assert any("non-empty list" in p for p in validate_plugin(make_module(compute=compute, OUTPUT="length"), definitions))
    assert any("only non-empty strings" in p for p in validate_plugin(make_module(compute=compute, OUTPUT=["length", 3]), definitions))


def test_no_definitions_file_is_a_problem():
    module = make_module(compute=lambda entity: ([1], []))
    assert any("no attribute definitions file found" in p for p in validate_plugin(module, None))


@pytest.mark.parametrize("datatype,valid", [
    ("Integer", True), ("Float", True), ("Boolean", True), ("Text", True), ("String(12)", True),
    ("Float[3]", True), ("Integer;Float", True), ("String(5);Integer[2]", True),
    ("String", True), ("String[12]", True), ("Boolean;Integer[3];Float;String(50)[4]", True),
    ("String(0)", False), ("Integer(3)", False), ("Double", False), ("int", False), ("Float[]", False), ("", False), ("Integer;", False),
])
def test_datatypes(datatype, valid):
    assert is_valid_datatype(datatype) is valid


def test_definitions_file_problems(tmp_path):
    path = tmp_path / "defs.yaml"
    path.write_text("a: {definition: x, datatype: Integer}\nb: {datatype: Float}\nc: {definition: y, datatype: Double, color: red}\n")
    defs = load_attribute_definitions(path)
    # a definition without 'definition' is a warning (prenacs files omit it), not an error
    assert list(defs.attributes) == ["a", "b"]
    assert defs.warnings == (f"{path}: attribute 'b' has no 'definition': say what the attribute means",)
    assert any("attribute 'c' has unknown key(s) color" in p for p in defs.problems)
    assert any("attribute 'c' has datatype 'Double'" in p for p in defs.problems)


def test_repo_definitions_cover_every_bundled_python_plugin():
    proc = run_cli("check", "plugins/seq_stats_state.py", prog="provbatch")
    assert proc.returncode == 0, proc.stderr


def test_compiled_compute_must_accept_declared_parameters(definitions):
    """Rust (pyo3) and Nim functions expose signatures; a declared parameter compute cannot take is reported."""
    import inspect

    def compute(entity, digits=4):
        return [1], []

    def initialize(summary=""):
        return None

    for lang in ("rust", "nim"):
        module = make_module(compute=compute, PARAMETERS=[("digits", "Integer", "4", ""), ("extra", "Text", "", "")])
        module.__lang__ = lang
        problems = validate_plugin(module, definitions)
        assert len(problems) == 1 and problems[0].startswith("compute does not accept the declared parameter(s) extra")
    # Nim hands a parameter only initialize declares to initialize
    module = make_module(compute=compute, initialize=initialize, PARAMETERS=[("digits", "Integer", "4", ""), ("summary", "Text", "", "")])
    module.__lang__ = "nim"
    assert validate_plugin(module, definitions) == []
    module.__lang__ = "rust"
    assert any("summary" in p for p in validate_plugin(module, definitions))
    assert inspect.signature(compute)  # the check relies on signatures being readable


def test_bundled_compiled_plugins_pass_check():
    for plugin in ("rust_plugins/gc_content.rs", "rust_plugins/state_counter", "nim_plugins/gc_content.nim",
                   "nim_plugins/state_example.nim", "plugins/gc_content.sh", "plugins/bash_state_example.sh"):
        proc = run_cli("check", plugin, prog="provbatch")
        assert proc.returncode == 0, (plugin, proc.stderr)
