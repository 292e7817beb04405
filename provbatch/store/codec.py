"""Values between their text form (the results TSV's, which is also how they are stored) and Python.

A value is stored as its results-file text, checked against the attribute's
datatype when it is written: ``Integer`` and ``Float`` as numbers in decimal
text, ``Boolean`` as ``true``/``false`` (``True``, ``1``, ``yes``... as prenacs
files have them are accepted and normalised), strings as they are, arrays
``,``-joined, composites ``;``-joined; no value is NULL. The datatype (in the
attributes table) says how to read it back: :meth:`Codec.decode` gives a
Python scalar, or a list for arrays and composites (a composite's array
component is a nested list). One text column serves every datatype, which
keeps a value row narrow (see docs/store.md).

Datatypes are parsed by the one grammar, :mod:`provbatch.contract.datatypes`
(prenacs' bounded ``String(N)`` included); this module only walks its tree.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any

from ..contract import datatypes
from ..contract.results import FALSE_TEXT, TRUE_TEXT

_TRUE = TRUE_TEXT | {"t", "y"}  # also as prenacs files have them
_FALSE = FALSE_TEXT | {"f", "n"}
#: the spellings of booleans met in results files, as stored (others go the per-value way)
_BOOLEAN_TEXT = {**dict.fromkeys(("true", "True", "TRUE", "1", "yes", "t", "y"), "true"),
                 **dict.fromkeys(("false", "False", "FALSE", "0", "no", "f", "n"), "false")}


class ValueTextError(ValueError):
    """A field of a results file does not read as its attribute's datatype (or the datatype is unknown)."""


def parse_datatype(text: str) -> datatypes.Datatype:
    """The grammar's tree of an attribute datatype (the strict spelling of attribute definitions)."""
    try:
        return datatypes.parse(text, strict=True)
    except datatypes.DatatypeError as exc:
        raise ValueTextError(str(exc)) from None


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


def _scalar(node: datatypes.Scalar) -> tuple[str, Callable[[str], Any]]:
    """('int' | 'bool' | 'float' | 'text', parser) of a scalar."""
    if node.name == datatypes.INTEGER:
        return "int", _integer
    if node.name == datatypes.FLOAT:
        return "float", _float
    if node.name == datatypes.BOOLEAN:
        return "bool", _boolean
    return "text", _bounded(node.limit)


def _checked(parse: Callable[[str], Any]) -> Callable[[str], str]:
    def check(text: str) -> str:
        parse(text)
        return text

    return check


def _component(node: datatypes.Datatype) -> tuple[Callable[[str], Any], Callable[[str], str]]:
    """(parse, normalise) of a scalar or an array, for non-empty text."""
    if isinstance(node, datatypes.Array):
        if not isinstance(node.element, datatypes.Scalar):
            raise ValueTextError(f"unknown datatype '{node.text}': an array holds scalars")
        kind, element = _scalar(node.element)
        size, name = node.size, node.text

        def parse_array(text: str) -> list[Any]:
            items = [element(item) for item in text.split(",")]
            if len(items) > size:
                raise ValueTextError(f"{len(items)} values are more than {name} holds")
            return items

        if kind == "bool":
            return parse_array, lambda text: ",".join("true" if item else "false" for item in parse_array(text))
        return parse_array, _checked(parse_array)
    if isinstance(node, datatypes.Scalar):
        kind, parse = _scalar(node)
        if kind == "bool":
            return parse, lambda text: "true" if parse(text) else "false"
        return parse, _checked(parse)
    raise ValueTextError(f"unknown datatype '{node.text}': a composite cannot hold a composite")


ColumnEncoder = Callable[[Sequence[str]], list[str | None]]


def _per_value(normalise: Callable[[str], str]) -> ColumnEncoder:
    """The exact rule, one value at a time: '' is no value, the rest normalised."""
    def encode(texts: Sequence[str]) -> list[str | None]:
        return [normalise(text) if text else None for text in texts]

    return encode


#: a column of non-empty texts -> their stored forms when every one passes in C loops; None when one
#: might not (then the exact per-value rule decides, and raises the error of the first bad one)
FastColumn = Callable[[Sequence[str]], "list[str | None] | None"]


def _items_pass(kind: str, limit: int | None, items: Sequence[str]) -> bool:
    """Whether every item passes its scalar's check (what the per-value rule calls), in a C loop."""
    try:
        if kind == "int":
            # the usual column, non-negative decimals: one scan of their joined text (int() takes every text of
            # ASCII digits; 10x the rate of calling it, 0.2 s of a 1,000,000-value write); the rest go to int()
            joined = "".join(items)
            if not (joined.isascii() and joined.isdigit() and "" not in items):
                deque(map(int, items), 0)
        elif kind == "float":
            deque(map(float, items), 0)
        elif kind == "text" and limit is not None and max(map(len, items)) > limit:
            return False
    except ValueError:
        return False
    return True


