"""Result values -> TSV fields, checked against the attribute datatypes; log strings -> log fields.

Each OUTPUT attribute has a datatype in attribute_definitions.yaml (the
grammar is :mod:`.datatypes`); the value
compute returns for it must fit: an ``Integer`` gets an int (or a string
that reads as one: Bash plugins return text), a ``Float`` a number, a
``Boolean`` a bool, a ``String(N)`` at most N characters, arrays ``T[N]`` a
list of at most N values of T, composites ``A;B`` a tuple with one value per
component. A value that does not fit, or that holds a tab or a newline,
makes that entity fail with :class:`ResultValueError`; the batch goes on.

Formatting runs in the workers, so the driver only writes lines.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Callable, Sequence
from typing import Any

from . import datatypes

Formatter = Callable[[Any], str]
_INT_TEXT = re.compile(r"^[+-]?\d+$")
#: how a Boolean may be written (any case): in a result value, and so in a results file. The one
#: list; its users may accept more: parameters the y/n/on/off of command lines, the store the t/f
#: of prenacs files. A Boolean is always written true/false.
TRUE_TEXT = frozenset({"true", "1", "yes"})
FALSE_TEXT = frozenset({"false", "0", "no"})


class ResultValueError(ValueError):
    """compute returned values that do not fit OUTPUT and its datatypes."""


def one_line(text: str) -> str:
    """A message (a log entry, an error) on one line: CR and LF escaped as ``\\r``/``\\n``.

    The one formatter of messages written to the logs and failures files: a
    line break would split the message's row (a log entry's tabs are its
    columns, ``key<TAB>value``, and are kept).
    """
    return text.replace("\r", "\\r").replace("\n", "\\n")


def format_logs(logs: Any) -> list[str]:
    """Log strings, each one TSV field (:func:`one_line`)."""
    if logs is None:
        return []
    if isinstance(logs, str):
        logs = [logs]
    return [one_line(str(item)) for item in logs]


def _clean_text(text: str) -> str:
    if "\t" in text or "\n" in text or "\r" in text:
        raise ResultValueError(f"value {text[:40]!r} contains a tab or a newline")
    return text


def _integer(value: Any) -> str:
    if type(value) is int:
        return str(value)
    if isinstance(value, bool):
        raise ResultValueError(f"expected an Integer, got the boolean {value}")
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, str) and _INT_TEXT.match(value.strip()):
        return value.strip()
    raise ResultValueError(f"expected an Integer, got {type(value).__name__} {str(value)[:40]!r}")


def _float(value: Any) -> str:
    if type(value) is float or type(value) is int:
        return str(value)
    if isinstance(value, bool):
        raise ResultValueError(f"expected a Float, got the boolean {value}")
    if isinstance(value, numbers.Real):
        return str(float(value))
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            pass
        else:
            return value.strip()
    raise ResultValueError(f"expected a Float, got {type(value).__name__} {str(value)[:40]!r}")


def _boolean(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.strip().lower() in TRUE_TEXT | FALSE_TEXT:
        return "true" if value.strip().lower() in TRUE_TEXT else "false"
    raise ResultValueError(f"expected a Boolean, got {type(value).__name__} {str(value)[:40]!r}")


def _text(limit: int | None) -> Formatter:
    def text(value: Any) -> str:
        if isinstance(value, str):
            result = value
        elif isinstance(value, (numbers.Number, bool)):
            result = str(value)
        else:
            raise ResultValueError(f"expected a string, got {type(value).__name__}, which has no text form")
        if limit is not None and len(result) > limit:
            raise ResultValueError(f"string of {len(result)} characters is longer than String({limit})")
        return _clean_text(result)

    return text


def _array(element: Formatter, size: int, name: str) -> Formatter:
    def array(value: Any) -> str:
        if isinstance(value, str):
            value = value.split(",") if value else []
        if not isinstance(value, (list, tuple)) and not hasattr(value, "tolist"):
            raise ResultValueError(f"expected a list for {name}, got {type(value).__name__}")
        items = list(value.tolist() if hasattr(value, "tolist") else value)
        if len(items) > size:
            raise ResultValueError(f"{len(items)} values are more than {name} allows")
        return ",".join(element(item) for item in items)

    return array


def _composite(parts: list[Formatter], name: str) -> Formatter:
    def composite(value: Any) -> str:
        if isinstance(value, str):
            value = value.split(";")
        if not isinstance(value, (list, tuple)) or len(value) != len(parts):
            raise ResultValueError(f"expected {len(parts)} components for {name}")
        return ";".join(fmt(item) for fmt, item in zip(parts, value))

    return composite


def generic(value: Any) -> str:
    """Without a datatype: None -> empty, bool -> true/false, tuple -> ;-joined, list -> ,-joined."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ";".join(generic(item) for item in value)
    if isinstance(value, list):
        return ",".join(generic(item) for item in value)
    return _clean_text(value if isinstance(value, str) else str(value))


