"""MultiPlug: load a plugin written in Python, Rust, Nim or Bash as a Python module.

The MultiPlug-compatible face of :mod:`provbatch.plugins`: ``importer``
(load a plugin file, building it when its language needs it, and check the
names it must define), ``load_spec`` (the same plugin again in a worker) and
the loader registry. Thin on purpose: the loaders live in
:mod:`provbatch.plugins` (one subpackage per language).
"""

from __future__ import annotations

from ..errors import InterfaceRequirementError
from ..plugins.base import Loader, PluginSpec
from ..plugins.registry import importer, load_spec, loader_for, register_loader, supported_suffixes

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