def _fast(node: datatypes.Datatype) -> FastColumn | None:
    """The C-loop check of a column of one scalar, array or composite datatype (None: no fast path)."""
    if isinstance(node, datatypes.Scalar):
        kind, _parse = _scalar(node)
        limit = node.limit
        if kind == "bool":
            def booleans(texts: Sequence[str]) -> list[str | None] | None:
                try:
                    return list(map(_BOOLEAN_TEXT.__getitem__, texts))
                except KeyError:
                    return None

            return booleans
        return lambda texts: list(texts) if _items_pass(kind, limit, texts) else None
    if isinstance(node, datatypes.Array) and isinstance(node.element, datatypes.Scalar):
        kind, _parse = _scalar(node.element)
        limit, size = node.element.limit, node.size
        if kind == "bool":
            return None  # normalised item by item: the per-value rule

        def array(texts: Sequence[str]) -> list[str | None] | None:
            if max(map(str.count, texts, repeat(","))) >= size:
                return None
            if kind == "text" and limit is None:
                return list(texts)
            return list(texts) if _items_pass(kind, limit, ",".join(texts).split(",")) else None

        return array
    if isinstance(node, datatypes.Composite):
        parts = [_fast(part) for part in node.parts]
        if any(part is None for part in parts):
            return None
        checks = [part for part in parts if part is not None]
        n_parts = len(parts)
        normalises = any(isinstance(part, datatypes.Scalar) and _scalar(part)[0] == "bool" for part in node.parts)

        def composite(texts: Sequence[str]) -> list[str | None] | None:
            split = [text.split(datatypes.COMPOSITE_SEPARATOR) for text in texts]
            if set(map(len, split)) != {n_parts}:
                return None
            encoded = []
            for check, column in zip(checks, zip(*split)):
                if "" in column:  # an empty component: the per-value rule
                    return None
                done = check(column)
                if done is None:
                    return None
                encoded.append(done)
            if not normalises:
                return list(texts)
            return list(map(datatypes.COMPOSITE_SEPARATOR.join, zip(*encoded)))

        return composite
    return None


def _column(node: datatypes.Datatype, normalise: Callable[[str], str]) -> ColumnEncoder:
    """A column encoder giving what :func:`_per_value` gives, with the common cases in C loops.

    On the hot path of every load and ``batch-compute --store``: a Python call per
    value (check, then normalise) cost more than the database's inserts. A column
    without empty fields whose every text converts with ``int``/``float`` (what
    the per-value check calls), whose booleans are common spellings, or whose
    strings fit the bound, is checked by ``map``; an array column by the same
    check of all its items at once (after a count of separators), a composite
    column component by component. Anything else (and so every error, with its
    message) goes the per-value way.
    """
    exact = _per_value(normalise)
    fast = _fast(node)
    if fast is None:
        return exact

    def encode(texts: Sequence[str]) -> list[str | None]:
        if not texts or "" in texts:
            return exact(texts)
        done = fast(texts)
        return exact(texts) if done is None else done  # exact: raises the ValueTextError of the first bad value

    return encode


ColumnDecoder = Callable[[Sequence[str | None]], list[Any]]
#: stored booleans are normalised to these two (other spellings go the per-value way)
_STORED_BOOLEAN = {"true": True, "false": False}


def _decoder(node: datatypes.Datatype, parse: Callable[[str], Any]) -> ColumnDecoder:
    """A column of stored texts -> their Python values, as :meth:`Codec.decode` of each.

    On the export's hot path: a stored text was checked when it was written, so
    a scalar column is decoded by the builtin (``int``, ``float``, a dict
    lookup for booleans; strings are already what they are) in a C loop; a
    column with a missing value, an array or a composite goes value by value.
    """
    fast: Callable[[str], Any] | None = None
    text = False
    if isinstance(node, datatypes.Scalar):
        kind, _parse = _scalar(node)
        fasts: dict[str, Callable[[str], Any]] = {"int": int, "float": float, "bool": _STORED_BOOLEAN.__getitem__}
        fast = fasts.get(kind)
        text = kind == "text"

    def decode(stored: Sequence[str | None]) -> list[Any]:
        if None in stored:
            return [None if item is None else parse(item) for item in stored]
        if text:
            return list(stored)  # no None in it
        if fast is not None:
            try:
                return list(map(fast, stored))  # type: ignore[arg-type]
            except (ValueError, KeyError):
                pass  # e.g. a boolean stored by another writer's spelling: the exact rule below
        return list(map(parse, stored))  # type: ignore[arg-type]

    return decode


@dataclass(frozen=True)
class Codec:
    """How one datatype is checked and read back."""

    datatype: str
    #: text -> Python value, for non-empty text (raises ValueTextError)
    parse: Callable[[str], Any]
    #: text -> the stored text: checked, booleans normalised (raises ValueTextError)
    normalise: Callable[[str], str]
    #: a column of texts -> their stored forms, as :meth:`encode_text` of each (raises ValueTextError)
    encode_column: ColumnEncoder
    #: a column of stored texts -> their Python values, as :meth:`decode` of each
    decode_column: ColumnDecoder

    def encode_text(self, text: str) -> str | None:
        """The stored form of a results field: None for no value."""
        return self.normalise(text) if text else None

    def decode(self, stored: str | None) -> Any:
        """The Python value of a stored text (None: no value)."""
        return None if stored is None else self.parse(stored)


def codec_for(datatype: str) -> Codec:
    """The codec of an attribute datatype; ValueTextError for one that is not in the grammar."""
    datatype = datatype.strip()
    node = parse_datatype(datatype)
    if not isinstance(node, datatypes.Composite):
        parse, normalise = _component(node)
        return Codec(datatype, parse, normalise, _column(node, normalise), _decoder(node, parse))
    components = [_component(part) for part in node.parts]

    def split(text: str) -> list[str]:
        fields = text.split(datatypes.COMPOSITE_SEPARATOR)
        if len(fields) != len(components):
            raise ValueTextError(f"'{text}' has {len(fields)} components, {datatype} has {len(components)}")
        return fields

    def parse_composite(text: str) -> list[Any]:
        return [None if field == "" else parse(field) for (parse, _n), field in zip(components, split(text))]

    def normalise_composite(text: str) -> str:
        return ";".join("" if field == "" else norm(field) for (_p, norm), field in zip(components, split(text)))

    return Codec(datatype, parse_composite, normalise_composite, _column(node, normalise_composite),
                 _decoder(node, parse_composite))
