"""attribute_definitions.yaml: what each attribute a plugin outputs means.

The file maps an attribute name to its definition::

    gc_content:
      definition: fraction of G and C ...   # expected (missing: a warning, as prenacs files omit it)
      datatype: Float                       # required
      computation_group: ...                # optional
      unit / ontology_xref / related_ontology_terms / remark   # optional

Datatypes are attrtables' (prenacs 1.2): ``Integer``, ``Float``, ``Boolean``,
``Text``, ``String(N)``, arrays ``T[N]`` of those, and composites ``A;B`` (the
strict spelling of :mod:`.datatypes`, the one grammar).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import AttributeDefinitionsError
from . import datatypes

DEFAULT_FILENAME = "attribute_definitions.yaml"
REQUIRED_KEYS = ("datatype",)
#: expected; a definition without it gets a warning (prenacs 1.2 definition files omit it in places)
EXPECTED_KEYS = ("definition",)
OPTIONAL_KEYS = ("computation_group", "unit", "ontology_xref", "related_ontology_terms", "remark")


def is_valid_datatype(datatype: str) -> bool:
    """True for the datatypes the definitions file may use (the strict spelling of :mod:`.datatypes`)."""
    return datatypes.is_valid(datatype)


@dataclass(frozen=True)
class AttributeDefinitions:
    """The parsed definitions file, with the problems found in it."""

    path: Path
    attributes: dict[str, dict[str, Any]]
    problems: tuple[str, ...] = ()
    #: not errors: a missing 'definition', String[N] that probably meant String(N)
    warnings: tuple[str, ...] = ()

    def __contains__(self, name: str) -> bool:
        return name in self.attributes


def load_attribute_definitions(path: str | Path) -> AttributeDefinitions:
    """Read and check a definitions file.

    Unreadable or non-YAML files raise :class:`AttributeDefinitionsError`;
    entries with a missing or bad field are kept out and listed in
    ``problems`` so that ``provbatch check`` reports them all.
    """
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AttributeDefinitionsError(f"{path}: cannot read attribute definitions: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise AttributeDefinitionsError(f"{where}: attribute definitions are not valid YAML: {getattr(exc, 'problem', exc)}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise AttributeDefinitionsError(f"{path}: attribute definitions must be a mapping of attribute name -> definition")
    attributes: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    warnings: list[str] = []
    for name, entry in data.items():
        where = f"{path}: attribute '{name}'"
        if not isinstance(entry, dict):
            problems.append(f"{where} must be a mapping with 'definition' and 'datatype'")
            continue
        entry_problems = [f"{where} lacks the required key '{key}'" for key in REQUIRED_KEYS if not entry.get(key)]
        warnings.extend(f"{where} has no '{key}': say what the attribute means" for key in EXPECTED_KEYS if not entry.get(key))
        allowed = REQUIRED_KEYS + EXPECTED_KEYS + OPTIONAL_KEYS
        unknown = sorted(set(entry) - set(allowed))
        if unknown:
            entry_problems.append(f"{where} has unknown key(s) {', '.join(map(str, unknown))} (allowed: {', '.join(allowed)})")
        datatype = entry.get("datatype")
        if datatype and not is_valid_datatype(datatype):
            entry_problems.append(
                f"{where} has datatype '{datatype}', which is not one of {datatypes.SYNTAX}"
            )
        elif datatype and (hint := datatypes.bracket_string_hint(datatype)):
            warnings.append(f"{where}: {hint}")
        problems.extend(entry_problems)
        if not entry_problems:
            attributes[str(name)] = dict(entry)
    return AttributeDefinitions(path=path, attributes=attributes, problems=tuple(problems), warnings=tuple(warnings))


def find_attribute_definitions(explicit: str | Path | None, plugin_path: Path | None = None) -> Path | None:
    """The definitions file to use: ``--attributes``, else ``./attribute_definitions.yaml``,
    else one lying beside the plugin file, else (a plugin module inside a Python package, as
    installed plugins are) one in an enclosing package directory, nearest first: a package
    ships one file at its top for all its plugins. None when there is none."""
    if explicit is not None:
        return Path(explicit)
    candidates = [Path.cwd() / DEFAULT_FILENAME]
    if plugin_path is not None:
        folder = plugin_path if plugin_path.is_dir() else plugin_path.parent
        candidates.append(folder / DEFAULT_FILENAME)
        while (folder / "__init__.py").is_file() and folder.parent != folder:
            folder = folder.parent
            if (folder / "__init__.py").is_file():
                candidates.append(folder / DEFAULT_FILENAME)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return None
