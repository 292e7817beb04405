"""The datatype grammar: THE one place that says how a datatype is written and what it is.

A datatype says what a value is: a plugin parameter (``PARAMETERS``), an
attribute of ``attribute_definitions.yaml``, and so each result value compute
returns. Written as:

- the scalars ``Integer``, ``Float``, ``Boolean``, ``Text``, ``String`` and
  ``String(N)`` (a text of at most N characters), as attrtables (prenacs 1.2)
  writes them: SQLAlchemy column type names;
- arrays ``T[N]``: at most N values of T;
- composites ``A;B``: one value per component.

:func:`parse` turns the text into a tree of :class:`Scalar`, :class:`Array`
and :class:`Composite`; its users walk the tree and never read the text:
:mod:`.parameters` (converting given values), :mod:`.results` (checking and
formatting result values) and :mod:`.attributes` (checking the definitions
file). Two spellings, on purpose, and the only difference between users:

- strict (attribute definitions, hence result values): the names as above,
  case-sensitive; an array holds scalars;
- lenient (``strict=False``, parameters: typed on command lines, declared in
  every plugin language): any case; the aliases ``int``, ``bool``, ``str``
  and ``string`` (Text); ``yaml`` (also ``json``, ``any``: the value read as
  YAML); arrays of arrays.

How datatypes are written is the constants below and the two parse
functions: change them here and the three users follow. ``String[N]`` is an
*array* of N strings (the spelling provbatch used for ``String(N)`` before
issue 15): :func:`bracket_string_hint` says so. An attribute fills
:func:`width` attrtables columns (``Integer[3]``: 3); prenacs plugins return
one value per column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

INTEGER, FLOAT, BOOLEAN, TEXT, STRING, YAML = "Integer", "Float", "Boolean", "Text", "String", "yaml"
#: the scalars without a size, as written in attribute definitions (``String``: unbounded)
NAMES = (INTEGER, FLOAT, BOOLEAN, TEXT, STRING)
#: lenient spellings (lower case) -> scalar; ``yaml`` is for parameters only
ALIASES: dict[str, str] = {
    "integer": INTEGER, "int": INTEGER,
    "float": FLOAT,
    "boolean": BOOLEAN, "bool": BOOLEAN,
    "text": TEXT, "str": TEXT, "string": TEXT,
    "yaml": YAML, "json": YAML, "any": YAML,
}
#: ``String(N)``: a text of at most N characters (attrtables)
SIZED_STRING = re.compile(r"^String\(([1-9][0-9]*)\)$")
_SIZED_STRING_ANY_CASE = re.compile(SIZED_STRING.pattern, re.IGNORECASE)
#: ``T[N]``: at most N values of T
ARRAY = re.compile(r"^(.+)\[([1-9][0-9]*)\]$")
COMPOSITE_SEPARATOR = ";"
#: how datatypes are written, for messages about attribute definitions
SYNTAX = "Integer, Float, Boolean, Text, String(N), an array T[N] or a composite A;B"
#: the same for parameters, which may also be yaml
PARAMETER_SYNTAX = "Integer, Float, Boolean, Text, String(N), yaml, an array T[N] or a composite A;B"


class DatatypeError(ValueError):
    """The text is not a datatype (the message says how they are written)."""


@dataclass(frozen=True)
class Scalar:
    """``Integer``, ``Float``, ``Boolean``, ``Text``, ``String`` / ``String(N)`` (``limit`` N) or, for parameters, ``yaml``."""

    name: str
    limit: int | None = None
    #: the datatype as written (stripped), for messages
    text: str = field(default="", compare=False)


@dataclass(frozen=True)
class Array:
    """``T[N]``: at most ``size`` values of ``element``."""

    element: Datatype
    size: int
    text: str = field(default="", compare=False)


@dataclass(frozen=True)
class Composite:
    """``A;B``: one value per part, in order."""

    parts: tuple[Datatype, ...]
    text: str = field(default="", compare=False)


Datatype = Scalar | Array | Composite


def parse(text: str, strict: bool = True) -> Datatype:
    """The tree of a datatype; :class:`DatatypeError` when ``text`` is not one.

    ``strict``: the spelling of attribute definitions; ``strict=False``: the
    lenient spelling of parameters (see the module docstring).
    """
    if not isinstance(text, str):
        raise DatatypeError(f"a datatype is a string, not {type(text).__name__}")
    return _strict(text) if strict else _lenient(text)


def _strict(text: str) -> Datatype:
    pieces = text.split(COMPOSITE_SEPARATOR)
    parts = tuple(_strict_component(piece.strip(), text) for piece in pieces)
    return parts[0] if len(parts) == 1 else Composite(parts, text.strip())


def _strict_component(text: str, whole: str) -> Datatype:
    scalar = _strict_scalar(text)
    if scalar is not None:
        return scalar
    array = ARRAY.match(text)
    element = _strict_scalar(array.group(1)) if array else None
    if array and element is not None:
        return Array(element, int(array.group(2)), text)
    raise DatatypeError(f"unknown datatype '{whole}' (use {SYNTAX})")


def _strict_scalar(text: str) -> Scalar | None:
    if text == STRING:
        return Scalar(STRING, None, text)
    if text in NAMES:
        return Scalar(text, None, text)
    sized = SIZED_STRING.match(text)
    return Scalar(STRING, int(sized.group(1)), text) if sized else None


def _lenient(text: str) -> Datatype:
    key = text.strip().lower()
    if COMPOSITE_SEPARATOR in key:
        return Composite(tuple(_lenient(piece) for piece in text.split(COMPOSITE_SEPARATOR)), text.strip())
    if key in ALIASES:
        return Scalar(ALIASES[key], None, text.strip())
    sized = _SIZED_STRING_ANY_CASE.match(key)
    if sized:
        return Scalar(STRING, int(sized.group(1)), text.strip())
    array = ARRAY.match(key)
    if array:
        return Array(_lenient(array.group(1)), int(array.group(2)), text.strip())
    raise DatatypeError(f"unknown datatype '{text}' (use {PARAMETER_SYNTAX})")


def is_valid(text: str) -> bool:
    """True for a datatype an attribute definition may have (the strict spelling)."""
    try:
        parse(text, strict=True)
    except DatatypeError:
        return False
    return True


def width(node: Datatype) -> int:
    """The number of attrtables columns (values in a prenacs plugin's flat results) of a datatype."""
    if isinstance(node, Array):
        return node.size * width(node.element)
    if isinstance(node, Composite):
        return sum(width(part) for part in node.parts)
    return 1


def bracket_string_hint(text: str) -> str | None:
    """A warning when ``String[N]`` (an array of N strings) probably meant ``String(N)``, else None."""
    try:
        node = parse(text, strict=True)
    except DatatypeError:
        return None
    for part in node.parts if isinstance(node, Composite) else (node,):
        if isinstance(part, Array) and isinstance(part.element, Scalar) and part.element.name == STRING \
                and part.element.limit is None:
            n = part.size
            return (f"String[{n}] is an array of {n} strings of any length; for one string of at most "
                    f"{n} characters write String({n})")
    return None
