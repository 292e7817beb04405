"""What a plugin writes to stdout and stderr, caught at the file-descriptor level.

The results stream is the driver's stdout by default, so a plugin's
``print()`` (or a Nim ``echo``, a Rust ``println!``, a C ``printf``, a child
process's output) would otherwise become lines of the results. Around every
piece of plugin code (initialize, compute of a chunk, merge, finalize) fds 1
and 2 are pointed (``os.dup2``) at two anonymous files; afterwards the saved
fds come back, and :meth:`OutputCapture.take` returns what was written, as
lines that the engine routes to the logs, marked ``[plugin stdout]`` /
``[plugin stderr]`` (see docs/user-guide.md, "What goes where").

Files, not pipes: a pipe needs a reader running all the time, or a chatty
plugin blocks when it fills; a file never blocks, and what a worker wrote
just before it crashed can still be read by the driver (a forked worker
shares the driver's capture files; the driver reads them when the worker
died). The files are opened ``O_APPEND`` so that children writing at the same
time never overwrite each other. The cost is a few system calls per chunk.
"""

from __future__ import annotations

import ctypes
import os
import sys
import tempfile
from typing import Any

#: the marks of captured lines in the logs
STDOUT_MARK = "[plugin stdout] "
STDERR_MARK = "[plugin stderr] "

try:
    _LIBC: Any = ctypes.CDLL(None)
    _fflush = _LIBC.fflush
except (OSError, AttributeError):  # no C library to flush: Python's own buffers are still flushed
    _fflush = None


def _open_append() -> int:
    fd, path = tempfile.mkstemp(prefix="provbatch-capture-")
    try:
        appending = os.open(path, os.O_RDWR | os.O_APPEND)
    finally:
        os.unlink(path)
        os.close(fd)
    return appending


def _flush_all() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # a closed or broken stream: nothing more to save
            pass
    if _fflush is not None:
        _fflush(None)  # C stdio buffers (printf of a Rust/Nim/C plugin), flushed into the capture


class OutputCapture:
    """Captures fds 1 and 2 while in a ``with`` block (re-entrant); :meth:`take` returns the lines."""

    def __init__(self) -> None:
        self._files = (_open_append(), _open_append())
        self._saved: tuple[int, int] | None = None
        self._depth = 0
        self.closed = False

    def __enter__(self) -> "OutputCapture":
        if self._depth == 0:
            _flush_all()
            if self._saved is None:
                self._saved = (os.dup(1), os.dup(2))
            os.dup2(self._files[0], 1)
            os.dup2(self._files[1], 2)
        self._depth += 1
        return self

    def __exit__(self, *_exc: Any) -> None:
        self._depth -= 1
        if self._depth == 0:
            _flush_all()
            assert self._saved is not None
            os.dup2(self._saved[0], 1)
            os.dup2(self._saved[1], 2)

    def take(self) -> list[str]:
        """The log lines of what was written since the last call (marked by stream), emptied."""
        lines: list[str] = []
        for fd, mark in zip(self._files, (STDOUT_MARK, STDERR_MARK)):
            size = os.fstat(fd).st_size
            if not size:
                continue
            data = os.pread(fd, size, 0)
            os.ftruncate(fd, 0)
            text = data.decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "\n")
            lines.extend(f"\t{mark}{line}\n" for line in text.split("\n") if line)
        return lines

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for fd in (*self._files, *(self._saved or ())):
            try:
                os.close(fd)
            except OSError:
                pass
