"""Values between their text form (results TSV), their stored columns, and Python.

An attribute's datatype decides where its value is stored: ``Integer`` and
``Boolean`` in ``v_int``, ``Float`` in ``v_float``, ``Text`` and bounded
strings in ``v_text``; arrays ``T[n]`` and composites ``A;B`` as JSON in
``v_text`` (a list; a composite's array component is a nested list). The text
form is the results TSV's: empty is no value, booleans ``true``/``false``
(also ``True``, ``1``, ``yes``... as prenacs files have them), arrays
``,``-joined, composites ``;``-joined.

Bounded strings are written ``String(n)`` (attrtables, prenacs) or
``String[N]`` (provbatch's attribute definitions so far); both are one string.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Callable

Columns = tuple[int | None, float | None, str | None]
_EMPTY: Columns = (None, None, None)
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


def _scalar_parser(datatype: str) -> tuple[str, Callable[[str], Any]]:
    """('int' | 'bool' | 'float' | 'text', parser) of a scalar datatype."""
    if datatype == "Integer":
        return "int", _integer
    if datatype == "Float":
        return "float", _float
    if datatype == "Boolean":
        return "bool", _boolean
    if datatype == "Text" or _BOUNDED.match(datatype):
        return "text", str
    raise ValueTextError(f"unknown datatype '{datatype}'")


def _is_bounded_string(datatype: str) -> bool:
    return bool(_BOUNDED.match(datatype))


def _component_parser(datatype: str) -> Callable[[str], Any]:
    """Text -> Python value of a scalar or an array datatype (no composites inside)."""
    datatype = datatype.strip()
    array = _ARRAY.match(datatype)
    if array and not _is_bounded_string(datatype):
        _kind, element = _scalar_parser(array.group(1).strip())
        size = int(array.group(2))

        def parse_array(text: str) -> list[Any] | None:
            if text == "":
                return None
            items = [element(item) for item in text.split(",")]
            if len(items) > size:
                raise ValueTextError(f"{len(items)} values are more than {datatype} holds")
            return items

        return parse_array
    _kind, parse = _scalar_parser(datatype)
    return lambda text: None if text == "" else parse(text)


@dataclass(frozen=True)
class Codec:
    """How one datatype is read from text, stored, and read back."""

    datatype: str
    #: 'int' | 'bool' | 'float' | 'text' for scalars, 'json' for arrays and composites
    kind: str
    parse: Callable[[str], Any]

    def encode_text(self, text: str) -> Columns:
        """The stored columns of a results field (raises ValueTextError)."""
        if text == "":
            return _EMPTY
        kind = self.kind
        if kind == "text":
            return (None, None, text)
        value = self.parse(text)
        if kind == "int":
            return (value, None, None)
        if kind == "float":
            return (None, value, None)
        if kind == "bool":
            return (1 if value else 0, None, None)
        return (None, None, None if value is None else json.dumps(value, separators=(",", ":")))

    def decode(self, v_int: int | None, v_float: float | None, v_text: str | None) -> Any:
        """The Python value of stored columns (None: no value)."""
        kind = self.kind
        if kind == "int":
            return v_int
        if kind == "float":
            return v_float
        if kind == "bool":
            return None if v_int is None else bool(v_int)
        if kind == "text":
            return v_text
        return None if v_text is None else json.loads(v_text)

    def to_text(self, value: Any) -> str:
        """The results-TSV text of a Python value (the inverse of parse)."""
        if value is not None and ";" in self.datatype:
            return ";".join(_text(item) for item in value)
        return _text(value)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_text(item) for item in value)
    return str(value)


def codec_for(datatype: str) -> Codec:
    """The codec of an attribute datatype; ValueTextError for one that is not in the grammar."""
    datatype = datatype.strip()
    parts = [part.strip() for part in datatype.split(";")]
    if len(parts) > 1:
        parsers = [_component_parser(part) for part in parts]

        def parse_composite(text: str) -> list[Any] | None:
            if text == "":
                return None
            fields = text.split(";")
            if len(fields) != len(parsers):
                raise ValueTextError(f"'{text}' has {len(fields)} components, {datatype} has {len(parsers)}")
            return [parse(field) for parse, field in zip(parsers, fields)]

        return Codec(datatype, "json", parse_composite)
    array = _ARRAY.match(datatype)
    if array and not _is_bounded_string(datatype):
        return Codec(datatype, "json", _component_parser(datatype))
    kind, parse = _scalar_parser(datatype)
    return Codec(datatype, kind, parse)


def is_valid_datatype(datatype: str) -> bool:
    try:
        codec_for(datatype)
    except ValueTextError:
        return False
    return True
