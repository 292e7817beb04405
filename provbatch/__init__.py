"""provbatch: compute attributes of entities with plugins, in parallel, keeping provenance.

The public API is small: :func:`run_batch` and :func:`iter_batch` run a
batch, :func:`rerun` redoes a recorded one, :func:`importer` loads a plugin
of any supported language, and the error types say what went wrong. Names are imported lazily so that
``import provbatch`` (and ``--help``) stays fast and never imports Ray.
"""

from __future__ import annotations

from typing import Any

from .version import __version__ as __version__

_EXPORTS = {
    "run_batch": "provbatch.api",
    "iter_batch": "provbatch.api",
    "BatchResult": "provbatch.api",
    "rerun": "provbatch.api",
    "BatchRun": "provbatch.engine.batch",
    "Failure": "provbatch.engine.retry",
    "EntitySource": "provbatch.inputs.entities",
    "read_results": "provbatch.outputs.results_reader",
    "ResultsTable": "provbatch.outputs.results_reader",
    "SkippedEntitiesWarning": "provbatch.errors",
    "importer": "provbatch.plugins.registry",
    "load_plugin": "provbatch.plugins.loading",
    "RunOptions": "provbatch.options",
    "ProvBatchError": "provbatch.errors",
    "UsageError": "provbatch.errors",
    "PluginError": "provbatch.errors",
    "PluginLoadError": "provbatch.errors",
    "PluginValidationError": "provbatch.errors",
    "InterfaceRequirementError": "provbatch.errors",
    "current_attempt": "provbatch.context",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'provbatch' has no attribute {name!r}")
