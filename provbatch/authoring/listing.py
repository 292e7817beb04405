"""``provbatch plugins``: the installed plugins and those bundled in provbatch's repository.

:func:`list_plugins` finds the installed plugins (entry-point group
``provbatch.plugins``) and those bundled in provbatch's repository, and loads
each to read its ID and VERSION (compiled plugins are built, once: the build
cache keeps them). A plugin that does not load is listed with its error, so
that one broken plugin never hides the others.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from ..errors import ProvBatchError
from .text import single_spaced, table

#: Repository folders holding the bundled plugins, in listing order.
BUNDLED_DIRS = ("plugins", "rust_plugins", "nim_plugins")


def _error_line(exc: BaseException) -> str:
    """A load error as one line: provbatch's own messages as they are, others with their type."""
    message = str(exc) if isinstance(exc, ProvBatchError) else f"{type(exc).__name__}: {exc}"
    return single_spaced(message) or type(exc).__name__


def _language_of(path: Path) -> str:
    """The language a plugin path is written in, from its suffix (a crate directory is Rust)."""
    if path.is_dir():
        return "rust"
    return {".py": "python", ".rs": "rust", ".nim": "nim", ".sh": "bash"}.get(path.suffix, "?")


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
    package_dir = package_dir or Path(__file__).resolve().parents[1]
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
    from ..plugins import registry

    suffixes = set(registry.supported_suffixes())
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
    return PluginEntry(origin, name, loaded.lang, single_spaced(loaded.id), single_spaced(loaded.version))


def _entry_point_language(value: str) -> str:
    """The language an entry point's value names, before loading: a path by its suffix, a
    module is Python; ``module:ATTR`` holds a path known only once loaded ("?")."""
    from ..plugins import registry

    if "/" in value or any(value.endswith(suffix) for suffix in registry.supported_suffixes()):
        return _language_of(Path(value))
    return "?" if ":" in value else "python"


def installed_entries() -> list[PluginEntry]:
    """The plugins registered under the entry-point group ``provbatch.plugins``, each loaded."""
    from ..plugins.loading import installed_plugins, load_plugin

    entries = []
    for entry_point in installed_plugins():
        entries.append(
            _entry("installed", entry_point.name, _entry_point_language(entry_point.value), partial(load_plugin, entry_point.name))
        )
    return entries


def bundled_entries(root: Path) -> list[PluginEntry]:
    """The plugins of the repository at ``root``, each loaded (compiled ones built, cached)."""
    from ..plugins.loading import load_plugin

    entries = []
    for path in bundled_plugin_paths(root):
        name = path.relative_to(root).as_posix()
        entry = _entry("bundled", name, _language_of(path), partial(load_plugin, path))
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
    return table(["PLUGIN", "ID", "VERSION", "LANGUAGE", ""], rows, indent="  ")


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