_SCALARS: dict[str, Formatter] = {
    datatypes.INTEGER: _integer,
    datatypes.FLOAT: _float,
    datatypes.BOOLEAN: _boolean,
    datatypes.TEXT: _text(None),
}


def _parsed(datatype: str | None) -> datatypes.Datatype | None:
    """The datatype's tree (strict spelling: attribute definitions), None when there is none or it is not one."""
    if not datatype:
        return None
    try:
        return datatypes.parse(datatype, strict=True)
    except datatypes.DatatypeError:
        return None


def formatter_for(datatype: str | None) -> Formatter:
    """The checking formatter of a datatype; :func:`generic` when it is unknown or None."""
    node = _parsed(datatype)
    return generic if node is None else _formatter(node)


def _formatter(node: datatypes.Datatype) -> Formatter:
    if isinstance(node, datatypes.Composite):
        return _composite([_formatter(part) for part in node.parts], node.text)
    if isinstance(node, datatypes.Array):
        return _array(_formatter(node.element), node.size, node.text)
    if node.name == datatypes.STRING:
        return _text(node.limit)
    return _SCALARS.get(node.name, generic)


def _nullable(fmt: Formatter) -> Formatter:
    """None means "no value" for every datatype: an empty field."""

    def nullable(value: Any) -> str:
        return "" if value is None else fmt(value)

    return nullable


def _grouper(datatype: str | None) -> tuple[int, Callable[[list[Any]], Any]]:
    """(attrtables columns of the datatype, a function grouping that many flat values into its value)."""
    node = _parsed(datatype)
    if node is None:
        return 1, lambda values: values[0]
    if isinstance(node, datatypes.Array):
        return datatypes.width(node), list
    if isinstance(node, datatypes.Composite):
        sizes = [datatypes.width(part) for part in node.parts]

        def composite(values: list[Any]) -> tuple[Any, ...]:
            items, at = [], 0
            for part, size in zip(node.parts, sizes):
                items.append(values[at] if isinstance(part, datatypes.Scalar) else list(values[at:at + size]))
                at += size
            return tuple(items)

        return sum(sizes), composite
    return 1, lambda values: values[0]


