"""Loader for Nim plugins: a ``.nim`` file written as the ProvBatch guide shows.

The plugin is compiled to a CPython extension module (``nim c --app:lib``,
release, ORC, against this Python's headers) with provbatch's own ``nimpy``
bridge first on the Nim path (nimpy itself cannot be installed here), in the
build cache (:mod:`.build`), and imported with importlib like a Rust
plugin (:mod:`.library`).

The module the engine sees:

- every exported proc as an attribute: the bridge's built-in function itself
  (``compute``, ``initialize``, ``finalize``, ...), taking arguments by
  position or keyword, so that a call costs what a C extension call costs;
- every exported proc named ``<const_prefix><NAME>`` without parameters
  (what ``exportpy_consts(NAME, ...)`` generates) called once, its value set
  as the constant ``NAME``; ``const_prefix`` is a loader option, default
  ``py_const_``.

A state returned by ``initialize`` is a handle to a Nim ``ref`` object in this
process, so the spec says ``process_local_state``: the engine then runs
initialize/finalize once per worker. Workers load the library the driver
built (or its bytes shipped with the spec) and never compile.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import types
from pathlib import Path
from types import ModuleType
from typing import Any

from ...errors import PluginLoadError
from ..base import Loader, PluginSpec, finish_module
from ..cache import local_artifact, verified_sha256
from .build import LANG, build_plugin, nim_executable, nim_version
from .library import NimError, NimLibrary, library_key, open_library

log = logging.getLogger("provbatch.plugins.nim")

DEFAULT_CONST_PREFIX = "py_const_"
KNOWN_OPTIONS = {"const_prefix", "nim_path"}

_modules: dict[tuple[tuple[int, int], str], ModuleType] = {}
_modules_lock = threading.Lock()


def _const_prefix(options: dict[str, Any], source: str) -> str:
    unknown = sorted(set(options) - KNOWN_OPTIONS)
    if unknown:
        raise PluginLoadError(
            f"{source}: unknown option(s) {', '.join(unknown)} for a Nim plugin (known: {', '.join(sorted(KNOWN_OPTIONS))})"
        )
    prefix = options.get("const_prefix", DEFAULT_CONST_PREFIX)
    if not isinstance(prefix, str) or not prefix:
        raise PluginLoadError(f"{source}: option const_prefix must be a non-empty string, got {prefix!r}")
    return prefix


def build_module(library: NimLibrary, source: str, prefix: str) -> ModuleType:
    """A module with the library's procs as callables and its constants as values.

    The functions are the library's own (compute drops the keywords only
    initialize takes and the other way round: the engine passes every batch
    parameter to both); the constants are computed once, here.
    """
    name = "provbatch_nim_plugin_" + hashlib.sha1(f"{source}\0{library.path}".encode()).hexdigest()[:16]
    module = types.ModuleType(name, f"Nim plugin {source}")
    module.__file__ = source
    vars(module)["__nim_library__"] = library  # vars(): ModuleType does not declare it
    for info in library.descriptor["procs"]:
        call = library.function(info["name"])
        if info["name"].startswith(prefix) and len(info["name"]) > len(prefix) and not info["params"]:
            constant = info["name"][len(prefix):]
            try:
                setattr(module, constant, call())
            except (NimError, TypeError) as exc:
                raise PluginLoadError(f"{source}: constant {constant} failed: {type(exc).__name__}: {exc}") from exc
        else:
            setattr(module, info["name"], call)
    return module


def _open(artifact: Path | str, source: str) -> NimLibrary:
    try:
        return open_library(artifact, Path(source).stem)
    except (ImportError, OSError, AttributeError, ValueError, RuntimeError) as exc:
        raise PluginLoadError(f"{source}: cannot load the built library {artifact}: {exc}") from exc


def _module_for(artifact: str, source: str, prefix: str) -> ModuleType:
    """One module per library and prefix in a process (constants are computed once)."""
    key = (library_key(artifact), prefix)
    with _modules_lock:
        module = _modules.get(key)
        if module is None:
            module = build_module(_open(artifact, source), source, prefix)
            _modules[key] = module
        return module


class NimLoader(Loader):
    lang = LANG
    #: whether the last load() compiled (False: a cache hit); for tests and benchmarks
    last_built: bool | None = None

    def load(self, path: Path, **options: Any) -> ModuleType:
        prefix = _const_prefix(options, str(path))
        if not path.is_file():
            raise PluginLoadError(f"{path}: a Nim plugin must be a .nim file")
        artifact, built = build_plugin(path, options.get("nim_path"))
        self.last_built = built
        log.info("nim plugin %s: %s %s", path, "built" if built else "cached", artifact)
        module = _module_for(str(artifact), str(path), prefix)
        spec = PluginSpec(
            lang=self.lang,
            source=str(path),
            artifact=str(artifact),
            artifact_sha256=verified_sha256(artifact),
            options=tuple(sorted(options.items())),
            process_local_state=callable(getattr(module, "initialize", None)),
        )
        return finish_module(module, self.lang, spec)

    def load_spec(self, spec: PluginSpec) -> ModuleType:
        prefix = _const_prefix(dict(spec.options), spec.source)
        if not spec.artifact:
            raise PluginLoadError(f"{spec.source}: the plugin spec has no built library (workers never compile)")
        artifact = local_artifact(spec, self.lang)
        module = _module_for(str(artifact), spec.source, prefix)
        return finish_module(module, self.lang, spec)

    def versions(self) -> dict[str, str]:
        try:
            return {"nim": nim_version(nim_executable())}
        except PluginLoadError:
            return {"nim": "not found"}
