"""A one-line progress display on stderr: done/total, rate, failures.

Written here rather than taken from a progress library because it needs
little: redraw at most a few times a second, and get out of the way of log
lines written to the same terminal.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import IO


def count_lines(path: str) -> int | None:
    """Non-blank line count of a regular file, read in blocks (None when not a regular file)."""
    file = Path(path)
    if path == "-" or not file.is_file():
        return None
    count = 0
    with open(file, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            count += block.count(b"\n")
    return count


class Progress:
    """Redraws ``done/total  rate/s  failed`` on one terminal line."""

    def __init__(self, total: int | None = None, stream: IO[str] | None = None, interval: float = 0.2) -> None:
        self.total = total
        self.stream = stream or sys.stderr
        self.interval = interval
        self.started = time.monotonic()
        self._last_draw = 0.0
        self.done = 0
        self.failed = 0

    def update(self, done: int, failed: int) -> None:
        self.done, self.failed = done, failed
        now = time.monotonic()
        if now - self._last_draw >= self.interval:
            self._last_draw = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        elapsed = max(now - self.started, 1e-9)
        total = f"/{self.total}" if self.total else ""
        line = f"{self.done}{total} entities  {self.done / elapsed:,.0f}/s  failed {self.failed}"
        self.stream.write("\r\x1b[2K" + line)
        self.stream.flush()

    def clear(self) -> None:
        """Erase the line (before log lines go to the same terminal)."""
        self.stream.write("\r\x1b[2K")
        self.stream.flush()

    def close(self) -> None:
        self._draw(time.monotonic())
        self.stream.write("\n")
        self.stream.flush()
