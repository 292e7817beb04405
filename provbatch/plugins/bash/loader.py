"""Loader for Bash plugins: a ``.sh`` script becomes a module like a Python plugin.

The script's variables become module constants (read by bash itself, as
MultiPlug 1.2 reads them, see :mod:`.constants`); every function it
defines (but those starting with ``_``) becomes a Python function that calls
it (see :mod:`.runner`), as MultiPlug exposes them.

The contract of a Bash plugin (docs/bash-plugins.md has the long version,
docs/compatibility.md the prenacs 1.2 conventions):

* ``compute ENTITY key=value...``: each a separate argument, never a command
  string. The first stdout line holds the results, tab-separated (no trailing
  newline needed: ``echo -en "$a\t$b"``); an empty first line means "no value
  for this entity" (no results row, the logs are kept); further stdout lines
  are logs; stderr lines are logs, prefixed ``stderr<TAB>``. A non-zero exit
  fails the entity with the status and the last stderr lines.
* any other function ``NAME ARG... key=value...``: returns its stdout, minus
  one trailing newline, as a string (``compute_id`` of an idsproc module).
* ``initialize key=value...``: its stdout, minus one trailing newline, is the
  state; compute then also gets ``state=<value>``, ``finalize`` gets it as ``$1``.

The state is a string, so it travels to any worker: ``process_local_state`` is False.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import types
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from ...errors import PluginLoadError
from ..base import Loader, PluginSpec, finish_module
from ..cache import file_sha256, local_artifact
from .constants import ScriptDefinitions, read_definitions
from .runner import BashCallError, CallResult, cancel_all, close_all, runner_for, stderr_tail

log = logging.getLogger("provbatch.bash")

#: The bash functions with a plugin-specific wrapper; every other function returns its stdout.
PLUGIN_FUNCTIONS = ("compute", "initialize", "finalize")
#: Loader options and their defaults.
OPTIONS: dict[str, Any] = {"persistent": True}


def find_bash(path: Path | str) -> str:
    """The bash executable, or a PluginLoadError naming the plugin."""
    bash = shutil.which("bash")
    if bash is None:
        raise PluginLoadError(f"{path}: cannot run a Bash plugin: bash is not on PATH")
    return bash


def param_args(params: Mapping[str, Any]) -> list[str]:
    """``key=value`` arguments; booleans as true/false, None omitted, containers as JSON."""
    args = []
    for key, value in params.items():
        if value is None:
            continue
        if not key.isidentifier():
            raise ValueError(f"parameter name {key!r} is not an identifier")
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (str, int, float)):
            text = str(value)
        else:
            text = json.dumps(value)
        args.append(f"{key}={text}")
    return args


def _lines(data: bytes) -> list[str]:
    return [line for line in data.decode("utf-8", "replace").split("\n") if line]


def call_logs(result: CallResult, skip_first: bool) -> list[str]:
    """Log lines of a call: stdout lines (but the results line), then stderr lines marked ``stderr``."""
    stdout = result.stdout
    if skip_first:
        stdout = stdout.split(b"\n", 1)[1] if b"\n" in stdout else b""
    return _lines(stdout) + ["stderr\t" + line for line in _lines(result.stderr)]


def _check_status(path: Path, function: str, result: CallResult, logs: list[str]) -> None:
    if result.status != 0:
        raise BashCallError(
            f"{path}: {function} exited with status {result.status}: {stderr_tail(result.stderr)}",
            result.status,
            logs,
        )


def parse_compute_output(path: Path, result: CallResult, n_outputs: int | None) -> tuple[list[str], list[str]]:
    """(results, logs) from what compute printed; results stay strings."""
    logs = call_logs(result, skip_first=True)
    _check_status(path, "compute", result, logs)
    if not result.stdout:
        raise BashCallError(f"{path}: compute printed nothing; its first stdout line must hold the results", 0, logs)
    first = result.stdout.split(b"\n", 1)[0].decode("utf-8", "replace")
    if not first:
        return [], logs  # prenacs: an empty results line is "no value for this entity"
    results = first.split("\t")
    # more fields than OUTPUT names fill array/composite attributes (checked with the datatypes)
    if n_outputs is not None and len(results) < n_outputs:
        raise BashCallError(
            f"{path}: compute printed {len(results)} result field(s) on its first stdout line, but OUTPUT "
            f"names {n_outputs}: separate the fields with a tab ({first[:200]!r})",
            0,
            logs,
        )
    return results, logs


def _output_count(definitions: ScriptDefinitions) -> int | None:
    output = definitions.variables.get("OUTPUT")
    return len(output) if isinstance(output, list) else None


def _log_lines(path: Path, function: str, lines: list[str]) -> None:
    """initialize and finalize return no logs: their output goes to the Python log."""
    for line in lines:
        log.info("%s: %s: %s", path.name, function, line)


class _Plugin:
    """The Python side of one loaded script; its methods are the module's functions.

    Each call looks its runner up by process id (see ``runner_for``), so the
    same module works in the driver and in forked workers.
    """

    def __init__(self, path: Path, bash: str, sha256: str, persistent: bool, definitions: ScriptDefinitions) -> None:
        self.path, self.bash, self.sha256, self.persistent = path, bash, sha256, persistent
        self.n_outputs = _output_count(definitions)

    def call(self, function: str, args: list[str]) -> CallResult:
        return runner_for(self.bash, self.path, self.sha256, self.persistent).call(function, args)

    def compute(self, entity: str, **params: Any) -> tuple[list[str], list[str]]:
        result = self.call("compute", [os.fspath(entity), *param_args(params)])
        return parse_compute_output(self.path, result, self.n_outputs)

    def initialize(self, **params: Any) -> str:
        result = self.call("initialize", param_args(params))
        _check_status(self.path, "initialize", result, call_logs(result, skip_first=False))
        if b"\0" in result.stdout:
            raise BashCallError(f"{self.path}: initialize printed a NUL byte; the state must be text without NUL", 0)
        _log_lines(self.path, "initialize", ["stderr\t" + line for line in _lines(result.stderr)])
        state = result.stdout[:-1] if result.stdout.endswith(b"\n") else result.stdout
        return state.decode("utf-8", "surrogateescape")

    def finalize(self, state: str) -> None:
        result = self.call("finalize", [state])
        _check_status(self.path, "finalize", result, call_logs(result, skip_first=False))
        _log_lines(self.path, "finalize", call_logs(result, skip_first=False))

    def function(self, name: str) -> Any:
        """Any other function of the script: its stdout minus one trailing newline, as a string."""

        def call(*args: Any, **kwargs: Any) -> str:
            result = self.call(name, [os.fspath(a) if isinstance(a, os.PathLike) else str(a) for a in args]
                               + param_args(kwargs))
            _check_status(self.path, name, result, call_logs(result, skip_first=False))
            out = result.stdout[:-1] if result.stdout.endswith(b"\n") else result.stdout
            return out.decode("utf-8", "surrogateescape")

        call.__name__ = call.__qualname__ = name
        call.__doc__ = f"The bash function {name} of {self.path.name}."
        return call

    def cleanup(self) -> None:
        close_all(self.path)

    def cancel(self) -> bool:
        return cancel_all(self.path)


def build_module(path: Path, bash: str, sha256: str, persistent: bool, definitions: ScriptDefinitions) -> ModuleType:
    """A module with the script's variables as constants and its functions wrapped."""
    module = types.ModuleType("provbatch_bash_plugin_" + sha256[:16])
    module.__file__ = str(path)
    for name, value in definitions.variables.items():
        if not name.startswith("_") and name not in definitions.functions:
            setattr(module, name, value)
    plugin = _Plugin(path, bash, sha256, persistent, definitions)
    for name in sorted(definitions.functions):
        if name.startswith("_") or not name.isidentifier():
            continue  # private, as in MultiPlug; or not callable as a Python attribute
        setattr(module, name, getattr(plugin, name) if name in PLUGIN_FUNCTIONS else plugin.function(name))
    vars(module).update(  # provbatch's own module attributes, which ModuleType does not declare
        __bash_functions__=frozenset(definitions.functions),
        __provbatch_cleanup__=plugin.cleanup,
        __provbatch_cancel__=plugin.cancel,
    )
    return module


