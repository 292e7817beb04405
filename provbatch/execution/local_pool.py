"""The local backend: worker processes on this machine, talking over pipes.

Starts in milliseconds (workers are forked on Linux), which is why ``auto``
prefers it to Ray on one machine. Forked workers inherit the plugin module
and a shared state without serializing anything: large numpy arrays in the
state are shared copy-on-write, not copied per worker.

Each worker holds at most :attr:`Pool.depth` chunks; a worker that dies loses
only those, which come back as failed (``WorkerLost``) outcomes, and is
replaced by a new worker.
"""

from __future__ import annotations

import ctypes
import gc
import multiprocessing
import os
import pickle
import queue
import signal
import socket
import sys
import threading
from collections import deque
from multiprocessing.connection import Connection, wait
from typing import Any

from .base import NOT_STARTED, Completed, Pool, PoolOptions, default_workers, lost_outcomes, pack_chunk, unpack_chunk
from .capture import STDERR_MARK, OutputCapture
from .runner import EXIT_TIMEOUT, Chunk, ChunkRunner, RunnerConfig


def _start_method() -> str:
    return "fork" if sys.platform.startswith("linux") else "spawn"


_PR_SET_PDEATHSIG = 1


def _die_with_the_driver(driver_pid: int, inherited: list[Connection]) -> None:
    """Make sure a worker never outlives its driver, even a driver killed with SIGKILL.

    The worker sits in a process group of its own (so that a group kill of the
    driver does not reach it), so nothing else would end it:

    - a forked worker inherits the driver's end of its own pipe and of the pipes
      of the workers forked before it; closing those lets ``recv`` see EOF when
      the driver is gone (otherwise the workers keep each other's pipes open);
    - on Linux, SIGTERM when the driver dies ends a worker stuck in a long
      compute too (its SIGTERM handler runs the plugin's clean-up). The signal
      follows the driver *thread* that forked the worker: a pool used after that
      thread ended loses its workers, which are then replaced like lost ones.
    """
    for connection in inherited:  # closed through the object, so nothing closes the fd number twice
        connection.close()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        except (OSError, AttributeError):  # no prctl: the pipe's EOF still ends an idle worker
            pass
    if os.getppid() != driver_pid:  # the driver died before the signal was armed
        os._exit(0)


class _Inbox:
    """The worker's end of the pipe, drained all the time by a thread of its own.

    This is what makes the driver/worker protocol deadlock-free by
    construction: a worker is either computing or sending results, and while it
    does, this thread keeps reading what the driver sends (at most
    :attr:`Pool.depth` chunks plus a finish message are ever in flight), so the
    driver can never block on a send to a worker that is itself blocked sending.
    Both sides blocked writing at once (the hang of issue 13 on cheap entities,
    whose results fill the pipe) cannot happen.
    """

    def __init__(self, conn: Connection) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._conn = conn
        threading.Thread(target=self._drain, name="provbatch-inbox", daemon=True).start()

    def _drain(self) -> None:
        while True:
            try:
                message = self._conn.recv()
            except (EOFError, OSError):
                self._queue.put(None)
                return
            self._queue.put(message)
            if message[0] == "finish":
                return

    def get(self) -> Any:
        """The next message; None when the driver is gone."""
        return self._queue.get()


