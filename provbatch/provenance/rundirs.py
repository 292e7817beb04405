"""Run directories: where they live, the files each holds, finding one and reading it back.

A run directory holds ``manifest.json`` and ``events.jsonl`` (written by
:mod:`.record`) and ``run_config.json`` (:mod:`.capture`). Default location:
``$PROVBATCH_RUNS`` or the user's state directory
(``~/.local/state/provbatch/runs`` on Linux), one folder per run named by
time, plugin and uuid: nothing lands in the user's working folder.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import UsageError

MANIFEST = "manifest.json"
EVENTS = "events.jsonl"
RUN_CONFIG = "run_config.json"
FORMAT = "provbatch-run-config/1"


def runs_root() -> Path:
    env = os.environ.get("PROVBATCH_RUNS")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_state_dir("provbatch")) / "runs"


def default_run_dir(plugin_id: str, uuid: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    safe_id = "".join(c if c.isalnum() or c in "-_." else "_" for c in plugin_id)[:40] or "plugin"
    return runs_root() / f"{stamp}-{safe_id}-{uuid[:8]}"


def find_run_dir(run: str | Path) -> Path:
    """A run directory given by path, or by its uuid (or the uuid's first 8+ characters) under the runs root."""
    path = Path(run).expanduser()
    if path.is_dir():
        return path
    text = str(run)
    if len(text) >= 8 and all(c in "0123456789abcdef-" for c in text.lower()):
        root = runs_root()
        candidates = sorted(root.glob(f"*-{text[:8].lower()}")) if root.is_dir() else []
        matches = [c for c in candidates if _manifest_uuid(c).startswith(text.lower())]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise UsageError(f"{run}: {len(matches)} runs in {root} have a uuid starting so; give more of it")
    raise UsageError(f"{run}: no such run directory (give its path, or the uuid of a run under $PROVBATCH_RUNS)")


def _manifest_uuid(run_dir: Path) -> str:
    try:
        return str(json.loads((run_dir / MANIFEST).read_text(encoding="utf-8")).get("uuid", ""))
    except (OSError, ValueError):
        return ""


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise UsageError(f"{path}: not found ({what})") from exc
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: cannot read {what}: {exc}") from exc
    if not isinstance(data, dict):
        raise UsageError(f"{path}: {what} is not a JSON object")
    return data


def load_run_config(run_dir: str | Path) -> dict[str, Any]:
    """The run's ``run_config.json`` (a UsageError naming the file if it is missing or unreadable)."""
    path = Path(run_dir) / RUN_CONFIG
    if not path.exists():
        raise UsageError(f"{path}: not found: this run directory has no run_config.json (runs record it since provbatch 0.1)")
    config = _read_json(path, "the run configuration")
    if config.get("format") != FORMAT:
        raise UsageError(f"{path}: unknown format {config.get('format')!r} (this provbatch reads {FORMAT})")
    return config


def load_manifest(run_dir: str | Path) -> dict[str, Any]:
    return _read_json(Path(run_dir) / MANIFEST, "the run manifest")
