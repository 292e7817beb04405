"""Calling a Nim plugin library built with provbatch's bridge, through ctypes.

The bridge (``nim_plugins/bridge``, see ``docs/nim-plugins.md``) gives every
exported proc a C function ``pbx_<name>(const char *args) -> const char *``:
the arguments go in as a JSON object keyed by parameter name, the result comes
back as ``{"ok": value}`` or ``{"error": {"type", "msg", "argument"}}``.
``provbatch_bridge_describe()`` lists the procs with their parameters and the
*shape* of their results (where the JSON arrays are Nim tuples, where the
values are ``ref`` handles), from which this module builds Python callables.

A Nim library is opened once per process (``dlopen`` runs its ``NimMain``);
it is built with threads off, so calls into it are serialized by a lock,
which also guards the library's result buffer until the result is copied.
"""

from __future__ import annotations

import ctypes
import inspect
import json
import os
import threading
from typing import Any, Callable, Iterable

#: the bridge protocol this side speaks (BridgeProtocol in runtime.nim)
PROTOCOL = 1
REF_KEY = "$nimref"

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

    def __reduce__(self) -> tuple[Callable[..., "NimError"], tuple[str, str]]:
        return nim_error, (self.nim_type, self.message)


_error_classes: dict[str, type[NimError]] = {}


def nim_error(nim_type: str, message: str) -> NimError:
    """An instance of the NimError subclass named ``nim_type``."""
    cls = _error_classes.get(nim_type)
    if cls is None:
        python_base = _PYTHON_BASES.get(nim_type)
        bases: tuple[type, ...] = (NimError, python_base) if python_base else (NimError,)
        cls = type(nim_type, bases, {"nim_type": nim_type, "__module__": __name__})
        _error_classes[nim_type] = cls
    return cls(message)


# ---------------------------------------------------------------- handles


class NimRef:
    """An opaque handle to a Nim ``ref`` object (a plugin state) kept alive by the library.

    It is valid only in the process that created it: pickling it fails with a
    clear error. The reference is dropped by :meth:`release` (the ``finalize``
    wrapper calls it) or when this object is garbage-collected.
    """

    __slots__ = ("library", "handle", "type_name", "released", "__weakref__")

    def __init__(self, library: "NimLibrary", handle: int, type_name: str) -> None:
        self.library = library
        self.handle = handle
        self.type_name = type_name
        self.released = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.library.release(self.handle)

    def __del__(self) -> None:
        # The collector may run while this thread holds the library's lock:
        # queue the release for the library's next call instead of calling in.
        if not self.released:
            self.released = True
            self.library.defer_release(self.handle)

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


# ---------------------------------------------------------------- result shapes

Converter = Callable[[Any], Any]


def _identity(value: Any) -> Any:
    return value


def converter_for(shape: Any, library: "NimLibrary") -> Converter:
    """A function turning a decoded JSON value of this shape into its Python value.

    Tuples become Python tuples (named tuples too: plain tuples travel
    between processes), handles become :class:`NimRef`; everything else is
    already what json gave.
    """
    if shape == "r":
        def to_ref(value: Any) -> Any:
            return None if value is None else NimRef(library, value[REF_KEY], value.get("type", "ref"))
        return to_ref
    if isinstance(shape, dict) and "s" in shape:
        item = converter_for(shape["s"], library)
        return _identity if item is _identity else (lambda value: [item(v) for v in value])
    if isinstance(shape, dict) and "t" in shape:
        fields = [converter_for(s, library) for s in shape["t"]]
        if all(f is _identity for f in fields):
            return tuple
        return lambda value: tuple(f(v) for f, v in zip(fields, value))
    if isinstance(shape, dict) and "o" in shape:
        members = {k: converter_for(s, library) for k, s in shape["o"].items()}
        if all(f is _identity for f in members.values()):
            return _identity
        return lambda value: {k: members.get(k, _identity)(v) for k, v in value.items()}
    return _identity


# ---------------------------------------------------------------- the library


class NimLibrary:
    """A loaded Nim plugin library: its descriptor and a serialized call primitive."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._dll = ctypes.CDLL(path)
        self._functions: dict[str, Any] = {}
        self._deferred: list[int] = []
        describe = self._dll.provbatch_bridge_describe
        describe.restype = ctypes.c_char_p
        describe.argtypes = []
        self._dll.provbatch_bridge_release.restype = ctypes.c_int
        self._dll.provbatch_bridge_release.argtypes = [ctypes.c_int64]
        self._dll.provbatch_bridge_live_handles.restype = ctypes.c_int64
        self._dll.provbatch_bridge_live_handles.argtypes = []
        with self._lock:
            self.descriptor: dict[str, Any] = json.loads(describe())
        if self.descriptor.get("protocol") != PROTOCOL:
            raise RuntimeError(
                f"bridge protocol {self.descriptor.get('protocol')} of {path} is not {PROTOCOL}: rebuild the plugin"
            )

    def function(self, symbol: str) -> Any:
        func = self._functions.get(symbol)
        if func is None:
            func = getattr(self._dll, symbol)
            func.restype = ctypes.c_char_p
            func.argtypes = [ctypes.c_char_p]
            self._functions[symbol] = func
        return func

    def call(self, symbol: str, args: bytes, label: str = "") -> Any:
        """Call ``symbol`` with JSON arguments; the decoded ``ok`` value, or raise.

        A Nim exception becomes a :class:`NimError` subclass of the same name;
        an argument the bridge could not convert becomes a TypeError.
        """
        func = self.function(symbol)
        with self._lock:
            if self._deferred:
                self._release_deferred()
            raw = func(args)
        reply = json.loads(raw.decode("utf-8", "surrogateescape"))
        if "error" in reply:
            error = reply["error"]
            if error.get("argument"):
                raise TypeError(f"{label or symbol}(): {error['msg']}")
            raise nim_error(error["type"], error["msg"])
        return reply["ok"]

    def release(self, handle: int) -> None:
        with self._lock:
            self._release_deferred()
            self._dll.provbatch_bridge_release(handle)

    def defer_release(self, handle: int) -> None:
        """Release ``handle`` at the next call (safe from a finalizer: takes no lock)."""
        self._deferred.append(handle)

    def _release_deferred(self) -> None:
        while self._deferred:
            self._dll.provbatch_bridge_release(self._deferred.pop())

    def live_handles(self) -> int:
        """How many Nim refs the library keeps alive for Python (0 once states are finalized)."""
        with self._lock:
            self._release_deferred()
            return int(self._dll.provbatch_bridge_live_handles())


_libraries: dict[tuple[int, int], NimLibrary] = {}
_libraries_lock = threading.Lock()


def library_key(path: str | os.PathLike[str]) -> tuple[int, int]:
    """The file's identity: the dynamic linker maps a file once however it is named (hard links)."""
    info = os.stat(path)
    return info.st_dev, info.st_ino


