"""The results store: every value with the computation that produced it, and its history.

SQLite (embedded, the default ``./provbatch.sqlite``), PostgreSQL or
MariaDB/MySQL through SQLAlchemy Core; the schema is versioned with Alembic
(:mod:`.migrate`). :class:`Store` is the library face; docs/store.md the guide.
"""

from .records import (
           ComputationRecord,
           PluginRecord,
           computation_from_report,
           plugin_record,
           read_report,
)
from .store import ApplyResult, LoadResult, Store, StoreConflict, read_definitions
from .url import store_url

__all__ = ["ApplyResult", "ComputationRecord", "LoadResult", "PluginRecord", "Store", "StoreConflict",
           "computation_from_report", "plugin_record", "read_definitions", "read_report", "store_url"]
