"""``--idsproc MODULE``: the function mapping an entity to the id its output rows are keyed by.

As prenacs 1.2's ``--idsproc``: a plugin file in any language provbatch loads
(``.py``, ``.sh``, ``.rs`` or a crate directory, ``.nim``), or an importable
Python module; it must define ``compute_id(entity: str) -> str``. What compute
then receives (the processed id, or the file) is decided by the entity stream
(:mod:`.entities`, ids mode and files mode).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import UsageError


def load_idsproc(spec: str) -> Callable[[str], str]:
    """``compute_id`` of an idsproc module, given as a plugin file or an importable module name."""
    import importlib

    from ..errors import PluginLoadError
    from ..plugins import registry

    path = Path(spec)
    try:
        if path.exists() or path.suffix in registry.supported_suffixes():
            if not path.exists():
                raise UsageError(f"{spec}: idsproc module not found")
            module = registry.importer(path)
        else:
            module = importlib.import_module(spec)
    except PluginLoadError as exc:
        raise UsageError(f"idsproc {exc}") from exc
    except ImportError as exc:
        raise UsageError(f"{spec}: cannot import idsproc module: {exc}") from exc
    func = getattr(module, "compute_id", None)
    if not callable(func):
        raise UsageError(f"{spec}: idsproc module must define compute_id(entity: str) -> str")
    return _text_ids(spec, func)


def _text_ids(spec: str, func: Callable[[str], Any]) -> Callable[[str], str]:
    """compute_id must give a string (it keys the rows): anything else is a one-line error."""

    def compute_id(entity: str) -> str:
        entity_id = func(entity)
        if type(entity_id) is not str:
            raise UsageError(f"{spec}: compute_id({entity!r}) returned {type(entity_id).__name__} "
                             f"{str(entity_id)[:60]!r}, not a string")
        return entity_id

    return compute_id
