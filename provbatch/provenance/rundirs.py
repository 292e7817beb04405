"""Run directories: where they live, the files each holds; finding, reading, listing and pruning them.

Every run writes a directory under ``$PROVBATCH_RUNS`` (or the user's state
dir, ``~/.local/state/provbatch/runs`` on Linux), one folder per run named by
time, plugin and uuid: nothing lands in the user's working folder. It holds
``manifest.json`` and ``events.jsonl`` (written by :mod:`.record`) and
``run_config.json`` (:mod:`.capture`).

After an afternoon of trial runs there are a hundred of them: listing reads
their ``manifest.json`` files only (listing a thousand runs must stay quick)
for ``provbatch runs``, ``provbatch runs prune`` and ``provbatch show``
without an argument.

Pruning removes only directories that hold a ``manifest.json`` and sit
directly under the runs root: the run's own record (manifest, events,
run_config). The results, logs and reports a run wrote elsewhere are the
user's and are never touched.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..processes import process_alive, process_start_time

MANIFEST = "manifest.json"
EVENTS = "events.jsonl"
RUN_CONFIG = "run_config.json"
FORMAT = "provbatch-run-config/1"
#: how run directories are named in messages: they are private (see :mod:`provbatch.files`)
WHAT = "run directory"

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


@dataclass(frozen=True)
class RunInfo:
    """What ``provbatch runs`` shows of one run, read from its manifest."""

    directory: Path
    uuid: str
    plugin: str
    status: str
    comp_status: str | None
    counts: dict[str, int]
    started: datetime | None
    ended: datetime | None

    @property
    def failed(self) -> bool:
        """A run a user may want to look at again: it failed, was interrupted, or some entities failed."""
        return self.status in ("failed", "interrupted", "died") or bool(self.counts.get("failed"))

    def row(self) -> list[str]:
        counts = self.counts
        count_text = f"{counts.get('computed', 0)} computed, {counts.get('failed', 0)} failed, {counts.get('skipped', 0)} skipped"
        when = self.started.astimezone().strftime("%Y-%m-%d %H:%M:%S") if self.started else "?"
        return [self.uuid[:8], self.plugin, self.status, count_text, when, str(self.directory)]


def _parse_time(text: Any) -> datetime | None:
    try:
        moment = datetime.fromisoformat(str(text))
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def read_run(directory: Path) -> RunInfo | None:
    """The run in ``directory``, or None when it has no readable manifest (not a run directory)."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict):
        return None
    plugin = manifest.get("plugin") or {}
    counts = manifest.get("counts") or {}
    return RunInfo(
        directory=directory,
        uuid=str(manifest.get("uuid", "")),
        plugin=str(plugin.get("id", "?")),
        status="died" if manifest.get("status") == "running" and run_process_state(manifest)[0] == "gone"
        else str(manifest.get("status", "?")),
        comp_status=manifest.get("comp_status"),
        counts={str(k): int(v) for k, v in counts.items() if isinstance(v, int)},
        started=_parse_time(manifest.get("started")),
        ended=_parse_time(manifest.get("ended")),
    )


def iter_runs(root: Path | None = None) -> Iterator[RunInfo]:
    """Every run directly under the runs root, oldest first (by start time, then name)."""
    root = runs_root() if root is None else root
    if not root.is_dir():
        return iter(())
    runs = [run for run in (read_run(child) for child in root.iterdir() if child.is_dir()) if run is not None]
    epoch = datetime.min.replace(tzinfo=timezone.utc)
    return iter(sorted(runs, key=lambda run: (run.started or epoch, run.directory.name)))


