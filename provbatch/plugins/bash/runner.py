"""Run the functions of a Bash plugin: one persistent bash per worker process, or one bash per call.

Persistent mode (the default) starts one bash per process and plugin, which
sources the plugin once and then serves requests read from a pipe. Each
request runs the function in a subshell forked from that bash, so whatever
a compute does to its shell (``exit``, ``set -eu``, ``IFS=``, ``cd``, traps,
new globals) dies with the subshell and never reaches the next compute. The
subshell is forked before its request arrives: the fork overlaps with the
worker's own work between two calls.

The protocol cannot be confused by plugin output:

* request (Python -> bash stdin): ``FUNCTION \\0 N \\0 ARG1 \\0 ... ARGN \\0``;
  arguments may hold any byte but NUL (bash variables cannot hold NUL either);
* once its request is read, the subshell's stdout and stderr are two files in
  a private directory (on tmpfs when possible), its stdin is /dev/null;
* response (bash stdout -> Python): the exit status as a decimal line,
  written by the serving loop only.

A call interrupted on the Python side (a timeout, Ctrl-C) or cancelled marks
the runner: the next call starts a new bash rather than risk reading the
interrupted call's status as its own.

Naive mode runs ``bash -c`` per call (sourcing the plugin each time); it is
kept for comparison (``benchmarks/bench_bash.py``) and as a fallback
(``importer(path, persistent=False)``).

Every bash runs in its own process group (its own session), so that
``cancel()`` and ``close()`` kill it together with the compute subshell and
all their children with one ``killpg``; a persistent bash whose worker died
without cleanup sees the end of its input and kills its own group. Runners
are per process: they are looked up by ``os.getpid()``, so a forked worker
never talks to its parent's bash.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from ...processes import reap

#: Served by the persistent bash. $0 = the plugin, $1 = the private directory.
#: __pb_call is defined before the plugin is sourced, and the serving loop is
#: parsed after the clean options are restored, so that the plugin's aliases
#: cannot change how they parse; the plugin's top-level shell options are
#: captured after sourcing and re-applied inside each call's subshell only.
_SERVER_SCRIPT = r"""
# One call. It runs in a subshell forked *before* its request arrives, so
# that the fork (the slowest step) overlaps with the worker's own work: read
# the request, restore the plugin's top-level shell options, run the function.
__pb_call() {
  local __pb_fn __pb_n __pb_i __pb_arg
  local -a __pb_args=()
  IFS= builtin read -r -d '' __pb_fn || __pb_quit
  IFS= builtin read -r -d '' __pb_n || __pb_quit
  for ((__pb_i = 0; __pb_i < __pb_n; __pb_i++)); do
    IFS= builtin read -r -d '' __pb_arg || __pb_quit
    __pb_args+=("$__pb_arg")
  done
  # from here on, nothing this subshell prints (an EXIT trap...) reaches the protocol pipe
  exec </dev/null >"$__pb_dir/out" 2>"$__pb_dir/err"
  builtin eval "$__pb_plugin_opts"
  "$__pb_fn" "${__pb_args[@]}"
}
# End of input: the worker closed the pipe or died without cleanup. Leave
# nothing behind: the private directory, and every process of this group.
__pb_quit() {
  command rm -rf -- "$__pb_dir"
  builtin kill -KILL 0
}
__pb_dir=$1
set --
__pb_clean_opts="$(set +o; shopt -p)"
builtin eval "$__pb_clean_opts"  # its side effect (BASH_COMPAT) exists before the plugin, as in every call
builtin source "$0" >&2 </dev/null
__pb_plugin_opts=
while IFS= builtin read -r __pb_line; do  # keep only the options the plugin changed
  [[ $'\n'$__pb_clean_opts$'\n' == *$'\n'"$__pb_line"$'\n'* ]] || __pb_plugin_opts+=$__pb_line$'\n'
done <<<"$(set +o; shopt -p)"
[[ $- != *e* ]] || __pb_plugin_opts+=$'set -e\n'  # a command substitution does not see set -e
builtin eval "$__pb_clean_opts"
trap - EXIT ERR DEBUG RETURN
builtin printf 'ready\n'
while :; do
  (__pb_call)
  builtin printf '%d\n' "$?"
