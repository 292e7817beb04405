"""Checks a loaded plugin against the ProvBatch plugin contract.

Every check adds a problem (a sentence saying what is wrong and how to fix
it) instead of raising, so that ``provbatch check`` can list them all.
The same function guards ``batch-compute`` before the first compute.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from types import ModuleType
from typing import Any

from .attributes import AttributeDefinitions
from .parameters import STATE, converter_for, no_default

#: constant -> maximum length of its string value (None: not a string)
STRING_LIMITS: dict[str, int] = {
    "ID": 256,
    "VERSION": 64,
    "INPUT": 512,
    "METHOD": 4096,
    "IMPLEMENTATION": 4096,
    "REQ_SOFTWARE": 4096,
    "REQ_HARDWARE": 4096,
    "ADVICE": 4096,
}
REQUIRED_CONSTANTS = ("ID", "VERSION", "INPUT", "OUTPUT")
OPTIONAL_CONSTANTS = ("PARAMETERS", "METHOD", "IMPLEMENTATION", "REQ_SOFTWARE", "REQ_HARDWARE", "ADVICE")
REQUIRED_FUNCTIONS = ("compute",)
OPTIONAL_FUNCTIONS = ("initialize", "finalize", "merge")

#: How to write a constant or compute in each compiled or shell language: the
#: fixes below show Python syntax, and this adds the plugin's own.
_SYNTAX: dict[str, dict[str, str]] = {
    "rust": {
        "string": "#[classattr] const {name}: &'static str = \"...\"; in the impl Constants block",
        "list": "#[classattr] const OUTPUT: [&'static str; 2] = [\"a\", \"b\"]; in the impl Constants block",
        "parameters": "#[classattr] const PARAMETERS: [(&'static str, &'static str, &'static str, &'static str); 1] "
                      "= [(\"name\", \"Integer\", \"4\", \"documentation\")]; in the impl Constants block",
        "compute": "#[pyfunction] fn compute(entity: &str, ...) -> PyResult<((...), Vec<String>)>",
    },
    "nim": {
        "string": "{name} = \"...\" in a const section, and {name} among the arguments of exportpy_consts(...)",
        "list": "OUTPUT = @[\"a\", \"b\"] in a const section, and OUTPUT among the arguments of exportpy_consts(...)",
        "parameters": "PARAMETERS = @[(\"name\", \"Integer\", \"4\", \"documentation\")] in a const section, "
                      "and PARAMETERS among the arguments of exportpy_consts(...)",
        "compute": "proc compute(entity: string, ...): tuple[results: (...), logs: seq[string]] {{.exportpy.}}",
    },
    "bash": {
        "string": "{name}=\"...\" at the top level of the script",
        "list": "OUTPUT=(a b), a bash array",
        "parameters": "PARAMETERS=($'name\\tInteger\\t4\\tdocumentation'), one entry per parameter, its four fields separated by tabs",
        "compute": "a function compute() that prints the results, tab-separated, on its first stdout line",
    },
}


def _in_lang(module: ModuleType, kind: str, name: str = "") -> str:
    """`` (in Rust: ...)``: the fix in the plugin's language; empty for Python."""
    lang = getattr(module, "__lang__", "python")
    form = _SYNTAX.get(lang, {}).get(kind)
    return f" (in {lang.capitalize()}: {form.format(name=name)})" if form else ""


def _check_strings(module: ModuleType, problems: list[str]) -> None:
    for name, limit in STRING_LIMITS.items():
        value = getattr(module, name, None)
        if value is None:
            if name in REQUIRED_CONSTANTS:
                problems.append(
                    f"constant {name} is missing: define {name} as a string of at most {limit} characters"
                    + _in_lang(module, "string", name)
                )
            continue
        if not isinstance(value, str):
            problems.append(
                f"constant {name} must be a string (max {limit} characters), not {type(value).__name__}"
                + _in_lang(module, "string", name)
            )
        elif name in REQUIRED_CONSTANTS and not value.strip():
            problems.append(f"constant {name} is empty: give it a value (max {limit} characters)")
        elif len(value) > limit:
            problems.append(f"constant {name} is {len(value)} characters long; the limit is {limit}: shorten it")


