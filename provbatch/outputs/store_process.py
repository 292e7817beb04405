"""The store writer process of ``batch-compute --store``: the values are written by a child process.

Why a process: the SQL of a value (entity row, value row, current pointer)
costs more CPU than the engine spends on a trivial entity, and a writer
*thread* shares the engine's GIL: the engine waited for it, and its own output
flushes slowed down while the writer held the GIL. A child process does the
SQL on another core, and costs the engine almost nothing: the engine already
formats each chunk's TSV text (:attr:`.sink.ResultChunk.lines`), and handing
that text to the child is one ``writev`` into a pipe.

The child is the run's only connection to the store: it opens it, answers
the engine's questions about it, and writes the values. So the engine never
imports SQLAlchemy (~0.35 s of its start-up, measured, before its first
entity), and the child's own start-up, begun early, overlaps the engine's.

The two sides (:class:`WriterProcess` in the engine's process, :func:`child_main`
in the child) talk in frames: one byte of kind, four bytes of length, the
payload. The engine sends ``OPEN`` (pickled: the store URL, in the pipe, never
on the command line, where ``ps`` would show a password; whether to create it;
the plugin's attributes with their definitions, checked against it), answered
by ``ANSWER`` (whether it exists); ``ASK`` (pickled: one
of the questions of :meth:`_Child.ask`: record the computation, its done or
stale entities, finish its record), answered by ``ANSWER`` (in the order
asked: the engine need not wait for an answer before its next frame); ``START`` (the
computation's attributes: its values are those of the computation recorded
last, committed before any value), ``DATA`` (a
chunk's TSV text), ``INPUTS`` (the input files of a chunk, files mode),
``FLUSH`` (write what you hold and say so: ``FLUSHED``), ``END`` (write the
rest and say how many values: ``DONE``). After ``END`` the engine may still
ask (the end of the computation's record); the end of its input is then its
goodbye: the child closes the store (SQLite: the log checkpointed into the
database file) and exits. A failure is answered by ``FAILED`` (the exception,
pickled, with its traceback), and the child exits.

The child parses the text (one ``split`` of the whole batch: every line has
exactly 1 + n fields, the engine checked that), encodes it with the store's
codecs and writes it through the store's API (:meth:`provbatch.store.Store.writer`,
:meth:`~provbatch.store.ComputationWriter.encode_columns` and
:meth:`~provbatch.store.ComputationWriter.write_encoded`), a transaction per
:data:`FLUSH_VALUES` values or :data:`FLUSH_SECONDS` seconds. A thread of the
child drains the pipe all the time into a buffer of at most
:data:`INBOX_BYTES`, so the engine never waits while a transaction commits;
when the child falls further behind, the buffer and then the pipe are full and
the engine's next write waits (backpressure: the memory is bounded).

Lifetime: the child never outlives the engine. On Linux it asks the kernel
for SIGKILL when its parent dies (``PR_SET_PDEATHSIG``); everywhere, the end
of its input without an ``END`` frame means the engine is gone: it exits at
once and writes nothing more (a transaction in flight is rolled back by the
database). The kernel's signal follows the *thread* that started the child,
so children are started by one daemon thread that lives as long as the process
(a run may be prepared in a thread that ends before the run does). It ignores SIGINT, SIGTERM and SIGHUP: Ctrl-C reaches the whole
process group, and the engine, which handles it, then sends ``END``.
"""

from __future__ import annotations

import os
import pickle
import signal
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from ..processes import reap as reap_child

#: a transaction per this many values, or per :data:`FLUSH_SECONDS` seconds, whichever comes first
FLUSH_VALUES = 20_000
FLUSH_SECONDS = 2.0
#: the child's buffer of frames read from the pipe and not yet written: enough for the engine to go on
#: while a transaction commits (~0.3 s of trivial entities), and no more: what is buffered when the
#: engine is killed is in its results file but not in the store (lost, a resume with --out skips it)
INBOX_BYTES = 4 << 20
#: the pipe's size asked for (Linux allows up to /proc/sys/fs/pipe-max-size, 1 MiB by default)
PIPE_BYTES = 1 << 20

