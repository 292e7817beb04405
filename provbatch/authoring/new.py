"""Tools for plugin authors: list the plugins, describe one, write a new one.

The command line (``provbatch plugins``, ``describe``, ``new``) only prints
what these functions return:

- :func:`list_plugins` finds the installed plugins (entry-point group
  ``provbatch.plugins``) and those bundled in provbatch's repository, and
  loads each to read its ID and VERSION (compiled plugins are built, once:
  the build cache keeps them). A plugin that does not load is listed with
  its error, so that one broken plugin never hides the others.
- :func:`describe_plugin` renders a plugin's metadata, its OUTPUT attributes
  with their definitions, and its PARAMETERS as a table.
- :func:`new_plugin` writes a plugin skeleton in any supported language (the
  sources are in ``provbatch/templates``), the definitions of the attributes
  it outputs and a pytest file that runs it through :func:`provbatch.run_batch`.
"""

from __future__ import annotations

import keyword
import re
import textwrap
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Sequence

from .attributes import DEFAULT_FILENAME, AttributeDefinitions, find_attribute_definitions, load_attribute_definitions
from .errors import ProvBatchError, UsageError

#: Repository folders holding the bundled plugins, in listing order.
BUNDLED_DIRS = ("plugins", "rust_plugins", "nim_plugins")
#: Optional metadata constants shown by ``describe`` (after ID, VERSION, INPUT).
TEXT_CONSTANTS = ("METHOD", "IMPLEMENTATION", "REQ_SOFTWARE", "REQ_HARDWARE", "ADVICE")
#: Functions whose presence ``describe`` reports.
LIFECYCLE_FUNCTIONS = ("initialize", "finalize", "merge")
#: Width the long metadata values of ``describe`` are wrapped to.
WRAP_WIDTH = 100


# --------------------------------------------------------------------------- small helpers


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "") -> list[str]:
    """Columns aligned on their widest cell, two spaces apart; the last column is not padded."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths)] + [row[-1]]
        lines.append((indent + "  ".join(cells)).rstrip())
    return lines


def _one_line(text: Any) -> str:
    """Whitespace runs (tabs, newlines) as single spaces: a table cell or a listing line."""
    return " ".join(str(text).split())


def _error_line(exc: BaseException) -> str:
    """A load error as one line: provbatch's own messages as they are, others with their type."""
    message = str(exc) if isinstance(exc, ProvBatchError) else f"{type(exc).__name__}: {exc}"
    return _one_line(message) or type(exc).__name__


def _language_of(path: Path) -> str:
    """The language a plugin path is written in, from its suffix (a crate directory is Rust)."""
    if path.is_dir():
        return "rust"
    return {".py": "python", ".rs": "rust", ".nim": "nim", ".sh": "bash"}.get(path.suffix, "?")


# --------------------------------------------------------------------------- plugins


@dataclass
class PluginEntry:
    """One line of ``provbatch plugins``: where a plugin comes from and what it says it is."""

    origin: str  # "installed" or "bundled"
    name: str  # entry-point name, or path relative to the repository
    lang: str
    id: str = ""
    version: str = ""
    error: str | None = None  # one line, when the plugin failed to load


def repo_root(package_dir: Path | None = None) -> Path | None:
    """provbatch's repository (the parent of the package folder), or None when provbatch is
    installed without it (a wheel in site-packages): then there are no bundled plugins."""
    package_dir = package_dir or Path(__file__).resolve().parent
    root = package_dir.parent
    pyproject = root / "pyproject.toml"
    try:
        is_ours = pyproject.is_file() and re.search(r'(?m)^name\s*=\s*"provbatch"', pyproject.read_text(encoding="utf-8"))
    except OSError:
        return None
    return root if is_ours and any((root / folder).is_dir() for folder in BUNDLED_DIRS) else None


def bundled_plugin_paths(root: Path) -> list[Path]:
    """The plugins in the repository's plugin folders: files with a plugin suffix and Rust
    crate directories (a Cargo.toml); helpers (``_x.py``, hidden files) and Nim's bridge are not plugins."""
    from . import multiplug

    suffixes = set(multiplug.supported_suffixes())
    found = []
    for folder in BUNDLED_DIRS:
        directory = root / folder
        if not directory.is_dir():
            continue
        for path in sorted(directory.iterdir()):
            if path.name.startswith((".", "_")):
                continue
            if (path.is_file() and path.suffix in suffixes) or (path.is_dir() and (path / "Cargo.toml").is_file()):
                found.append(path)
    return found


def _entry(origin: str, name: str, lang: str, load: Callable[[], Any]) -> PluginEntry:
    """Load one plugin for the listing; any failure becomes the entry's error."""
    try:
        loaded = load()
    except Exception as exc:  # a broken plugin: build errors, import errors, its own bugs
        return PluginEntry(origin, name, lang, error=_error_line(exc))
    except SystemExit as exc:  # a Python plugin calling sys.exit() at import
        return PluginEntry(origin, name, lang, error=f"SystemExit({exc.code}) while loading")
    return PluginEntry(origin, name, loaded.lang, _one_line(loaded.id), _one_line(loaded.version))