def _check_output(module: ModuleType, attributes: AttributeDefinitions | None, problems: list[str]) -> None:
    output = getattr(module, "OUTPUT", None)
    if output is None:
        problems.append(
            "constant OUTPUT is missing: define OUTPUT as a list of attribute names, in the order compute returns them"
            + _in_lang(module, "list")
        )
        return
    if not isinstance(output, (list, tuple)) or not output:
        problems.append("constant OUTPUT must be a non-empty list of attribute names (strings)" + _in_lang(module, "list"))
        return
    bad = [repr(item) for item in output if not isinstance(item, str) or not item.strip()]
    if bad:
        problems.append(f"constant OUTPUT must contain only non-empty strings; found {', '.join(bad)}")
        return
    duplicated = sorted({name for name in output if list(output).count(name) > 1})
    if duplicated:
        problems.append(f"constant OUTPUT names {', '.join(duplicated)} more than once: each attribute once")
    if attributes is None:
        problems.append(
            "no attribute definitions file found to check OUTPUT against: pass --attributes FILE "
            "or put attribute_definitions.yaml in the current directory or beside the plugin"
        )
        return
    for name in output:
        if name not in attributes:
            problems.append(
                f"OUTPUT attribute '{name}' is not defined in {attributes.path}: add an entry "
                f"'{name}:' with 'definition' and 'datatype' there"
            )


def _check_parameters(module: ModuleType, problems: list[str]) -> None:
    parameters = getattr(module, "PARAMETERS", None)
    if parameters is None:
        return
    if not isinstance(parameters, (list, tuple)):
        problems.append(
            "constant PARAMETERS must be a list of 4-tuples (name, datatype, default, documentation)"
            + _in_lang(module, "parameters")
        )
        return
    seen: set[str] = set()
    for index, entry in enumerate(parameters):
        where = f"PARAMETERS[{index}]"
        if not isinstance(entry, (list, tuple)) or len(entry) != 4:
            problems.append(
                f"{where} must be a 4-tuple of strings (name, datatype, default, documentation), got {entry!r}"
                + _in_lang(module, "parameters")
            )
            continue
        if not all(isinstance(item, str) for item in entry):
            problems.append(f"{where} must contain only strings (name, datatype, default, documentation), got {entry!r}")
            continue
        name, datatype, default, _doc = entry
        if not name.isidentifier():
            problems.append(f"{where}: parameter name '{name}' is not a valid identifier")
        if name == STATE:
            problems.append(f"{where}: 'state' is reserved for the batch state; do not declare it")
        if name in seen:
            problems.append(f"{where}: parameter '{name}' is declared twice")
        seen.add(name)
        try:
            convert = converter_for(datatype)
        except ValueError as exc:
            problems.append(f"{where}: parameter '{name}': {exc}")
            continue
        if not no_default(default):
            try:
                convert(default)
            except (ValueError, TypeError) as exc:
                problems.append(f"{where}: default {default!r} of parameter '{name}' is not a valid {datatype}: {exc}")


def _parameter_names(module: ModuleType) -> list[str]:
    parameters = getattr(module, "PARAMETERS", None) or []
    return [entry[0] for entry in parameters if isinstance(entry, (list, tuple)) and entry and isinstance(entry[0], str)]


def _signature(func: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(func)
    except (TypeError, ValueError):
        return None


def _accepts_keywords(sig: inspect.Signature, names: list[str]) -> list[str]:
    """The names among ``names`` that ``sig`` cannot take as keyword arguments."""
    params = sig.parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return []
    keyword_ok = {n for n, p in params.items() if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)}
    return [name for name in names if name not in keyword_ok]


