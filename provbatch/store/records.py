"""What the store records about plugins and computations, and the reports it reads them from.

A report is provbatch's own (``batch-compute --report``: uuid as text,
parameters as a mapping, the source hash) or prenacs 1.2's (uuid as 16 raw
bytes under ``!!binary``, parameters as a YAML-dumped string, no source
hash). Both become one :class:`ComputationRecord`.
"""

from __future__ import annotations

import hashlib
import json
import uuid as uuidlib
from collections.abc import Container, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import UsageError

#: the plugin metadata prenacs compares to tell "changed without a version bump"
DESCRIPTION_KEYS = ("INPUT", "OUTPUT", "METHOD", "IMPLEMENTATION", "PARAMETERS", "REQ_SOFTWARE", "REQ_HARDWARE", "ADVICE")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def canonical_json(value: Any) -> str:
    """JSON with sorted keys; objects without a JSON form (a state) by their text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def signature(plugin_id: str, version: str, sha256: str | None, parameters: dict[str, Any]) -> str:
    """What makes two computations "the same": plugin id, version, source hash, parameters."""
    text = canonical_json([plugin_id, version, sha256 or "", parameters])
    return hashlib.sha256(text.encode()).hexdigest()


def require_defined(names: Sequence[str], stored: Container[str], definitions: Container[str], source: str) -> None:
    """The attributes a computation outputs are in the store already or in its definitions (``source``).

    Here, without SQLAlchemy, because the engine checks it itself for a store it
    knows to be new (``batch-compute --store`` does not wait for its writer process
    to open one, see :mod:`provbatch.outputs.store_sink`); the store's own check
    (:meth:`provbatch.store.Store.ensure_attributes`) is this one too.
    """
    undefined = [name for name in names if name not in stored and name not in definitions]
    if undefined:
        raise UsageError(f"{source}: attribute(s) {', '.join(undefined)} are neither in the store nor in the "
                         "attribute definitions: 'provbatch attributes apply DEFS.yaml' first")


@dataclass(frozen=True)
class PluginRecord:
    plugin_id: str
    version: str
    lang: str | None = None
    sha256: str | None = None
    description: dict[str, Any] = field(default_factory=dict)


@dataclass
class ComputationRecord:
    uuid: str
    plugin: PluginRecord
    output: list[str]
    parameters: dict[str, Any] = field(default_factory=dict)
    plugin_sha256: str | None = None
    plugin_path: str | None = None
    user_id: str | None = None
    system_id: str | None = None
    reason: str | None = None
    time_start: str | None = None
    time_end: str | None = None
    comp_status: str = "running"
    n_units: int | None = None
    run_dir: str | None = None
    command: list[str] | None = None
    remarks: str | None = None
    origin: str = "batch-compute"

    @property
    def signature(self) -> str:
        return signature(self.plugin.plugin_id, self.plugin.version, self.plugin_sha256, self.parameters)


def plugin_description(module: Any) -> dict[str, Any]:
    """The metadata of a plugin module that its record keeps (JSON-safe)."""
    description = {}
    for key in DESCRIPTION_KEYS:
        value = getattr(module, key, None)
        if value is not None:
            description[key] = json.loads(canonical_json(value))
    return description


def plugin_record(loaded: Any) -> PluginRecord:
    """The record of a loaded plugin (a :class:`provbatch.plugin.LoadedPlugin`)."""
    return PluginRecord(loaded.id, str(loaded.version), loaded.lang, loaded.sha256() if loaded.path else None,
                        plugin_description(loaded.module))


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def read_report(path: str | Path) -> dict[str, Any]:
    """The report's fields, uuid and parameters normalised (prenacs' binary uuid, YAML-string parameters).

    A provbatch report file written before reports held one document is a
    YAML stream of every run that appended to the results: its last document
    (the latest run) is used.
    """
    import yaml

    path = Path(path)
    try:
        documents = [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the report: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: the report is not valid YAML: {getattr(exc, 'problem', exc)}") from exc
    if not documents or not isinstance(documents[-1], dict):
        raise UsageError(f"{path}: not a computation report (a YAML mapping with uuid, plugin_id, plugin_version)")
    data = dict(documents[-1])
    for key in ("uuid", "plugin_id", "plugin_version"):
        if data.get(key) in (None, ""):
            raise UsageError(f"{path}: the report lacks '{key}'")
    raw_uuid = data["uuid"]
    prenacs = isinstance(raw_uuid, bytes)
    try:
        data["uuid"] = str(uuidlib.UUID(bytes=raw_uuid) if prenacs else uuidlib.UUID(str(raw_uuid)))
    except ValueError as exc:
        raise UsageError(f"{path}: the report's uuid {raw_uuid!r} is not a UUID") from exc
    parameters = data.get("parameters")
    if isinstance(parameters, str):  # prenacs: yaml.dump(params)
        try:
            parameters = yaml.safe_load(parameters)
        except yaml.YAMLError as exc:
            raise UsageError(f"{path}: the report's parameters are not valid YAML: {exc}") from exc
    if parameters is None:
        parameters = {}
    if not isinstance(parameters, dict):
        raise UsageError(f"{path}: the report's parameters must be a mapping, got {type(parameters).__name__}")
    data["parameters"] = parameters
    data["origin"] = "prenacs-report" if prenacs else "provbatch-report"
    return data


def computation_from_report(report: dict[str, Any], plugin: PluginRecord, output: list[str],
                            plugin_path: str | None) -> ComputationRecord:
    """The computation a report describes, with the plugin it was checked against."""
    remarks = report.get("remarks")
    return ComputationRecord(
        uuid=report["uuid"],
        plugin=plugin,
        output=list(output),
        parameters=report["parameters"],
        # provbatch reports say which source ran; prenacs reports do not: the plugin given stands for it
        plugin_sha256=_text(report.get("plugin_sha256")) or plugin.sha256,
        plugin_path=_text(report.get("plugin_path")) or plugin_path,
        user_id=_text(report.get("user_id")),
        system_id=_text(report.get("system_id")),
        reason=_text(report.get("reason")),
        time_start=_text(report.get("time_start")),
        time_end=_text(report.get("time_end")),
        comp_status=_text(report.get("comp_status")) or "completed",
        n_units=report.get("n_units"),
        run_dir=_text(report.get("run_dir")),
        command=None,
        remarks=None if remarks in (None, [], "") else (remarks if isinstance(remarks, str) else canonical_json(remarks)),
        origin=report["origin"],
    )
