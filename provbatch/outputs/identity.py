"""The identity of a results file: which computation wrote it, so that a resume never mixes two.

Resuming (appending to an existing ``--out``) is only allowed into a file
written by the same computation: the same plugin id, version, plugin source
(sha256), resolved parameters and OUTPUT attributes. The identity lives in
``OUT.identity.json``, written atomically (temporary file, fsync, rename)
*before* the results file is first created, so a SIGKILL at any moment
leaves either no results file, or a results file with its identity.

A results file that has rows but no identity was written before this
record existed (or by hand): it is resumed with a warning, on trust, when
each of its rows has the plugin's number of columns, and refused otherwise;
its identity is recorded from then on. See docs/user-guide.md, "Resuming".
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError, literal

IDENTITY_SUFFIX = ".identity.json"
FORMAT = "provbatch-results-identity/1"


def identity_path(results: Path) -> Path:
    return results.with_name(results.name + IDENTITY_SUFFIX)


def _value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True) if not isinstance(value, str) else value


@dataclass(frozen=True)
class ResultsIdentity:
    """What makes two runs the same computation."""

    plugin_id: str
    version: str
    source_sha256: str
    parameters: dict[str, Any]  # JSON values (see provenance capture_parameters)
    output: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "plugin_id": self.plugin_id, "version": self.version,
                "source_sha256": self.source_sha256, "parameters": self.parameters, "output": list(self.output)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ResultsIdentity:
        return cls(str(data["plugin_id"]), str(data["version"]), str(data["source_sha256"]),
                   dict(data["parameters"]), tuple(data["output"]))

    def differences(self, run: ResultsIdentity) -> list[str]:
        """What differs, as 'the file's (this run's)', for a one-line refusal."""
        diffs: list[str] = []
        if (self.plugin_id, self.version) != (run.plugin_id, run.version):
            diffs.append(f"plugin {self.plugin_id} {self.version} (this run: {run.plugin_id} {run.version})")
        elif self.source_sha256 != run.source_sha256:
            diffs.append(f"plugin source sha256 {self.source_sha256[:12]} (this run: {run.source_sha256[:12]}, "
                         "the source was edited)")
        for name in sorted(set(self.parameters) | set(run.parameters)):
            mine, theirs = self.parameters.get(name, "<unset>"), run.parameters.get(name, "<unset>")
            if mine != theirs:
                diffs.append(f"{name}={_value(mine)} (this run: {name}={_value(theirs)})")
        if self.output != run.output:
            diffs.append(f"OUTPUT {', '.join(self.output)} (this run: {', '.join(run.output)})")
        return diffs


def write_identity(path: Path, identity: ResultsIdentity) -> None:
    """Atomically: a reader (or a run after a SIGKILL) sees the old file or the new one, never half."""
    temporary = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(identity.as_json(), indent=1, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise UsageError(f"{path}: cannot write the identity of the results: {exc.strerror or exc}") from exc


def _has_rows(results: Path) -> bool:
    return results.is_file() and results.stat().st_size > 0


#: the column check reads the file in blocks this large: the counting runs in C, one Python step per block
_BLOCK = 16 << 20


def _check_shape(results: Path, identity: ResultsIdentity) -> None:
    """Every complete row of a results file written before identities has the plugin's columns.

    Done once per file (its identity is recorded then), over every row, a block of
    16 MiB at a time: a block passes when it holds exactly (OUTPUT attributes) tabs
    per newline, two ``bytes.count`` scans at memory speed (a 1M-row file costs a
    few % of reading its ids for resume); the line-by-line pass that names the
    first bad row runs only for a block that fails. What it cannot see: rows with
    too many and rows with too few columns that balance each other exactly within
    one block (a file mixing two other plugins' results, say); such a file is
    resumed with the warning like any file without an identity.
    """
    tabs = len(identity.output)
    lineno = 0
    with open(results, "rb") as handle:
        rest = b""
        while True:
            block = handle.read(_BLOCK)
            if not block:
                return  # what is left in ``rest`` is a torn last line (killed run): cut before appending
            data = rest + block
            end = data.rfind(b"\n") + 1
            complete, rest = data[:end], data[end:]
            n_lines = complete.count(b"\n")
            if complete.count(b"\t") != tabs * n_lines:
                for offset, line in enumerate(complete.split(b"\n")[:-1], lineno + 1):
                    found = line.count(b"\t") + 1
                    if found != tabs + 1:
                        raise UsageError.naming(
                            f"{literal(results)}:{offset}: a row of {found} columns, {literal(identity.plugin_id)} writes "
                            f"{tabs + 1} (entity id + {literal(', '.join(identity.output))}): not its results; use another {{out}}"
                        )
            lineno += n_lines


def claim(results: Path, identity: ResultsIdentity) -> str | None:
    """Check that ``results`` may be resumed by this computation, and record the identity; a warning or None.

    Raises :class:`UsageError` (one line: what differs, what to do) when the file
    belongs to another computation. Called with the output lock held.
    """
    path = identity_path(results)
    warning = None
    if path.is_file():
        try:
            recorded = ResultsIdentity.from_json(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"{path}: not a results identity file ({type(exc).__name__}: {exc}); "
                             f"remove it only if {results} holds results of this computation") from exc
        if recorded == identity:
            return None
        if _has_rows(results):
            raise UsageError.naming(
                f"{literal(results)}: written by another computation: {literal('; '.join(recorded.differences(identity)))}. "
                f"Use another {{out}}, or remove {literal(results)} and {literal(path.name)} to start over"
            )
    elif _has_rows(results):
        _check_shape(results, identity)
        warning = (f"{results}: no identity record (written before provbatch kept one): resumed on trust that it "
                   f"holds results of {identity.plugin_id} {identity.version} with these parameters; "
                   f"recorded in {path.name} from now on")
    write_identity(path, identity)
    return warning
