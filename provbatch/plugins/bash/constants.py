"""Read what a Bash plugin defines by running bash itself, never by parsing the script.

A regular expression cannot know what ``ID="$(printf ...)"``, ``OUTPUT+=(x)``
or a heredoc produce; bash can.

Values are read as MultiPlug 1.2 reads them (``echo -e``): backslash escapes
are expanded (``"a\\tb"`` holds a tab), trailing whitespace is dropped, and
an indexed array whose elements hold tabs becomes a list of lists (each
element split on tabs). Unlike MultiPlug, values are not word-split (runs of
blanks and real tabs are kept, globs are not expanded) and each array element
is expanded on its own (an element ending in ``\\n`` adds no empty element);
see docs/compatibility.md. We source the script in a fresh bash with a
clean, minimal environment and let bash print every variable the script
created and every function it defined, as a NUL-separated dump (NUL is the
one byte a bash variable cannot hold, so no value can forge the framing).

The script's path reaches bash as an argument (``$0``), never inside the
command string; the command string is a constant of this module.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import PluginLoadError

#: seconds a script's top level may take when sourced to read its constants
SOURCE_TIMEOUT = 60.0

#: Prints, NUL-separated, each variable the sourced script created
#: ("s" name value | "a" name count values... | "A" name count key value...),
#: then each function ("f" name), then "end". Names starting with "__pb_" are
#: ours. Options the script's top level set (set -eu...) are reset first so
#: that they cannot break the dump itself.
_DUMP_SCRIPT = r"""
__pb_var() {
  local -n __pb_ref=$1
  local __pb_item __pb_e
  case ${__pb_ref@a} in
    *A*)
      builtin printf 'A\0%s\0%d\0' "$1" "${#__pb_ref[@]}"
      for __pb_item in "${!__pb_ref[@]}"; do
        builtin printf '%s\0%s\0' "$__pb_item" "${__pb_ref[$__pb_item]}"
      done ;;
    *a*)
      builtin printf 'a\0%s\0%d\0' "$1" "${#__pb_ref[@]}"
      for __pb_item in "${__pb_ref[@]}"; do
        builtin printf -v __pb_e '%b' "$__pb_item"  # echo -e, as MultiPlug reads constants
        builtin printf '%s\0' "$__pb_e"
      done ;;
    *) builtin printf -v __pb_e '%b' "$__pb_ref"; builtin printf 's\0%s\0%s\0' "$1" "$__pb_e" ;;
  esac
}
__pb_clean_opts="$(set +o; shopt -p)"
builtin eval "$__pb_clean_opts"  # sets BASH_COMPAT: before the baseline, so it is not reported
declare -A __pb_seen=()
while IFS= builtin read -r __pb_name; do __pb_seen[$__pb_name]=1; done < <(compgen -v)
builtin source "$0" >&2 </dev/null
builtin eval "$__pb_clean_opts"
trap - EXIT ERR DEBUG RETURN  # a top-level trap would print after the dump
IFS=$' \t\n'
while IFS= builtin read -r __pb_name; do
  [[ -n ${__pb_seen[$__pb_name]-} || $__pb_name == __pb_* ]] || __pb_var "$__pb_name"
done < <(compgen -v)
while IFS= builtin read -r __pb_name; do
  [[ $__pb_name == __pb_* ]] || builtin printf 'f\0%s\0' "$__pb_name"
done < <(compgen -A function)
builtin printf 'end\0'
"""


@dataclass
class ScriptDefinitions:
    """The variables and functions a script defines, as Python values."""

    #: name -> str (plain variable), list (indexed array; when an element holds
    #: a tab, each element is a list of its tab-separated fields) or dict (associative array)
    variables: dict[str, Any] = field(default_factory=dict)
    functions: set[str] = field(default_factory=set)


def clean_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for reading constants: just enough to run tools, reproducible."""
    env = os.environ if base is None else base
    return {"PATH": env.get("PATH", os.defpath), "HOME": env.get("HOME", "/"), "LC_ALL": "C"}


def _bash_error(stderr: bytes, path: Path) -> str:
    """The first bash error line, as ``path:line: message``."""
    text = stderr.decode("utf-8", "replace").strip()
    for line in text.splitlines():
        match = re.match(r"^(.*?): line (\d+): (.*)$", line)
        if match and match.group(1) == str(path):
            return f"{path}:{match.group(2)}: {match.group(3)}"
    last = text.splitlines()[-1] if text else "no error message"
    return f"{path}: {last}"


def _run(argv: list[str], path: Path) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, env=clean_env(), timeout=SOURCE_TIMEOUT
        )
    except subprocess.TimeoutExpired as exc:
        raise PluginLoadError(f"{path}: sourcing the script took more than {SOURCE_TIMEOUT:.0f} s") from exc
    except OSError as exc:
        raise PluginLoadError(f"{path}: cannot run {argv[0]}: {exc}") from exc


def check_syntax(bash: str, path: Path) -> None:
    """Raise PluginLoadError with the first syntax error ``bash -n`` reports."""
    result = _run([bash, "--noprofile", "--norc", "-n", str(path)], path)
    if result.returncode != 0:
        raise PluginLoadError(f"{_bash_error(result.stderr, path)} (bash -n)")


def _fields(data: bytes) -> Iterator[str]:
    for raw in data.split(b"\0"):
        yield raw.decode("utf-8", "surrogateescape")


def multiplug_array(elements: list[str]) -> list[Any]:
    """An indexed array as MultiPlug reads it: the echo -e'd elements, one per line, the
    whole right-stripped; when any element holds a tab, every element split on tabs."""
    if not elements:
        return []
    values = "".join(element + "\n" for element in elements).rstrip().split("\n")
    if any("\t" in value for value in values):
        return [value.split("\t") for value in values]
    return values


def parse_dump(data: bytes) -> ScriptDefinitions:
    """Decode the NUL-separated dump printed by ``_DUMP_SCRIPT``."""
    found = ScriptDefinitions()
    fields = _fields(data)
    for kind in fields:
        if kind == "end":
            return found
        name = next(fields)
        if kind == "f":
            found.functions.add(name)
        elif kind == "s":
            found.variables[name] = next(fields).rstrip()
        elif kind == "a":
            found.variables[name] = multiplug_array([next(fields) for _ in range(int(next(fields)))])
        elif kind == "A":
            count = int(next(fields))
            found.variables[name] = {next(fields): next(fields) for _ in range(count)}
        else:
            raise ValueError(f"unexpected record kind {kind!r}")
    raise ValueError("dump ended without its end marker")


def read_definitions(bash: str, path: Path) -> ScriptDefinitions:
    """Source ``path`` in a clean bash and return what it defines.

    Raises PluginLoadError (one line, naming the file) on a syntax error, or
    when the script's top level exits or hangs.
    """
    check_syntax(bash, path)
    result = _run([bash, "--noprofile", "--norc", "-c", _DUMP_SCRIPT, str(path)], path)
    try:
        return parse_dump(result.stdout)
    except (ValueError, StopIteration) as exc:  # the dump stopped short: the top level exited
        detail = _bash_error(result.stderr, path) if result.stderr.strip() else f"{path}: no error message"
        raise PluginLoadError(
            f"{detail} (the script's top level stopped bash with status {result.returncode} while being sourced; "
            "keep the top level to definitions)"
        ) from exc