def _checked_row_formatter(datatypes: Sequence[str | None], names: Sequence[str] | None) -> Callable[[Any], list[str]]:
    """Any values: every datatype's checks, errors naming the attribute.

    compute returns one value per attribute (a list for an array, a tuple for a
    composite), or, as prenacs plugins do, one value per attrtables column (an
    ``Integer[3]`` takes three): such flat results are grouped per attribute
    first, so both give the same fields, one per attribute.
    """
    formatters = [_nullable(formatter_for(dt)) for dt in datatypes]
    n_outputs = len(formatters)
    labels = list(names) if names else [f"value {i + 1}" for i in range(n_outputs)]
    groupers = [_grouper(dt) for dt in datatypes]
    n_columns = sum(size for size, _group in groupers)

    def format_row(values: Any) -> list[str]:
        if values is None or (isinstance(values, (list, tuple, str)) and len(values) == 0):
            return []  # "no value for this entity" (prenacs: an empty results line): no row
        if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)):
            try:
                values = list(values)
            except TypeError:
                raise ResultValueError(f"results must be a list of {n_outputs} value(s), got {type(values).__name__}") from None
        if len(values) == n_columns and n_columns != n_outputs:  # prenacs: one value per column
            flat, values, at = list(values), [], 0
            for size, group in groupers:
                values.append(group(flat[at:at + size]))
                at += size
        if len(values) != n_outputs:
            columns = f" ({n_columns} columns)" if n_columns != n_outputs else ""
            raise ResultValueError(f"compute returned {len(values)} value(s), OUTPUT declares {n_outputs}{columns}")
        fields = []
        for fmt, value, label in zip(formatters, values, labels):
            try:
                fields.append(fmt(value))
            except ResultValueError as exc:
                raise ResultValueError(f"{label}: {exc}") from None
        return fields

    return format_row


_CLEAN_STR = 'type({v}) is str and "\\t" not in {v} and "\\n" not in {v} and "\\r" not in {v}'


def _fast_case(datatype: str | None, v: str) -> tuple[str, str] | None:
    """(condition, field expression) for the common, obviously valid value of a datatype, or None."""
    if not (datatype or "").strip():
        return _CLEAN_STR.format(v=v), v
    node = _parsed(datatype)
    if not isinstance(node, datatypes.Scalar):
        return None
    if node.name == datatypes.INTEGER:
        return f"type({v}) is int", f"str({v})"
    if node.name == datatypes.FLOAT:
        return f"type({v}) is float or type({v}) is int", f"str({v})"
    if node.name == datatypes.BOOLEAN:
        # single quotes: fast_line_source puts the field inside a double-quoted f-string (Python < 3.12)
        return f"type({v}) is bool", f"('true' if {v} else 'false')"
    if node.name == datatypes.TEXT:
        return _CLEAN_STR.format(v=v), v
    if node.name == datatypes.STRING and node.limit is not None:
        return f"{_CLEAN_STR.format(v=v)} and len({v}) <= {node.limit}", v
    return None


def _fast_test(datatypes: Sequence[str | None], values: str, indent: str) -> tuple[list[tuple[str, str]], str] | None:
    """The (condition, field) of each value of a row's common case, and the source testing
    ``values`` for it (its body goes at ``indent`` + 8 spaces), shared by :func:`fast_row_source`
    and :func:`fast_line_source`; None when a datatype has no common case."""
    cases = [_fast_case(datatype, f"v{i}") for i, datatype in enumerate(datatypes)]
    known = [case for case in cases if case is not None]
    if not cases or len(known) != len(cases):
        return None
    n_outputs = len(known)
    unpack = ", ".join(f"v{i}" for i in range(n_outputs)) + ("," if n_outputs == 1 else "")
    condition = " and ".join(f"({test})" for test, _field in known)
    return known, (
        f"{indent}if (type({values}) is list or type({values}) is tuple) and len({values}) == {n_outputs}:\n"
        f"{indent}    {unpack} = {values}\n"
        f"{indent}    if {condition}:\n"
    )


def fast_row_source(datatypes: Sequence[str | None], values: str, indent: str) -> str | None:
    """Python source of the common case of a row, for code compiled around it (once per entity).

    The lines (each starting with ``indent``) test ``values`` and, when it is a list or tuple of
    plain, obviously valid values (ints, floats, bools, clean strings for Integer, Float,
    Boolean, Text, String[N] and undeclared attributes), assign the fields to ``fields``; they
    leave ``fields`` unassigned otherwise, for the checked formatter. None when a datatype has
    no such case (arrays, composites): every row takes the checked formatter then.
    """
    common = _fast_test(datatypes, values, indent)
    if common is None:
        return None
    cases, test = common
    fields = ", ".join(field for _test, field in cases)
    return test + f"{indent}        fields = [{fields}]\n"


