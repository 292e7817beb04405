"""``--idsproc MODULE``: the function mapping an entity to the id its output rows are keyed by.

A ``.py`` file (executed like a Python plugin: no ``__pycache__`` beside it)
or an importable module; it must define ``compute_id(entity: str) -> str``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..errors import UsageError


def load_idsproc(spec: str) -> Callable[[str], str]:
    """``compute_id`` of an idsproc module, given as a ``.py`` path or an importable module name."""
    import importlib
    import hashlib

    from ..plugins.python import exec_python_file
    from ..errors import PluginLoadError

    path = Path(spec)
    try:
        if spec.endswith(".py") or path.exists():
            if not path.is_file():
                raise UsageError(f"{spec}: idsproc module not found")
            module = exec_python_file(path.resolve(), "provbatch_idsproc_" + hashlib.sha1(spec.encode()).hexdigest()[:12])
        else:
            module = importlib.import_module(spec)
    except PluginLoadError as exc:
        raise UsageError(f"idsproc {exc}") from exc
    except ImportError as exc:
        raise UsageError(f"{spec}: cannot import idsproc module: {exc}") from exc
    func = getattr(module, "compute_id", None)
    if not callable(func):
        raise UsageError(f"{spec}: idsproc module must define compute_id(entity: str) -> str")
    return func
