"""Computation parameters: from a YAML file and ``--param key=value``, typed by PARAMETERS.

A plugin declares its parameters as 4-tuples ``(name, datatype, default,
documentation)``. Values given on the command line are strings; they are
converted with the declared datatype, so the plugin gets an ``int`` for an
``Integer`` parameter whatever the language. Defaults are strings too and
are converted the same way; an empty default (or ``None``/``null``) means
"not passed", so the plugin function's own default applies. The datatypes
are those of :mod:`.datatypes`, in its lenient spelling.

The parameter ``state`` is special (see the plugin guide): it is never
declared, is passed to ``initialize`` and replaced by what it returns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from ..errors import UsageError
from . import datatypes
from .results import FALSE_TEXT, TRUE_TEXT

STATE = "state"
_TRUE = TRUE_TEXT | {"y", "on"}  # also as command lines spell them
_FALSE = FALSE_TEXT | {"n", "off"}
_NO_DEFAULT = {"", "none", "null", "~"}


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"'{value}' is not a boolean (use true/false)")


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"'{value}' is not an integer")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"'{value}' is not an integer")
        return int(value)
    return int(str(value).strip())


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"'{value}' is not a number")
    return float(value if isinstance(value, (int, float)) else str(value).strip())


def _to_yaml(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    import yaml

    return yaml.safe_load(value)


def _string_of(limit: int | None) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        text = value if isinstance(value, str) else str(value)
        if limit is not None and len(text) > limit:
            raise ValueError(f"is {len(text)} characters long, longer than {limit}")
        return text

    return convert


_SCALARS: dict[str, Callable[[Any], Any]] = {
    datatypes.INTEGER: _to_int,
    datatypes.FLOAT: _to_float,
    datatypes.BOOLEAN: _to_bool,
    datatypes.TEXT: _string_of(None),
    datatypes.YAML: _to_yaml,
}


def converter_for(datatype: str) -> Callable[[Any], Any]:
    """The function converting a value to ``datatype`` (spelled leniently: any case, aliases, yaml;
    see :mod:`.datatypes`); ValueError for an unknown datatype."""
    return _converter(datatypes.parse(datatype, strict=False))


def _converter(node: datatypes.Datatype) -> Callable[[Any], Any]:
    if isinstance(node, datatypes.Composite):
        parts = [_converter(part) for part in node.parts]

        def composite(value: Any) -> tuple[Any, ...]:
            items = value if isinstance(value, (list, tuple)) else str(value).split(";")
            if len(items) != len(parts):
                raise ValueError(f"needs {len(parts)} ';'-separated components, got {len(items)}")
            return tuple(convert(item) for convert, item in zip(parts, items))

        return composite
    if isinstance(node, datatypes.Array):
        element = _converter(node.element)
        size = node.size

        def convert_array(value: Any) -> list[Any]:
            if isinstance(value, str):
                value = _to_yaml(value) if value.strip().startswith("[") else value.split(",")
            if not isinstance(value, (list, tuple)):
                value = [value]
            if len(value) > size:
                raise ValueError(f"has {len(value)} elements, more than {size}")
            return [element(item) for item in value]

        return convert_array
    if node.name == datatypes.STRING:
        return _string_of(node.limit)
    return _SCALARS[node.name]


def no_default(default: str) -> bool:
    """Whether a PARAMETERS default means "not passed" (empty, none, null, ~): the function's own default applies."""
    return default.strip().lower() in _NO_DEFAULT


def declared_parameters(parameters: Iterable[Any] | None) -> dict[str, tuple[str, str, str]]:
    """PARAMETERS as ``name -> (datatype, default, doc)``; malformed entries are skipped
    (the validator reports them)."""
    declared: dict[str, tuple[str, str, str]] = {}
    for entry in parameters or ():
        if isinstance(entry, (list, tuple)) and len(entry) == 4 and all(isinstance(x, str) for x in entry):
            name, datatype, default, doc = entry
            declared[name] = (datatype, default, doc)
    return declared


def read_params_file(path: str | Path) -> dict[str, Any]:
    """Parameters from a YAML mapping file."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{path}: cannot read params file: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise UsageError(f"{where}: params file is not valid YAML: {getattr(exc, 'problem', exc)}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"{path}: params file must be a YAML mapping of parameter name -> value")
    return {str(key): value for key, value in data.items()}


def parse_param_options(options: Iterable[str]) -> dict[str, str]:
    """``--param key=value`` options as a dict (the last one wins)."""
    params: dict[str, str] = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--param '{option}': expected key=value")
        params[key.strip()] = value
    return params


def resolve_params(
    given: Mapping[str, Any],
    parameters: Iterable[Any] | None,
    origin: str = "parameters",
) -> dict[str, Any]:
    """Apply defaults and convert every value with its declared datatype.

    Raises :class:`UsageError` for an undeclared parameter or a value that
    does not convert, naming ``origin`` (the file or option it came from).
    """
    declared = declared_parameters(parameters)
    unknown = sorted(set(given) - set(declared) - {STATE})
    if unknown:
        names = ", ".join(sorted(declared)) or "none"
        raise UsageError(f"{origin}: parameter(s) {', '.join(unknown)} not declared in the plugin's PARAMETERS (declared: {names})")
    resolved: dict[str, Any] = {}
    for name, (datatype, default, _doc) in declared.items():
        if name in given:
            value, source = given[name], f"{origin}: parameter '{name}'"
        elif not no_default(default):
            value, source = default, f"PARAMETERS default of '{name}'"
        else:
            continue
        try:
            resolved[name] = converter_for(datatype)(value)
        except (ValueError, TypeError) as exc:
            raise UsageError(f"{source}: value {value!r} is not a valid {datatype}: {exc}") from exc
    if STATE in given:
        resolved[STATE] = given[STATE]
    return resolved
