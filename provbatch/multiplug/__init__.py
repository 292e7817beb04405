"""MultiPlug 1.2, as provbatch provides it: ``import provbatch.multiplug as multiplug``.

Code written against MultiPlug 1.2 runs by changing only its import. The public
names are exactly MultiPlug's: ``importer`` (a plugin by its suffix: ``.py``,
``.sh``, ``.rs``, ``.nim``), the per-language ``py``, ``bash``, ``rust`` and
``nim``, and the module ``error`` (``MultiplugError``,
``ExtensionCompilationError``, ``InterfaceRequirementError``,
``UnsupportedLangError``); docs/compatibility.md lists the conventions.

The implementation is :mod:`.facade`, thin over :mod:`provbatch.plugins`. provbatch's
own importer (build cache, ``PluginSpec`` for workers, provbatch's errors) is
:func:`provbatch.importer`, i.e. :mod:`provbatch.plugins.registry`.
"""

from __future__ import annotations

from . import error
from .facade import bash, importer, nim, py, rust

__all__ = ["importer", "py", "bash", "rust", "nim", "error"]
