"""Finding, loading and checking a plugin: the PLUGIN argument becomes a :class:`LoadedPlugin`.

PLUGIN is a path (file, or Rust crate directory), or the name of a plugin
installed under the entry-point group ``provbatch.plugins``, whose value is

- an importable module that is the plugin: ``gc = "mypkg.gc_plugin"``;
- a ``module:attribute`` whose attribute holds the path of a plugin file
  shipped in the package (the standard-conformant way to register a Rust,
  Nim or Bash plugin): ``gc_rs = "mypkg:GC_RS_PATH"``;
- or a plain path (absolute, or relative to the distribution's root), for
  metadata written by tools that do not validate entry-point values.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

from ..contract.attributes import AttributeDefinitions, find_attribute_definitions, load_attribute_definitions
from ..contract.validation import OPTIONAL_CONSTANTS, OPTIONAL_FUNCTIONS, validate_plugin
from ..errors import PluginLoadError, PluginValidationError, UsageError
from . import registry
from .base import PluginSpec

ENTRY_POINT_GROUP = "provbatch.plugins"


@dataclass
class LoadedPlugin:
    """A plugin loaded in the driver, with what the engine and the records need of it."""

    label: str
    module: ModuleType
    path: Path | None  # None for a plugin installed as a module without a file

    @property
    def spec(self) -> PluginSpec:
        return self.module.__provbatch_spec__

    @property
    def lang(self) -> str:
        return self.module.__lang__

    @property
    def id(self) -> str:
        return getattr(self.module, "ID", None) or ""

    @property
    def version(self) -> str:
        return getattr(self.module, "VERSION", None) or ""

    @property
    def output(self) -> list[str]:
        return list(getattr(self.module, "OUTPUT", None) or [])

    @property
    def parameters(self) -> list[Any]:
        return list(getattr(self.module, "PARAMETERS", None) or [])

    def has(self, function: str) -> bool:
        return callable(getattr(self.module, function, None))

    def source_files(self) -> list[Path]:
        """The source files the plugin is built from (a crate directory's: those its build copies)."""
        if self.path is None:
            return []
        if self.path.is_dir():
            from .rust.build import crate_files

            return [self.path / name for name in sorted(crate_files(self.path), key=lambda n: n.split("/"))]
        return [self.path]

    def sha256(self) -> str:
        """sha256 of the plugin's sources (see :func:`sources_sha256`)."""
        if self.path is None:
            return ""
        if not self.path.is_dir():
            return sources_sha256({self.path.name: self.path.read_bytes()}, single=self.path.name)
        return sources_sha256({f.relative_to(self.path).as_posix(): f.read_bytes() for f in self.source_files()})


def sources_sha256(files: Mapping[str, bytes], single: str | None = None) -> str:
    """The plugin's sha256 (the report's ``plugin_sha256``): the bytes of the ``single`` file, or for
    a directory every relative name and its bytes, in path order.

    One home, because a rerun recomputes it from the captured sources and refuses a record
    whose sources do not hash to the sha256 the run reported.
    """
    if single is not None:
        return hashlib.sha256(files[single]).hexdigest()
    digest = hashlib.sha256()
    for name in sorted(files, key=lambda n: n.split("/")):
        digest.update(name.encode() + b"\0")
        digest.update(files[name])
    return digest.hexdigest()


def _entry_point(name: str) -> EntryPoint | None:
    matches = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    return matches[0] if matches else None


def installed_plugins() -> list[EntryPoint]:
    """The plugins registered by installed packages under ``provbatch.plugins``."""
    return sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)


def _looks_like_path(value: str) -> bool:
    return "/" in value or any(value.endswith(suffix) for suffix in registry.supported_suffixes())


