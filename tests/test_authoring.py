"""Tools for plugin authors: provbatch plugins, describe and new."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, install_plugin_package, run_cli
from provbatch.authoring import format_plugin_list, list_plugins, new_plugin, repo_root

TINY = REPO / "examples" / "genomes" / "tiny.fna"
EXAMPLE = "# a comment\nACGT\n\nAC"  # the entity the generated tests use too
#: the PARAMETERS table of every skeleton `provbatch new` writes
SKELETON_PARAMETERS = [
    "PARAMETERS",
    "  name         datatype     default  documentation",
    "  skip_prefix  String(256)  #        lines starting with this text are not counted (none skipped when empty)",
]
LANGS = {"py": ("python", ".py"), "bash": ("bash", ".sh"), "nim": ("nim", ".nim"), "rust": ("rust", ".rs")}


def provbatch_cli(*args: object, cwd: Path = REPO, env: dict | None = None) -> subprocess.CompletedProcess:
    return run_cli(*map(str, args), cwd=cwd, env=env, prog="provbatch")


def assert_one_line_error(proc: subprocess.CompletedProcess, code: int, *fragments: str) -> None:
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, (fragment, proc.stderr)


# --------------------------------------------------------------------------- new


@pytest.mark.parametrize("lang", list(LANGS))
def test_new_plugin_checks_runs_and_its_test_passes(lang, tmp_path):
    """The skeleton of each language passes check, runs through batch-compute with exact
    values (compiled ones really built), and the test file written with it passes."""
    lang_name, suffix = LANGS[lang]
    name = f"demo_{lang}"
    proc = provbatch_cli("new", name, "--lang", lang, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    plugin, test = tmp_path / f"{name}{suffix}", tmp_path / f"test_{name}.py"
    assert proc.stdout.splitlines() == [
        f"wrote {name}{suffix} (the plugin) and test_{name}.py (its test)",
        f"attribute_definitions.yaml: added the attributes {name}_lines, {name}_bytes",
        "next:",
        f"  provbatch check {name}{suffix}",
        f"  echo {name}{suffix} | batch-compute {name}{suffix} -    # runs it on its own source file",
        f"  pytest test_{name}.py",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["attribute_definitions.yaml", plugin.name, test.name])

    proc = provbatch_cli("check", plugin.name, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"OK: {name} 0.1.0 ({lang_name}), outputs {name}_lines, {name}_bytes" in proc.stdout

    (tmp_path / "example.txt").write_text(EXAMPLE)
    (tmp_path / "ids.txt").write_text(f"example.txt\n{TINY}\n")
    proc = run_cli(plugin.name, "ids.txt", "--backend", "serial", "--out", "out.tsv", "--log", "log.tsv", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out.tsv").read_text() == f"example.txt\t3\t6\n{TINY}\t3\t129\n"
    assert (tmp_path / "log.tsv").read_text().splitlines() == ["example.txt\tskipped\t1", f"{TINY}\tskipped\t0"]
    proc = run_cli(plugin.name, "-", "--param", "skip_prefix=>", "--backend", "serial", cwd=tmp_path, stdin=f"{TINY}\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"{TINY}\t2\t120\n"

    proc = provbatch_cli("describe", plugin.name, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-3:] == SKELETON_PARAMETERS
    assert f"language        {lang_name}" in lines
    assert any(line.startswith("library ") for line in lines) == (lang in ("nim", "rust"))

    # the generated test, run as its author would (the build cache is the session's)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test.name],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout


def test_new_refuses_to_overwrite_and_keeps_existing_definitions(tmp_path):
    definitions = tmp_path / "attribute_definitions.yaml"
    original = "# my attributes\nkeep_lines:\n  definition: mine, not touched\n  datatype: Integer\n"
    definitions.write_text(original)
    made = new_plugin("keep", "py", tmp_path)
    assert (made.added, made.kept) == (["keep_bytes"], ["keep_lines"])
    text = definitions.read_text()
    assert text.startswith(original) and text.count("keep_lines:") == 1 and text.count("keep_bytes:") == 1

    plugin_text, test_text = made.plugin.read_text(), made.test.read_text()
    proc = provbatch_cli("new", "keep", "--lang", "py", cwd=tmp_path)
    assert_one_line_error(proc, 2, "keep.py: plugin file already exists; provbatch new never overwrites one")
    made.plugin.unlink()
    proc = provbatch_cli("new", "keep", "--lang", "py", cwd=tmp_path)
    assert_one_line_error(proc, 2, "test_keep.py: test file already exists")
    assert not made.plugin.exists()  # refused before writing anything
    assert made.test.read_text() == test_text and definitions.read_text() == text
    # another language's file of the same name is a different file
    proc = provbatch_cli("new", "keep", "--lang", "bash", "--dir", "other", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert plugin_text != (tmp_path / "other" / "keep.sh").read_text()


def test_new_with_dir_says_which_definitions_to_use(tmp_path):
    (tmp_path / "attribute_definitions.yaml").write_text("other: {definition: x, datatype: Integer}\n")
    proc = provbatch_cli("new", "sub_demo", "--lang", "py", "--dir", "sub", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "  provbatch check sub/sub_demo.py --attributes sub/attribute_definitions.yaml" in proc.stdout.splitlines()
    proc = provbatch_cli("check", "sub/sub_demo.py", "--attributes", "sub/attribute_definitions.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "attribute_definitions.yaml").read_text() == "other: {definition: x, datatype: Integer}\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["Bad-Name", "--lang", "py"], "plugin name 'Bad-Name': use lower-case letters"),
        (["trailing_", "--lang", "nim"], "plugin name 'trailing_': use lower-case letters"),
        (["fn", "--lang", "rust"], "plugin name 'fn' is reserved in rust"),
        (["proc", "--lang", "nim"], "plugin name 'proc' is reserved in nim"),
        (["test_me", "--lang", "bash"], "pytest would take test_me.sh for a test module"),
        (["json", "--lang", "py"], "plugin name 'json' is also an importable Python module"),
    ],
)
def test_new_rejects_bad_names(args, message, tmp_path):
    proc = provbatch_cli("new", *args, cwd=tmp_path)
    assert_one_line_error(proc, 2, message)
    assert list(tmp_path.iterdir()) == []


def test_new_refuses_broken_definitions_file(tmp_path):
    (tmp_path / "attribute_definitions.yaml").write_text("- a list\n- not a mapping\n")
    proc = provbatch_cli("new", "demo", "--lang", "py", cwd=tmp_path)
    assert_one_line_error(proc, 2, "attribute_definitions.yaml: attribute definitions must be a mapping")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["attribute_definitions.yaml"]


# --------------------------------------------------------------------------- describe


def test_describe_gc_content():
    proc = provbatch_cli("describe", "plugins/gc_content.py")
    assert proc.returncode == 0, proc.stderr
    sha256 = hashlib.sha256((REPO / "plugins" / "gc_content.py").read_bytes()).hexdigest()
    lines = proc.stdout.splitlines()
    for expected in [
        "ID              gc_content_py",
        "VERSION         1.0.0",
        "language        python",
        f"source          {REPO / 'plugins' / 'gc_content.py'}",
        f"sha256          {sha256}",
        "INPUT           path to a FASTA file (plain, or gzipped with a .gz suffix)",
        "IMPLEMENTATION  pure Python, bytes.count over each sequence line",
        "REQ_HARDWARE    (not given)",
        "initialize      no",
        "finalize        no",
        "merge           no",
    ]:
        assert expected in lines, (expected, proc.stdout)
    start = lines.index(f"OUTPUT (definitions from {REPO / 'attribute_definitions.yaml'})")
    assert lines[start + 1:] == [
        "  attribute    datatype  unit             definition",
        "  gc_content   Float     fraction (0..1)  fraction of G and C among the A, C, G and T bases of all sequences of the entity",
        "  genome_size  Integer   bp               total number of A, C, G and T bases of all sequences of the entity",
        "",
        "PARAMETERS",
        "  name    datatype  default  documentation",
        "  digits  Integer   4        decimal digits the GC content is rounded to",
    ]


def test_describe_state_plugin_and_undefined_attribute(tmp_path, write_plugin):
    proc = provbatch_cli("describe", "plugins/seq_stats_state.py")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "initialize      yes" in lines and "finalize        yes" in lines and "merge           yes" in lines
    assert lines[-2:] == [
        "  name     datatype      default  documentation",
        "  summary  String(1024)  (none)   file where finalize writes the totals (none when empty)",
    ]
    plugin = write_plugin("""
        ID = "p"; VERSION = "1"; INPUT = "x"; OUTPUT = ["nowhere"]
        def compute(entity):
            return [1], []
        """)
    proc = provbatch_cli("describe", plugin, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "OUTPUT (no attribute_definitions.yaml found: pass --attributes FILE)" in proc.stdout
    assert "  nowhere    ?" in proc.stdout
    assert proc.stdout.splitlines()[-1] == "  (none: compute takes no parameters)"


def test_describe_unknown_plugin_is_one_line():
    proc = provbatch_cli("describe", "no_such_plugin")
    assert_one_line_error(proc, 1, "no_such_plugin: no such plugin file, and no installed plugin of that name")


# --------------------------------------------------------------------------- plugins


def test_plugins_lists_bundled_plugins():
    proc = provbatch_cli("plugins")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "installed plugins (entry-point group provbatch.plugins):"
    assert f"bundled plugins (in {REPO}):" in lines
    rows = [line.split() for line in lines]
    for row in [
        ["plugins/gc_content.py", "gc_content_py", "1.0.0", "python"],
        ["plugins/seq_stats_state.py", "seq_stats_state", "1.0.0", "python"],
        ["plugins/gc_content.sh", "gc_content_sh", "1.0.0", "bash"],
        ["rust_plugins/gc_content.rs", "gc_content_rs", "1.0.0", "rust"],
        ["rust_plugins/state_counter", "state_counter_rs", "1.0.0", "rust"],
        ["nim_plugins/gc_content.nim", "gc_content_nim", "1.0.0", "nim"],
        ["nim_plugins/state_example.nim", "state_example_nim", "1.0.0", "nim"],
    ]:
        assert row in rows, (row, proc.stdout)
    assert "bridge" not in proc.stdout and "error:" not in proc.stdout


def test_a_plugin_that_fails_to_load_is_listed_with_its_error(tmp_path):
    for folder in ("plugins", "rust_plugins", "nim_plugins/bridge"):
        (tmp_path / folder).mkdir(parents=True)
    shutil.copy(REPO / "plugins" / "gc_content.py", tmp_path / "plugins")
    (tmp_path / "plugins" / "broken.py").write_text('raise RuntimeError("boom\\nsecond line")\n')
    (tmp_path / "plugins" / "_helper.py").write_text("x = 1\n")
    (tmp_path / "plugins" / "notes.txt").write_text("not a plugin\n")
    (tmp_path / "nim_plugins" / "bad.nim").write_text("proc compute(x: int) = discar\n")
    listing = list_plugins(tmp_path)
    by_name = {entry.name: entry for entry in listing.bundled}
    assert sorted(by_name) == ["nim_plugins/bad.nim", "plugins/broken.py", "plugins/gc_content.py"]
    assert by_name["plugins/broken.py"].error == "plugins/broken.py:1: RuntimeError: boom second line"
    assert by_name["nim_plugins/bad.nim"].error.startswith("nim_plugins/bad.nim:1: undeclared identifier: 'discar'")
    text = format_plugin_list(listing)
    assert "  plugins/broken.py      -              -        python    error: plugins/broken.py:1: RuntimeError: boom second line" in text
    assert "  plugins/gc_content.py  gc_content_py  1.0.0    python" in text.splitlines()


@pytest.fixture(scope="module")
def installed_site(tmp_path_factory):
    """A package registering a good and a broken plugin under 'provbatch.plugins', pip-installed into a dir."""
    return install_plugin_package(
        tmp_path_factory.mktemp("pkg"),
        "pbauthor_plugins",
        {"upper.py": """
            ID = "upper_mod"; VERSION = "2.0"; INPUT = "a string"; OUTPUT = ["upper"]
            def compute(entity, **kwargs):
                return [entity.upper()], []
            """},
        {"upper": "pbauthor_plugins.upper", "gone": "pbauthor_plugins.missing_module"},
    )


def test_plugins_lists_installed_plugins(installed_site):
    proc = provbatch_cli("plugins", "--installed-only", env={"PYTHONPATH": str(installed_site)})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[:2] == ["installed plugins (entry-point group provbatch.plugins):", "  PLUGIN  ID         VERSION  LANGUAGE"]
    assert lines[2].startswith("  gone    -          -        python    error: ")
    assert "missing_module" in lines[2]
    assert lines[3] == "  upper   upper_mod  2.0      python"
    assert lines[4:] == ["bundled plugins: none (not searched)"]


def test_installed_without_the_repository(tmp_path):
    """A non-editable install: no bundled plugins, `new` still finds its templates, and a Nim
    plugin builds with the bridge shipped as package data (the repository's nim_plugins/ is not there)."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source)
    shutil.copytree(REPO / "provbatch", source / "provbatch", ignore=shutil.ignore_patterns("__pycache__"))
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(source)], check=True, capture_output=True)
    assert sorted(p.name for p in (site / "provbatch" / "authoring" / "templates").iterdir()) == [
        "plugin.nim.tmpl", "plugin.py.tmpl", "plugin.rs.tmpl", "plugin.sh.tmpl", "test_plugin.py.tmpl",
    ]
    assert repo_root(site / "provbatch") is None and repo_root() == REPO
    env = {**os.environ, "PYTHONPATH": str(site)}
    work = tmp_path / "work"
    work.mkdir()
    out = {}
    assert sorted(p.relative_to(site).as_posix() for p in (site / "provbatch" / "plugins" / "nim" / "bridge").rglob("*.nim")) == [
        "provbatch/plugins/nim/bridge/multiplug_nim/exportpy_consts.nim",
        "provbatch/plugins/nim/bridge/nimpy.nim",
        "provbatch/plugins/nim/bridge/provbatch_bridge/pyapi.nim",
        "provbatch/plugins/nim/bridge/provbatch_bridge/runtime.nim",
    ]
    for args in (["plugins"], ["new", "shipped", "--lang", "bash"], ["check", "shipped.sh"],
                 ["new", "shipped_nim", "--lang", "nim"], ["check", "shipped_nim.nim"]):
        done = subprocess.run([sys.executable, "-m", "provbatch.cli", *args], cwd=work, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        out[args[0]] = out.get(args[0], "") + done.stdout
    assert "bundled plugins: none (provbatch is installed without its repository)" in out["plugins"]
    assert str(site / "provbatch") in subprocess.run(
        [sys.executable, "-c", "import provbatch; print(provbatch.__file__)"], cwd=work, env=env, capture_output=True, text=True
    ).stdout
    assert "OK: shipped 0.1.0 (bash)" in out["check"]
    assert "OK: shipped_nim 0.1.0 (nim)" in out["check"]
