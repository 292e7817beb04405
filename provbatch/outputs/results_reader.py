"""Reading a results TSV back: typed values, named columns, from the run record that wrote it.

A results file is ``entity<TAB>value...`` in OUTPUT order, optionally with a
header line (``--header``: ``entity<TAB>name...``). What the columns are
called and what type each holds is not in the file itself (so that prenacs
tools keep reading it); it is in the run record: ``run_config.json`` lists
the OUTPUT names and their datatypes. :func:`find_schema` finds that record
from the results path: the report beside it (``OUT.report.yaml`` names the
run directory), else the newest run under the runs root whose results
were this file.

Fields are parsed by the attribute datatypes (:func:`parser_for`): an
empty field is ``None``; ``Integer`` -> int, ``Float`` -> float,
``Boolean`` -> bool, ``String(N)``/``Text`` -> str, an array ``T[N]`` -> a
list of T, a composite ``A;B`` -> a tuple.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from typing import Any

from ..contract import datatypes
from ..contract.results import FALSE_TEXT, TRUE_TEXT
from ..errors import UsageError

Parser = Callable[[str], Any]
ENTITY_COLUMN = "entity"


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in TRUE_TEXT:
        return True
    if lowered in FALSE_TEXT:
        return False
    raise ValueError(f"{text!r} is not a Boolean")


def parser_for(datatype: str | None) -> Parser:
    """TSV text -> the Python value of ``datatype``; the text itself when there is no datatype."""
    if not datatype:
        return str
    try:
        node = datatypes.parse(datatype, strict=True)
    except datatypes.DatatypeError:
        return str
    return _parser(node)


def _parser(node: datatypes.Datatype) -> Parser:
    if isinstance(node, datatypes.Composite):
        parts = [_parser(part) for part in node.parts]

        def composite(text: str) -> tuple[Any, ...]:
            items = text.split(";")
            if len(items) != len(parts):
                raise ValueError(f"{text!r} has {len(items)} ';'-separated components, expected {len(parts)}")
            return tuple(parse(item) for parse, item in zip(parts, items))

        return composite
    if isinstance(node, datatypes.Array):
        element = _parser(node.element)

        def array(text: str) -> list[Any]:
            return [element(item) for item in text.split(",")] if text else []

        return array
    if node.name == datatypes.INTEGER:
        return int
    if node.name == datatypes.FLOAT:
        return float
    if node.name == datatypes.BOOLEAN:
        return _boolean
    return str


def row_parser(datatypes: Sequence[str | None]) -> Callable[[Sequence[str]], list[Any]]:
    """TSV fields of one row -> typed values (an empty field is None).

    Once per row of ``run_batch``/``iter_batch``: the empty-field test is inline, not a call per field."""
    parsers = [parser_for(datatype) for datatype in datatypes]

    def parse_row(fields: Sequence[str]) -> list[Any]:
        return [None if field == "" else parse(field) for parse, field in zip(parsers, fields)]

    return parse_row


def columns_parser(datatypes: Sequence[str | None]) -> Callable[[Sequence[Sequence[str]]], list[Sequence[Any]]]:
    """Columns of TSV fields (one per OUTPUT attribute) -> typed columns, each value as :func:`row_parser` gives it.

    A column without an empty field is converted by one ``map`` (a C loop), not a call per row."""
    parsers = [parser_for(datatype) for datatype in datatypes]

    def parse_columns(columns: Sequence[Sequence[str]]) -> list[Sequence[Any]]:
        typed: list[Sequence[Any]] = []
        for parse, column in zip(parsers, columns):
            if "" in column:
                typed.append([None if field == "" else parse(field) for field in column])
            else:
                typed.append(column if parse is str else list(map(parse, column)))
        return typed

    return parse_columns


def rows_of_lines(text: str, n_outputs: int,
                  parse_columns: Callable[[Sequence[Sequence[str]]], list[Sequence[Any]]] | None = None,
                  ) -> list[tuple[str, list[Any], list[str]]]:
    """``(entity_id, values, logs)`` of result lines whose every line is an id and exactly ``n_outputs`` fields
    (:func:`~provbatch.contract.results.rows_are_clean`), typed by ``parse_columns`` (else the field texts).

    The rows the Python API hands back, built column by column: one ``split`` of the text, a slice per
    column, the conversions in C loops; a row at a time (find the line, split it, convert each field)
    cost the API ~1 µs per entity of its ~4-5 (benchmarks/bench_overhead.py)."""
    fields = text.replace("\n", "\t").split("\t")
    fields.pop()  # after the last line's newline
    width = n_outputs + 1
    ids = fields[0::width]
    columns: list[Sequence[Any]] = [fields[k::width] for k in range(1, width)]
    if parse_columns is not None:
        columns = parse_columns(columns)
    no_logs: Iterator[list[str]] = map(list, repeat((), len(ids)))  # a list of its own per row: the caller may extend one
    values = map(list, zip(*columns)) if columns else map(list, repeat((), len(ids)))
    return list(zip(ids, values, no_logs))


@dataclass(frozen=True)
class Schema:
    """What the columns of a results file are: the OUTPUT names and datatypes, and where that was read."""

    names: tuple[str, ...]
    datatypes: tuple[str | None, ...]
    source: str

    @property
    def columns(self) -> list[str]:
        return [ENTITY_COLUMN, *self.names]


def schema_of_config(config: dict[str, Any], source: str) -> Schema | None:
    """The schema recorded in a run_config.json (None for records older than this field)."""
    plugin = config.get("plugin") or {}
    names = plugin.get("output")
    if not names:
        return None
    datatypes = plugin.get("datatypes") or [None] * len(names)
    return Schema(tuple(names), tuple(datatypes), source)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _config_of_run_dir(run_dir: Path) -> dict[str, Any] | None:
    try:
        config = json.loads((run_dir / "run_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) else None


def results_path_of(config: dict[str, Any]) -> Path | None:
    """The results file a run wrote (absolute, from the run's working directory); None for stdout."""
    results = (config.get("outputs") or {}).get("results")
    if not results:
        return None
    path = Path(results).expanduser()
    return path if path.is_absolute() else Path(config.get("cwd") or ".") / path


def find_run_config(path: Path) -> tuple[dict[str, Any], Path] | None:
    """The run_config.json of the (latest) run that wrote the results file ``path``, and its directory."""
    report = path.with_name(path.name + ".report.yaml")
    if report.is_file():
        import yaml

        try:
            documents = [doc for doc in yaml.safe_load_all(report.read_text(encoding="utf-8")) if isinstance(doc, dict)]
        except yaml.YAMLError:
            documents = []
        for document in reversed(documents):
            run_dir = document.get("run_dir")
            if not run_dir:
                continue
            config = _config_of_run_dir(Path(str(run_dir)))
            if config is not None:
                return config, Path(str(run_dir))
    from ..provenance.rundirs import iter_runs

    for run in reversed(list(iter_runs())):
        config = _config_of_run_dir(run.directory)
        results = results_path_of(config) if config else None
        if config is not None and results is not None and _same_file(results, path):
            return config, run.directory
    return None


def read_header(path: Path) -> list[str] | None:
    """The column names of a ``--header`` line (``entity<TAB>...``), or None when the file has none."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        first = handle.readline()
    fields = first.rstrip("\n").split("\t")
    return fields if first.endswith("\n") and fields[0] == ENTITY_COLUMN and len(fields) > 1 else None


def find_schema(path: str | Path, run_dir: str | Path | None = None) -> Schema:
    """Names and datatypes of a results file; a UsageError saying what is missing when none is found."""
    path = Path(path)
    if run_dir is not None:
        config = _config_of_run_dir(Path(run_dir))
        found = (config, Path(run_dir)) if config is not None else None
        if found is None:
            raise UsageError(f"{run_dir}: no readable run_config.json")
    else:
        found = find_run_config(path)
    if found is not None:
        schema = schema_of_config(found[0], str(found[1] / "run_config.json"))
        if schema is not None:
            return schema
    header = read_header(path)
    if header is not None:
        return Schema(tuple(header[1:]), (None,) * (len(header) - 1), f"the header line of {path}")
    raise UsageError(f"{path}: no run record found for this results file (no {path.name}.report.yaml naming one, no run "
                     f"under $PROVBATCH_RUNS wrote it) and no header line; pass run_dir=")


def iter_typed_rows(path: str | Path, schema: Schema) -> Iterator[tuple[str, list[Any]]]:
    """``(entity, typed values)`` of every complete line; a header line and a torn last line are left out."""
    parse = row_parser(schema.datatypes)
    n_fields = len(schema.names)
    with open(path, encoding="utf-8", newline="\n") as handle:
        for number, line in enumerate(handle, 1):
            if not line.endswith("\n"):
                break  # a torn last line (a killed run): that entity is not done
            fields = line[:-1].split("\t")
            if number == 1 and fields[0] == ENTITY_COLUMN and fields[1:] == list(schema.names):
                continue
            if len(fields) != n_fields + 1:
                raise UsageError(f"{path}: line {number} has {len(fields) - 1} values, the run record declares {n_fields} "
                                 f"({', '.join(schema.names)})")
            try:
                yield fields[0], parse(fields[1:])
            except ValueError as exc:
                raise UsageError(f"{path}: line {number}: {exc}") from None


@dataclass
class ResultsTable:
    """Typed, named results: iterable as ``(entity, values)``, and as DataFrames."""

    names: tuple[str, ...]
    datatypes: tuple[str | None, ...]
    rows: list[tuple[str, list[Any]]]
    source: str = ""

    @property
    def columns(self) -> list[str]:
        return [ENTITY_COLUMN, *self.names]

    def __iter__(self) -> Iterator[tuple[str, list[Any]]]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def as_dict(self) -> dict[str, list[Any]]:
        """entity -> typed values."""
        return {entity: values for entity, values in self.rows}

    def to_pandas(self) -> Any:
        from .frames import to_pandas

        return to_pandas(self.names, self.datatypes, self.rows)

    def to_arrow(self) -> Any:
        from .frames import to_arrow

        return to_arrow(self.names, self.datatypes, self.rows)


def read_results(path: str | Path, run_dir: str | Path | None = None) -> ResultsTable:
    """Read a results TSV back, typed and named by the run record that wrote it (see the module docstring).

    ``run_dir`` names the run record when it cannot be found from the file
    (a results file moved away from its report, a run record elsewhere).
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: results file not found")
    schema = find_schema(path, run_dir)
    return ResultsTable(schema.names, schema.datatypes, list(iter_typed_rows(path, schema)), schema.source)