def _options(path: Path, options: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        log.warning("%s: ignoring option(s) %s, unknown to the Bash loader", path, ", ".join(unknown))
    return {**OPTIONS, **{key: value for key, value in options.items() if key in OPTIONS}}


def _script_for(spec: PluginSpec) -> Path:
    """The script with the spec's sha256: the driver's file, else the copy the backend shipped."""
    path = Path(spec.artifact or spec.source)
    if path.is_file() and (spec.artifact_sha256 is None or file_sha256(path) == spec.artifact_sha256):
        return path
    if spec.artifact_blob is not None:
        return local_artifact(spec, "bash")
    if path.is_file():
        raise PluginLoadError(f"{path}: the script changed since the batch started (its sha256 differs); run the batch again")
    raise PluginLoadError(f"{path}: Bash plugin script not found on this worker")


class BashLoader(Loader):
    """Loads ``.sh`` plugins; nothing to build, the spec carries the script's sha256."""

    lang = "bash"

    def __init__(self) -> None:
        self._modules: dict[tuple[str, str, tuple[tuple[str, Any], ...]], ModuleType] = {}
        self._versions: dict[str, str] | None = None

    def _load(self, path: Path, sha256: str, options: Mapping[str, Any], spec: PluginSpec | None) -> ModuleType:
        bash = find_bash(path)
        settings = _options(path, options)
        definitions = read_definitions(bash, path)
        module = build_module(path, bash, sha256, bool(settings["persistent"]), definitions)
        if spec is None:
            spec = PluginSpec(
                lang=self.lang, source=str(path), artifact=str(path), artifact_sha256=sha256,
                options=tuple(sorted(options.items())), process_local_state=False,
            )
        return finish_module(module, self.lang, spec)

    def load(self, path: Path, **options: Any) -> ModuleType:
        if not path.is_file():
            raise PluginLoadError(f"{path}: a Bash plugin must be a single .sh file")
        try:
            sha256 = file_sha256(path)
        except OSError as exc:
            raise PluginLoadError(f"{path}: cannot read plugin: {exc}") from exc
        return self._load(path, sha256, options, None)

    def load_spec(self, spec: PluginSpec) -> ModuleType:
        key = (spec.source, str(spec.artifact_sha256), spec.options)
        if key not in self._modules:
            script = _script_for(spec)
            sha256 = spec.artifact_sha256 or file_sha256(script)
            self._modules[key] = self._load(script, sha256, dict(spec.options), spec)
        return self._modules[key]

    def versions(self) -> dict[str, str]:
        if self._versions is None:
            bash = shutil.which("bash")
            version = "not found"
            if bash is not None:
                result = subprocess.run(
                    [bash, "--noprofile", "--norc", "-c", 'printf %s "$BASH_VERSION"'],
                    capture_output=True, text=True, env={"PATH": os.defpath},
                )
                version = result.stdout or "unknown"
            self._versions = {"bash": version}
        return self._versions