def _entry_point_language(value: str) -> str:
    """The language an entry point's value names, before loading: a path by its suffix, a
    module is Python; ``module:ATTR`` holds a path known only once loaded ("?")."""
    from . import multiplug

    if "/" in value or any(value.endswith(suffix) for suffix in multiplug.supported_suffixes()):
        return _language_of(Path(value))
    return "?" if ":" in value else "python"


def installed_entries() -> list[PluginEntry]:
    """The plugins registered under the entry-point group ``provbatch.plugins``, each loaded."""
    from .plugin import installed_plugins, load_plugin

    entries = []
    for entry_point in installed_plugins():
        entries.append(
            _entry("installed", entry_point.name, _entry_point_language(entry_point.value), lambda ep=entry_point: load_plugin(ep.name))
        )
    return entries


def bundled_entries(root: Path) -> list[PluginEntry]:
    """The plugins of the repository at ``root``, each loaded (compiled ones built, cached)."""
    from .plugin import load_plugin

    entries = []
    for path in bundled_plugin_paths(root):
        name = path.relative_to(root).as_posix()
        entry = _entry("bundled", name, _language_of(path), lambda p=path: load_plugin(p))
        if entry.error and entry.error.startswith(str(path)):  # the PLUGIN column names the file already
            entry.error = name + entry.error[len(str(path)):]
        entries.append(entry)
    return entries


@dataclass
class PluginListing:
    """What ``provbatch plugins`` shows: installed plugins, and bundled ones when the repository is there."""

    installed: list[PluginEntry]
    bundled: list[PluginEntry]
    root: Path | None
    #: why there are no bundled plugins when ``root`` is None
    no_root_reason: str = "provbatch is installed without its repository"

    @property
    def entries(self) -> list[PluginEntry]:
        return self.installed + self.bundled


def list_plugins(root: Path | None | str = "auto") -> PluginListing:
    """Every installed and bundled plugin with its ID, VERSION and language.

    ``root`` is the repository to take bundled plugins from: ``"auto"`` finds
    provbatch's own (see :func:`repo_root`), None lists installed plugins only.
    """
    repository = repo_root() if root == "auto" else (Path(root) if root is not None else None)
    bundled = bundled_entries(repository) if repository is not None else []
    listing = PluginListing(installed_entries(), bundled, repository)
    if root is None:
        listing.no_root_reason = "not searched"
    return listing


def _entry_rows(entries: list[PluginEntry]) -> list[str]:
    rows = [[e.name, e.id or "-", e.version or "-", e.lang, f"error: {e.error}" if e.error else ""] for e in entries]
    return _table(["PLUGIN", "ID", "VERSION", "LANGUAGE", ""], rows, indent="  ")


def format_plugin_list(listing: PluginListing) -> str:
    """The listing as text: one section for installed plugins, one for bundled ones."""
    lines = ["installed plugins (entry-point group provbatch.plugins):"]
    lines += _entry_rows(listing.installed) if listing.installed else ["  none"]
    if listing.root is None:
        lines.append(f"bundled plugins: none ({listing.no_root_reason})")
    else:
        lines.append(f"bundled plugins (in {listing.root}):")
        lines += _entry_rows(listing.bundled) if listing.bundled else ["  none"]
    return "\n".join(lines)


# --------------------------------------------------------------------------- describe


def _wrapped(label: str, value: str, width: int) -> list[str]:
    """``label  value`` with the value wrapped and continued under itself."""
    indent = " " * (width + 2)
    paragraphs = str(value).splitlines() or [""]
    lines = []
    for number, paragraph in enumerate(paragraphs):
        first = f"{label.ljust(width)}  " if number == 0 else indent
        wrapped = textwrap.fill(
            paragraph, WRAP_WIDTH, initial_indent=first, subsequent_indent=indent,
            break_long_words=False, break_on_hyphens=False,  # paths and hashes stay whole
        )
        lines.append(wrapped or first.rstrip())
    return lines


def _definitions_for(loaded: Any, attributes: str | Path | None) -> tuple[AttributeDefinitions | None, str]:
    """The definitions to describe OUTPUT with, and a note on where they come from.

    An explicit ``--attributes`` file must load; a definitions file merely found
    (current directory, beside the plugin) that does not is noted, not fatal.
    """
    path = find_attribute_definitions(attributes, loaded.path)
    if path is None:
        return None, f"no {DEFAULT_FILENAME} found: pass --attributes FILE"
    try:
        return load_attribute_definitions(path), f"definitions from {path}"
    except ProvBatchError as exc:
        if attributes is not None:
            raise
        return None, _one_line(exc)


