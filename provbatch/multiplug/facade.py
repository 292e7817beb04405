"""MultiPlug 1.2's public API over provbatch's loaders: code written against MultiPlug works
by changing its import (docs/compatibility.md lists the conventions).

``importer(filename, verbose=False, req_const=[], opt_const=[], req_func=[], opt_func=[],
rust_const_cls="Constants", nim_const_pfx="py_const_", disable_bash=False)`` and the
per-language ``py``, ``bash``, ``rust`` (``const_cls``) and ``nim`` (``const_pfx``) behave as
MultiPlug's: the module gets ``__lang__``, missing optional names are set to None, a missing
required one raises :class:`~.error.InterfaceRequirementError` with MultiPlug's message,
``verbose`` writes MultiPlug's ``#``-lines to stderr, and Bash functions return what
MultiPlug's wrapper returns (stdout; split on tabs, on newlines, or both into a list of lists).
The builds are provbatch's (cached, never next to the plugin); a failed Rust or Nim build
raises :class:`~.error.ExtensionCompilationError`.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

from ..errors import PluginLoadError
from .error import ExtensionCompilationError, InterfaceRequirementError, UnsupportedLangError

RUST_CONST_CLS = "Constants"
NIM_CONST_PFX = "py_const_"


def _enforce_section(m: ModuleType, mname: str, units: Iterable[str], unit_type: str, required: bool) -> list[str]:
    found: dict[bool, list[str]] = {True: [], False: []}
    for unit in units:
        present = hasattr(m, unit)
        if not present:
            if required:
                raise InterfaceRequirementError(f"Plugin module '{mname}' does not define the required {unit_type} '{unit}'")
            setattr(m, unit, None)
        found[present].append(unit)
    label = "required" if required else "optional"
    info = []
    if found[True]:
        info.append(f"#   imported {label} {unit_type}: {', '.join(found[True])}\n")
    if found[False]:
        info.append(f"#   non defined {label} {unit_type} (set to None): {', '.join(found[False])}\n")
    return info


def enforce_plugin_api(m: ModuleType, mname: str, req_const: Iterable[str] = (), req_func: Iterable[str] = (),
                       opt_const: Iterable[str] = (), opt_func: Iterable[str] = ()) -> list[str]:
    """MultiPlug's check: required names must exist, missing optional ones become None; returns the info lines."""
    info = _enforce_section(m, mname, req_const, "constant", True)
    info += _enforce_section(m, mname, opt_const, "constant", False)
    info += _enforce_section(m, mname, req_func, "function", True)
    info += _enforce_section(m, mname, opt_func, "function", False)
    return info


def _finish(m: ModuleType, lang: str, label: str, filename: Any, verbose: bool, names: dict[str, Iterable[str]],
            extra: list[str] | None = None) -> ModuleType:
    modulename = Path(filename).stem
    info = [f"# {label} module {modulename} imported from file {filename}\n"]
    info += enforce_plugin_api(m, modulename, **names)
    info += extra or []
    if verbose:
        sys.stderr.write("".join(info))
    m.__lang__ = lang  # type: ignore[attr-defined]
    return m


def py(filename: Any, verbose: bool = False, req_const: Iterable[str] = [], opt_const: Iterable[str] = [],
       req_func: Iterable[str] = [], opt_func: Iterable[str] = []) -> ModuleType:
    """Import the Python module ``filename`` (as MultiPlug: executed as a module named after the file)."""
    modulename = Path(filename).stem
    spec = importlib.util.spec_from_file_location(modulename, filename)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {filename}")
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    names = dict(req_const=req_const, opt_const=opt_const, req_func=req_func, opt_func=opt_func)
    return _finish(m, "python", "python", filename, verbose, names)


def split_output(retval: str) -> Any:
    """What MultiPlug's Bash wrapper returns for a function's stdout."""
    has_newlines, has_tabs = "\n" in retval, "\t" in retval
    if has_newlines and has_tabs:
        return [line.split("\t") for line in retval.split("\n")]
    if has_newlines:
        return retval.split("\n")
    if has_tabs:
        return retval.split("\t")
    return retval


