"""Loader for Python plugins: a ``.py`` file, or an installed module.

The file is compiled and executed into a fresh module object instead of going
through the import system, so no ``__pycache__`` is written into the plugin's
folder. While the module body runs, the plugin's folder is on ``sys.path`` (so
a plugin can import helper modules lying beside it) and bytecode writing is
off.
"""

from __future__ import annotations

import hashlib
import importlib
import sys
import traceback
import types
from pathlib import Path
from types import ModuleType
from typing import Any

from ..errors import PluginLoadError
from .base import Loader, PluginSpec, finish_module

MODULE_PREFIX = "module:"


def _error_location(exc: BaseException, path: Path) -> str:
    """``file:line`` of the innermost frame in the plugin file (or the syntax error)."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{exc.filename}:{exc.lineno}"
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == str(path)]
    if frames:
        return f"{frames[-1].filename}:{frames[-1].lineno}"
    return str(path)


def exec_python_file(path: Path, module_name: str) -> ModuleType:
    """Execute a Python source file into a new module registered under ``module_name``."""
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PluginLoadError(f"{path}: cannot read plugin: {exc}") from exc
    module = types.ModuleType(module_name)
    module.__file__ = str(path)
    sys.modules[module_name] = module  # dataclasses & pickling by reference look it up here
    folder = str(path.parent)
    saved_flag = sys.dont_write_bytecode
    sys.dont_write_bytecode = True
    sys.path.insert(0, folder)
    try:
        code = compile(source, str(path), "exec")
        exec(code, module.__dict__)
    except SyntaxError as exc:
        sys.modules.pop(module_name, None)
        raise PluginLoadError(f"{_error_location(exc, path)}: SyntaxError: {exc.msg}") from exc
    except Exception as exc:  # an import error or any error of the module body
        sys.modules.pop(module_name, None)
        raise PluginLoadError(f"{_error_location(exc, path)}: {type(exc).__name__}: {exc}") from exc
    finally:
        sys.dont_write_bytecode = saved_flag
        try:
            sys.path.remove(folder)
        except ValueError:
            pass
    return module


class PythonLoader(Loader):
    lang = "python"

    def load(self, path: Path, **options: Any) -> ModuleType:
        # A stable, path-derived name: the same plugin file maps to the same
        # module in the driver and in every worker.
        name = "provbatch_plugin_" + hashlib.sha1(str(path).encode()).hexdigest()[:16]
        module = exec_python_file(path, name)
        spec = PluginSpec(lang=self.lang, source=str(path), options=tuple(sorted(options.items())))
        return finish_module(module, self.lang, spec)

    def load_module(self, module_name: str) -> ModuleType:
        """Load a plugin installed as an importable module (entry-point plugins)."""
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            raise PluginLoadError(f"{module_name}: cannot import plugin module: {type(exc).__name__}: {exc}") from exc
        spec = PluginSpec(lang=self.lang, source=MODULE_PREFIX + module_name)
        return finish_module(module, self.lang, spec)

    def load_spec(self, spec: PluginSpec) -> ModuleType:
        if spec.source.startswith(MODULE_PREFIX):
            return self.load_module(spec.source[len(MODULE_PREFIX):])
        name = "provbatch_plugin_" + hashlib.sha1(spec.source.encode()).hexdigest()[:16]
        existing = sys.modules.get(name)
        if existing is not None and getattr(existing, "__provbatch_spec__", None) is not None:
            return existing  # already loaded in this process (serial backend, forked workers)
        return self.load(Path(spec.source), **dict(spec.options))