def load_plugin(plugin: str | Path, **options: Any) -> LoadedPlugin:
    """Load PLUGIN (a path or an installed plugin's name) in the driver, building it if needed."""
    label = str(plugin)
    names = dict(opt_const=OPTIONAL_CONSTANTS, opt_func=OPTIONAL_FUNCTIONS)
    path = Path(label).expanduser()
    if path.exists():
        module = registry.importer(path, **names, **options)
        return LoadedPlugin(label, module, path.resolve())
    entry = None if isinstance(plugin, Path) else _entry_point(label)
    if entry is None:
        if _looks_like_path(label):
            raise UsageError(f"{label}: plugin file not found")  # a wrong path, like a missing ENTITIES: usage (2)
        raise PluginLoadError(
            f"{label}: no such plugin file, and no installed plugin of that name "
            f"(entry-point group '{ENTRY_POINT_GROUP}'; see 'provbatch plugins')"
        )
    value = entry.value
    if _looks_like_path(value):
        target = Path(value)
        if not target.is_absolute() and entry.dist is not None:
            target = Path(str(entry.dist.locate_file(value)))
        if not target.exists():
            raise PluginLoadError(f"{label}: installed plugin points to {target}, which does not exist")
        module = registry.importer(target, **names, **options)
        return LoadedPlugin(label, module, target.resolve())
    if ":" in value:
        try:
            target_value = entry.load()
        except Exception as exc:
            raise PluginLoadError(f"{label}: cannot load entry point '{value}': {type(exc).__name__}: {exc}") from exc
        if isinstance(target_value, (str, os.PathLike)):
            target = Path(target_value)
            if not target.exists():
                raise PluginLoadError(f"{label}: installed plugin points to {target}, which does not exist")
            module = registry.importer(target, **names, **options)
            return LoadedPlugin(label, module, target.resolve())
    module_name = value.split(":")[0].strip()
    from .python import PythonLoader  # the registry imports loaders lazily: so does this

    python = registry.loader_for("python")
    assert isinstance(python, PythonLoader)  # registry.py registers it for "python"
    module = python.load_module(module_name)
    registry.check_names(module, label, (), OPTIONAL_CONSTANTS, (), OPTIONAL_FUNCTIONS)
    file = getattr(module, "__file__", None)
    return LoadedPlugin(label, module, Path(file).resolve() if file else None)


def resolve_attributes(explicit: str | Path | None, plugin: LoadedPlugin | None) -> AttributeDefinitions | None:
    """Load the definitions file to check OUTPUT against (see :func:`find_attribute_definitions`)."""
    path = find_attribute_definitions(explicit, plugin.path if plugin else None)
    return load_attribute_definitions(path) if path is not None else None


def check_plugin(plugin: LoadedPlugin, attributes: AttributeDefinitions | None) -> list[str]:
    """Every problem of the plugin, and of the definitions of the attributes it outputs."""
    problems = validate_plugin(plugin.module, attributes)
    if attributes is not None:
        outputs = set(plugin.output)
        problems.extend(p for p in attributes.problems if any(f"'{name}'" in p for name in outputs))
    return problems


def plugin_warnings(plugin: LoadedPlugin, attributes: AttributeDefinitions | None) -> list[str]:
    """What is worth knowing but does not stop a run: the attribute definitions' warnings for
    the plugin's OUTPUT, and a Rust plugin written against the legacy (GIL-ref) pyo3 API."""
    found: list[str] = []
    if attributes is not None:
        outputs = set(plugin.output)
        found.extend(w for w in attributes.warnings if any(f"'{name}'" in w for name in outputs))
    if plugin.lang == "rust" and plugin.path is not None:
        from .rust import build as rust_build

        sources = [plugin.path] if plugin.path.is_file() else sorted(plugin.path.rglob("*.rs"))
        for source in sources:
            try:
                reason = rust_build.legacy_api(source.read_text(encoding="utf-8", errors="replace"))
            except OSError:
                continue
            if reason:
                found.append(f"{source.name} {rust_build.migration_hint(reason)}")
                break
    return found


def require_valid(plugin: LoadedPlugin, attributes: AttributeDefinitions | None) -> None:
    """Raise :class:`PluginValidationError` listing every problem, if there is any."""
    problems = check_plugin(plugin, attributes)
    if problems:
        raise PluginValidationError(str(plugin.path or plugin.label), problems)