def _output_lines(loaded: Any, attributes: str | Path | None) -> list[str]:
    definitions, note = _definitions_for(loaded, attributes)
    output = getattr(loaded.module, "OUTPUT", None)
    if not isinstance(output, (list, tuple)):
        output = []  # missing, or a single string: check says how to fix it
    rows = []
    for name in map(str, output):
        entry = definitions.attributes.get(name) if definitions is not None else None
        if entry is None:
            undefined = f"(not defined in {definitions.path})" if definitions is not None else "(no definition)"
            rows.append([name, "?", "", undefined])
        else:
            rows.append([name, _one_line(entry["datatype"]), _one_line(entry.get("unit", "")), _one_line(entry["definition"])])
    if not rows:
        return [f"OUTPUT ({note})", "  (none: OUTPUT is missing, empty or not a list; run provbatch check)"]
    return [f"OUTPUT ({note})", *_table(["attribute", "datatype", "unit", "definition"], rows, indent="  ")]


def _default_cell(default: str) -> str:
    """An empty default (or none/null) means the parameter is not passed: the function's own default applies."""
    return "(none)" if default.strip().lower() in {"", "none", "null", "~"} else default


def parameter_table(parameters: Any) -> list[str]:
    """PARAMETERS as aligned rows: name, datatype, default, documentation."""
    if parameters is not None and not isinstance(parameters, (list, tuple)):
        return [f"  PARAMETERS is not a list: {parameters!r} (run provbatch check)"]
    rows, malformed = [], []
    for index, entry in enumerate(parameters or ()):
        if isinstance(entry, (list, tuple)) and len(entry) == 4 and all(isinstance(item, str) for item in entry):
            name, datatype, default, doc = entry
            rows.append([name, datatype, _default_cell(default), _one_line(doc)])
        else:
            malformed.append(f"  PARAMETERS[{index}] is not a 4-tuple of strings: {entry!r} (run provbatch check)")
    if not rows and not malformed:
        return ["  (none: compute takes no parameters)"]
    lines = _table(["name", "datatype", "default", "documentation"], rows, indent="  ") if rows else []
    return lines + malformed


def _text_constant(module: Any, name: str) -> str:
    value = getattr(module, name, None)
    return "(not given)" if value is None or value == "" else str(value)


def describe_plugin(plugin: str | Path, attributes: str | Path | None = None) -> str:
    """A plugin's metadata, OUTPUT attributes and PARAMETERS, as text for a terminal.

    ``plugin`` is a path or an installed plugin's name (compiled plugins are
    built, or taken from the build cache). ``attributes`` is the definitions
    file; by default the one ``batch-compute`` would use.
    """
    from .plugin import load_plugin

    loaded = load_plugin(plugin)
    module = loaded.module
    spec = loaded.spec
    labels = ["ID", "VERSION", "language", "source", "sha256", "library", "library sha256", "INPUT", *TEXT_CONSTANTS, *LIFECYCLE_FUNCTIONS]
    width = max(map(len, labels))
    source = str(loaded.path) if loaded.path is not None else f"{spec.source} (installed module)"
    lines = _wrapped("ID", _text_constant(module, "ID"), width)
    lines += _wrapped("VERSION", _text_constant(module, "VERSION"), width)
    lines += _wrapped("language", loaded.lang, width)
    lines += _wrapped("source", source, width)
    if loaded.path is not None:
        lines += _wrapped("sha256", loaded.sha256(), width)
    if spec.artifact and spec.artifact != spec.source:
        lines += _wrapped("library", spec.artifact, width)
        lines += _wrapped("library sha256", str(spec.artifact_sha256), width)
    for name in ("INPUT", *TEXT_CONSTANTS):
        lines += _wrapped(name, _text_constant(module, name), width)
    for name in LIFECYCLE_FUNCTIONS:
        lines += _wrapped(name, "yes" if loaded.has(name) else "no", width)
    lines += ["", *_output_lines(loaded, attributes)]
    lines += ["", "PARAMETERS", *parameter_table(getattr(module, "PARAMETERS", None))]
    return "\n".join(lines)


# --------------------------------------------------------------------------- new


@dataclass(frozen=True)
class Language:
    """How ``provbatch new`` writes a plugin in one language."""

    name: str  # as in __lang__
    suffix: str
    template: str  # file in provbatch/templates
    reserved: frozenset[str] = frozenset()  # names the language's build cannot take


_RUST_RESERVED = frozenset(
    "as async await break const continue crate dyn else enum extern false fn for if impl in let loop match mod move mut "
    "pub ref return self static struct super trait true type unsafe use where while abstract become box do final macro "
    "override priv try typeof unsized virtual yield core std alloc proc_macro test".split()
)
_NIM_RESERVED = frozenset(
    "addr and as asm bind block break case cast concept const continue converter defer discard distinct div do elif "
    "else end enum except export finally for from func if import in include interface is isnot iterator let macro "
    "method mixin mod nil not notin object of or out proc ptr raise ref return shl shr static template try tuple type "
    "using var when while xor yield nimpy system strutils".split()
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
    return (resources.files("provbatch") / "templates" / name).read_text(encoding="utf-8")


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
