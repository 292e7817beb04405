"""``provbatch new NAME --lang LANG``: a plugin skeleton, its test and its attribute definitions.

:func:`new_plugin` writes a plugin skeleton in any supported language (the
sources are in ``provbatch/authoring/templates``), the definitions of the
attributes it outputs and a pytest file that runs it through
:func:`provbatch.run_batch`.
"""

from __future__ import annotations

import keyword
import re
import textwrap
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ..contract.attributes import DEFAULT_FILENAME, find_attribute_definitions
from ..errors import UsageError


@dataclass(frozen=True)
class Language:
    """How ``provbatch new`` writes a plugin in one language."""

    name: str  # as in __lang__
    suffix: str
    template: str  # file in provbatch/authoring/templates
    reserved: frozenset[str] = frozenset()  # names the language's build cannot take


_RUST_RESERVED = frozenset(
    ["as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern", "false", "fn", "for", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return", "self", "static", "struct", "super", "trait", "true", "type", "unsafe", "use", "where", "while", "abstract", "become", "box", "do", "final", "macro", "override", "priv", "try", "typeof", "unsized", "virtual", "yield", "core", "std", "alloc", "proc_macro", "test"]
)
_NIM_RESERVED = frozenset(
    ["addr", "and", "as", "asm", "bind", "block", "break", "case", "cast", "concept", "const", "continue", "converter", "defer", "discard", "distinct", "div", "do", "elif", "else", "end", "enum", "except", "export", "finally", "for", "from", "func", "if", "import", "in", "include", "interface", "is", "isnot", "iterator", "let", "macro", "method", "mixin", "mod", "nil", "not", "notin", "object", "of", "or", "out", "proc", "ptr", "raise", "ref", "return", "shl", "shr", "static", "template", "try", "tuple", "type", "using", "var", "when", "while", "xor", "yield", "nimpy", "system", "strutils"]
)
LANGUAGES: dict[str, Language] = {
    "py": Language("python", ".py", "plugin.py.tmpl"),
    "rust": Language("rust", ".rs", "plugin.rs.tmpl", _RUST_RESERVED),
    "nim": Language("nim", ".nim", "plugin.nim.tmpl", _NIM_RESERVED),
    "bash": Language("bash", ".sh", "plugin.sh.tmpl"),
}
_ALIASES = {"python": "py", "rs": "rust", "sh": "bash"}
#: lower-case letters, digits and single underscores; no trailing underscore (Nim's module rules)
_NAME = re.compile(r"^[a-z](?:_?[a-z0-9])*$")
_MAX_NAME = 64
PLACEHOLDER = "__NAME__"
FILE_PLACEHOLDER = "__FILE__"


def _template(name: str) -> str:
    return (resources.files("provbatch.authoring") / "templates" / name).read_text(encoding="utf-8")


def language(lang: str) -> Language:
    """The :class:`Language` for ``py``, ``rust``, ``nim`` or ``bash`` (or python/rs/sh)."""
    key = _ALIASES.get(lang, lang)
    if key not in LANGUAGES:
        raise UsageError(f"unknown language '{lang}' (use one of: {', '.join(LANGUAGES)})")
    return LANGUAGES[key]


def check_name(name: str, lang: Language) -> None:
    """NAME becomes a file, a Rust crate or Nim module, attribute names and a test module."""
    if not _NAME.match(name) or len(name) > _MAX_NAME:
        raise UsageError(
            f"plugin name '{name}': use lower-case letters, digits and single underscores, starting with a "
            f"letter and not ending with '_', at most {_MAX_NAME} characters (it names the file, the module and the attributes)"
        )
    if keyword.iskeyword(name) or name in lang.reserved:
        raise UsageError(f"plugin name '{name}' is reserved in {lang.name}: choose another name")
    if name.startswith("test_") or name.endswith("_test"):
        raise UsageError(f"plugin name '{name}': pytest would take {name}{lang.suffix} for a test module: choose another name")
    if lang.name == "python":
        import importlib.util

        if name == "provbatch" or importlib.util.find_spec(name) is not None:
            raise UsageError(
                f"plugin name '{name}' is also an importable Python module, which {name}.py would shadow "
                "in its test: choose another name"
            )


def attribute_names(name: str) -> list[str]:
    """The OUTPUT attributes of a new plugin (prefixed with its name, so they do not clash)."""
    return [f"{name}_lines", f"{name}_bytes"]


def attribute_entries(name: str) -> dict[str, str]:
    """attribute name -> its YAML entry, as appended to the definitions file."""
    lines, size = attribute_names(name)
    remark = f"written by 'provbatch new'; update it when {name} computes something else"
    return {
        lines: textwrap.dedent(f"""\
            {lines}:
              definition: number of lines of the entity file that do not start with the skip_prefix parameter of {name}
              datatype: Integer
              computation_group: {name}
              unit: lines
              remark: {remark}
            """),
        size: textwrap.dedent(f"""\
            {size}:
              definition: number of bytes of the lines counted in {lines}, without their newlines
              datatype: Integer
              computation_group: {name}
              unit: bytes
              remark: {remark}
            """),
    }


def _existing_attributes(path: Path) -> set[str]:
    """Names already defined in a definitions file (which must be a YAML mapping, or empty)."""
    if not path.exists():
        return set()
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read attribute definitions: {exc}") from exc
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: attribute definitions are not valid YAML ({getattr(exc, 'problem', exc)}): fix it first") from exc
    if data is None:
        return set()
    if not isinstance(data, dict):
        raise UsageError(f"{path}: attribute definitions must be a mapping of attribute name -> definition: fix it first")
    return {str(key) for key in data}


def _append_definitions(path: Path, name: str, existing: set[str]) -> list[str]:
    """Append the entries of the attributes not yet defined; never touches the others."""
    entries = {attr: text for attr, text in attribute_entries(name).items() if attr not in existing}
    if not entries:
        return []
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    separator = "" if not text else ("\n" if text.endswith("\n") else "\n\n")
    block = f"# attributes of the plugin {name} (written by 'provbatch new': describe what it computes)\n"
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(separator + block + "".join(entries.values()))
    return list(entries)


@dataclass
class NewPlugin:
    """What :func:`new_plugin` wrote."""

    plugin: Path
    test: Path
    attributes: Path
    added: list[str] = field(default_factory=list)  # attribute entries appended
    kept: list[str] = field(default_factory=list)  # attribute entries that existed already (not changed)

    def attributes_option(self) -> list[str]:
        """``--attributes FILE`` when batch-compute, run from the current directory, would not find our file."""
        found = find_attribute_definitions(None, self.plugin)
        same = found is not None and found.resolve() == self.attributes.resolve()
        return [] if same else ["--attributes", str(self.attributes)]


def new_plugin(name: str, lang: str, directory: str | Path = ".") -> NewPlugin:
    """Write ``DIR/NAME.<suffix>``, ``DIR/test_NAME.py`` and the definitions of its attributes
    (appended to ``DIR/attribute_definitions.yaml``).

    Refuses, before writing anything, when the plugin or test file exists or the
    definitions file is not a mapping; existing attribute entries are left as
    they are (listed in ``kept``).
    """
    spec = language(lang)
    check_name(name, spec)
    folder = Path(directory).expanduser()
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{folder}: not a directory")
    plugin = folder / f"{name}{spec.suffix}"
    test = folder / f"test_{name}.py"
    definitions = folder / DEFAULT_FILENAME
    for path, what in ((plugin, "plugin"), (test, "test")):
        if path.exists():
            raise UsageError(f"{path}: {what} file already exists; provbatch new never overwrites one: choose another NAME or --dir")
    existing = _existing_attributes(definitions)
    folder.mkdir(parents=True, exist_ok=True)
    source = _template(spec.template).replace(PLACEHOLDER, name)
    test_source = _template("test_plugin.py.tmpl").replace(FILE_PLACEHOLDER, plugin.name).replace(PLACEHOLDER, name)
    with open(plugin, "x", encoding="utf-8") as handle:
        handle.write(source)
    if spec.name == "bash":
        plugin.chmod(0o755)
    with open(test, "x", encoding="utf-8") as handle:
        handle.write(test_source)
    added = _append_definitions(definitions, name, existing)
    kept = [attr for attr in attribute_names(name) if attr in existing]
    return NewPlugin(plugin, test, definitions, added, kept)
