"""Plugins written for MultiPlug 1.2 and prenacs 1.2 run unchanged (issue 15).

The plugins in ``tests/prenacs_style/`` are written the way MultiPlug/prenacs
plugins are: pyo3 0.13 GIL-ref Rust with ``Python::acquire_gil``, Bash with
``\\t`` escapes in the constants and ``echo -en`` output, an empty results line
for "no value", attrtables datatypes. The expected values below are what
prenacs 1.2 writes for the same plugin and input (measured with
``prenacs-batch-compute ... --serial``); ``test_side_by_side_with_prenacs``
runs prenacs 1.2 itself (installed from PyPI into a cached venv) and compares.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import textwrap
from contextlib import redirect_stderr
from pathlib import Path

import pytest
import yaml
from conftest import REPO, read_tsv, run_cli

STYLE = REPO / "tests" / "prenacs_style"
WORDS = ["abc", "none", "solo", "hello", "longerword"]

#: prenacs-batch-compute sh_words.sh ids words.txt --params {suffix: "!"} --serial:
#: rows (none printed an empty results line: no row) and log lines
PRENACS_WORDS_ROWS = {"abc": ["3", "ABC!"], "hello": ["5", "HELLO!"], "longerword": ["10", "LONGERWORD!"]}
PRENACS_WORDS_LOGS = [
    "abc\tlength of abc", "none\tno value: the word is none", "hello\tlength of hello",
    "longerword\tlength of longerword",
]
#: "solo" prints one line without a newline (echo -en "4\tSOLO!"): prenacs 1.2 unpacks
#: that string as (results="4", logs=["SOLO!"]) and writes "solo\t4" plus a log line
#: "solo\tSOLO!" (with a 2-digit length, "12" became "1\t2"); provbatch reads the first
#: line as the results, as the plugin author meant (docs/compatibility.md)
PRENACS_SOLO_ROW, PROVBATCH_SOLO_ROW = ["4"], ["4", "SOLO!"]


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A copy of the prenacs-style plugins and the words file in a tmp dir."""
    for item in STYLE.iterdir():
        shutil.copy(item, tmp_path / item.name)
    return tmp_path


def _rows(path: Path) -> dict[str, list[str]]:
    return read_tsv(path) if path.exists() else {}


# --------------------------------------------------------------------------- Bash


def test_bash_constants_are_read_as_multiplug_reads_them(work):
    from provbatch.plugins.registry import importer

    module = importer(work / "sh_words.sh")
    # echo -e: the \t escapes are tabs, so each PARAMETERS element is a 4-field list
    assert module.PARAMETERS == [
        ["suffix", "String(8)", "", "appended to the upper-case word"],
        ["verbose", "Boolean", "False", "add a log line"],
    ]
    assert module.METHOD == "counts the characters,\tupper-cases the word"
    assert module.OUTPUT == ["word_length", "word_upper"]
    # every function the script defines is exposed
    assert module.upper("abc") == "ABC"
    assert module.compute_id("abc") == "w_abc"


