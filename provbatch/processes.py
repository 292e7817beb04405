"""Which process a PID is: its start time, and whether it is still the same process; reaping a child.

A PID alone names a process only while it lives: after it exits the number is
given to the next process. The start time (``/proc/PID/stat``) is recorded
beside it (a run's manifest, the Ray watchdog) so that a PID reused later is
not taken for the process that is gone. Linux only; elsewhere the start time is
unknown and the PID alone is trusted.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any


def _stat_fields(pid: int) -> list[bytes] | None:
    """The fields of ``/proc/PID/stat`` after the name (which may hold spaces and parentheses)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return stat[stat.rfind(b")") + 2:].split()


def process_start_time(pid: int) -> str | None:
    """When ``pid`` started (clock ticks since boot, field 22 of ``/proc/PID/stat``), or None when unreadable."""
    fields = _stat_fields(pid)
    return fields[19].decode() if fields else None


def process_alive(pid: int, start_time: str | None = None) -> bool:
    """Whether ``pid`` runs (a zombie does not) and, when ``start_time`` is given, is the process that started then."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, as another user's process
    fields = _stat_fields(pid)
    if fields is None:
        return os.path.exists(f"/proc/{pid}") or not os.path.isdir("/proc")  # no /proc: the PID alone
    return fields[0] != b"Z" and (start_time is None or fields[19].decode() == start_time)


def reap(process: subprocess.Popen[Any], timeout: float, kill: bool = True) -> None:
    """Close a child's pipes (an idle child exits at their end) and wait for it up to ``timeout`` seconds;
    then kill it (``kill``), or leave it (the caller killed its process group already)."""
    for stream in (process.stdin, process.stdout):
        try:
            if stream is not None:
                stream.close()
        except OSError:
            pass
    if not _exited(process, timeout) and kill:
        process.kill()
        process.wait()


def _exited(process: subprocess.Popen[Any], timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for the child to exit, and reap it; False if it still runs.

    On Linux the wait wakes at the exit itself (a pidfd polled); ``Popen.wait``
    with a timeout sleeps and polls instead, up to 50 ms between looks, and
    that sleep lands on the path of every ``batch-compute --store``: its writer
    process closes the store after the engine's goodbye (~0.1 s), then is reaped.
    """
    try:
        handle = os.pidfd_open(process.pid)
    except (AttributeError, OSError):  # not Linux >= 5.3, or reaped already
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True
    try:
        import select

        poll = select.poll()
        poll.register(handle, select.POLLIN)
        if not poll.poll(max(0, int(timeout * 1000))):
            return False
    finally:
        os.close(handle)
    process.wait()
    return True