def _worker_main(conn: Connection, config: RunnerConfig, state: Any, module: Any, pickled: bool,
                 driver_pid: int, inherited: list[Connection], capture: OutputCapture | None) -> None:
    """A worker's loop: compute chunks until told to finish."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver handles Ctrl-C for everyone
    # What the worker inherited (a forked worker: the driver's whole heap, the plugin's state) goes to
    # the collector's permanent generation: the worker's collections never walk it, so they stay as
    # cheap as a fresh process's, and never write to those shared pages (copy-on-write).
    gc.freeze()
    os.setpgrp()  # its own process group: terminate() kills the plugin's children with it
    _die_with_the_driver(driver_pid, inherited)
    try:
        runner = ChunkRunner(config, module=module, capture=capture)
        # a spawned worker gets the state pickled, and unpickles it only now that
        # the plugin (which may define the state's class) is loaded
        if not config.per_worker_state:
            runner.state = pickle.loads(state) if pickled else state
    except BaseException as exc:  # noqa: BLE001 - reported to the driver, which stops the batch
        output = capture.take() if capture is not None else []
        conn.send(("fatal", f"{type(exc).__name__}: {exc}", output))
        return
    conn.send(("ready", os.getpid()))
    # terminate() sends SIGTERM: unwind through the finally below so the
    # plugin's children (a Bash plugin's shell) are killed with the worker.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    inbox = _Inbox(conn)
    try:
        while True:
            message = inbox.get()
            if message is None:  # the driver went away
                return
            if message[0] == "chunk":
                # the common chunk comes back as its result lines: one string to pickle, none to rebuild
                result, seconds = runner.compute_chunk(unpack_chunk(message[2]))
                conn.send(("done", message[1], result, seconds, runner.take_output()))
            elif message[0] == "finish":
                try:
                    state = runner.finish(message[1])
                    conn.send(("finished", state, runner.take_output()))
                except BaseException as exc:  # noqa: BLE001
                    conn.send(("fatal", f"{type(exc).__name__}: {exc}", runner.take_output()))
                return
    finally:
        runner.cleanup()


#: socket buffer asked for each end of a worker's connection (the kernel caps it at net.core.wmem_max)
SOCKET_BUFFER_BYTES = 1 << 20


def _large_buffers(*connections: Connection) -> None:
    """Socket buffers that hold a whole chunk's message (a chunk of 20,000 ids is ~250 kB, the
    default buffer ~200 kB): a send then returns at once instead of waiting for the other side,
    whose reading thread gets the interpreter lock only every few milliseconds while the
    worker computes. Best effort: a platform without them keeps its defaults."""
    for connection in connections:
        try:
            sock = socket.socket(fileno=connection.fileno())
        except OSError:
            continue
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER_BYTES)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER_BYTES)
        except OSError:
            pass
        finally:
            sock.detach()  # the fd stays the connection's


class _Worker:
    def __init__(self, context: Any, config: RunnerConfig, state: Any, module: Any, siblings: list[Connection]) -> None:
        self.conn, child = context.Pipe()
        _large_buffers(self.conn, child)
        # Only forked children may receive the module object itself; spawned
        # ones load the plugin from its spec.
        fork = context.get_start_method() == "fork"
        payload = state if fork else pickle.dumps(state, protocol=5)
        # the driver's pipe ends a forked child inherits: its own, and its siblings'
        # (fork passes these objects as they are; a spawned child inherits no pipe)
        inherited = [c for c in [self.conn, *siblings] if not c.closed] if fork else []
        # a forked worker writes into capture files the driver holds too: what it wrote
        # just before dying (a segfault's message) can still be read (a spawned one makes its own)
        self.capture = OutputCapture() if fork else None
        self.process = context.Process(
            target=_worker_main,
            args=(child, config, payload, module if fork else None, not fork, os.getpid(), inherited, self.capture),
            daemon=True,
        )
        self.process.start()
        child.close()
        self.chunks: deque[tuple[int, Chunk]] = deque()
        self.ready = False

    def close_capture(self) -> list[str]:
        """What the (ended) worker wrote and did not send; its capture files are closed."""
        if self.capture is None or self.capture.closed:
            return []
        output = self.capture.take()
        self.capture.close()
        return output


class WorkerStartError(RuntimeError):
    """A worker could not load the plugin or initialize its state."""


class LocalPool(Pool):
    name = "pool"

    def __init__(self, n_workers: int | None, config: RunnerConfig, state: Any, options: PoolOptions) -> None:
        self.n_workers = n_workers = n_workers or default_workers()
        self.config = config
        self._state = state
        self._module = options.module  # forked workers inherit the driver's plugin module
        self._context = multiprocessing.get_context(_start_method())
        self.output = []
        self.workers: list[_Worker] = []
        for _ in range(n_workers):
            self.workers.append(self._spawn())

    def add_workers(self, n: int) -> None:
        """More workers for the rest of the batch (auto, once the probe found entities expensive)."""
        for _ in range(n):
            self.workers.append(self._spawn())
        self.n_workers = len(self.workers)

    def _spawn(self) -> _Worker:
        return _Worker(self._context, self.config, self._state, self._module, [w.conn for w in self.workers])

    def capacity(self) -> int:
        return sum(self.depth - len(w.chunks) for w in self.workers)

    def in_flight(self) -> int:
        return sum(len(w.chunks) for w in self.workers)

    def submit(self, chunk_id: int, chunk: Chunk) -> None:
        worker = min(self.workers, key=lambda w: len(w.chunks))
        worker.chunks.append((chunk_id, chunk))
        try:
            worker.conn.send(("chunk", chunk_id, pack_chunk(chunk)))
        except OSError:  # the worker died: wait() sees its pipe close and returns its chunks as lost
            pass

    def _replace(self, worker: _Worker) -> list[Completed]:
        """A worker died: its chunks come back lost, a new worker takes its place."""
        worker.process.join(timeout=5)
        code = worker.process.exitcode
        worker.conn.close()
        _kill_group(worker.process.pid)
        self.workers_lost += 1
        output = worker.close_capture()
        if code == EXIT_TIMEOUT:
            reason, error_class = "compute hung in native code past the timeout; its worker was ended", "Timeout"
        else:
            how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            reason, error_class = f"worker process {worker.process.pid} died ({how})", "WorkerLost"
            last_words = [line for line in output if line.startswith("\t" + STDERR_MARK)]
            if last_words:  # e.g. Nim's "SIGSEGV: Illegal storage access", a Python traceback's last line
                reason += ": " + last_words[-1][len(STDERR_MARK) + 1:].strip()[:300]
        self.emit("worker_lost", pid=worker.process.pid, reason=reason)
        # the worker computes its chunks in order: the first was running, the others never started
        lost = [
            Completed(chunk_id, chunk, lost_outcomes(chunk, reason, error_class if index == 0 else NOT_STARTED), 0.0)
            for index, (chunk_id, chunk) in enumerate(worker.chunks)
        ]
        if lost:
            lost[0].output = output
        else:
            self.output.extend(output)
        self.workers[self.workers.index(worker)] = self._spawn()
        return lost

    def _receive(self, worker: _Worker) -> list[Completed]:
        try:
            message = worker.conn.recv()
        except (EOFError, OSError):
            return self._replace(worker)
        kind = message[0]
        if kind == "ready":
            worker.ready = True
            return []
        if kind == "fatal":
            self.output.extend(message[2])
            self.terminate()
            raise WorkerStartError(message[1])
        if kind == "done":
            chunk_id, chunk = worker.chunks.popleft()
            assert chunk_id == message[1]
            return [Completed.of(chunk_id, chunk, message[2], message[3], message[4])]
        raise RuntimeError(f"unexpected message from worker: {kind}")

    def wait(self) -> list[Completed]:
        completed: list[Completed] = []
        while not completed:
            by_conn = {w.conn: w for w in self.workers}
            for conn in wait(list(by_conn)):
                completed.extend(self._receive(by_conn[conn]))
        return completed

    def finish(self, return_state: bool) -> list[Any]:
        states: list[Any] = []
        for worker in self.workers:
            worker.conn.send(("finish", return_state))
        for worker in self.workers:
            while True:
                try:
                    message = worker.conn.recv()
                except (EOFError, OSError):
                    break  # died while finishing: nothing to merge from it
                if message[0] == "finished":
                    self.output.extend(message[2])
                    if return_state:
                        states.append(message[1])
                    break
                if message[0] == "fatal":
                    self.output.extend(message[2])
                    self.terminate()
                    raise WorkerStartError(message[1])
            worker.process.join(timeout=10)
            worker.conn.close()
            self.output.extend(worker.close_capture())
        return states

    def terminate(self) -> None:
        """SIGTERM lets each worker kill its plugin's children; SIGKILL to each process group finishes the rest."""
        for worker in self.workers:
            if worker.process.is_alive():
                worker.process.terminate()
        for worker in self.workers:
            worker.process.join(timeout=3)
            _kill_group(worker.process.pid)
            worker.process.join(timeout=1)
            worker.conn.close()
            self.output.extend(worker.close_capture())


def _kill_group(pid: int | None) -> None:
    """Kill what is left of a worker's process group (a hung plugin's children)."""
    if pid is None:
        return
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