done
"""

#: One call per bash. $0 = the plugin, $1 = the function, the rest its arguments.
_NAIVE_SCRIPT = r"""
__pb_fn=$1
shift
__pb_args=("$@")
set --
builtin source "$0" >&2 </dev/null
"$__pb_fn" "${__pb_args[@]}"
"""

#: Environment variables that would make bash run code or change options on
#: start-up (BASH_ENV, exported functions), removed from the plugin's environment.
_UNSAFE_ENV_PREFIXES = ("BASH_FUNC_",)
_UNSAFE_ENV = {"BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS"}


@dataclass
class CallResult:
    """What one plugin function call produced."""

    status: int
    stdout: bytes
    stderr: bytes


class BashCallError(RuntimeError):
    """A plugin function failed: non-zero exit, broken output, or a dead bash.

    Deliberately not a ProvBatchError: it is the failure of one entity, which
    the engine records, not a reason to stop the batch.
    """

    def __init__(self, message: str, status: int | None = None, logs: list[str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.logs = list(logs or [])


class BashCallCancelled(BashCallError):
    """The call was killed by ``cancel()`` or ``close()`` (a timeout, a cancelled batch)."""


def runtime_env() -> dict[str, str]:
    """The worker's environment, minus what would make bash execute code on start-up."""
    return {
        key: value
        for key, value in os.environ.items()
        if key not in _UNSAFE_ENV and not key.startswith(_UNSAFE_ENV_PREFIXES)
    }


def encode_arg(arg: str) -> bytes:
    """Bytes of one argument; the surrogateescape round trip keeps any byte but NUL."""
    data = os.fsencode(arg)
    if b"\0" in data:
        raise ValueError(f"a bash argument cannot contain a NUL byte: {arg!r}")
    return data


def output_dir_root() -> str | None:
    """Where the private directories of the calls' output files go.

    ``$PROVBATCH_BASH_TMPDIR`` when set, else /dev/shm when writable: each
    call truncates its two output files, which costs about a millisecond on
    a journaling file system and nothing on tmpfs. Else the default temp dir.
    """
    explicit = os.environ.get("PROVBATCH_BASH_TMPDIR")
    if explicit:
        return explicit
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK | os.X_OK):
        return "/dev/shm"
    return None


def _killpg(pgid: int | None) -> bool:
    if pgid is None:
        return False
    try:
        os.killpg(pgid, signal.SIGKILL)
        return True
    except (ProcessLookupError, PermissionError):
        return False


