"""Results as DataFrames: ``to_pandas()`` and ``to_arrow()`` of a batch's or a file's typed rows.

Columns are ``entity`` and the OUTPUT names; column types follow the
attribute datatypes, so a pipeline gets numbers, not text: ``Integer`` ->
int64 (pandas' nullable ``Int64`` when a value is missing), ``Float`` ->
float64, ``Boolean`` -> bool (nullable ``boolean``), text -> str; an array
``T[N]`` is a list per row (arrow: ``list<T>``), a composite ``A;B`` a tuple
per row (arrow: a struct with fields ``1``, ``2``, ...). pandas and pyarrow
are optional (the ``dataframe`` extra) and imported only here, when asked.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..contract import datatypes as grammar
from ..errors import UsageError

Rows = Sequence[tuple[str, list[Any]]]


def _require(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise UsageError(f"{module} is not installed: pip install 'provbatch[dataframe]' (pandas and pyarrow)") from None


def _node(datatype: str | None) -> grammar.Datatype | None:
    """The datatype's tree (the one grammar); None for no datatype or one it does not know (text)."""
    if not datatype:
        return None
    try:
        return grammar.parse(datatype, strict=True)
    except grammar.DatatypeError:
        return None


def to_pandas(names: Sequence[str], datatypes: Sequence[str | None], rows: Rows) -> Any:
    """A pandas DataFrame: ``entity`` then one column per OUTPUT name."""
    pd = _require("pandas")
    data: dict[str, Any] = {"entity": pd.Series([entity for entity, _values in rows], dtype=object)}
    for index, (name, datatype) in enumerate(zip(names, datatypes)):
        values = [row[1][index] for row in rows]
        node = _node(datatype)
        scalar = node.name if isinstance(node, grammar.Scalar) else None
        missing = any(value is None for value in values)
        if scalar == grammar.INTEGER:
            data[name] = pd.array(values, dtype="Int64") if missing else pd.Series(values, dtype="int64")
        elif scalar == grammar.FLOAT:
            data[name] = pd.Series([float("nan") if v is None else v for v in values], dtype="float64")
        elif scalar == grammar.BOOLEAN:
            data[name] = pd.array(values, dtype="boolean") if missing else pd.Series(values, dtype="bool")
        else:
            data[name] = pd.Series(values, dtype=object)
    return pd.DataFrame(data)


def _arrow_type(pa: Any, node: grammar.Datatype | None) -> Any:
    if isinstance(node, grammar.Composite):
        return pa.struct([(str(i), _arrow_type(pa, part)) for i, part in enumerate(node.parts, 1)])
    if isinstance(node, grammar.Array):
        return pa.list_(_arrow_type(pa, node.element))
    name = node.name if isinstance(node, grammar.Scalar) else ""
    return {grammar.INTEGER: pa.int64(), grammar.FLOAT: pa.float64(), grammar.BOOLEAN: pa.bool_()}.get(name, pa.string())


def _arrow_value(value: Any) -> Any:
    if isinstance(value, tuple):
        return {str(i): _arrow_value(item) for i, item in enumerate(value, 1)}
    return value


def to_arrow(names: Sequence[str], datatypes: Sequence[str | None], rows: Rows) -> Any:
    """A pyarrow Table: ``entity`` then one column per OUTPUT name, typed by the datatypes."""
    pa = _require("pyarrow")
    columns = [pa.array([entity for entity, _values in rows], type=pa.string())]
    fields = [pa.field("entity", pa.string(), nullable=False)]
    for index, (name, datatype) in enumerate(zip(names, datatypes)):
        arrow_type = _arrow_type(pa, _node(datatype))
        columns.append(pa.array([_arrow_value(row[1][index]) for row in rows], type=arrow_type))
        fields.append(pa.field(name, arrow_type))
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))
