"""Reaping a child (provbatch.processes.reap): it exits at the end of its input, or is killed after the timeout."""

from __future__ import annotations

import signal
import subprocess
import sys

from provbatch.processes import process_alive, reap

#: reads its input to the end, then exits with status 3 (a child that goes when its engine says goodbye)
UNTIL_EOF = "import sys; sys.stdin.read(); sys.exit(3)"
#: ignores its input and sleeps (a child stuck in a database)
STUCK = "import time; time.sleep(60)"


def child(code: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE)


def test_a_child_that_exits_at_the_end_of_its_input_is_reaped_with_its_status() -> None:
    process = child(UNTIL_EOF)
    reap(process, timeout=30)
    assert process.returncode == 3
    assert not process_alive(process.pid)


def test_a_stuck_child_is_killed_after_the_timeout() -> None:
    process = child(STUCK)
    reap(process, timeout=0.5)
    assert process.returncode == -signal.SIGKILL


def test_a_stuck_child_is_left_running_when_the_caller_kills_it_itself() -> None:
    process = child(STUCK)
    try:
        reap(process, timeout=0.5, kill=False)
        assert process.poll() is None
    finally:
        process.kill()
        process.wait()


def test_a_child_reaped_already_is_reaped_again_without_error() -> None:
    process = child(UNTIL_EOF)
    reap(process, timeout=30)
    reap(process, timeout=30)
    assert process.returncode == 3
