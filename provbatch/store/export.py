"""``provbatch values``: the stored values, typed, as TSV, CSV, JSON lines or Parquet.

One row per value (long format): ``entity, attribute, value``; with
provenance ``computation, plugin_id, plugin_version, time_end``; with history
also ``current`` (every earlier value of each entity and attribute is listed,
the current one marked). In TSV and CSV a value is its results-file text
(arrays ``,``-joined, composites ``;``-joined); in JSON lines a scalar or a list.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable, Iterator
from itertools import repeat
from pathlib import Path
from typing import IO, Any

from ..errors import UsageError, literal
from .store import PROVENANCE_FIELDS, Store, ValueRows

FORMATS = ("tsv", "csv", "jsonl", "parquet")


def columns(provenance: bool, history: bool) -> list[str]:
    names = ["entity", "attribute", "value"]
    if provenance or history:
        names += PROVENANCE_FIELDS
    if history:
        names.append("current")
    return names


def export_values(store: Store, attributes: list[str], entities: list[str] | None, fmt: str, out: str | None,
                  provenance: bool = False, history: bool = False) -> int:
    """Write the values to ``out`` (stdout when None; Parquet needs a file); returns the rows written.

    TSV, CSV and Parquet are written from the store's rows as tuples
    (:meth:`.Store.iter_value_rows`), a partition at a time: a dict per value
    cost as much as the rest of an export. JSON lines are a dict per value anyway.
    """
    if fmt not in FORMATS:
        raise UsageError.naming(f"{{fmt}} must be one of {', '.join(FORMATS)}, got {literal(repr(fmt))}")
    names = columns(provenance, history)
    if fmt == "parquet":
        if out is None:
            raise UsageError.naming("{fmt} parquet needs an output file: {out}")
        return _parquet(store.iter_value_rows(attributes, entities, history=history, provenance=provenance), names, Path(out))
    # stdout or a file, closed in the finally below (stdout is not)
    handle: IO[str] = sys.stdout if out is None else open(out, "w", encoding="utf-8", newline="")  # noqa: SIM115
    n = 0
    try:
        if fmt == "jsonl":
            write = handle.write
            for row in store.iter_values(attributes, entities, history=history, provenance=provenance):
                write(json.dumps(row, ensure_ascii=False) + "\n")
                n += 1
            return n
        delimiter = "\t" if fmt == "tsv" else ","
        writer = csv.writer(handle, delimiter=delimiter, lineterminator="\n",
                            quoting=csv.QUOTE_NONE if fmt == "tsv" else csv.QUOTE_MINIMAL, escapechar="\\" if fmt == "tsv" else None)
        writer.writerow(names)
        for part in store.iter_value_rows(attributes, entities, history=history, provenance=provenance, as_text=True):
            text = _plain_lines(part, delimiter)
            if text is None:
                writer.writerows(_text_rows(part))
            else:
                handle.write(text)
            n += len(part)
        return n
    finally:
        if out is not None:
            handle.close()


#: characters after which a TSV or CSV field is no longer written as it is (escaped, or quoted)
_SPECIAL = ("\\", '"', "\r")


def _plain_lines(part: ValueRows, delimiter: str) -> str | None:
    """The lines of a partition of (entity, value) rows joined as they are, when no field needs the csv
    module's escaping or quoting (checked on the joined text: exactly two delimiters and one newline per
    line, no quote, backslash or carriage return); None otherwise. Three times faster than ``writerows``."""
    if len(part.fields) != 2:
        return None
    attribute = part.attribute
    text = "".join([f"{entity}{delimiter}{attribute}{delimiter}{value}\n" for entity, value in part.rows])
    plain = (text.count(delimiter) == 2 * len(part) and text.count("\n") == len(part)
             and not any(special in text for special in _SPECIAL))
    return text if plain else None


def _text_rows(part: ValueRows) -> Iterator[tuple[Any, ...]]:
    """The rows of a TSV or CSV: the attribute after the entity, ``current`` as true/false."""
    attribute = part.attribute
    if part.fields[-1] == "current":
        for entity, *rest, current in part.rows:
            yield (entity, attribute, *rest, "true" if current else "false")
    else:
        for entity, *rest in part.rows:
            yield (entity, attribute, *rest)


def _parquet(parts: Iterable[ValueRows], names: list[str], out: Path) -> int:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ModuleNotFoundError as exc:
        raise UsageError.naming("{fmt} parquet needs pyarrow: pip install 'provbatch[dataframe]'") from exc
    data: dict[str, list[Any]] = {name: [] for name in names}
    for part in parts:
        data["attribute"].extend(repeat(part.attribute, len(part)))
        for name, column in part.columns().items():
            data[name].extend(column)
    try:
        value = pa.array(data["value"])  # one datatype (all Float, all Integer...): a typed column
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        value = pa.array([None if v is None else json.dumps(v) for v in data["value"]], type=pa.string())
    arrays = [value if name == "value" else pa.array(data[name]) for name in names]
    pq.write_table(pa.Table.from_arrays(arrays, names=names), out)
    return len(data["entity"])
