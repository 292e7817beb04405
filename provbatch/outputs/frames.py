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

from typing import Any, Sequence

from ..errors import UsageError

Rows = Sequence[tuple[str, list[Any]]]


def _require(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise UsageError(f"{module} is not installed: pip install 'provbatch[dataframe]' (pandas and pyarrow)") from None


def _scalar(datatype: str | None) -> str:
    text = (datatype or "").strip()
    return text.split("[")[0] if text.startswith("String[") else text


def _kind(datatype: str | None) -> tuple[str, Any]:
    """('composite', [parts]) | ('array', element) | ('scalar', name)."""
    text = (datatype or "").strip()
    if ";" in text:
        return "composite", [part.strip() for part in text.split(";")]
    if text.endswith("]") and not (text.startswith("String[") and text.count("[") == 1):
        return "array", text[: text.rindex("[")]
    return "scalar", _scalar(text)


def to_pandas(names: Sequence[str], datatypes: Sequence[str | None], rows: Rows) -> Any:
    """A pandas DataFrame: ``entity`` then one column per OUTPUT name."""
    pd = _require("pandas")
    data: dict[str, Any] = {"entity": pd.Series([entity for entity, _values in rows], dtype=object)}
    for index, (name, datatype) in enumerate(zip(names, datatypes)):
        values = [row[1][index] for row in rows]
        kind, detail = _kind(datatype)
        missing = any(value is None for value in values)
        if kind == "scalar" and detail == "Integer":
            data[name] = pd.array(values, dtype="Int64") if missing else pd.Series(values, dtype="int64")
        elif kind == "scalar" and detail == "Float":
            data[name] = pd.Series([float("nan") if v is None else v for v in values], dtype="float64")
        elif kind == "scalar" and detail == "Boolean":
            data[name] = pd.array(values, dtype="boolean") if missing else pd.Series(values, dtype="bool")
        else:
            data[name] = pd.Series(values, dtype=object)
    return pd.DataFrame(data)


def _arrow_type(pa: Any, datatype: str | None) -> Any:
    kind, detail = _kind(datatype)
    if kind == "composite":
        return pa.struct([(str(i), _arrow_type(pa, part)) for i, part in enumerate(detail, 1)])
    if kind == "array":
        return pa.list_(_arrow_type(pa, detail))
    return {"Integer": pa.int64(), "Float": pa.float64(), "Boolean": pa.bool_()}.get(detail, pa.string())


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
        arrow_type = _arrow_type(pa, datatype)
        columns.append(pa.array([_arrow_value(row[1][index]) for row in rows], type=arrow_type))
        fields.append(pa.field(name, arrow_type))
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))
