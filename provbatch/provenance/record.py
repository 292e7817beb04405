"""The run directory: ``manifest.json`` (where the run stands) and ``events.jsonl`` (what happened).

The manifest is rewritten atomically (write + rename) at start, every few
seconds while running, and at the end: its ``status`` goes ``running`` ->
``finished`` | ``failed`` | ``interrupted``, with the counts and, for a
failed run, the failure text. A run killed with SIGKILL leaves ``running``;
the manifest's ``process`` (PID, host, start time) lets a reader tell such a
run from one still going (:func:`.rundirs.run_process_state`).

The events file is append-only, one JSON object per line, flushed at once:
``launch_started`` (with the backend), ``backend_fallback``,
``worker_lost``, ``progress`` (the counts, every second or so), ``entity_retried``, ``entity_failed``, ``run_finished``,
``run_failed``, ``run_interrupted``.

Default location: ``$PROVBATCH_RUNS`` or the user's state directory
(``~/.local/state/provbatch/runs`` on Linux), one folder per run named by
time, plugin and uuid: nothing lands in the user's working folder.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..files import atomic_write, open_private_append, private_root
from .rundirs import EVENTS, MANIFEST, WHAT, running_process

STATUSES = ("running", "finished", "failed", "interrupted")
#: how often the manifest's counts are refreshed while the run goes on
MANIFEST_REFRESH_SECONDS = 5.0
#: how often a ``progress`` event (the counts so far) is added while the run goes on: the report's throughput plot
PROGRESS_EVENT_SECONDS = 1.0


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class RunRecord:
    """Writes one run's manifest and events, into a private directory (``0700``, files ``0600``):
    a rerun executes the code recorded there, so nobody else may write it."""

    def __init__(self, run_dir: str | Path, manifest: dict[str, Any]) -> None:
        try:
            self.run_dir = private_root(run_dir, WHAT)
            self._events = open_private_append(self.run_dir / EVENTS, WHAT)
        except OSError as exc:
            raise UsageError(f"{run_dir}: cannot create the run directory: {exc.strerror or exc}") from exc
        # the process, so that ``provbatch show`` tells a run that died (SIGKILL leaves "running") from one going on
        self.manifest: dict[str, Any] = {"status": "running", **manifest, "started": _now(), "ended": None, "failure": None,
                                         "process": running_process()}
        self._last_write = 0.0
        self._last_progress = time.monotonic()
        self._write_manifest()

    def _write_manifest(self) -> None:
        atomic_write(self.run_dir / MANIFEST, json.dumps(self.manifest, indent=2, default=str) + "\n")
        self._last_write = time.monotonic()

    def event(self, name: str, **details: Any) -> None:
        self._events.write(json.dumps({"time": _now(), "event": name, **details}, default=str) + "\n")
        self._events.flush()

    def update(self, force: bool = False, **fields: Any) -> None:
        """Merge fields into the manifest; written now if forced, else at most every few seconds."""
        self.manifest.update(fields)
        counts = fields.get("counts")
        if counts is not None and time.monotonic() - self._last_progress >= PROGRESS_EVENT_SECONDS:
            self._last_progress = time.monotonic()
            self.event("progress", **counts)
        if force or time.monotonic() - self._last_write >= MANIFEST_REFRESH_SECONDS:
            self._write_manifest()

    def close(self, status: str, failure: str | None = None, **fields: Any) -> None:
        assert status in STATUSES
        self.manifest.update(fields, status=status, ended=_now(), failure=failure)
        self._write_manifest()
        self._events.close()