def test_bash_plugin_through_batch_compute(work):
    out, log = work / "out.tsv", work / "log.tsv"
    proc = run_cli(work / "sh_words.sh", work / "words.txt", "--param", "suffix=!", "--backend", "serial",
                   "--out", out, "--log", log, cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert _rows(out) == {**PRENACS_WORDS_ROWS, "solo": PROVBATCH_SOLO_ROW}
    assert [line for line in log.read_text().splitlines()] == PRENACS_WORDS_LOGS
    report = yaml.safe_load((work / "out.tsv.report.yaml").read_text())
    assert (report["n_units"], report["n_no_value"], report["n_failed"]) == (5, 1, 0)
    assert report["comp_status"] == "completed"


def test_no_value_on_the_local_pool(work, write_plugin):
    """An entity without a value crosses processes as "no value", not as an empty field."""
    plugin = write_plugin("""\
        ID = "some_empty"
        VERSION = "1"
        INPUT = "a word"
        OUTPUT = ["word_length"]

        def compute(word, **kwargs):
            return ([] if word in ("none", "solo") else [len(word)]), []
        """)
    out = work / "out.tsv"
    proc = run_cli(plugin, work / "words.txt", "--backend", "pool", "--workers", "2", "--out", out,
                   "--attributes", work / "attribute_definitions.yaml", cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert _rows(out) == {"abc": ["3"], "hello": ["5"], "longerword": ["10"]}
    report = yaml.safe_load((work / "out.tsv.report.yaml").read_text())
    assert (report["n_units"], report["n_no_value"]) == (5, 2)


def test_bash_idsproc_in_ids_mode_gives_compute_the_processed_id(work):
    """prenacs ids mode: compute gets compute_id(line), the row is keyed by it too."""
    out = work / "out.tsv"
    proc = run_cli(work / "sh_words.sh", work / "words.txt", "--idsproc", work / "sh_words.sh",
                   "--backend", "serial", "--out", out, cwd=work)
    assert proc.returncode == 0, proc.stderr
    # prenacs 1.2 gives exactly these rows ("w_none" is not "none": it has a value)
    assert _rows(out) == {
        "w_abc": ["5", "W_ABC"], "w_none": ["6", "W_NONE"], "w_solo": ["6", "W_SOLO"],
        "w_hello": ["7", "W_HELLO"], "w_longerword": ["12", "W_LONGERWORD"],
    }


def test_bash_idsproc_in_files_mode_gives_compute_the_file_name(work):
    """prenacs files mode: compute gets the file name, the row the processed id."""
    (work / "g").mkdir()
    (work / "g" / "seq_one.fa").write_text(">a\nAC\n")
    (work / "g" / "seq_two.fa").write_text(">b\nACGT\n")
    out = work / "out.tsv"
    proc = run_cli(work / "py_letters.py", "--glob", "g/*.fa", "--idsproc", work / "sh_ids.sh",
                   "--attributes", work / "attribute_definitions.yaml", "--backend", "serial", "--out", out, cwd=work)
    assert proc.returncode == 0, proc.stderr
    # prenacs 1.2 rows (in prenacs' columns)
    assert {k: to_prenacs_columns(v) for k, v in _rows(out).items()} == {
        "G/SEQ_ONE": ["12", "1", "2", "0", "False", "1", "2", "0", "6.0", "g/seq_one.fa", "G/SEQ_ONE.FA", "af.eno_qes/g", "w"],
        "G/SEQ_TWO": ["12", "1", "1", "0", "False", "1", "1", "0", "6.0", "g/seq_two.fa", "G/SEQ_TWO.FA", "af.owt_qes/g", "w"],
    }


#: py_echo.py (compute returns the name it got) with an idsproc module in each language, on the
#: words "abc", "hello" (ids mode) and on the files g/seq_one.fa, g/seq_two.fa (files mode):
#: prenacs 1.2's rows. ids mode: compute gets the processed id, the row is keyed by it; files
#: mode: compute gets the file name, the row the processed id. (The Python and Bash rows are
#: also compared with prenacs itself below; Rust and Nim follow from compute_id's source.)
IDSPROC_ROWS = {
    ("py_ids.py", "ids"): {"p_abc": ["p_abc"], "p_hello": ["p_hello"]},
    ("py_ids.py", "files"): {"p_seq_one": ["g/seq_one.fa"], "p_seq_two": ["g/seq_two.fa"]},
    ("sh_ids.sh", "ids"): {"ABC": ["ABC"], "HELLO": ["HELLO"]},
    ("sh_ids.sh", "files"): {"G/SEQ_ONE": ["g/seq_one.fa"], "G/SEQ_TWO": ["g/seq_two.fa"]},
    ("rs_counter.rs", "ids"): {"rs_abc": ["rs_abc"], "rs_hello": ["rs_hello"]},
    ("rs_counter.rs", "files"): {"rs_g/seq_one.fa": ["g/seq_one.fa"], "rs_g/seq_two.fa": ["g/seq_two.fa"]},
    ("nim_words.nim", "ids"): {"n_ABC": ["n_ABC"], "n_HELLO": ["n_HELLO"]},
    ("nim_words.nim", "files"): {"n_G/SEQ_ONE": ["g/seq_one.fa"], "n_G/SEQ_TWO": ["g/seq_two.fa"]},
}


def _idsproc_inputs(work: Path, mode: str) -> tuple[list[str], list[str]]:
    """(provbatch's input arguments, prenacs' input arguments) for the mode."""
    if mode == "ids":
        (work / "two.txt").write_text("abc\nhello\n")
        return [str(work / "two.txt")], ["ids", "two.txt"]
    (work / "g").mkdir()
    (work / "g" / "seq_one.fa").write_text(">a\nAC\n")
    (work / "g" / "seq_two.fa").write_text(">b\nACGT\n")
    return ["--glob", "g/*.fa"], ["files", "g/*.fa"]


@pytest.mark.parametrize("idsproc, mode", sorted(IDSPROC_ROWS))
def test_idsproc_in_every_language(work, idsproc, mode):
    inputs, _ = _idsproc_inputs(work, mode)
    out = work / "out.tsv"
    # the compiled idsprocs are read from tests/prenacs_style/ itself: their builds are cached
    module = STYLE / idsproc if idsproc.endswith((".rs", ".nim")) else work / idsproc
    proc = run_cli(work / "py_echo.py", *inputs, "--idsproc", module, "--attributes", work / "attribute_definitions.yaml",
                   "--backend", "serial", "--out", out, cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert _rows(out) == IDSPROC_ROWS[idsproc, mode]


@pytest.mark.parametrize("idsproc, mode", [(m, mode) for m in ("py_ids.py", "sh_ids.sh") for mode in ("ids", "files")])
def test_idsproc_side_by_side_with_prenacs(work, prenacs_bin, idsproc, mode):
    _, prenacs_inputs = _idsproc_inputs(work, mode)
    p_out = work / "p.tsv"
    p_out.touch()  # prenacs reads --out as the skip list: it must exist
    done = subprocess.run([str(prenacs_bin), "py_echo.py", *prenacs_inputs, "--serial", "--idsproc", idsproc,
                           "--out", str(p_out), "--report", "p.yaml"], cwd=work, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert _rows(p_out) == IDSPROC_ROWS[idsproc, mode]


# --------------------------------------------------------------------------- attrtables datatypes


#: prenacs-batch-compute py_letters.py ids words.txt --serial writes one column per attrtables
#: column (13 values); provbatch keeps one field per attribute (arrays ,-joined, composites
#: ;-joined, booleans true/false): the same values, grouped (see to_prenacs_columns)
LETTERS_PRENACS = {
    "abc": ["3", "1", "0", "0", "True", "1", "0", "0", "1.5", "abc", "ABC", "cba", "w"],
    "none": ["4", "0", "1", "0", "False", "0", "1", "0", "2.0", "none", "NONE", "enon", "w"],
    "solo": ["4", "0", "0", "0", "False", "0", "0", "0", "2.0", "solo", "SOLO", "olos", "w"],
    "hello": ["5", "0", "1", "0", "False", "0", "1", "0", "2.5", "hello", "HELLO", "olleh", "w"],
    "longerword": ["10", "0", "1", "0", "False", "0", "1", "0", "5.0", "longerword", "LONGERWORD", "drowregnol", "w"],
}


def to_prenacs_columns(fields: list[str]) -> list[str]:
    """provbatch's fields of py_letters (Integer; Integer[3]; Boolean;Integer[3];Float;String(50)[4])
    as prenacs' columns."""
    columns = [fields[0], *fields[1].split(",")]
    for part in fields[2].split(";"):
        columns += part.split(",")
    return [{"true": "True", "false": "False"}.get(c, c) for c in columns]


def test_attrtables_datatypes_flat_results(work):
    out = work / "out.tsv"
    proc = run_cli(work / "py_letters.py", work / "words.txt", "--attributes", work / "attribute_definitions.yaml",
                   "--backend", "serial", "--out", out, cwd=work)
    assert proc.returncode == 0, proc.stderr
    rows = _rows(out)
    assert rows["abc"] == ["3", "1,0,0", "true;1,0,0;1.5;abc,ABC,cba,w"]
    assert {k: to_prenacs_columns(v) for k, v in rows.items()} == LETTERS_PRENACS


def test_attrtables_datatypes_nested_values_give_the_same_row(work, write_plugin):
    """provbatch's own style (a list per array, a tuple per composite) fills the same columns."""
    plugin = write_plugin("""\
        ID = "nested"
        VERSION = "1"
        INPUT = "a word"
        OUTPUT = ["n_letters", "vowel_counts", "summary"]

        def compute(word, **kwargs):
            vowels = [word.count(v) for v in "aei"]
            return [len(word), vowels, (word.startswith("a"), vowels, len(word) / 2,
                    [word, word.upper(), word[::-1], "w"])], []
        """)
    out = work / "out.tsv"
    proc = run_cli(plugin, work / "words.txt", "--attributes", work / "attribute_definitions.yaml",
                   "--backend", "serial", "--out", out, cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert {k: to_prenacs_columns(v) for k, v in _rows(out).items()} == LETTERS_PRENACS


def test_check_warns_on_missing_definition_and_string_brackets(work):
    proc = run_cli("check", work / "py_letters.py", "--attributes", work / "attribute_definitions.yaml",
                   cwd=work, prog="provbatch")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "attribute 'summary' has no 'definition'" in proc.stdout + proc.stderr
    defs = work / "bracket_defs.yaml"
    defs.write_text("n_letters: {definition: x, datatype: Integer}\n"
                    "vowel_counts: {definition: y, datatype: 'Integer[3]'}\n"
                    "summary: {definition: z, datatype: 'Boolean;Integer[3];Float;String[50]'}\n")
    proc = run_cli("check", work / "py_letters.py", "--attributes", defs, cwd=work, prog="provbatch")
    text = proc.stdout + proc.stderr
    assert "String[50] is an array of 50 strings of any length; for one string of at most 50 characters write String(50)" in text


def test_datatype_grammar():
    from provbatch.contract import datatypes

    node = datatypes.parse("Boolean;Integer[3];Float;String(50)[4]")
    assert isinstance(node, datatypes.Composite) and datatypes.width(node) == 9  # attrtables columns
    assert node.parts[1] == datatypes.Array(datatypes.Scalar("Integer"), 3)
    assert node.parts[3] == datatypes.Array(datatypes.Scalar("String", 50), 4)
    assert datatypes.parse("String") == datatypes.Scalar("String")
    assert datatypes.width(datatypes.parse("Text")) == 1
    assert datatypes.bracket_string_hint("String[8]") == (
        "String[8] is an array of 8 strings of any length; for one string of at most 8 characters write String(8)")
    for bad in ("String(0)", "Integer[0]", "Double", "Integer;", "String[", "", "Integer(3)"):
        with pytest.raises(ValueError):
            datatypes.parse(bad)


# --------------------------------------------------------------------------- Rust, legacy pyo3


def _import_logging(path: Path):
    """Import a plugin with provbatch's importer; returns the module and what it logged."""
    import logging

    from provbatch.plugins.registry import importer

    logs = io.StringIO()
    handler = logging.StreamHandler(logs)
    logger = logging.getLogger("provbatch")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        module = importer(path)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return module, logs.getvalue()


def _locked_pyo3(module) -> str:
    """The pyo3 version cargo resolved for this build (the Cargo.lock of its cache entry)."""
    import tomllib

    lock = Path(module.__provbatch_spec__.artifact).parent / "crate" / "Cargo.lock"
    return next(p["version"] for p in tomllib.loads(lock.read_text())["package"] if p["name"] == "pyo3")


# The builds below use the session's build cache (tests/conftest.py: PROVBATCH_CACHE); the
# plugins are read from tests/prenacs_style/ itself, not copied, so that their cache keys
# (which name the source file) stay the same from one test run to the next.


@pytest.fixture(scope="module")
def counter_module():
    """rs_counter.rs: pyo3 0.13 code with Python::acquire_gil (built with pyo3 0.18)."""
    return _import_logging(STYLE / "rs_counter.rs")


@pytest.fixture(scope="module")
def gilrefs_module():
    """rs_gilrefs.rs: GIL refs (&PyModule, m.add_class, &PyCell, &PyDict) without acquire_gil."""
    return _import_logging(STYLE / "rs_gilrefs.rs")


def test_legacy_pyo3_rust_plugin_builds_with_an_old_pyo3(counter_module):
    module, logs = counter_module
    assert "rs_counter.rs: legacy pyo3 API: building with pyo3 0.18" in logs
    assert (module.ID, module.VERSION, module.OUTPUT) == ("rs_counter", "1.0", ["word_length", "n_seen"])
    state = module.initialize()
    assert module.compute("abc", state=state) == ((3, 1), ["seen 1"])
    assert module.compute("hello", state=state) == ((5, 2), ["seen 2"])
    assert module.compute_id("x") == "rs_x"
    assert _locked_pyo3(module) == "0.18.3"


def test_gil_ref_rust_plugin_without_acquire_gil_builds_with_pyo3_0_22(gilrefs_module):
    module, logs = gilrefs_module
    assert ("rs_gilrefs.rs: legacy pyo3 API: building with pyo3 0.22.6 (extension-module, abi3-py37, gil-refs) "
            "(GIL refs (&PyDict); the newest pyo3 that compiles it;") in logs
    assert _locked_pyo3(module) == "0.22.6"
    assert (module.ID, module.OUTPUT) == ("rs_gilrefs", ["word_length", "n_seen"])
    state = module.initialize()
    assert module.compute("abc", state=state) == ((3, 1), ["seen 1 (0 params)"])
    assert module.compute("hello", state=state, label="x") == ((5, 2), ["seen 2 (1 params)"])


def test_gil_ref_rust_plugin_through_batch_compute(work, gilrefs_module):
    out, log = work / "out.tsv", work / "log.tsv"
    proc = run_cli(STYLE / "rs_gilrefs.rs", work / "words.txt", "--backend", "serial", "--out", out, "--log", log,
                   "--attributes", work / "attribute_definitions.yaml", cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert _rows(out) == {"abc": ["3", "1"], "none": ["4", "2"], "solo": ["4", "3"], "hello": ["5", "4"],
                          "longerword": ["10", "5"]}
    assert log.read_text().splitlines() == [f"{w}\tseen {i} (0 params)" for i, w in enumerate(WORDS, 1)]


def test_pinned_pyo3_is_built_with_the_pinned_version():
    """rs_pinned.rs is GIL-ref code (pyo3 0.22 without the pin) pinning pyo3 = "0.18.3"."""
    module, logs = _import_logging(STYLE / "rs_pinned.rs")
    assert ("rs_pinned.rs: legacy pyo3 API: building with pyo3 0.18.3 (extension-module, abi3-py37) "
            "(GIL refs (&PyModule); as pinned by its // [dependencies] line;") in logs
    assert _locked_pyo3(module) == "0.18.3"
    assert (module.ID, module.compute("abcd")) == ("rs_pinned", ((4,), []))


def test_legacy_rust_plugin_through_batch_compute_with_a_rust_idsproc(work, counter_module):
    out, log = work / "out.tsv", work / "log.tsv"
    proc = run_cli(STYLE / "rs_counter.rs", work / "words.txt", "--backend", "serial", "--out", out, "--log", log,
                   "--attributes", work / "attribute_definitions.yaml", cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert _rows(out) == {"abc": ["3", "1"], "none": ["4", "2"], "solo": ["4", "3"], "hello": ["5", "4"],
                          "longerword": ["10", "5"]}
    # the logs compute returned, then what finalize wrote to stderr (prenacs left it on the terminal)
    assert log.read_text().splitlines() == [f"{w}\tseen {i}" for i, w in enumerate(WORDS, 1)] + [
        "\t[plugin stderr] finalized state, count=5"]
    out2 = work / "out2.tsv"
    proc = run_cli(work / "py_letters.py", work / "words.txt", "--idsproc", STYLE / "rs_counter.rs",
                   "--attributes", work / "attribute_definitions.yaml", "--backend", "serial", "--out", out2, cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert _rows(out2)["rs_abc"][:1] == ["6"]  # ids mode: compute got "rs_abc"


@pytest.mark.parametrize("plugin, reason", [("rs_counter.rs", "Python::acquire_gil"), ("rs_gilrefs.rs", "GIL refs (&PyDict)")])
def test_check_says_legacy_pyo3_and_how_to_migrate(counter_module, gilrefs_module, plugin, reason):
    proc = run_cli("check", STYLE / plugin, "--attributes", STYLE / "attribute_definitions.yaml", prog="provbatch")
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text
    assert f"uses the legacy pyo3 API ({reason}): it is built with an old pyo3; to use pyo3 0.30.1" in text
    assert "`fn name(m: &Bound<'_, PyModule>) -> PyResult<()>`" in text
    assert "`Python::with_gil(|py| ...)`" in text and "https://pyo3.rs/main/migration" in text


def test_pinned_pyo3_dependency_line_is_used():
    from provbatch.plugins.rust import build

    source = '// [dependencies] pyo3 = "0.18"\nuse pyo3::prelude::*;\n#[pymodule]\nfn p(_py: Python, m: &PyModule) -> PyResult<()> { Ok(()) }\n'
    choice = build.choose_pyo3(Path("p.rs"), source)
    assert (choice.version, choice.pinned) == ("0.18", True)
    assert build.choose_pyo3(Path("p.rs"), source.replace('// [dependencies] pyo3 = "0.18"\n', "")).version == build.LEGACY_PYO3_GIL_REFS
    assert build.choose_pyo3(Path("p.rs"), (STYLE / "rs_counter.rs").read_text()).version == build.LEGACY_PYO3_ACQUIRE_GIL
    modern = "use pyo3::prelude::*;\n#[pyfunction]\nfn compute(e: &str) -> usize { e.len() }\n"
    assert build.choose_pyo3(Path("p.rs"), modern).version == build.PYO3_VERSION


# --------------------------------------------------------------------------- the MultiPlug API


def test_multiplug_api_drop_in(work):
    import provbatch.multiplug as multiplug

    error = multiplug.error

    sh = multiplug.importer(str(work / "sh_words.sh"), req_func=["compute"], opt_func=["initialize"],
                            req_const=["ID", "VERSION"], opt_const=["ADVICE"])
    assert sh.__lang__ == "bash" and sh.initialize is None and sh.ADVICE is None
    # MultiPlug's Bash wrapper: stdout split on newlines and tabs
    assert sh.compute("abc") == [["3", "ABC"], ["length of abc"]]
    assert sh.compute("solo") == ["4", "SOLO"]
    assert sh.compute("abc", suffix="?") == [["3", "ABC?"], ["length of abc"]]
    assert sh.compute_id("abc") == "w_abc"
    py = multiplug.py(str(work / "py_letters.py"), req_func=["compute"])
    assert py.__lang__ == "python" and py.compute("ab")[0][:4] == [2, 1, 0, 0]
    with pytest.raises(error.InterfaceRequirementError,
                       match="Plugin module 'py_letters' does not define the required function 'initialize'"):
        multiplug.importer(str(work / "py_letters.py"), req_func=["initialize"])
    with pytest.raises(error.UnsupportedLangError):
        multiplug.importer(str(work / "sh_words.sh"), disable_bash=True)
    (work / "notes.txt").write_text("x")
    with pytest.raises(error.UnsupportedLangError, match=r"Unsupported language, file suffix is: \.txt"):
        multiplug.importer(str(work / "notes.txt"))
    assert issubclass(error.ExtensionCompilationError, error.MultiplugError)
    err = io.StringIO()
    with redirect_stderr(err):
        multiplug.importer(str(work / "py_letters.py"), verbose=True, req_const=["ID"], opt_func=["finalize"])
    assert "# python module py_letters imported from file" in err.getvalue()
    assert "#   non defined optional function (set to None): finalize" in err.getvalue()


def test_multiplug_api_rust_and_nim(work, counter_module):
    import provbatch.multiplug as multiplug

    error = multiplug.error

    rs = multiplug.rust(str(STYLE / "rs_counter.rs"), req_const=["ID"], const_cls="Constants")
    assert rs.__lang__ == "rust" and rs.ID == "rs_counter"
    nim = multiplug.nim(str(REPO / "nim_plugins" / "gc_content.nim"), req_const=["ID"], const_pfx="py_const_")
    assert nim.__lang__ == "nim" and nim.ID
    bad = work / "broken.rs"
    bad.write_text("use pyo3::prelude::*;\n#[pyfunction]\nfn compute(e: &str) -> usize { e.len( }\n")
    with pytest.raises(error.ExtensionCompilationError):
        multiplug.rust(str(bad))


#: tests/prenacs_style/multiplug_client.py, an application written against MultiPlug 1.2, prints
#: these lines; the Python and Bash part (up to "bash() lang"... "sh missing function") is what
#: MultiPlug 1.2 itself prints (test_multiplug_client_side_by_side_with_multiplug checks it), the
#: Rust and Nim part follows from the plugins' sources (MultiPlug needs nimble's nimpy and
#: pyo3 0.13 for those, which this machine cannot build)
CLIENT = STYLE / "multiplug_client.py"
CLIENT_EXPECTED = (STYLE / "multiplug_client.expected").read_text().splitlines()


def _client_with_provbatch(folder: Path) -> Path:
    """The client with its one MultiPlug import changed: nothing else."""
    source = CLIENT.read_text()
    assert source.count("\nimport multiplug\n") == 1
    client = folder / "client.py"
    client.write_text(source.replace("\nimport multiplug\n", "\nimport provbatch.multiplug as multiplug\n"))
    return client


def _run_client(python: Path | str, client: Path, *langs: str) -> list[str]:
    done = subprocess.run([str(python), str(client), str(STYLE), *langs], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_code_written_for_multiplug_runs_by_changing_the_import(tmp_path, counter_module):
    """A Python, a Bash, a Rust (pyo3 0.18 and 0.22 tiers) and a Nim plugin, with req_const/opt_func,
    __lang__ and the MultiPlug errors, through provbatch.multiplug: MultiPlug's exact values."""
    assert _run_client(sys.executable, _client_with_provbatch(tmp_path)) == CLIENT_EXPECTED


def test_multiplug_public_names():
    import provbatch.multiplug as multiplug

    assert multiplug.__all__ == ["importer", "py", "bash", "rust", "nim", "error"]
    assert [n for n in vars(multiplug.error) if not n.startswith("_") and n != "annotations"] == [
        "MultiplugError", "ExtensionCompilationError", "InterfaceRequirementError", "UnsupportedLangError"]
    import provbatch
    from provbatch.plugins import registry

    assert provbatch.importer is registry.importer  # provbatch's own importer is not MultiPlug's


def test_multiplug_client_side_by_side_with_multiplug(tmp_path, prenacs_bin):
    """MultiPlug 1.2 itself (from PyPI, with prenacs) and provbatch.multiplug print the same lines."""
    theirs = _run_client(prenacs_bin.parent / "python", CLIENT, "python", "bash")
    ours = _run_client(sys.executable, _client_with_provbatch(tmp_path), "python", "bash")
    assert ours == theirs == CLIENT_EXPECTED[:len(theirs)]
    assert theirs[-1].startswith("sh missing function: ")


# --------------------------------------------------------------------------- Nim


def test_nim_plugin_with_a_nimble_only_import_says_how_to_provide_it(work):
    proc = run_cli(work / "nim_gzip.nim", work / "words.txt", cwd=work)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(errors) == 1, proc.stderr
    assert "nim_gzip.nim:4: cannot import module 'zip/gzipfiles'" in errors[0]
    assert "nimble install zip" in errors[0] and "--nim-path DIR or PROVBATCH_NIM_PATH" in errors[0]
    assert "Traceback" not in proc.stderr


def test_nim_path_option_and_env(work):
    lib = work / "nimlib" / "mytools"
    lib.mkdir(parents=True)
    (lib / "shout.nim").write_text("proc shout*(s: string): string = s & \"!\"\n")
    plugin = work / "nim_shout.nim"
    plugin.write_text(textwrap.dedent("""\
        import nimpy
        import mytools/shout
        const
          ID = "nim_shout"
          VERSION = "1.0"
          INPUT = "a word"
          OUTPUT = @["word_upper"]
        exportpy_consts(ID, VERSION, INPUT, OUTPUT)
        proc compute(word: string): tuple[results: (string, ), logs: seq[string]] {.exportpy.} =
          result.results = (shout(word), )
        """))
    out = work / "out.tsv"
    proc = run_cli(plugin, work / "words.txt", "--nim-path", work / "nimlib", "--out", out, "--backend", "serial",
                   "--attributes", work / "attribute_definitions.yaml", cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert _rows(out)["abc"] == ["abc!"]
    out2 = work / "out2.tsv"
    proc = run_cli(plugin, work / "words.txt", "--out", out2, "--backend", "serial",
                   "--attributes", work / "attribute_definitions.yaml", cwd=work,
                   env={"PROVBATCH_NIM_PATH": str(work / "nimlib")})
    assert proc.returncode == 0, proc.stderr
    assert _rows(out2)["hello"] == ["hello!"]


# --------------------------------------------------------------------------- reports


def test_report_file_holds_the_latest_run(work):
    out = work / "out.tsv"
    for words in (["abc"], ["abc", "hello"]):
        (work / "w.txt").write_text("".join(w + "\n" for w in words))
        proc = run_cli(work / "sh_words.sh", work / "w.txt", "--out", out, "--backend", "serial", cwd=work)
        assert proc.returncode == 0, proc.stderr
    report = yaml.safe_load((work / "out.tsv.report.yaml").read_text())  # one document
    assert (report["n_units"], report["n_skipped"]) == (1, 1)


# --------------------------------------------------------------------------- prenacs itself


@pytest.fixture(scope="session")
def prenacs_bin() -> Path:
    """prenacs 1.2 from PyPI in its own venv (cached in .pytest_cache; $PRENACS_VENV to reuse one)."""
    venv = Path(os.environ.get("PRENACS_VENV", REPO / ".pytest_cache" / "prenacs-1.2-venv"))
    script = venv / "bin" / "prenacs-batch-compute"
    if not script.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "prenacs==1.2", "sqlalchemy<2"], check=True,
                       capture_output=True, timeout=900)
    return script


def test_side_by_side_with_prenacs(work, prenacs_bin):
    (work / "params.yaml").write_text('suffix: "!"\n')
    p_out, p_log = work / "p.tsv", work / "p.log"
    p_out.touch()  # prenacs reads --out as the skip list: it must exist
    done = subprocess.run([str(prenacs_bin), "sh_words.sh", "ids", "words.txt", "--serial", "--params", "params.yaml",
                           "--out", str(p_out), "--log", str(p_log), "--report", "p.yaml"],
                          cwd=work, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out, log = work / "out.tsv", work / "log.tsv"
    proc = run_cli(work / "sh_words.sh", work / "words.txt", "--params", work / "params.yaml", "--backend", "serial",
                   "--out", out, "--log", log, cwd=work)
    assert proc.returncode == 0, proc.stderr
    prenacs_rows, ours = _rows(p_out), _rows(out)
    assert prenacs_rows.pop("solo") == PRENACS_SOLO_ROW and ours.pop("solo") == PROVBATCH_SOLO_ROW
    assert ours == prenacs_rows == PRENACS_WORDS_ROWS
    assert [line for line in p_log.read_text().splitlines() if line != "solo\tSOLO!"] == log.read_text().splitlines()
    prenacs_report = yaml.safe_load((work / "p.yaml").read_text())
    report = yaml.safe_load((work / "out.tsv.report.yaml").read_text())
    assert prenacs_report["n_units"] == report["n_units"] == 5
    # attrtables datatypes, ids mode with a Bash idsproc
    p_out2 = work / "p2.tsv"
    p_out2.touch()
    done = subprocess.run([str(prenacs_bin), "py_letters.py", "ids", "words.txt", "--serial", "--idsproc", "sh_words.sh",
                           "--out", str(p_out2), "--report", "p2.yaml"], cwd=work, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out2 = work / "out2.tsv"
    proc = run_cli(work / "py_letters.py", work / "words.txt", "--idsproc", work / "sh_words.sh", "--backend", "serial",
                   "--attributes", work / "attribute_definitions.yaml", "--out", out2, cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert {k: to_prenacs_columns(v) for k, v in _rows(out2).items()} == _rows(p_out2)