HEADER = struct.Struct(">cI")
# engine -> child
OPEN, ASK, START, DATA, INPUTS, FLUSH, END = b"O", b"A", b"S", b"D", b"I", b"F", b"E"
# child -> engine
ANSWER, FLUSHED, DONE, FAILED = b"R", b"K", b"Z", b"X"

_PR_SET_PDEATHSIG = 1
_TIMEOUT = object()

InputFact = tuple[str, str, "int | None", "str | None", "float | None"]


# ------------------------------------------------------------------ engine side
class WriterDied(Exception):
    """The child ended without saying why (killed, out of memory): the text says how it ended."""


class WriterProcess:
    """The engine's handle on the child: started at once, fed frames, closed with ``END`` (or abandoned)."""

    def __init__(self) -> None:
        """Start the child; it imports the store while the engine goes on, and waits for :meth:`open`."""
        import subprocess

        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        # -c, not -m: the same provbatch as the engine's (its root first when it is not on the path already),
        # and no module of the current directory shadowing one of ours ('' is sys.path[0] under -c)
        code = (f"import sys; del sys.path[0]; root = {root!r}\n"
                "if root not in sys.path: sys.path.insert(0, root)\n"
                "from provbatch.outputs.store_process import child_main; child_main()")
        self.process = _spawned(lambda: subprocess.Popen([sys.executable, "-c", code, str(os.getpid())],
                                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0,
                                                         close_fds=True))
        assert self.process.stdin is not None and self.process.stdout is not None
        self._to = self.process.stdin.fileno()
        self._from = self.process.stdout.fileno()
        try:
            import fcntl

            fcntl.fcntl(self._to, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        except (ImportError, AttributeError, OSError):  # not Linux, or a lower limit: the default size works
            pass
        import select

        self._poll = select.poll()
        self._poll.register(self._from, select.POLLIN)
        #: what is left of the frame being sent when a signal interrupted it (sent first by the next send)
        self._unsent: list[memoryview] = []
        self.ended = False

    @property
    def pid(self) -> int:
        return self.process.pid

    def send(self, kind: bytes, payload: bytes) -> None:
        """One frame, whole; blocks while the child's buffer and the pipe are full (BrokenPipeError: it is gone)."""
        self._drain()
        self._unsent = [memoryview(HEADER.pack(kind, len(payload))), memoryview(payload)]
        self._drain()

    def _drain(self) -> None:
        unsent = self._unsent
        while unsent:
            written = os.writev(self._to, unsent)
            while unsent and written >= len(unsent[0]):
                written -= len(unsent[0])
                unsent.pop(0)
            if unsent and written:
                unsent[0] = unsent[0][written:]

    def answer(self, wait: bool) -> tuple[bytes, bytes] | None:
        """The child's next message (None when ``wait`` is False and there is none yet); WriterDied at its end."""
        if not wait and not self._poll.poll(0):
            return None
        header = self._read(HEADER.size)
        if header is None:
            raise WriterDied(self._how_it_ended())
        kind, size = HEADER.unpack(header)
        payload = self._read(size) if size else b""
        if payload is None:
            raise WriterDied(self._how_it_ended())
        return kind, payload

    def _read(self, size: int) -> bytes | None:
        parts, left = [], size
        while left:
            part = os.read(self._from, left)
            if not part:
                return None
            parts.append(part)
            left -= len(part)
        return b"".join(parts)

    def _how_it_ended(self) -> str:
        try:
            code = self.process.wait(timeout=10)
        except Exception:  # noqa: BLE001 - still running after its output ended: say so
            return f"the store writer process (pid {self.pid}) stopped answering"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"the store writer process (pid {self.pid}) was killed by {name}"
        return f"the store writer process (pid {self.pid}) exited with status {code} without a word"

    def end(self) -> None:
        """``END``: the child writes what it holds and exits (the answer is read by the caller)."""
        self.ended = True
        self.send(END, b"")

    def abandon(self) -> None:
        """The input ends without ``END``: the child writes nothing more and exits; then it is reaped."""
        reap(self.process)

    @classmethod
    def start_early(cls) -> None:
        """Start the next run's child now, for :meth:`take` (the command line, as soon as it knows that the
        run writes into a store: the child's start-up, SQLAlchemy's import above all, is on the path of
        every ``--store`` run, and the engine's own imports and checks before its sink opens (~0.2 s) can
        overlap it). Ended by :meth:`discard_early` when no run took it."""
        global _early
        with _early_lock:
            if _early is None:
                _early = cls()

    @classmethod
    def take(cls) -> WriterProcess:
        """The child started early, if one is waiting, else a new one."""
        global _early
        with _early_lock:
            started, _early = _early, None
        return started if started is not None else cls()

    @staticmethod
    def discard_early() -> WriterProcess | None:
        """End a child started early that no run took (the run stopped before its store opened); returns it.

        Killed, not waited for: it was sent nothing, so it holds no store and has nothing to finish, and
        waiting for it to read the end of its input means waiting for its imports (~0.4 s added to every
        error a ``--store`` command line reports before its run starts, measured: 0.75 s against 0.33 s)."""
        global _early
        with _early_lock:
            started, _early = _early, None
        if started is not None:
            started.process.kill()
            started.abandon()
        return started


_early: WriterProcess | None = None
_early_lock = threading.Lock()


_spawner: Any = None
_spawner_lock = threading.Lock()


def _spawned(start: Any) -> Any:
    """``start()`` run by one daemon thread that lives as long as the process: the kernel's parent-death
    signal follows the thread that forked the child, and the thread that prepares a run may end before
    the run does (``iter_batch`` prepared in one thread, iterated in another)."""
    global _spawner
    import queue

    with _spawner_lock:
        if _spawner is None:
            requests: queue.SimpleQueue[tuple[Any, queue.SimpleQueue[tuple[bool, Any]]]] = queue.SimpleQueue()

            def serve() -> None:
                while True:
                    job, answer = requests.get()
                    try:
                        answer.put((True, job()))
                    except BaseException as exc:  # noqa: BLE001 - raised in the caller's thread
                        answer.put((False, exc))

            threading.Thread(target=serve, name="provbatch-store-spawner", daemon=True).start()
            _spawner = requests
    answer: queue.SimpleQueue[tuple[bool, Any]] = queue.SimpleQueue()
    _spawner.put((start, answer))
    ok, value = answer.get()
    if not ok:
        raise value
    return value


def reap(process: Any) -> None:
    """Close the child's input (an idle child exits at its end) and wait for it; kill it if it lingers
    (a child stuck in the database: it goes anyway)."""
    reap_child(process, timeout=30)


def raise_failure(payload: bytes, where: str) -> None:
    """Raise the child's exception here (its one-line message unchanged), its traceback as a note for --debug."""
    from ..errors import OutputWriteError

    try:
        exc, text = pickle.loads(payload)
    except Exception:  # noqa: BLE001 - an exception that does not travel: its type and message do
        name, message, text = payload.decode("utf-8", "replace").split("\n", 2)
        exc = OutputWriteError(f"{where}: cannot write the results: {name}: {message}")
    if hasattr(exc, "add_note") and text:
        exc.add_note(f"in the store writer process:\n{text.rstrip()}")
    raise exc


# ------------------------------------------------------------------- child side
class _Inbox:
    """The frames read from the pipe, drained all the time by a thread (at most :data:`INBOX_BYTES` held)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._frames: deque[tuple[bytes | None, bytes]] = deque()
        self._held = 0
        self._cond = threading.Condition()
        threading.Thread(target=self._drain, name="provbatch-store-inbox", daemon=True).start()

    def _read(self, size: int) -> bytes | None:
        parts, left = [], size
        while left:
            part = os.read(self._fd, min(left, PIPE_BYTES))
            if not part:
                return None
            parts.append(part)
            left -= len(part)
        return b"".join(parts) if len(parts) != 1 else parts[0]

    def _drain(self) -> None:
        while True:
            header = self._read(HEADER.size)
            if header is None:
                self._put(None, b"")
                return
            kind, size = HEADER.unpack(header)
            payload = self._read(size) if size else b""
            if payload is None:
                self._put(None, b"")
                return
            self._put(kind, payload)

    def _put(self, kind: bytes | None, payload: bytes) -> None:
        with self._cond:
            while self._held and self._held + len(payload) > INBOX_BYTES:
                self._cond.wait()
            self._frames.append((kind, payload))
            self._held += len(payload)
            self._cond.notify_all()

    def get(self, timeout: float | None) -> Any:
        """The next frame ``(kind, payload)`` (kind None: the input ended without END), or _TIMEOUT."""
        with self._cond:
            if not self._frames and not self._cond.wait_for(lambda: self._frames, timeout):
                return _TIMEOUT
            kind, payload = self._frames.popleft()
            self._held -= len(payload)
            self._cond.notify_all()
            return kind, payload


def _die_with(parent: int) -> None:
    """SIGKILL when the parent dies (Linux); a parent already gone ends the child now."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):  # no prctl: the end of the input still ends the child
            pass
    if os.getppid() != parent:
        os._exit(0)


def _send(fd: int, kind: bytes, payload: bytes = b"") -> None:
    data = memoryview(HEADER.pack(kind, len(payload)) + payload)
    while data:
        data = data[os.write(fd, data):]


def _failure_payload(exc: BaseException) -> bytes:
    import traceback

    text = "".join(traceback.format_exception(exc))
    try:
        payload = pickle.dumps((exc, text))
        pickle.loads(payload)  # what the engine will do: an exception that does not come back goes as text
        return payload
    except Exception:  # noqa: BLE001
        message = " ".join(str(exc).split())
        return f"{type(exc).__name__}\n{message}\n{text}".encode("utf-8", "replace")


def input_facts(entity_id: str, path: str) -> InputFact | None:
    """(entity id, absolute path, size, sha256, mtime) of an input file; None if it is not readable now."""
    from ..provenance.capture import size_and_sha256

    try:
        mtime = os.stat(path).st_mtime
        size, sha256 = size_and_sha256(path)
    except OSError:
        return None
    return entity_id, path, size, sha256, mtime


def parse_batch(texts: Sequence[bytes], n_outputs: int) -> tuple[list[str], list[list[str]]]:
    """The entity ids and the field columns of chunks of TSV text (each line exactly 1 + ``n_outputs`` fields)."""
    text = b"".join(texts).decode("utf-8", "surrogatepass")
    fields = text.replace("\n", "\t").split("\t")
    fields.pop()  # after the last line's newline
    width = n_outputs + 1
    if len(fields) % width:
        raise ValueError(f"the store writer got lines that are not {width} fields each")
    return fields[0::width], [fields[k::width] for k in range(1, width)]


class _Child:
    """The child's loop: the store opened, questions answered, then frames in, a transaction per batch."""

    def __init__(self, inbox: _Inbox, answers: int) -> None:
        self.inbox = inbox
        self.answers = answers
        self.store: Any = None
        self.writer: Any = None
        #: the computation recorded last (``record_computation``): the one START's values are written as
        self.computation: int | None = None
        self.texts: list[bytes] = []
        self.n_rows = 0
        self.inputs: list[tuple[str, str]] = []
        self.n_outputs = 1
        self.last_write = time.monotonic()
        #: END came: what was held is written; the input's end is now the engine's goodbye, not its death
        self.ended = False

    def next_frame(self, kind_wanted: bytes) -> bytes:
        item = self.inbox.get(None)
        kind, payload = item
        if kind is None:
            os._exit(0)  # the engine is gone before the run started
        if kind != kind_wanted:
            raise ValueError(f"the store writer expected frame {kind_wanted!r}, got {kind!r}")
        return payload

    def run(self) -> None:
        from ..store import Store

        request = pickle.loads(self.next_frame(OPEN))
        url = request["url"]
        # created, with the plugin's attributes, unless the run writes nothing (a dry run: nothing is created)
        self.store = Store(url, create=True) if request["create"] else Store.open_existing(url)
        try:
            if self.store is not None:
                self.store.ensure_attributes(request["output"], request["definitions"], request["source"],
                                             apply=request["create"])
            _send(self.answers, ANSWER, pickle.dumps({"exists": self.store is not None}))
            self.loop()
        finally:
            if self.store is not None:
                self.store.close()  # SQLite: the last connection checkpoints the log into the database file

    def ask(self, payload: bytes) -> Any:
        """One question of the engine, answered from the store: record the computation (its id), its done
        entities (a resume), its stale ones (``--only-stale``), or the end of its record."""
        operation, arguments = pickle.loads(payload)
        store = self.store
        if operation == "record_computation":
            computation, _existed = store.record_computation(arguments, where="{store}")
            self.computation = computation
            return computation
        if operation == "done_entities":
            return list(store.done_entities(*arguments)) if store is not None else []
        if operation == "stale_entities":
            from ..store.staleness import PluginNow, stale_values

            output, now = arguments
            return sorted({value.entity for value in stale_values(store, output, PluginNow(*now))}) if store else []
        if operation == "finish_computation":
            computation, fields = arguments
            store.finish_computation(computation, **fields)
            return None
        raise ValueError(f"the store writer got an unknown question {operation!r}")

    def loop(self) -> None:
        import json

        while True:
            timeout = None
            if self.texts:
                timeout = max(0.0, self.last_write + FLUSH_SECONDS - time.monotonic())
            item = self.inbox.get(timeout)
            if item is _TIMEOUT:
                self.write()
                continue
            kind, payload = item
            if kind == DATA:
                self.texts.append(payload)
                self.n_rows += payload.count(b"\n")
                if self.n_rows * self.n_outputs >= FLUSH_VALUES or time.monotonic() - self.last_write >= FLUSH_SECONDS:
                    self.write()
            elif kind == INPUTS:
                self.inputs.extend(json.loads(payload.decode("utf-8", "surrogatepass")))  # a path may hold any str
            elif kind == ASK:
                _send(self.answers, ANSWER, pickle.dumps(self.ask(payload)))
            elif kind == START:
                start = json.loads(payload)
                if self.computation is None:
                    raise ValueError("the store writer got START before the computation was recorded")
                self.writer = self.store.writer(self.computation, start["attributes"], fresh=start["fresh"])
                self.n_outputs = len(start["attributes"])
                self.last_write = time.monotonic()
            elif kind == FLUSH:
                self.write()
                _send(self.answers, FLUSHED)
            elif kind == END:
                self.write()
                self.ended = True
                n_values = self.writer.n_values if self.writer is not None else 0
                _send(self.answers, DONE, json.dumps({"values": n_values}).encode())
            elif self.ended:  # the engine's goodbye after END (and its last questions): the store is closed
                return
            else:  # the input ended without END: the engine died; nothing more is written
                os._exit(0)

    def write(self) -> None:
        """The rows held, in one transaction (with the input facts of their files)."""
        self.last_write = time.monotonic()
        if not self.texts and not self.inputs:
            return
        if self.writer is None:
            raise ValueError("the store writer got values before START")
        texts, self.texts, self.n_rows = self.texts, [], 0
        inputs, self.inputs = self.inputs, []
        from ..store.writer import gc_paused

        with gc_paused():
            names, columns = parse_batch(texts, self.n_outputs)
            encoded = (names, self.writer.encode_columns(names, columns)) if names else ([], [[] for _ in range(self.n_outputs)])
        facts = [fact for fact in (input_facts(entity_id, path) for entity_id, path in inputs) if fact is not None]
        self.writer.write_encoded(encoded, facts)


def child_main() -> None:
    """The child's entry point (``sys.argv[1]``: the parent's pid); exits 0 after END, 1 after FAILED."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    _die_with(int(sys.argv[1]))
    # the protocol's pipes get private descriptors: a library printing to stdout cannot tear a frame
    inbound, answers = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    os.close(devnull)
    child = _Child(_Inbox(inbound), answers)
    try:
        child.run()
    except BaseException as exc:  # noqa: BLE001 - every failure goes to the engine, which reports it
        try:
            _send(answers, FAILED, _failure_payload(exc))
        finally:
            os._exit(1)
    os._exit(0)
