"""Values between their text form (the results TSV's, which is also how they are stored) and Python.

A value is stored as its results-file text, checked against the attribute's
datatype when it is written: ``Integer`` and ``Float`` as numbers in decimal
text, ``Boolean`` as ``true``/``false`` (``True``, ``1``, ``yes``... as prenacs
files have them are accepted and normalised), strings as they are, arrays
``T[n]`` ``,``-joined, composites ``A;B`` ``;``-joined; no value is NULL.
The datatype (in the attributes table) says how to read it back: :meth:`Codec.decode`
gives a Python scalar, or a list for arrays and composites (a composite's
array component is a nested list). One text column serves every datatype,
which keeps a value row narrow (see docs/store.md).

Bounded strings are written ``String(n)`` (attrtables, prenacs) or
``String[N]`` (provbatch's attribute definitions so far); both are one string.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

_TRUE = frozenset({"true", "1", "yes", "t", "y"})
_FALSE = frozenset({"false", "0", "no", "f", "n"})
_BOUNDED = re.compile(r"^String(?:\((\d+)\)|\[(\d+)\])?$")
_ARRAY = re.compile(r"^(.+)\[([1-9][0-9]*)\]$")


class ValueTextError(ValueError):
    """A field of a results file does not read as its attribute's datatype."""


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueTextError(f"'{text}' is not a Boolean")


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueTextError(f"'{text}' is not an Integer") from None


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueTextError(f"'{text}' is not a Float") from None


def _bounded(limit: int | None) -> Callable[[str], str]:
    def string(text: str) -> str:
        if limit is not None and len(text) > limit:
            raise ValueTextError(f"'{text[:40]}' has {len(text)} characters, more than {limit}")
        return text

    return string


def _scalar(datatype: str) -> tuple[str, Callable[[str], Any]]:
    """('int' | 'bool' | 'float' | 'text', parser) of a scalar datatype."""
    if datatype == "Integer":
        return "int", _integer
    if datatype == "Float":
        return "float", _float
    if datatype == "Boolean":
        return "bool", _boolean
    if datatype == "Text":
        return "text", str
    bounded = _BOUNDED.match(datatype)
    if bounded:
        limit = bounded.group(1) or bounded.group(2)
        return "text", _bounded(int(limit) if limit else None)
    raise ValueTextError(f"unknown datatype '{datatype}'")


def _component(datatype: str) -> tuple[Callable[[str], Any], Callable[[str], str]]:
    """(parse, normalise) of a scalar or array datatype, for non-empty text."""
    datatype = datatype.strip()
    array = _ARRAY.match(datatype)
    if array and not _BOUNDED.match(datatype):
        kind, element = _scalar(array.group(1).strip())
        size = int(array.group(2))

        def parse_array(text: str) -> list[Any]:
            items = [element(item) for item in text.split(",")]
            if len(items) > size:
                raise ValueTextError(f"{len(items)} values are more than {datatype} holds")
            return items

        if kind == "bool":
            return parse_array, lambda text: ",".join("true" if item else "false" for item in parse_array(text))

        def check_array(text: str) -> str:
            parse_array(text)
            return text

        return parse_array, check_array
    kind, parse = _scalar(datatype)
    if kind == "bool":
        return parse, lambda text: "true" if parse(text) else "false"

    def check(text: str) -> str:
        parse(text)
        return text

    return parse, check


@dataclass(frozen=True)
class Codec:
    """How one datatype is checked and read back."""

    datatype: str
    #: text -> Python value, for non-empty text (raises ValueTextError)
    parse: Callable[[str], Any]
    #: text -> the stored text: checked, booleans normalised (raises ValueTextError)
    normalise: Callable[[str], str]

    def encode_text(self, text: str) -> str | None:
        """The stored form of a results field: None for no value."""
        return self.normalise(text) if text else None

    def decode(self, stored: str | None) -> Any:
        """The Python value of a stored text (None: no value)."""
        return None if stored is None else self.parse(stored)


def codec_for(datatype: str) -> Codec:
    """The codec of an attribute datatype; ValueTextError for one that is not in the grammar."""
    datatype = datatype.strip()
    parts = [part.strip() for part in datatype.split(";")]
    if len(parts) == 1:
        parse, normalise = _component(datatype)
        return Codec(datatype, parse, normalise)
    components = [_component(part) for part in parts]

    def split(text: str) -> list[str]:
        fields = text.split(";")
        if len(fields) != len(components):
            raise ValueTextError(f"'{text}' has {len(fields)} components, {datatype} has {len(components)}")
        return fields

    def parse_composite(text: str) -> list[Any]:
        return [None if field == "" else parse(field) for (parse, _n), field in zip(components, split(text))]

    def normalise_composite(text: str) -> str:
        return ";".join("" if field == "" else norm(field) for (_p, norm), field in zip(components, split(text)))

    return Codec(datatype, parse_composite, normalise_composite)


def is_valid_datatype(datatype: str) -> bool:
    try:
        codec_for(datatype)
    except ValueTextError:
        return False
    return True
