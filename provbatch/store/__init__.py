"""The results store: every value with the computation that produced it, and its history.

SQLite (embedded, the default ``./provbatch.sqlite``), PostgreSQL or
MariaDB/MySQL through SQLAlchemy Core; the schema is versioned with Alembic
(:mod:`.migrate`). :class:`Store` is the library face; docs/store.md the guide.

The names are imported on first use (PEP 562): ``batch-compute --store``'s
engine reads the records (:mod:`.records`) and the URL rules (:mod:`.url`)
without importing :mod:`.store`, and so SQLAlchemy (~0.35 s), which only
its store writer process needs (:mod:`provbatch.outputs.store_process`).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .records import ComputationRecord, PluginRecord, computation_from_report, plugin_record, read_report
    from .store import ApplyResult, LoadResult, Store, StoreConflict, read_definitions
    from .url import store_url

#: each public name -> the module that defines it
_HOMES = {
    "ComputationRecord": ".records", "PluginRecord": ".records", "computation_from_report": ".records",
    "plugin_record": ".records", "read_report": ".records",
    "ApplyResult": ".store", "LoadResult": ".store", "Store": ".store", "StoreConflict": ".store",
    "read_definitions": ".store",
    "store_url": ".url",
}

__all__ = ["ApplyResult", "ComputationRecord", "LoadResult", "PluginRecord", "Store", "StoreConflict",
           "computation_from_report", "plugin_record", "read_definitions", "read_report", "store_url"]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(home, __name__), name)
    globals()[name] = value  # the next access is a plain global
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
