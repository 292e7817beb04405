"""The plugin loaders by suffix and language: load a plugin written in Python, Rust, Nim or Bash as a module.

``importer(filename, ...)`` picks a loader by the file's suffix (or, for a
directory, by what it contains), lets it build the plugin when the language
needs it, and checks that the required names exist.

Each loader is a small class (see :mod:`provbatch.plugins.base`) registered
here by dotted path, so that a loader's own imports (a build tool, ctypes
helpers) cost nothing unless a plugin of its language is used.

Loaders never change the working directory and never write into the plugin's
folder: compiled builds go to a cache directory (see :mod:`.cache`).
:mod:`provbatch.multiplug` is MultiPlug 1.2's API (its own ``importer``) over these loaders.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

from ..errors import InterfaceRequirementError, PluginLoadError
from .base import Loader, PluginSpec

__all__ = [
    "importer",
    "load_spec",
    "loader_for",
    "register_loader",
    "supported_suffixes",
    "InterfaceRequirementError",
    "Loader",
    "PluginSpec",
]

#: suffix -> "module:Class" of its loader; imported on first use.
_LOADERS: dict[str, str] = {
    ".py": "provbatch.plugins.python:PythonLoader",
    ".rs": "provbatch.plugins.rust.loader:RustLoader",
    ".nim": "provbatch.plugins.nim.loader:NimLoader",
    ".sh": "provbatch.plugins.bash.loader:BashLoader",
}
#: language name -> suffix, for specs and directories.
_LANG_SUFFIX: dict[str, str] = {"python": ".py", "rust": ".rs", "nim": ".nim", "bash": ".sh"}
_instances: dict[str, Loader] = {}


def register_loader(suffix: str, target: str, lang: str | None = None) -> None:
    """Register (or replace) the loader class for a suffix, given as ``"module:Class"``."""
    _LOADERS[suffix] = target
    _instances.pop(suffix, None)
    if lang:
        _LANG_SUFFIX[lang] = suffix


def supported_suffixes() -> list[str]:
    """The suffixes a plugin file may have."""
    return sorted(_LOADERS)


def _suffix_of(path: Path) -> str:
    if path.is_dir():
        if (path / "Cargo.toml").is_file():
            return ".rs"
        raise PluginLoadError(
            f"{path}: a plugin directory must be a Rust crate (with a Cargo.toml); "
            f"other plugins are single files ({', '.join(supported_suffixes())})"
        )
    return path.suffix


def loader_for(suffix_or_lang: str) -> Loader:
    """The loader instance for a suffix (".rs") or a language name ("rust")."""
    suffix = _LANG_SUFFIX.get(suffix_or_lang, suffix_or_lang)
    if suffix not in _LOADERS:
        raise PluginLoadError(f"unsupported plugin type '{suffix_or_lang}' (supported: {', '.join(supported_suffixes())})")
    if suffix not in _instances:
        module_name, class_name = _LOADERS[suffix].split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                raise PluginLoadError(f"plugins with suffix '{suffix}' are not supported by this provbatch yet") from exc
            raise
        _instances[suffix] = getattr(module, class_name)()
    return _instances[suffix]


def check_names(
    module: ModuleType,
    filename: str,
    req_const: Iterable[str],
    opt_const: Iterable[str],
    req_func: Iterable[str],
    opt_func: Iterable[str],
) -> None:
    for name in req_const:
        if getattr(module, name, None) is None:
            raise InterfaceRequirementError(filename, name, "constant")
    for name in req_func:
        if getattr(module, name, None) is None:
            raise InterfaceRequirementError(filename, name, "function")
        if not callable(getattr(module, name)):
            raise InterfaceRequirementError(filename, name, "function (it is defined but not callable)")
    for name in list(opt_const) + list(opt_func):
        if not hasattr(module, name):
            setattr(module, name, None)


def importer(
    filename: str | Path,
    req_const: Iterable[str] = (),
    opt_const: Iterable[str] = (),
    req_func: Iterable[str] = (),
    opt_func: Iterable[str] = (),
    **options: object,
) -> ModuleType:
    """Load the plugin at ``filename`` as a module, building it first if needed.

    The module gets ``__lang__`` (``python``, ``rust``, ``nim`` or ``bash``) and
    ``__provbatch_spec__``, a picklable :class:`PluginSpec` with which a worker
    process loads the same plugin again without building it.

    A missing required name raises :class:`InterfaceRequirementError`; a
    missing optional one is set to ``None``. ``options`` go to the loader
    (e.g. ``constants_class`` for Rust, ``const_prefix`` for Nim).
    """
    path = Path(filename).expanduser()
    if not path.exists():
        raise PluginLoadError(f"{filename}: plugin file not found")
    loader = loader_for(_suffix_of(path))
    module = loader.load(path.resolve(), **options)
    check_names(module, str(filename), req_const, opt_const, req_func, opt_func)
    return module


def load_spec(
    spec: PluginSpec,
    opt_const: Iterable[str] = (),
    opt_func: Iterable[str] = (),
) -> ModuleType:
    """Load a plugin in a worker from the spec the driver's import produced.

    Never builds: compiled plugins are loaded from the artifact the driver built.
    """
    module = loader_for(spec.lang).load_spec(spec)
    check_names(module, spec.source, (), opt_const, (), opt_func)
    return module
