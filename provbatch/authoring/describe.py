"""``provbatch describe PLUGIN``: a plugin's metadata, its OUTPUT attributes and its PARAMETERS.

:func:`describe_plugin` renders the metadata, the OUTPUT attributes with
their definitions, and the PARAMETERS as a table.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from ..contract.attributes import (
    DEFAULT_FILENAME,
    AttributeDefinitions,
    find_attribute_definitions,
    load_attribute_definitions,
)
from ..contract.parameters import no_default
from ..errors import ProvBatchError
from .text import single_spaced, table

#: Optional metadata constants shown by ``describe`` (after ID, VERSION, INPUT).
TEXT_CONSTANTS = ("METHOD", "IMPLEMENTATION", "REQ_SOFTWARE", "REQ_HARDWARE", "ADVICE")
#: Functions whose presence ``describe`` reports.
LIFECYCLE_FUNCTIONS = ("initialize", "finalize", "merge")
#: Width the long metadata values of ``describe`` are wrapped to.
WRAP_WIDTH = 100


def _wrapped(label: str, value: str, width: int) -> list[str]:
    """``label  value`` with the value wrapped and continued under itself."""
    indent = " " * (width + 2)
    paragraphs = str(value).splitlines() or [""]
    lines = []
    for number, paragraph in enumerate(paragraphs):
        first = f"{label.ljust(width)}  " if number == 0 else indent
        wrapped = textwrap.fill(
            paragraph, WRAP_WIDTH, initial_indent=first, subsequent_indent=indent,
            break_long_words=False, break_on_hyphens=False,  # paths and hashes stay whole
        )
        lines.append(wrapped or first.rstrip())
    return lines


def _definitions_for(loaded: Any, attributes: str | Path | None) -> tuple[AttributeDefinitions | None, str]:
    """The definitions to describe OUTPUT with, and a note on where they come from.

    An explicit ``--attributes`` file must load; a definitions file merely found
    (current directory, beside the plugin) that does not is noted, not fatal.
    """
    path = find_attribute_definitions(attributes, loaded.path)
    if path is None:
        return None, f"no {DEFAULT_FILENAME} found: pass --attributes FILE"
    try:
        return load_attribute_definitions(path), f"definitions from {path}"
    except ProvBatchError as exc:
        if attributes is not None:
            raise
        return None, single_spaced(exc)


def _output_lines(loaded: Any, attributes: str | Path | None) -> list[str]:
    definitions, note = _definitions_for(loaded, attributes)
    output = getattr(loaded.module, "OUTPUT", None)
    if not isinstance(output, (list, tuple)):
        output = []  # missing, or a single string: check says how to fix it
    rows = []
    for name in map(str, output):
        entry = definitions.attributes.get(name) if definitions is not None else None
        if entry is None:
            undefined = f"(not defined in {definitions.path})" if definitions is not None else "(no definition)"
            rows.append([name, "?", "", undefined])
        else:
            rows.append([name, single_spaced(entry["datatype"]), single_spaced(entry.get("unit", "")), single_spaced(entry["definition"])])
    if not rows:
        return [f"OUTPUT ({note})", "  (none: OUTPUT is missing, empty or not a list; run provbatch check)"]
    return [f"OUTPUT ({note})", *table(["attribute", "datatype", "unit", "definition"], rows, indent="  ")]


def _default_cell(default: str) -> str:
    """An empty default (or none/null) means the parameter is not passed: the function's own default applies."""
    return "(none)" if no_default(default) else default


def parameter_table(parameters: Any) -> list[str]:
    """PARAMETERS as aligned rows: name, datatype, default, documentation."""
    if parameters is not None and not isinstance(parameters, (list, tuple)):
        return [f"  PARAMETERS is not a list: {parameters!r} (run provbatch check)"]
    rows, malformed = [], []
    for index, entry in enumerate(parameters or ()):
        if isinstance(entry, (list, tuple)) and len(entry) == 4 and all(isinstance(item, str) for item in entry):
            name, datatype, default, doc = entry
            rows.append([name, datatype, _default_cell(default), single_spaced(doc)])
        else:
            malformed.append(f"  PARAMETERS[{index}] is not a 4-tuple of strings: {entry!r} (run provbatch check)")
    if not rows and not malformed:
        return ["  (none: compute takes no parameters)"]
    lines = table(["name", "datatype", "default", "documentation"], rows, indent="  ") if rows else []
    return lines + malformed


def _text_constant(module: Any, name: str) -> str:
    value = getattr(module, name, None)
    return "(not given)" if value is None or value == "" else str(value)


def describe_plugin(plugin: str | Path, attributes: str | Path | None = None) -> str:
    """A plugin's metadata, OUTPUT attributes and PARAMETERS, as text for a terminal.

    ``plugin`` is a path or an installed plugin's name (compiled plugins are
    built, or taken from the build cache). ``attributes`` is the definitions
    file; by default the one ``batch-compute`` would use.
    """
    from ..plugins.loading import load_plugin

    loaded = load_plugin(plugin)
    module = loaded.module
    spec = loaded.spec
    labels = ["ID", "VERSION", "language", "source", "sha256", "library", "library sha256", "INPUT", *TEXT_CONSTANTS, *LIFECYCLE_FUNCTIONS]
    width = max(map(len, labels))
    source = str(loaded.path) if loaded.path is not None else f"{spec.source} (installed module)"
    lines = _wrapped("ID", _text_constant(module, "ID"), width)
    lines += _wrapped("VERSION", _text_constant(module, "VERSION"), width)
    lines += _wrapped("language", loaded.lang, width)
    lines += _wrapped("source", source, width)
    if loaded.path is not None:
        lines += _wrapped("sha256", loaded.sha256(), width)
    if spec.artifact and spec.artifact != spec.source:
        lines += _wrapped("library", spec.artifact, width)
        lines += _wrapped("library sha256", str(spec.artifact_sha256), width)
    for name in ("INPUT", *TEXT_CONSTANTS):
        lines += _wrapped(name, _text_constant(module, name), width)
    for name in LIFECYCLE_FUNCTIONS:
        lines += _wrapped(name, "yes" if loaded.has(name) else "no", width)
    lines += ["", *_output_lines(loaded, attributes)]
    lines += ["", "PARAMETERS", *parameter_table(getattr(module, "PARAMETERS", None))]
    return "\n".join(lines)
