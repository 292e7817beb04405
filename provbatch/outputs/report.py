"""The YAML report of a batch: who computed what, with which plugin and parameters, how it went.

A report file holds one YAML document, the latest run, as prenacs 1.2 writes
it (``yaml.safe_load`` reads it): a resumed batch replaces the report of the
run before it, whose record stays in its run directory (``provbatch show``).
"""

from __future__ import annotations

import getpass
import socket
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import UsageError

COMP_STATUSES = ("completed", "partial", "aborted")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _default_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        return "unknown"


@dataclass
class Report:
    """The fields of the report, in the order they are written."""

    uuid: str = field(default_factory=lambda: str(uuid.uuid4()))
    plugin_id: str = ""
    plugin_version: str = ""
    plugin_lang: str = ""
    plugin_sha256: str = ""
    plugin_path: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    user_id: str = field(default_factory=_default_user)
    system_id: str = field(default_factory=socket.gethostname)
    reason: str | None = None
    time_start: str = field(default_factory=now_iso)
    time_end: str | None = None
    n_units: int = 0  # computed: with a results row, or with no value
    n_no_value: int = 0  # computed, no value for the entity (no results row; prenacs: an empty results line)
    n_failed: int = 0
    n_skipped: int = 0
    n_duplicates: int = 0
    n_retried: int = 0
    comp_status: str = "aborted"
    backend: str = ""
    workers: int = 1
    state_mode: str | None = None
    entities: str = ""
    outputs: dict[str, str | None] = field(default_factory=dict)
    run_dir: str | None = None
    #: a trial run (--limit / --sample): which part of the entities it computed; None for a full run
    trial: str | None = None
    remarks: list[str] = field(default_factory=list)
    #: backend specifics (Slurm: job ids, per-task states); written only when there are some
    backend_details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def plain(value: Any) -> Any:
    """Parameters as YAML-safe values (a state object is reported by its type)."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return f"<{type(value).__name__}>"


def write_report(report: Report, path: str | Path) -> None:
    """Write the report as the one YAML document of ``path`` (atomically: a temp file, then a rename)."""
    import os
    import tempfile

    import yaml

    data = report.as_dict()
    data["parameters"] = plain(data["parameters"])
    if not data["backend_details"]:
        del data["backend_details"]
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    path = Path(path)
    try:
        descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent if str(path.parent) else ".")
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(text)
            if path.exists():
                os.chmod(temporary, path.stat().st_mode & 0o7777)
            else:
                os.chmod(temporary, 0o666 & ~_umask())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise UsageError(f"{path}: cannot write the report: {exc.strerror or exc}") from exc


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask
