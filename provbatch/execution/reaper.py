"""A watchdog that ends the processes of a private Ray instance when the driver that started it dies.

``ray.init(address="local")`` starts the head's processes (GCS, raylet, the
dashboard and runtime-env agents, the log monitor, workers) from the driver.
When the driver exits normally it shuts them down; when it is killed with
SIGKILL nothing runs in it any more, and the dashboard and runtime-env agents
stay alive for ever. Ray starts them itself, so provbatch cannot launch them
with a parent-death signal; instead a small process, started in a session of
its own (a signal to the driver's process group does not reach it), waits for
the driver to disappear and then ends the instance's processes.

The processes of the instance are told apart from other Ray instances on the
machine (other users', other runs') by the instance's session directory,
which every one of them names on its command line, plus their descendants
(Ray's workers rename themselves, ``ray::RayWorker``). Nothing else is touched.

Run as ``python -m provbatch.execution.reaper PID START_TIME MARK``; the driver
stops it (SIGTERM) after a normal ``ray.shutdown()``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ..processes import process_alive, process_start_time

#: how often the watchdog looks whether the driver is still there
POLL_SECONDS = 0.5
#: how often it notes the instance's processes (a scan of /proc: cheap, but not free on a shared machine)
SCAN_SECONDS = 2.0
#: how long the instance's processes get to exit on SIGTERM before SIGKILL
GRACE_SECONDS = 3.0


def _parents() -> dict[int, tuple[int, bytes]]:
    """pid -> (parent pid, command line) of every live process that can be read."""
    table: dict[int, tuple[int, bytes]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_bytes()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()
        if fields[0] != b"Z":  # a zombie is dead already (an orphan's, where PID 1 does not reap)
            table[int(entry)] = (int(fields[1]), cmdline)
    return table


def instance_processes(mark: str, exclude: int | None = None) -> set[int]:
    """The processes whose command line holds ``mark`` (the session directory), and their descendants."""
    table = _parents()
    needle = mark.encode()
    found = {pid for pid, (_, cmdline) in table.items() if needle in cmdline}
    grew = True
    while grew:
        children = {pid for pid, (ppid, _) in table.items() if ppid in found and pid not in found}
        grew = bool(children)
        found |= children
    found.discard(os.getpid())
    if exclude is not None:
        found.discard(exclude)
    return found


def _signal_all(pids: set[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def end_instance(mark: str, known: dict[int, str | None] | None = None, grace: float = GRACE_SECONDS) -> None:
    """SIGTERM the instance's processes, SIGKILL what is left after ``grace`` (until none is left).

    ``known``: pid -> start time of processes seen earlier as the instance's (each
    is signalled only while it is still that process, not a later one given its PID).
    """
    known = dict(known or {})

    def remaining() -> set[int]:
        return instance_processes(mark) | {p for p, t in known.items() if process_alive(p, t)}

    pids = remaining()
    _signal_all(pids, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        time.sleep(0.1)
        pids = remaining()
    for _ in range(20):  # a dying raylet may still start a worker: look again until none is left
        if not pids:
            return
        _signal_all(pids, signal.SIGKILL)
        time.sleep(0.1)
        pids = remaining()


def watch(pid: int, started: str | None, mark: str) -> None:
    """Wait for process ``pid`` (started at ``started``) to disappear, then end the instance named by ``mark``.

    The instance's processes are noted while the driver lives: once it is gone the
    raylet may be gone too, and the agents it started, renamed and orphaned, no
    longer show the mark nor a marked parent.
    """
    known: dict[int, str | None] = {}
    last_scan = 0.0
    while process_alive(pid, started):
        if time.monotonic() - last_scan >= SCAN_SECONDS:
            known = {p: t for p, t in known.items() if process_alive(p, t)}
            known.update((p, process_start_time(p)) for p in instance_processes(mark) if p not in known)
            last_scan = time.monotonic()
        time.sleep(POLL_SECONDS)
    end_instance(mark, known)


def start_watchdog(mark: str) -> subprocess.Popen[bytes]:
    """Start the watchdog of this process, in a session of its own, its standard streams closed."""
    pid = os.getpid()
    return subprocess.Popen(
        [sys.executable, "-m", __name__, str(pid), process_start_time(pid) or "-", mark],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, close_fds=True,
    )


def main(argv: list[str]) -> int:
    pid, started, mark = int(argv[0]), argv[1], argv[2]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # the driver shut Ray down itself
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    watch(pid, None if started == "-" else started, mark)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