def open_library(path: str | os.PathLike[str]) -> NimLibrary:
    """The library at ``path``, opened once per process: one lock and one
    handle table per mapped library, whatever path it is reached by."""
    key = library_key(path)
    with _libraries_lock:
        library = _libraries.get(key)
        if library is None:
            library = NimLibrary(os.path.realpath(path))
            _libraries[key] = library
        return library


# ---------------------------------------------------------------- Python callables


class NimDefault:
    """Stands for a Nim default that cannot be computed outside Nim (shown in signatures)."""

    def __init__(self, expression: str) -> None:
        self.expression = expression

    def __repr__(self) -> str:
        return self.expression


class NimProc:
    """A Python callable for one exported Nim proc.

    Arguments bind by position or name as in Python; a keyword that is a
    parameter of another exported proc of the plugin (batch parameters go to
    compute *and* initialize) is dropped; any other unknown keyword is a
    TypeError naming the accepted ones. Defaults are filled in Nim.
    """

    def __init__(self, library: NimLibrary, info: dict[str, Any], tolerated: Iterable[str] = ()) -> None:
        self.library = library
        self.__name__ = self.__qualname__ = info["name"]
        self.symbol: str = info["symbol"]
        self.params: list[dict[str, Any]] = info["params"]
        self.names = [p["name"] for p in self.params]
        self.required = {p["name"] for p in self.params if not p["has_default"]}
        self.tolerated = set(tolerated) - set(self.names)
        self.convert = converter_for(info["returns"], library)
        self.releases_refs = info["name"] == "finalize"
        self.__signature__ = self._signature()
        # made once: json.dumps with options builds an encoder at every call
        self._to_json = json.JSONEncoder(default=self._encode, allow_nan=True).encode
        self.__doc__ = f"Nim proc {info['name']}({self._describe_params()}): {info['return_type']}"

    def _describe_params(self) -> str:
        parts = []
        for p in self.params:
            default = f" = {p['default_repr']}" if p["has_default"] else ""
            parts.append(f"{p['name']}: {p['type']}{default}")
        return ", ".join(parts)

    def _signature(self) -> inspect.Signature:
        parameters = []
        for p in self.params:
            default: Any = inspect.Parameter.empty
            if p["has_default"]:
                default = p["default"] if p["default_known"] else NimDefault(p["default_repr"])
            parameters.append(inspect.Parameter(p["name"], inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default))
        return inspect.Signature(parameters)

    def _bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        if len(args) > len(self.names):
            raise TypeError(f"{self.__name__}() takes {len(self.names)} positional argument(s) but {len(args)} were given")
        bound = dict(zip(self.names, args))
        for name, value in kwargs.items():
            if name in bound:
                raise TypeError(f"{self.__name__}() got multiple values for argument '{name}'")
            if name in self.names:
                bound[name] = value
            elif name not in self.tolerated:
                accepted = ", ".join(self.names) or "no arguments"
                raise TypeError(
                    f"{self.__name__}() got an unexpected keyword argument '{name}' "
                    f"(the Nim proc accepts: {accepted})"
                )
        missing = [name for name in self.names if name in self.required and name not in bound]
        if missing:
            raise TypeError(f"{self.__name__}() missing required argument(s): {', '.join(missing)}")
        return bound

    def _encode(self, value: Any) -> Any:
        if isinstance(value, NimRef):
            if value.library is not self.library:
                raise TypeError(f"{self.__name__}(): {value!r} belongs to another Nim library")
            if value.released:
                raise TypeError(f"{self.__name__}(): {value!r} was released (finalize was called)")
            return {REF_KEY: value.handle}
        if isinstance(value, (set, frozenset)):
            return list(value)
        raise TypeError(f"{self.__name__}(): a {type(value).__name__} cannot be passed to Nim")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        bound = self._bind(args, kwargs)
        payload = self._to_json(bound).encode()
        try:
            return self.convert(self.library.call(self.symbol, payload, self.__name__))
        finally:
            if self.releases_refs:
                for value in bound.values():
                    if isinstance(value, NimRef):
                        value.release()

    def __repr__(self) -> str:
        return f"<Nim proc {self.__name__}({self._describe_params()}) of {self.library.path}>"
