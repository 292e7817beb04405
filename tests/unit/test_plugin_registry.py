"""Unit tests of the language registry (plugins/registry.py): suffixes, language names, lazy loaders,
a fifth language registered by one line, and the errors for what it cannot load."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from provbatch.errors import InterfaceRequirementError, PluginLoadError
from provbatch.plugins import registry


def test_the_four_languages_by_suffix_and_by_name():
    assert registry.supported_suffixes() == [".nim", ".py", ".rs", ".sh"]
    names = {lang: type(registry.loader_for(lang)).__name__ for lang in ("python", "rust", "nim", "bash")}
    assert names == {"python": "PythonLoader", "rust": "RustLoader", "nim": "NimLoader", "bash": "BashLoader"}
    assert registry.loader_for("rust") is registry.loader_for(".rs")  # one instance per language


def test_an_unsupported_language_is_named_with_the_supported_suffixes():
    with pytest.raises(PluginLoadError) as info:
        registry.loader_for("lua")
    assert str(info.value) == "unsupported plugin type 'lua' (supported: .nim, .py, .rs, .sh)"


def test_a_directory_must_be_a_rust_crate(tmp_path: Path):
    with pytest.raises(PluginLoadError) as info:
        registry.importer(tmp_path)
    assert str(info.value) == (f"{tmp_path}: a plugin directory must be a Rust crate (with a Cargo.toml); "
                               "other plugins are single files (.nim, .py, .rs, .sh)")


def test_importer_sets_the_language_and_checks_the_required_names(tmp_path: Path):
    path = tmp_path / "tiny.py"
    path.write_text('ID = "tiny"\ndef compute(entity):\n    return [1], []\n')
    module = registry.importer(path, req_const=["ID"], opt_const=["VERSION"], req_func=["compute"], opt_func=["merge"])
    assert (module.__lang__, module.ID, module.VERSION, module.merge) == ("python", "tiny", None, None)
    with pytest.raises(InterfaceRequirementError) as info:
        registry.importer(path, req_func=["initialize"])
    assert "initialize" in str(info.value)


def test_loaders_are_imported_on_first_use_and_a_fifth_language_is_one_line():
    code = (
        "import sys\n"
        "from provbatch.plugins import registry\n"
        "print(sorted(m for m in sys.modules if m.startswith('provbatch.plugins.') and m != 'provbatch.plugins.registry'"
        " and m != 'provbatch.plugins.base'))\n"
        "registry.register_loader('.lua', 'provbatch.plugins.python:PythonLoader', lang='lua')\n"
        "print(registry.supported_suffixes(), type(registry.loader_for('lua')).__name__)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.splitlines() == ["[]", "['.lua', '.nim', '.py', '.rs', '.sh'] PythonLoader"]