class Runner:
    """Calls functions of one plugin script from one process; thread-safe."""

    def __init__(self, bash: str, script: Path) -> None:
        self.bash = bash
        self.script = script
        self._lock = threading.Lock()
        self._dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._busy = False
        self._cancelled = False

    # -- shared helpers -------------------------------------------------
    def _private_dir(self) -> Path:
        if self._dir is None or not self._dir.is_dir():
            self._dir = Path(tempfile.mkdtemp(prefix="provbatch-bash-", dir=output_dir_root()))
        return self._dir

    def _read_outputs(self, status: int) -> CallResult:
        folder = self._private_dir()
        try:
            return CallResult(status, (folder / "out").read_bytes(), (folder / "err").read_bytes())
        except OSError as exc:  # close() removed the directory under us
            raise BashCallCancelled(f"{self.script}: the call's output is gone ({exc}); the runner was closed") from exc

    def call(self, function: str, args: list[str]) -> CallResult:
        """Run ``function ARGS...`` in the plugin and return its status and output."""
        encoded = [encode_arg(arg) for arg in args]
        with self._lock:
            if self._cancelled:  # the previous call was killed: its bash may not be dead yet
                self._discard()
            self._busy, self._cancelled = True, False
            try:
                return self._call(function, encoded)
            except BaseException:
                # Interrupted (a timeout's alarm, Ctrl-C) or failed: the bash may still run the
                # call and later write its status; never read that status as the next call's.
                self._cancelled = True
                raise
            finally:
                self._busy = False

    def _call(self, function: str, args: list[bytes]) -> CallResult:  # pragma: no cover - interface
        raise NotImplementedError

    def cancel(self) -> bool:
        """Kill the call in flight, with its children. Returns False when idle.

        Safe to call from another thread (the engine's timeout watcher): it
        does not take the lock the blocked call holds.
        """
        proc = self._proc
        if proc is None or not self._busy:
            return False
        self._cancelled = True
        return _killpg(proc.pid)

    def _discard(self) -> None:
        """Kill the current bash with its group and wait for it: the next call starts a new one."""
        proc, self._proc = self._proc, None
        if proc is not None:
            _killpg(proc.pid)
            reap(proc, timeout=5, kill=False)  # killed with its group above

    def close(self) -> None:
        """Kill the bash and everything it started; remove the private directory."""
        if self._proc is not None:
            self._cancelled = True
        self._discard()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def pgid(self) -> int | None:
        """Process group of the current bash (None when none runs); for tests and diagnostics."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None


class NaiveRunner(Runner):
    """A new ``bash -c`` per call, which sources the plugin and runs one function."""

    def _call(self, function: str, args: list[bytes]) -> CallResult:
        folder = self._private_dir()
        argv: list[str | bytes] = [self.bash, "--noprofile", "--norc", "-c", _NAIVE_SCRIPT, str(self.script), function, *args]
        with open(folder / "out", "wb") as out, open(folder / "err", "wb") as err:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=runtime_env(), start_new_session=True
            )
        self._proc = proc
        try:
            status = proc.wait()
        finally:
            _killpg(proc.pid)  # background children left behind by this call
            self._proc = None
        if self._cancelled:
            raise BashCallCancelled(f"{self.script}: {function} was killed (cancelled)", status)
        return self._read_outputs(status)


class PersistentRunner(Runner):
    """One bash per process that sources the plugin once; each call in a forked subshell."""

    def _start(self) -> subprocess.Popen[bytes]:
        folder = self._private_dir()
        argv = [self.bash, "--noprofile", "--norc", "-c", _SERVER_SCRIPT, str(self.script), str(folder)]
        with open(folder / "server.err", "wb") as err:
            proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                env=runtime_env(), start_new_session=True,
            )
        self._proc = proc
        assert proc.stdout is not None
        if proc.stdout.readline() != b"ready\n":
            self._discard()
            if self._cancelled:
                raise BashCallCancelled(f"{self.script}: killed while sourcing the plugin (cancelled)")
            tail = stderr_tail(self._server_stderr())
            raise BashCallError(f"{self.script}: the persistent bash stopped while sourcing the plugin: {tail}")
        return proc

    def _server_stderr(self) -> bytes:
        try:
            return (self._private_dir() / "server.err").read_bytes()
        except OSError:
            return b""

    def _alive(self) -> subprocess.Popen[bytes]:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            return proc
        self._discard()  # with whatever the dead bash left behind
        return self._start()

    def _send(self, function: str, args: list[bytes]) -> subprocess.Popen[bytes]:
        request = b"".join(part + b"\0" for part in [function.encode(), str(len(args)).encode(), *args])
        for attempt in (1, 2):  # a bash that died since the last call is restarted once
            proc = self._alive()
            assert proc.stdin is not None
            try:
                proc.stdin.write(request)
                proc.stdin.flush()
                return proc
            except (BrokenPipeError, ValueError):
                self._discard()
                if attempt == 2:
                    raise BashCallError(f"{self.script}: cannot send the call to the persistent bash") from None
        raise AssertionError("unreachable")

    def _call(self, function: str, args: list[bytes]) -> CallResult:
        proc = self._send(function, args)
        assert proc.stdout is not None
        try:
            line = proc.stdout.readline()
        except (OSError, ValueError):
            line = b""
        if not line.endswith(b"\n"):  # the bash died during the call: restart on the next one
            self._discard()
            if self._cancelled:
                raise BashCallCancelled(f"{self.script}: {function} was killed (cancelled)")
            raise BashCallError(
                f"{self.script}: the bash running {function} died ({stderr_tail(self._server_stderr())}); "
                "it is restarted for the next call"
            )
        return self._read_outputs(int(line))


def stderr_tail(stderr: bytes, lines: int = 5) -> str:
    """The last non-empty lines of stderr on one line."""
    text = [line for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    return " | ".join(text[-lines:]) if text else "no stderr output"


_RUNNERS: dict[tuple[int, str, str, bool], Runner] = {}
_RUNNERS_LOCK = threading.Lock()


def runner_for(bash: str, script: Path, version: str, persistent: bool = True) -> Runner:
    """This process's runner for ``script`` (created on first use, never shared across fork).

    ``version`` (the script's sha256) is part of the key: after the script is
    edited and loaded again, a new bash sources the new text and the bash
    that sourced the old one is closed.
    """
    pid = os.getpid()
    key = (pid, str(script), version, persistent)
    with _RUNNERS_LOCK:
        runner = _RUNNERS.get(key)
        if runner is None:
            stale = [k for k in _RUNNERS if k[0] == pid and k[1] == str(script) and k[2] != version]
            for old in stale:
                _RUNNERS.pop(old).close()
            runner = (PersistentRunner if persistent else NaiveRunner)(bash, script)
            _RUNNERS[key] = runner
        return runner


def runners_of_process(script: Path | None = None) -> list[Runner]:
    """The runners this process created, for one script or all."""
    pid = os.getpid()
    with _RUNNERS_LOCK:
        return [r for (p, s, _v, _m), r in _RUNNERS.items() if p == pid and (script is None or s == str(script))]


def close_all(script: Path | None = None) -> None:
    """Kill this process's bashes (for one script or all) with all their children."""
    for runner in runners_of_process(script):
        runner.close()


def cancel_all(script: Path | None = None) -> bool:
    """Kill the calls in flight in this process; True when one was killed."""
    return any([runner.cancel() for runner in runners_of_process(script)])


atexit.register(close_all)
