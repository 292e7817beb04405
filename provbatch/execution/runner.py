"""Runs chunks of entities through the plugin inside one worker (or the driver).

The same :class:`ChunkRunner` serves every backend, so the semantics of a
compute call (parameters, state, result checks, timeouts, failure capture)
are written once. Results are checked and formatted to TSV fields here, in
the worker: the driver only writes lines, and only text crosses processes,
so a result that cannot be serialized fails its entity, not the worker.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from .. import context
from ..contract.parameters import STATE
from ..contract.results import ResultValueError, fast_line_source, format_logs, make_row_formatter
from ..contract.validation import OPTIONAL_CONSTANTS, OPTIONAL_FUNCTIONS
from ..plugins import registry
from ..plugins.base import PluginSpec
from .capture import OutputCapture

#: one entity's outcome: (entity_id, TSV fields or None if it failed, log strings, error)
#: error = (error class, message, traceback text) or None
Outcome = tuple[str, "list[str] | None", list[str], "tuple[str, str, str] | None"]
#: an entity to compute: (entity_id, entity, attempt number)
Item = tuple[str, str, int]
Chunk = list[Item]
#: what a chunk's computation gives: its result lines as one string (``entity_id<TAB>field...<LF>``
#: per entity, in chunk order) when every entity succeeded with a value and without logs (almost
#: every chunk of cheap entities), else one outcome per entity
ChunkResult = str | list[Outcome]

#: exit status of a worker that ended itself because a compute hung in native code
EXIT_TIMEOUT = 75
#: how long after its timeout a compute that ignores the alarm (native code) gets before the worker ends itself
HARD_TIMEOUT_GRACE = 2.0


class ProcessExit(BaseException):
    """compute called os._exit or os.abort while computing in the driver (see :class:`_ExitGuard`)."""


class _ExitGuard:
    """While the driver itself computes, os._exit and os.abort fail the entity instead of ending the batch.

    Only in the driver's own process: a child the plugin forks keeps the real
    functions (its os._exit must end it). Workers need no guard: their death is
    already a failure of the entity they computed.
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.real_exit, self.real_abort = os._exit, os.abort

    def _exit(self, code: int) -> None:
        if os.getpid() != self.pid:
            self.real_exit(code)
        raise ProcessExit(f"compute called os._exit({code})")

    def _abort(self) -> None:
        if os.getpid() != self.pid:
            self.real_abort()
        raise ProcessExit("compute called os.abort()")

    def __enter__(self) -> None:
        # mypy refuses replacing a module's functions; the worker swaps os._exit/os.abort for raising ones during compute
        os._exit, os.abort = self._exit, self._abort  # type: ignore[assignment]

    def __exit__(self, *_exc: Any) -> None:
        os._exit, os.abort = self.real_exit, self.real_abort


def _exit_failure(exc: BaseException) -> tuple[str, str, str]:
    if isinstance(exc, SystemExit):
        return ("SystemExit", f"compute called sys.exit({exc.code!r})", traceback.format_exc())
    return ("ProcessExit", str(exc), traceback.format_exc())


class Timeout(BaseException):
    """A compute ran past --timeout. A BaseException, so that a plugin's
    ``except Exception`` cannot swallow it."""


@dataclass(frozen=True)
class RunnerConfig:
    """What every worker needs, sent once per worker."""

    spec: PluginSpec
    params: dict[str, Any]  # resolved parameters, without 'state'
    datatypes: tuple[str | None, ...]  # of the OUTPUT attributes, in order
    output_names: tuple[str, ...] = ()
    uses_state: bool = False  # compute gets state= (initialize exists, or the user gave a state)
    per_worker_state: bool = False  # this worker runs initialize and finalize itself
    initial_state: Any = None  # the user's state parameter, for a per-worker initialize
    timeout: float | None = None  # seconds per entity
    #: end this process when a compute ignores its timeout (workers yes, the driver never)
    hard_timeout: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _wrong_shape(value: Any) -> ResultValueError:
    return ResultValueError(f"compute must return a 2-tuple (results, logs), got {type(value).__name__}")


class _Deadline:
    """Per-entity timeout: SIGALRM interrupts Python code (and a Bash plugin's
    wait); a watchdog thread ends the worker when native code ignores it."""

    def __init__(self, seconds: float, cancel: Callable[[], None] | None, hard: bool) -> None:
        self.seconds = seconds
        self.cancel = cancel
        self.in_compute = False
        self.started = 0.0
        self.use_alarm = threading.current_thread() is threading.main_thread()
        if self.use_alarm:
            signal.signal(signal.SIGALRM, self._on_alarm)
        if hard:
            threading.Thread(target=self._watch, name="provbatch-watchdog", daemon=True).start()

    def _on_alarm(self, _signum: int, _frame: Any) -> None:
        if self.in_compute:
            self._cancel_plugin()
            raise Timeout(f"compute ran longer than the timeout of {self.seconds:g} s")

    def _cancel_plugin(self) -> None:
        if self.cancel is not None:
            try:
                self.cancel()
            except Exception:  # noqa: BLE001 - best effort: the timeout is reported anyway
                pass

    def _watch(self) -> None:
        limit = self.seconds + HARD_TIMEOUT_GRACE
        while True:
            time.sleep(min(0.5, self.seconds / 4 + 0.05))
            if self.in_compute and time.monotonic() - self.started > limit:
                self._cancel_plugin()
                os._exit(EXIT_TIMEOUT)  # the driver reports the entity as timed out

    def arm(self) -> None:
        self.started = time.monotonic()
        self.in_compute = True
        if self.use_alarm:
            signal.setitimer(signal.ITIMER_REAL, self.seconds)

    def disarm(self) -> None:
        self.in_compute = False
        if self.use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)


#: the loop of :meth:`ChunkRunner.run_chunk` without --timeout, the engine's hot path (once per entity):
#: compiled per OUTPUT so that the row's common case is inline (see contract.results.fast_line_source);
#: locals only, no per-entity call of ours in the common case, and no call for the common "no logs".
#: An entity in the common case (a value, no logs) leaves only its result line (a string: no tuple,
#: no list, nothing for the garbage collector); any other entity leaves its outcome tuple in its place.
_CHUNK_LOOP = """
def run_chunk(chunk):
    lines = []
    append = lines.append
    mixed = False
    started = perf_counter()
    current = None
    for entity_id, entity, attempt in chunk:
        if attempt is not current:  # the attempt number changes only around retried entities
            context.attempt = current = attempt
        try:
            value = call(entity)
            if type(value) is not tuple and type(value) is not list or len(value) != 2:
                if not isinstance(value, (tuple, list)) or len(value) != 2:
                    raise wrong_shape(value)
            results, logs = value
            if logs is None or (type(logs) is list and not logs):
{fast}                outcome = (entity_id, format_row(results), [], None)
            else:
                outcome = (entity_id, format_row(results), format_logs(logs), None)
        except Timeout as exc:  # a Timeout raised by a plugin itself
            outcome = (entity_id, None, [], ("Timeout", str(exc), ""))
        except Exception as exc:  # the plugin's failure is this entity's outcome
            outcome = (entity_id, None, [], (type(exc).__name__, str(exc), traceback.format_exc()))
        except (SystemExit, ProcessExit) as exc:  # only reached in the driver (workers let SystemExit end them)
            if runner.exit_guard is None:
                raise
            outcome = (entity_id, None, [], exit_failure(exc))
        append(outcome)
        mixed = True
    seconds = perf_counter() - started
    if mixed:
        return with_outcomes(chunk, lines), seconds
    return "".join(lines), seconds
"""


def _compile_chunk_loop(runner: ChunkRunner, datatypes: tuple[str | None, ...]) -> Callable[[Chunk], tuple[ChunkResult, float]]:
    """:data:`_CHUNK_LOOP` for this runner's compute and OUTPUT datatypes."""
    fast = fast_line_source(datatypes, "results", "entity_id", " " * 16, "append(line); continue")
    source = _CHUNK_LOOP.replace("{fast}", fast or "")
    namespace: dict[str, Any] = {
        "call": runner._call, "format_row": runner.format_row, "format_logs": format_logs, "context": context,
        "wrong_shape": _wrong_shape, "Timeout": Timeout, "traceback": traceback, "perf_counter": time.perf_counter,
        "ProcessExit": ProcessExit, "exit_failure": _exit_failure, "runner": runner, "with_outcomes": _with_outcomes,
    }
    exec(compile(source, f"<provbatch chunk loop {list(datatypes)}>", "exec"), namespace)  # noqa: S102 - our own source
    return namespace["run_chunk"]


def _with_outcomes(chunk: Chunk, lines: list[Any]) -> list[Outcome]:
    """The outcomes of a chunk whose loop left result lines (common entities) and outcomes (the others)."""
    return [line if type(line) is tuple else (item[0], line[len(item[0]) + 1:-1].split("\t"), [], None)
            for item, line in zip(chunk, lines)]


def outcomes_of_lines(chunk: Chunk, text: str) -> list[Outcome]:
    """The outcomes of a chunk computed whole in the common case, from its result lines (``text``).

    Each line is ``entity_id<TAB>fields<LF>``, in the order of the chunk; fields of the common
    case hold no TAB and no LF, while an id may hold anything (the driver refuses such rows
    later): each id is therefore skipped by its length, and its fields end at the next LF.
    """
    outcomes: list[Outcome] = []
    append = outcomes.append
    find = text.index
    at = 0
    for item in chunk:
        start = at + len(item[0]) + 1
        end = find("\n", start)
        append((item[0], text[start:end].split("\t"), [], None))
        at = end + 1
    if at != len(text):
        raise ValueError(f"the result lines of a chunk of {len(chunk)} entities do not match its entities")
    return outcomes