def _check_python_signatures(module: ModuleType, problems: list[str]) -> None:
    names = _parameter_names(module)
    has_initialize = callable(getattr(module, "initialize", None))
    compute = getattr(module, "compute", None)
    sig = _signature(compute) if callable(compute) else None
    if sig is not None:
        params = list(sig.parameters.values())
        positional = [p for p in params if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        if not positional and not any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
            problems.append("compute must take the entity as its first positional argument: def compute(entity, **kwargs)")
        required_extra = [
            p.name for p in positional[1:] + [p for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]
            if p.default is inspect.Parameter.empty and not (p.name == STATE and has_initialize)
        ]
        if required_extra:
            problems.append(
                f"compute has required argument(s) {', '.join(required_extra)} besides the entity: "
                "give them defaults and declare them in PARAMETERS"
            )
        missing = _accepts_keywords(sig, names)
        if missing:
            problems.append(f"compute does not accept the declared parameter(s) {', '.join(missing)}: add them or **kwargs to its signature")
        if has_initialize and _accepts_keywords(sig, [STATE]):
            problems.append("initialize is defined, so compute must accept the keyword argument 'state': def compute(entity, state=None, **kwargs)")
    initialize = getattr(module, "initialize", None)
    sig = _signature(initialize) if callable(initialize) else None
    if sig is not None:
        required_positional = [
            p.name for p in sig.parameters.values()
            if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
            and p.default is inspect.Parameter.empty
        ]
        if any(p.kind is inspect.Parameter.POSITIONAL_ONLY for p in sig.parameters.values()) or required_positional:
            problems.append("initialize must take keyword arguments only, each with a default: def initialize(**kwargs)")
        missing = _accepts_keywords(sig, names)
        if missing:
            problems.append(f"initialize does not accept the declared parameter(s) {', '.join(missing)}: add them or **kwargs")
    for name in ("finalize", "merge"):
        func = getattr(module, name, None)
        sig = _signature(func) if callable(func) else None
        if sig is None:
            continue
        try:
            sig.bind(object())
        except TypeError:
            arg = "state" if name == "finalize" else "states"
            problems.append(f"{name} must take exactly one positional argument: def {name}({arg})")


def validate_plugin(module: ModuleType, attributes: AttributeDefinitions | None) -> list[str]:
    """Every problem of the plugin's metadata and functions (empty when valid)."""
    problems: list[str] = []
    _check_strings(module, problems)
    _check_output(module, attributes, problems)
    _check_parameters(module, problems)
    compute = getattr(module, "compute", None)
    if compute is None:
        problems.append(
            "function compute is missing: define compute(entity, **kwargs) returning (results, logs)" + _in_lang(module, "compute")
        )
    elif not callable(compute):
        problems.append("compute is defined but is not a function")
    for name in OPTIONAL_FUNCTIONS:
        value = getattr(module, name, None)
        if value is not None and not callable(value):
            problems.append(f"{name} is defined but is not a function")
    if callable(getattr(module, "finalize", None)) and not callable(getattr(module, "initialize", None)):
        problems.append("finalize is defined without initialize: finalize receives the state initialize returns; define initialize too")
    lang = getattr(module, "__lang__", "python")
    if lang == "python":
        _check_python_signatures(module, problems)
    elif lang in ("rust", "nim"):
        _check_compiled_signatures(module, lang, problems)
    return problems


def _check_compiled_signatures(module: ModuleType, lang: str, problems: list[str]) -> None:
    """Declared parameters the compiled compute cannot take would fail every entity: say so now.

    Rust functions bind every keyword the engine passes, like Python ones.
    The Nim loader gives each parameter to whichever of compute and
    initialize declares it, so a parameter only initialize uses is fine there.
    """
    compute = getattr(module, "compute", None)
    sig = _signature(compute) if callable(compute) else None
    if sig is None:
        return
    names = _parameter_names(module)
    missing = _accepts_keywords(sig, names)
    if lang == "nim":
        initialize = getattr(module, "initialize", None)
        init_sig = _signature(initialize) if callable(initialize) else None
        if init_sig is not None:
            missing = [name for name in missing if name in _accepts_keywords(init_sig, [name])]
    if missing:
        where = "proc compute (or initialize)" if lang == "nim" else "#[pyo3(signature = (entity, ..., **_kwargs))] of compute"
        problems.append(
            f"compute does not accept the declared parameter(s) {', '.join(missing)}: add them to the {where}"
        )
