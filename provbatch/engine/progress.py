"""The progress line on a terminal: done/total, rate, ETA, failures, skipped.

Drawn by tqdm (a well-kept library: rate smoothing, ETA, terminal width,
redraw throttling) rather than by hand; it is imported only when the line
is shown, i.e. when stderr is a terminal. The engine calls :meth:`update`
once per completed chunk, not per entity, so the cost stays far below a
percent (``benchmarks/bench_progress.py`` measures it).

The total is what will really be computed: the entities file's line count
less the entities skipped (already done, or in the skip file) and the
duplicates, as the stream finds them; so a resumed batch counts up to what
is left, not to the file's size.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from ..execution.capture import unredirected


def count_lines(path: str) -> int | None:
    """Line count of a regular file, read in blocks (None when not a regular file)."""
    file = Path(path)
    if path == "-" or not file.is_file():
        return None
    count = 0
    with open(file, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            count += block.count(b"\n")
    return count


def _columns(stream: IO[str]) -> int:
    import os

    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return 0


class Progress:
    """``done/total entities pct|bar| [elapsed<ETA, rate, failed=F, skipped=S]`` on one terminal line."""

    def __init__(self, total: int | None = None, stream: IO[str] | None = None, interval: float = 0.2) -> None:
        from tqdm import tqdm

        self.lines = total
        self.done = self.failed = self.skipped = 0
        bar_format = ("{n_fmt}/{total_fmt} entities {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}, {rate_fmt}{postfix}]"
                      if total else "{n_fmt} entities [{elapsed}, {rate_fmt}{postfix}]")
        # a dup of stderr: the driver may hold fds 1 and 2 on the plugin-output capture meanwhile
        self._stream = stream or unredirected(sys.stderr)
        self._own_stream = stream is None and self._stream is not sys.stderr
        stream = self._stream
        width = _columns(stream)  # a terminal that reports no size (some ptys): 100 columns, not an empty line
        self._bar: Any = tqdm(total=total, file=stream, mininterval=interval, unit=" entities", bar_format=bar_format,
                              dynamic_ncols=width > 0, ncols=None if width > 0 else 100, nrows=None if width > 0 else 24, leave=True, smoothing=0.1)
        self._bar.set_postfix_str("failed=0, skipped=0", refresh=False)
        #: what the backend adds to the line (Slurm: its running and pending tasks)
        self.status: Callable[[], str] = lambda: ""
        self._status = ""

    def update(self, done: int, failed: int, skipped: int = 0, duplicates: int = 0) -> None:
        """The counts so far (not increments); the total shrinks by what the stream skipped."""
        bar = self._bar
        if self.lines is not None:
            total = max(self.lines - skipped - duplicates, done + failed)
            if total != bar.total:
                bar.total = total
        status = self.status()
        if failed != self.failed or skipped != self.skipped or status != self._status:
            self.failed, self.skipped, self._status = failed, skipped, status
            bar.set_postfix_str(f"failed={failed}, skipped={skipped}" + (f", {status}" if status else ""), refresh=False)
        # failed entities are finished too: they count towards the total and the ETA
        bar.update(done + failed - bar.n)
        self.done = done

    def clear(self) -> None:
        """Erase the line (before log lines go to the same terminal); the next update redraws it."""
        self._bar.clear()

    def close(self) -> None:
        """Draw the final counts and leave the line on the terminal (the run's summary line comes after it)."""
        self._bar.refresh()
        self._bar.close()
        if self._own_stream:
            self._own_stream = False
            try:
                self._stream.close()
            except OSError:
                pass
