"""One writer at a time per output file.

Two runs appending to the same results file would both compute (and write)
the same entities. Each output file ``F`` of a run is guarded by ``F.lock``,
held with ``flock`` for the whole run and holding the writer's PID and host:
a second run is refused at once with that PID. The kernel releases an
``flock`` when its process dies, however it dies (SIGKILL included), so a lock
left by a killed run is simply taken over by the next one; its file still
names the dead PID, which is reported as taken over.
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

from ..errors import UsageError

LOCK_SUFFIX = ".lock"


def lock_path(target: Path) -> Path:
    return target.with_name(target.name + LOCK_SUFFIX)


class OutputLock:
    """The lock of one output file; :meth:`acquire` refuses at once when another run holds it."""

    def __init__(self, target: Path, what: str = "results") -> None:
        self.target = target
        self.what = what
        self.path = lock_path(target)
        self._fd: int | None = None
        #: the holder recorded by a run that died without releasing the lock (None if there was none)
        self.taken_over: str | None = None

    def acquire(self) -> OutputLock:
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise UsageError(f"{self.path}: cannot create the lock of the {self.what}: {exc.strerror or exc}") from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 200, 0).decode("utf-8", "replace").split()
                os.close(fd)
                pid = holder[0] if holder else "unknown"
                host = f" on {holder[1]}" if len(holder) > 1 and holder[1] != socket.gethostname() else ""
                raise UsageError(
                    f"{self.target}: another run is writing these {self.what} (PID {pid}{host}): "
                    f"wait for it to end, or use another output file"
                ) from None
            # a run that ended between our open and our flock removed the file: lock the new one
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            previous = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
            self.taken_over = previous or None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
            self._fd = fd
            return self

    def release(self) -> None:
        """Remove the lock file, then let the lock go (in this order, so nobody locks a removed file for long)."""
        if self._fd is None:
            return
        try:
            self.path.unlink()
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None