def fast_line_source(datatypes: Sequence[str | None], values: str, entity_id: str, indent: str, then: str) -> str | None:
    """Like :func:`fast_row_source`, for code that writes the whole result line at once.

    The lines test ``values`` as :func:`fast_row_source` does and, in the common case, run
    ``then`` with ``line`` bound to ``f"{entity_id}<TAB>field<TAB>...<LF>"``: the row's text
    built by one f-string, with no list of fields (the engine's hot path keeps only this text).
    An f-string gives the same text as ``str()`` for an exact ``int`` or ``float``, which is
    what the common case allows. None when a datatype has no common case.
    """
    common = _fast_test(datatypes, values, indent)
    if common is None:
        return None
    cases, test = common
    pieces = [f"{{v{i}}}" if field == f"str(v{i})" else f"{{{field}}}" for i, (_test, field) in enumerate(cases)]
    line = 'f"{' + entity_id + '}\\t' + "\\t".join(pieces) + '\\n"'
    return test + f"{indent}        line = {line}\n" + f"{indent}        {then}\n"


def make_row_formatter(datatypes: Sequence[str | None], names: Sequence[str] | None = None) -> Callable[[Any], list[str]]:
    """A function turning compute's results into TSV fields, checking count and types.

    No results (None, or an empty list, tuple or string) mean "no value for
    this entity", as in prenacs: the formatter returns ``[]`` and no row is written.

    This is on the hot path (once per entity), so it is compiled per OUTPUT:
    the common case (a list of plain ints, floats, bools, clean strings) takes
    one generated function with no loop and no per-value call; anything else
    goes through the checked formatter, which gives the same fields for
    valid values and names the attribute in its errors.
    """
    checked = _checked_row_formatter(datatypes, names)
    fast = fast_row_source(datatypes, "values", "    ")
    if fast is None:
        return checked
    source = (
        "def format_row(values):\n"
        + fast
        + "            return fields\n"
        "    return checked(values)\n"
    )
    namespace: dict[str, Any] = {"checked": checked}
    exec(compile(source, f"<provbatch row formatter {list(datatypes)}>", "exec"), namespace)  # noqa: S102 - our own source
    return namespace["format_row"]


#: characters an entity id may not hold: they would split its row (docs/user-guide.md, "The TSV contract")
ID_FORBIDDEN = {"\t": "a TAB", "\n": "a line feed (LF)", "\r": "a carriage return (CR)"}


def rows_are_clean(text: str, n_rows: int, n_outputs: int) -> bool:
    """Whether ``text`` (``n_rows`` formatted result lines) is exactly that many rows of 1 + n_outputs fields, in UTF-8.

    Checked once per chunk, at C speed: values cannot hold a tab or a newline
    (the row formatter refuses them), so only ids and unencodable text remain.
    """
    if text.count("\n") != n_rows or text.count("\t") != n_rows * n_outputs or "\r" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def row_problem(entity_id: str, line: str) -> tuple[str, str] | None:
    """Why one result line may not be written (error class, message), or None."""
    for char, name in ID_FORBIDDEN.items():
        if char in entity_id:
            return ("EntityIdError", f"the entity id {entity_id!r} contains {name}, which the results TSV cannot hold "
                                     "(an id is one field of one line)")
    try:
        entity_id.encode("utf-8")
    except UnicodeEncodeError:
        return ("EntityIdError", f"the entity id {entity_id!r} is not valid Unicode text (cannot be written as UTF-8)")
    try:
        line.encode("utf-8")
    except UnicodeEncodeError as exc:
        return ("UnencodableValue", f"a result value cannot be written as UTF-8 ({exc.reason} at character {exc.start} "
                                    "of the row): a lone surrogate in a string?")
    return None