class ChunkRunner:
    """The plugin loaded in one process, with its state, computing chunks."""

    def __init__(self, config: RunnerConfig, state: Any = None, module: ModuleType | None = None,
                 capture: OutputCapture | None = None) -> None:
        self.config = config
        #: catches what the plugin writes to fds 1 and 2 (see :mod:`.capture`); :meth:`take_output` drains it
        self.capture = capture if capture is not None else OutputCapture()
        self.module = module or registry.load_spec(config.spec, OPTIONAL_CONSTANTS, OPTIONAL_FUNCTIONS)
        if config.per_worker_state:
            init_params = dict(config.params)
            if config.initial_state is not None:
                init_params[STATE] = config.initial_state
            with self.capture:
                state = self.module.initialize(**init_params)
        self.state = state
        self.format_row = make_row_formatter(config.datatypes, config.output_names)
        #: in the driver (not hard_timeout), exits in compute fail the entity instead of the batch
        self.exit_guard = _ExitGuard() if not config.hard_timeout else None
        self.deadline = (
            _Deadline(config.timeout, getattr(self.module, "__provbatch_cancel__", None), config.hard_timeout)
            if config.timeout
            else None
        )
        compute = self.module.compute
        params = config.params
        if config.uses_state:
            self._call: Callable[[str], Any] = lambda entity: compute(entity, state=self.state, **params)
        elif params:
            self._call = lambda entity: compute(entity, **params)
        else:
            self._call = compute
        self._run_chunk = _compile_chunk_loop(self, config.datatypes)

    def take_output(self) -> list[str]:
        """The log lines of what the plugin wrote to stdout/stderr since the last call."""
        return self.capture.take()

    def run_chunk(self, chunk: Chunk) -> tuple[list[Outcome], float]:
        """Compute every entity of the chunk; a failing entity never stops the others.

        fds 1 and 2 point at the capture meanwhile: nothing the plugin writes
        reaches the results stream (:meth:`take_output` hands it over)."""
        result, seconds = self.compute_chunk(chunk)
        return (outcomes_of_lines(chunk, result) if isinstance(result, str) else result), seconds

    def compute_chunk(self, chunk: Chunk) -> tuple[ChunkResult, float]:
        """:meth:`run_chunk`, giving the common chunk as its result lines (:data:`ChunkResult`): what the
        serial and pool backends hand to the driver, which writes that text as it is."""
        with self.capture:
            if self.exit_guard is not None:
                with self.exit_guard:
                    return self._run_chunk_with_deadline(chunk) if self.deadline is not None else self._run_chunk(chunk)
            if self.deadline is not None:
                return self._run_chunk_with_deadline(chunk)
            return self._run_chunk(chunk)

    def _run_chunk_with_deadline(self, chunk: Chunk) -> tuple[list[Outcome], float]:
        call = self._call
        format_row = self.format_row
        deadline = self.deadline
        assert deadline is not None
        outcomes: list[Outcome] = []
        append = outcomes.append
        started = time.perf_counter()
        for entity_id, entity, attempt in chunk:
            context.attempt = attempt
            try:
                deadline.arm()
                try:
                    value = call(entity)
                finally:
                    deadline.disarm()
                if not isinstance(value, (tuple, list)) or len(value) != 2:
                    raise _wrong_shape(value)
                results, logs = value
                append((entity_id, format_row(results), format_logs(logs), None))
            except Timeout as exc:
                append((entity_id, None, [], ("Timeout", str(exc), "")))
            except Exception as exc:  # the plugin's failure is this entity's outcome
                append((entity_id, None, [], (type(exc).__name__, str(exc), traceback.format_exc())))
            except (SystemExit, ProcessExit) as exc:  # only reached in the driver (workers let SystemExit end them)
                if self.exit_guard is None:
                    raise
                append((entity_id, None, [], _exit_failure(exc)))
        return outcomes, time.perf_counter() - started

    def finish(self, return_state: bool) -> Any:
        """End of the batch in this worker: finalize a per-worker state, or hand the state back for merge."""
        try:
            if self.config.per_worker_state and self.module.finalize is not None:
                with self.capture:
                    self.module.finalize(self.state)
                return None
            return self.state if return_state else None
        finally:
            self.cleanup()

    def cleanup(self) -> None:
        """Let the plugin's loader release what it holds (child processes of a Bash plugin, ...)."""
        cleanup = getattr(self.module, "__provbatch_cleanup__", None)
        if callable(cleanup):
            cleanup()