def bash(filename: Any, verbose: bool = False, req_const: Iterable[str] = [], opt_const: Iterable[str] = [],
         req_func: Iterable[str] = [], opt_func: Iterable[str] = []) -> ModuleType:
    """A module wrapping the Bash script ``filename``: its variables (read with echo -e), its functions."""
    from ..plugins.bash.constants import read_definitions
    from ..plugins.bash.loader import find_bash, param_args
    from ..plugins.bash.runner import runner_for
    from ..plugins.cache import file_sha256

    path = Path(filename).resolve()
    try:
        shell = find_bash(path)
        definitions = read_definitions(shell, path)
        sha256 = file_sha256(path)
    except (PluginLoadError, OSError) as exc:
        raise ImportError(str(exc)) from exc
    m = types.ModuleType(Path(filename).stem)
    m.__file__ = str(path)
    for name, value in definitions.variables.items():
        if name[:1].isalpha():
            setattr(m, name, value)

    def wrap(function: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            result = runner_for(shell, path, sha256).call(function, [os.fspath(a) if isinstance(a, os.PathLike) else str(a)
                                                                     for a in args] + param_args(kwargs))
            sys.stderr.write(result.stderr.decode("utf-8", "replace"))
            if result.status != 0:
                raise RuntimeError(f"{filename}: {function} exited with status {result.status}")
            return split_output(result.stdout.decode("utf-8", "surrogateescape"))

        call.__name__ = call.__qualname__ = function
        return call

    for name in sorted(definitions.functions):
        if name[:1].isalpha() and name.isidentifier():
            setattr(m, name, wrap(name))
    names = dict(req_const=req_const, opt_const=opt_const, req_func=req_func, opt_func=opt_func)
    return _finish(m, "bash", "bash", filename, verbose, names)


def _module_copy(m: ModuleType) -> ModuleType:
    """A module of its own for this import: the loaders keep one module per build in a process
    (provbatch's engine may use it too), and MultiPlug's changes (constants moved, optional
    names set to None) must not leak into it."""
    copy = types.ModuleType(m.__name__, m.__doc__)
    copy.__dict__.update({k: v for k, v in vars(m).items() if k not in ("__name__", "__doc__")})
    return copy


def _compiled(lang: str, filename: Any, options: dict[str, Any]) -> ModuleType:
    from ..plugins.registry import loader_for

    try:
        return _module_copy(loader_for(lang).load(Path(filename).resolve(), **options))
    except PluginLoadError as exc:
        raise ExtensionCompilationError(str(exc)) from exc


def _import_rust_constants(m: ModuleType, const_cls: str) -> None:
    """MultiPlug's constants of a Rust module: every public attribute of the ``const_cls`` class
    (as pyo3 gives it: an array is a list), set on the module; the class removed. Nothing when
    the class is missing (the required-names check then says what is missing)."""
    default = getattr(m, RUST_CONST_CLS, None)
    if default is not None:  # provbatch's loader copied the Constants class's constants: start from pyo3's module
        for name in vars(default):
            if not name.startswith("_"):
                m.__dict__.pop(name, None)
    holder = getattr(m, const_cls, None) if const_cls else None
    if holder is None:
        return
    for name in list(vars(holder)):
        if not name.startswith("_"):
            setattr(m, name, getattr(holder, name))
    delattr(m, const_cls)


def _no_required_constants(req_const: Iterable[str], option: str) -> None:
    if list(req_const):
        # MultiPlug asserts the same: without the mechanism no constant can be required
        raise AssertionError(f"req_const needs the constants mechanism ({option} is empty)")


def rust(filename: Any, verbose: bool = False, req_const: Iterable[str] = [], opt_const: Iterable[str] = [],
         req_func: Iterable[str] = [], opt_func: Iterable[str] = [], const_cls: str = RUST_CONST_CLS) -> ModuleType:
    """Build (cached) and import a pyo3 plugin; the ``const_cls`` class's attributes become module constants."""
    if not const_cls:
        _no_required_constants(req_const, "const_cls")
    m = _compiled("rust", filename, {})
    _import_rust_constants(m, const_cls)
    extra = [] if const_cls else ["# constants definition mechanism disabled\n"]
    names = dict(req_const=req_const, opt_const=opt_const, req_func=req_func, opt_func=opt_func)
    return _finish(m, "rust", "rust", filename, verbose, names, extra)


#: a prefix no Nim proc name can start with: MultiPlug's empty ``const_pfx`` (no constants,
#: every proc a function); provbatch's Nim loader itself requires a non-empty prefix
_NO_NIM_PREFIX = "\x00"


def nim(filename: Any, verbose: bool = False, req_const: Iterable[str] = [], opt_const: Iterable[str] = [],
        req_func: Iterable[str] = [], opt_func: Iterable[str] = [], const_pfx: str = NIM_CONST_PFX) -> ModuleType:
    """Build (cached) and import a nimpy plugin; ``const_pfx`` procs and exportpy_consts become constants."""
    if not const_pfx:
        _no_required_constants(req_const, "const_pfx")
    m = _compiled("nim", filename, {"const_prefix": const_pfx or _NO_NIM_PREFIX})
    extra = [] if const_pfx else ["# constants definition mechanism disabled\n"]
    names = dict(req_const=req_const, opt_const=opt_const, req_func=req_func, opt_func=opt_func)
    return _finish(m, "nim", "nim", filename, verbose, names, extra)


def importer(filename: Any, verbose: bool = False, req_const: Iterable[str] = [], opt_const: Iterable[str] = [],
             req_func: Iterable[str] = [], opt_func: Iterable[str] = [], rust_const_cls: str = RUST_CONST_CLS,
             nim_const_pfx: str = NIM_CONST_PFX, disable_bash: bool = False) -> ModuleType:
    """Import a plugin by its suffix (.py, .rs, .nim, .sh), as ``multiplug.importer`` does."""
    suffix = Path(filename).suffix
    names = dict(verbose=verbose, req_const=req_const, opt_const=opt_const, req_func=req_func, opt_func=opt_func)
    if suffix == ".rs":
        return rust(filename, const_cls=rust_const_cls, **names)  # type: ignore[arg-type]
    if suffix == ".sh":
        if disable_bash:
            raise UnsupportedLangError("Bash scripts are not supported by this application")
        return bash(filename, **names)  # type: ignore[arg-type]
    if suffix == ".nim":
        return nim(filename, const_pfx=nim_const_pfx, **names)  # type: ignore[arg-type]
    if suffix == ".py":
        return py(filename, **names)  # type: ignore[arg-type]
    raise UnsupportedLangError("Unsupported language, file suffix is: " + suffix)
