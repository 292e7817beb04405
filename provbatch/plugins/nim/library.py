"""The Python side of provbatch's native Nim bridge: importing a built plugin, its errors and handles.

A Nim plugin built with our ``nimpy`` (``nim_plugins/bridge``, see
``docs/nim-plugins.md``) is a CPython extension module: every exported proc is
a built-in function that binds its arguments, converts them to Nim values,
runs the proc with the GIL released and converts the result back, all in
the library (no JSON, no ctypes). This module imports such a library once
per process and tells it, through ``__provbatch_configure__``, how Nim
exceptions and Nim refs should look in Python:

- a Nim exception becomes a :class:`NimError` subclass named after it
  (:func:`nim_error`), which also derives from the matching Python built-in;
- a ``ref`` the plugin returns (its state) becomes a :class:`NimRef`: a
  handle holding a capsule that keeps the Nim object alive until the handle
  is released (by ``finalize``) or collected.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import os
import sys
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

#: the bridge protocol this side speaks (BridgeProtocol in provbatch_bridge/runtime.nim)
PROTOCOL = 2

# ---------------------------------------------------------------- exceptions

#: Nim exception -> the Python built-in it also derives from, so that
#: ``except OSError`` catches a Nim IOError.
_PYTHON_BASES: dict[str, type[BaseException]] = {
    "ValueError": ValueError,
    "IOError": OSError,
    "OSError": OSError,
    "EOFError": EOFError,
    "IndexDefect": IndexError,
    "DivByZeroDefect": ZeroDivisionError,
    "OverflowDefect": OverflowError,
    "FloatingPointDefect": ArithmeticError,
    "AssertionDefect": AssertionError,
    "ObjectConversionDefect": TypeError,
    "RangeDefect": ValueError,
}


class NimError(Exception):
    """An exception raised by Nim code; its class is named after the Nim exception.

    ``nim_type`` is the Nim exception's name, ``message`` its message.
    Picklable (a worker's failure travels to the driver).
    """

    nim_type = "Exception"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __reduce__(self) -> tuple[Callable[..., NimError], tuple[str, str]]:
        return nim_error, (self.nim_type, self.message)


_error_classes: dict[str, type[NimError]] = {}


def nim_error(nim_type: str, message: str) -> NimError:
    """An instance of the NimError subclass named ``nim_type`` (the bridge calls this)."""
    cls = _error_classes.get(nim_type)
    if cls is None:
        python_base = _PYTHON_BASES.get(nim_type)
        bases: tuple[type, ...] = (NimError, python_base) if python_base else (NimError,)
        cls = type(nim_type, bases, {"nim_type": nim_type, "__module__": __name__})
        _error_classes[nim_type] = cls
    return cls(message)


# ---------------------------------------------------------------- handles


class NimRef:
    """An opaque handle to a Nim ``ref`` object (a plugin state), made by the bridge.

    ``capsule`` holds the reference: the Nim object lives while the capsule
    does. The bridge checks, when the handle is passed back, that it comes
    from the same library and is of the expected type. :meth:`release` (the
    ``finalize`` wrapper does it) drops the capsule; so does collecting the
    handle. It is valid only in the process that created it: pickling it
    fails with a clear error.
    """

    __slots__ = ("__weakref__", "capsule", "handle", "library", "type_name")

    def __init__(self, library: NimLibrary, capsule: Any, type_name: str, handle: int) -> None:
        self.library = library
        self.capsule = capsule
        self.type_name = type_name
        self.handle = handle

    @property
    def released(self) -> bool:
        return self.capsule is None

    def release(self) -> None:
        """Drop the Nim reference now (the object is freed unless Nim still refers to it)."""
        self.capsule = None

    def __reduce__(self) -> Any:
        raise TypeError(
            f"a Nim {self.type_name} state lives in the process that created it and cannot be "
            "pickled or copied; provbatch runs initialize/finalize of Nim plugins once per worker"
        )

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        self.__reduce__()

    def __repr__(self) -> str:
        state = " released" if self.released else ""
        return f"<Nim {self.type_name} handle {self.handle}{state} of {self.library.path}>"


# ---------------------------------------------------------------- the library


class NimLibrary:
    """A Nim plugin library imported as an extension module, with its description."""

    def __init__(self, path: str, module: ModuleType) -> None:
        self.path = path
        self.module = module
        module.__provbatch_configure__(nim_error, NimRef, self)
        #: the bridge's description of the exported procs (names, parameters, defaults, types)
        self.descriptor: dict[str, Any] = module.__provbatch_describe__()
        if self.descriptor.get("protocol") != PROTOCOL:
            raise RuntimeError(
                f"bridge protocol {self.descriptor.get('protocol')} of {path} is not {PROTOCOL}: rebuild the plugin"
            )

    def function(self, name: str) -> Callable[..., Any]:
        """The built-in function of the exported proc ``name``."""
        return getattr(self.module, name)

    def live_handles(self) -> int:
        """How many Nim refs the library keeps alive for Python (0 once states are finalized)."""
        return int(self.module.__provbatch_live_handles__())

    def __repr__(self) -> str:
        return f"<Nim library {self.path}>"


_libraries: dict[tuple[int, int], NimLibrary] = {}
_libraries_lock = threading.Lock()


def library_key(path: str | os.PathLike[str]) -> tuple[int, int]:
    """The file's identity: the dynamic linker maps a file once however it is named (hard links)."""
    info = os.stat(path)
    return info.st_dev, info.st_ino


def import_name(path: str, module_name: str) -> str:
    """The ``sys.modules`` name of a library: unique per file, ending in the name its
    ``PyInit_<module_name>`` was built with (the plugin file's name without ``.nim``)."""
    digest = hashlib.sha1(path.encode()).hexdigest()[:16]
    return f"_provbatch_nim_{digest}.{module_name}"


def _import_extension(path: str, name: str) -> ModuleType:
    loader = importlib.machinery.ExtensionFileLoader(name, path)
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    if spec is None:  # pragma: no cover - only for paths importlib cannot handle
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    sys.modules[name] = module
    return module


def open_library(path: str | os.PathLike[str], module_name: str) -> NimLibrary:
    """The library at ``path``, imported once per process whatever path it is reached by.

    ``module_name`` is the name of the plugin's main Nim module (its file name
    without ``.nim``): the library exports ``PyInit_<module_name>``.
    """
    key = library_key(path)
    with _libraries_lock:
        library = _libraries.get(key)
        if library is None:
            real = os.path.realpath(path)
            library = NimLibrary(real, _import_extension(real, import_name(real, module_name)))
            _libraries[key] = library
        return library