def parse_age(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``2w``, ``45s`` as a duration; a UsageError otherwise."""
    match = _AGE.match(text)
    if not match:
        raise UsageError(f"--older-than {text}: not an age (use a number and a unit: 30d, 12h, 90m, 2w, 45s)")
    return timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """A date (``2024-05-01``), a date and time (ISO 8601) or an age (``3d``: that long ago)."""
    now = now or datetime.now(timezone.utc)
    if _AGE.match(text):
        return now - parse_age(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--since {text}: not a date (use 2024-05-01, 2024-05-01T14:00 or an age such as 3d)") from None
    return moment if moment.tzinfo else moment.astimezone()  # a date without zone: the user's local time


def select_runs(runs: Iterable[RunInfo], plugin: str | None = None, since: datetime | None = None) -> list[RunInfo]:
    """The runs of ``plugin`` (its id) started at or after ``since``."""
    return [run for run in runs
            if (plugin is None or run.plugin == plugin)
            and (since is None or (run.started is not None and run.started >= since))]


def latest_run(root: Path | None = None) -> Path:
    """The directory of the most recently started run (for ``provbatch show`` without an argument)."""
    runs = list(iter_runs(root))
    if not runs:
        raise UsageError(f"{runs_root() if root is None else root}: no runs yet (run a batch, or give a run directory)")
    return runs[-1].directory


def prunable(runs: Iterable[RunInfo], older_than: timedelta, keep_failed: bool, now: datetime | None = None) -> list[RunInfo]:
    """The runs that ``prune`` removes: started before ``now - older_than``; not failed ones with ``keep_failed``.

    A run whose manifest still says ``running`` is kept unless it is older
    than the limit too: a run that old is a run whose process died.
    """
    limit = (now or datetime.now(timezone.utc)) - older_than
    return [run for run in runs
            if run.started is not None and run.started < limit and not (keep_failed and run.failed)]


def remove_run(run: RunInfo, root: Path | None = None) -> None:
    """Delete one run directory; only a direct child of the runs root holding a manifest."""
    root = (runs_root() if root is None else root).resolve()
    directory = run.directory.resolve()
    if directory.parent != root or not (directory / MANIFEST).is_file() or directory.is_symlink():
        raise UsageError(f"{run.directory}: not a run directory under {root}; not removed")
    shutil.rmtree(directory)


def format_table(rows: list[list[str]], header: list[str]) -> str:
    """Columns padded to their widest cell; the last column is not padded."""
    table = [header, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    return "\n".join("  ".join([*(cell.ljust(width) for cell, width in zip(row, widths)), row[-1]]).rstrip() for row in table)


RUNS_HEADER = ["RUN", "PLUGIN", "STATUS", "COUNTS", "STARTED", "DIRECTORY"]


# --------------------------------------------------------------------------- is the process of a run alive


def running_process() -> dict[str, Any]:
    """What the manifest of a starting run says of its process: PID, host, start time."""
    import socket

    return {"pid": os.getpid(), "host": socket.gethostname(), "start_time": process_start_time(os.getpid())}


def run_process_state(manifest: dict[str, Any]) -> tuple[str, str]:
    """For a manifest saying ``running``: ``("alive" | "gone" | "unknown", what to show in parentheses)``.

    A run killed by SIGKILL (or a crash, or a reboot) never closes its record;
    its manifest says ``running`` for ever. The recorded PID tells it from a run
    still going, on the host where it ran; elsewhere it cannot be told.
    """
    import socket

    process = manifest.get("process") or {}
    pid = process.get("pid")
    if not isinstance(pid, int):
        return "unknown", "no process recorded: cannot tell whether it still runs"
    if process.get("host") != socket.gethostname():
        return "unknown", f"process {pid} on {process.get('host')}: cannot be checked from here"
    if not process_alive(pid, process.get("start_time")):
        return "gone", f"process {pid} is gone: killed or crashed before closing its record"
    return "alive", f"process {pid} alive"


# --------------------------------------------------------------------------- where runs are, reading one


def runs_root() -> Path:
    env = os.environ.get("PROVBATCH_RUNS")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_state_dir("provbatch")) / "runs"


def default_run_dir(plugin_id: str, uuid: str) -> Path:
    """A new folder under the runs root, which is created private (or checked) here."""
    from ..files import private_root

    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    safe_id = "".join(c if c.isalnum() or c in "-_." else "_" for c in plugin_id)[:40] or "plugin"
    return private_root(runs_root(), WHAT) / f"{stamp}-{safe_id}-{uuid[:8]}"


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
