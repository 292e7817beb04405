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
time never overwrite each other.

The cost: a few system calls each time fds 1 and 2 are pointed away and back
(flushes, ``dup2``), about 5-50 µs depending on the machine's load; on chunks
of 256 trivial entities computed in the driver that was +25 % of the batch.
So the driver :meth:`~OutputCapture.hold` s the capture for the whole span in
which it computes chunks itself (``batch-compute``, serial or auto): fds 1 and
2 point at the capture from the first chunk to the last, and the driver's own
writes meanwhile (the results on stdout, log lines and the progress line on
stderr) go through :func:`unredirected` streams, dups of the real fds taken
before; and :meth:`~OutputCapture.take` reads the files at most every 50 ms
(flushes and two ``lseek``), so a chunk costs a clock read. Workers and the API's iterator (whose caller runs its own code
between chunks) point the fds away and back around each piece of plugin code.
``benchmarks/bench_integrity_cost.py`` measures both.
"""

from __future__ import annotations

import ctypes
import io
import os
import sys
import tempfile
import time
from typing import IO, Any

#: while the capture is held, how often :meth:`OutputCapture.take` reads the capture files
HELD_TAKE_SECONDS = 0.05

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


def unredirected(stream: IO[str]) -> IO[str]:
    """A text stream that writes where ``stream`` writes now, even while a capture holds fds 1 and 2.

    For the driver's own output during a held capture (the results on stdout,
    the logs and the progress line on stderr): a dup of the stream's fd, taken
    now (call it before any capture is entered), with the stream's encoding,
    errors and line buffering. A stream that is not fd 1 or 2 (a file, pytest's
    or click's in-memory streams) is never redirected and is returned as is.
    The caller closes the stream it got when it is not ``stream`` itself.
    """
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return stream
    if fd not in (1, 2):
        return stream
    stream.flush()  # what was written before stays before what the dup writes
    return open(os.dup(fd), "w", buffering=1 if getattr(stream, "line_buffering", False) else -1,
                encoding=getattr(stream, "encoding", None) or "utf-8", errors=getattr(stream, "errors", None) or "strict")


class OutputCapture:
    """Captures fds 1 and 2 while in a ``with`` block (re-entrant); :meth:`take` returns the lines.

    Between :meth:`hold` and :meth:`restore` the fds stay pointed at the capture
    between ``with`` blocks too (see the module's docstring for when that is safe).
    """

    def __init__(self) -> None:
        self._files = (_open_append(), _open_append())
        self._saved: tuple[int, int] | None = None
        self._depth = 0
        #: fds 1 and 2 point at the capture files now
        self._redirected = False
        self._held = False
        self._taken = 0.0
        self.closed = False

    def __enter__(self) -> OutputCapture:
        if self._depth == 0 and not self._redirected:
            _flush_all()
            if self._saved is None:
                self._saved = (os.dup(1), os.dup(2))
            os.dup2(self._files[0], 1)
            os.dup2(self._files[1], 2)
            self._redirected = True
        self._depth += 1
        return self

    def __exit__(self, *_exc: Any) -> None:
        self._depth -= 1
        if self._depth == 0 and not self._held:
            self._point_back()

    def hold(self) -> None:
        """Keep fds 1 and 2 on the capture between ``with`` blocks, until :meth:`restore`.

        Only while nothing but plugin code writes to fds 1 and 2 (the driver's
        own writes go through :func:`unredirected` streams) and no other
        program is started from this process but by plugin code.
        """
        self._held = True

    def restore(self) -> None:
        """End a :meth:`hold`: fds 1 and 2 point where they did before (buffers flushed into the capture first)."""
        self._held = False
        if self._depth == 0:
            self._point_back()

    def _point_back(self) -> None:
        if not self._redirected:
            return
        _flush_all()
        assert self._saved is not None
        os.dup2(self._saved[0], 1)
        os.dup2(self._saved[1], 2)
        self._redirected = False

    def take(self) -> list[str]:
        """The log lines of what was written since the last call (marked by stream), emptied.

        While held, at most every :data:`HELD_TAKE_SECONDS` (else nothing, at the cost
        of a clock read): what is written meanwhile waits in the capture files, and
        :meth:`restore` flushes every buffer into them, so the next take has it all.
        """
        if self._redirected:
            if self._held:
                now = time.monotonic()
                if now - self._taken < HELD_TAKE_SECONDS:
                    return []
                self._taken = now
            _flush_all()  # what the plugin's print() left in Python's and C's buffers
        lines: list[str] = []
        for fd, mark in zip(self._files, (STDOUT_MARK, STDERR_MARK)):
            size = os.lseek(fd, 0, os.SEEK_END)  # O_APPEND: the end is where the last write left it
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
        self._held = False
        self._depth = 0
        try:
            self._point_back()
        finally:
            self.closed = True
            for fd in (*self._files, *(self._saved or ())):
                try:
                    os.close(fd)
                except OSError:
                    pass
