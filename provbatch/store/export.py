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
from pathlib import Path
from typing import IO, Any

from ..errors import UsageError, literal
from .store import Store

FORMATS = ("tsv", "csv", "jsonl", "parquet")


def columns(provenance: bool, history: bool) -> list[str]:
    names = ["entity", "attribute", "value"]
    if provenance or history:
        names += ["computation", "plugin_id", "plugin_version", "time_end"]
    if history:
        names.append("current")
    return names


def _as_text(rows: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for row in rows:
        if "current" in row:
            row["current"] = "true" if row["current"] else "false"
        yield row


def export_values(store: Store, attributes: list[str], entities: list[str] | None, fmt: str, out: str | None,
                  provenance: bool = False, history: bool = False) -> int:
    """Write the values to ``out`` (stdout when None; Parquet needs a file); returns the rows written."""
    if fmt not in FORMATS:
        raise UsageError.naming(f"{{fmt}} must be one of {', '.join(FORMATS)}, got {literal(repr(fmt))}")
    rows = store.iter_values(attributes, entities, history=history, provenance=provenance, as_text=fmt in ("tsv", "csv"))
    names = columns(provenance, history)
    if fmt == "parquet":
        if out is None:
            raise UsageError.naming("{fmt} parquet needs an output file: {out}")
        return _parquet(list(rows), names, Path(out))
    # stdout or a file, closed in the finally below (stdout is not)
    handle: IO[str] = sys.stdout if out is None else open(out, "w", encoding="utf-8", newline="")  # noqa: SIM115
    n = 0
    try:
        if fmt == "jsonl":
            write = handle.write
            for row in rows:
                write(json.dumps(row, ensure_ascii=False) + "\n")
                n += 1
            return n
        writer = csv.DictWriter(handle, names, delimiter="\t" if fmt == "tsv" else ",", lineterminator="\n",
                                quoting=csv.QUOTE_NONE if fmt == "tsv" else csv.QUOTE_MINIMAL, escapechar="\\" if fmt == "tsv" else None)
        writer.writeheader()
        for row in _as_text(rows):
            writer.writerow(row)
            n += 1
        return n
    finally:
        if out is not None:
            handle.close()


def _parquet(rows: list[dict[str, Any]], names: list[str], out: Path) -> int:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ModuleNotFoundError as exc:
        raise UsageError.naming("{fmt} parquet needs pyarrow: pip install 'provbatch[dataframe]'") from exc
    data: dict[str, Any] = {name: [row.get(name) for row in rows] for name in names}
    try:
        value = pa.array(data["value"])  # one datatype (all Float, all Integer...): a typed column
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        value = pa.array([None if v is None else json.dumps(v) for v in data["value"]], type=pa.string())
    arrays = [value if name == "value" else pa.array(data[name]) for name in names]
    pq.write_table(pa.Table.from_arrays(arrays, names=names), out)
    return len(rows)
