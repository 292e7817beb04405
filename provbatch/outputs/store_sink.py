"""``batch-compute --store URL``: the results go into the results store as they are computed.

Beside the TSV sink (:mod:`.tsv`), with the same rhythm: the engine hands
over each completed chunk, and its values are written in one transaction per
:data:`~.store_process.FLUSH_VALUES` values or :data:`~.store_process.FLUSH_SECONDS`
seconds, and at the end. The computation's row is committed before any of its
values (status ``running``, completed at the end, after the last value), so a
run killed at any moment leaves only values with their computation; a resumed
run skips the entities whose values already come from the same computation
(plugin id, version, source hash and parameters), and ``--only-stale``
computes only the entities with stale values (:mod:`provbatch.store.staleness`).

The store is the writer process's (:mod:`.store_process`): it opens it,
checks the plugin's attributes against it, answers this sink's questions
(record the computation, its done or stale entities, end its record) and
writes the values, so that the engine never imports SQLAlchemy. The engine
hands it each chunk's TSV text through a pipe (one ``writev``), and the child
parses, checks, encodes and writes it on the other core, with no GIL shared
with the engine. What the child reports (a value the store refuses:
``entity 'x', attribute 'a' (String(3)): ...``, a database error) is raised
here, unchanged, at the next chunk, flush or close; a child that dies without
a word is an :class:`~provbatch.errors.OutputWriteError`, and the end of the
computation's record (``aborted``) is then written by a connection of this
process. A dry run's child opens the store without creating it.

The command line starts the child before the engine's imports
(:meth:`~.store_process.WriterProcess.start_early`); this sink takes it.

A store that is not there yet (an SQLite file to be created:
:func:`~provbatch.store.url.new_sqlite_file`) has nothing to tell before the
run starts: no done entity, no stale one, no attribute to check against (the
engine checks the plugin's attributes against its definitions itself:
:func:`~provbatch.store.records.require_defined`). Then the sink asks and does
not wait: opening the store and recording the computation are answered while
the engine computes, and the answers (or the child's failure) are read with
the next chunk. The child's start-up (SQLAlchemy's import, ~0.4 s) is then no
longer a pause of the engine's. Elsewhere (an existing store, a server) the
answers are waited for, and a store that cannot be opened stops the run
before it starts. Measured side by side: docs/store.md, Performance.
"""

from __future__ import annotations

import json
import os
import pickle
import weakref
from collections import deque
from pathlib import Path
from typing import Any

from .sink import ResultChunk, ResultSink, SinkPlan
from .store_process import (
    ANSWER,
    ASK,
    DATA,
    DONE,
    END,
    FAILED,
    FLUSH,
    FLUSHED,
    INPUTS,
    OPEN,
    START,
    WriterDied,
    WriterProcess,
    raise_failure,
    reap,
)


class _Owed:
    """An answer the child owes: the child answers in the order asked, so each ``ANSWER`` read fills
    the oldest one still owed."""

    __slots__ = ("filled", "value")

    def __init__(self) -> None:
        self.filled = False
        self.value: Any = None

    def fill(self, payload: bytes) -> None:
        self.value = pickle.loads(payload)
        self.filled = True


class StoreSink(ResultSink):
    """Writes one run's values into a store; ``open`` checks everything before the run starts."""

    #: the rows (:attr:`ResultChunk.stored`) cost the engine a parse of every chunk's lines: read only
    #: with ``--idsproc`` (open_for), where an entity (a file, in files mode) is not its id
    needs_rows = False
    #: close waits for the writer process to commit what it holds (it trails the engine by up to a
    #: second's work in a fast run): the engine writes its records meanwhile
    waits_at_close = True

    def __init__(self, url: str, loaded: Any, parameters: dict[str, Any], definitions: Any, writes: bool = True) -> None:
        """Open the store at ``url`` (in the writer process) and check the plugin's attributes against it.

        ``writes=False`` (a dry run) creates nothing: a store that is not there
        yet stays absent (:attr:`exists` is False, nothing is done in it), and
        missing attributes are not added.
        """
        from ..store.records import ComputationRecord, plugin_record, require_defined
        from ..store.url import display_url, new_sqlite_file, store_url

        self.url = display_url(store_url(url) or url)  # for messages: its password hidden
        #: the URL as given, for this process's own connection (:meth:`_finish`, when the child failed)
        self.given_url = url
        # started by the command line before the engine's imports, when it could: its start-up overlaps ours
        self.process = WriterProcess.take() if writes else WriterProcess()
        # a sink dropped without close (a set-up error after it opened): its child goes too
        self._reaper = weakref.finalize(self, reap, self.process.process)
        self._failure: BaseException | None = None
        self._raised = False
        #: the answers asked for and not read yet, oldest first
        self._owed: deque[_Owed] = deque()
        #: the computation's record, once asked for (:meth:`start`): its id is the answer
        self._recorded: _Owed | None = None
        #: END was sent (:meth:`end`): the child writes what it holds and says DONE
        self._ended = False
        #: a new store: nothing of it is needed before the run starts, so its answers are not waited for
        self.new = writes and new_sqlite_file(url)
        try:
            self.plugin = plugin_record(loaded)
            self.record = ComputationRecord(
                uuid="", plugin=self.plugin, output=list(loaded.output),
                parameters=_plain(parameters), plugin_sha256=self.plugin.sha256,
                plugin_path=str(loaded.path.resolve()) if loaded.path else loaded.label,
            )
            attributes = definitions.attributes if definitions is not None else {}
            source = str(definitions.path) if definitions is not None else "attribute definitions"
            if self.new:  # what the child would refuse first, said before the run (a new store has no attribute)
                require_defined(list(loaded.output), (), attributes, source)
            opened = self._ask_later(OPEN, {"url": url, "create": writes, "output": list(loaded.output),
                                            "definitions": attributes, "source": source})
            #: whether the store holds anything yet (False: a dry run's store that is not there, or a new one)
            self.exists: bool = False if self.new else self._wait(opened)["exists"]
        except BaseException:
            self._reaper()
            raise
        self.files_mode: bool | None = None
        self.n_outputs = max(1, len(loaded.output))
        #: what the run takes from the store before it starts (set by open_for): its done entities
        #: are skipped (a resume), or only its stale ones computed (None: not that run)
        self.resumes = True
        self.only_stale_of: Any = None
        #: a resume's results file and its header line (open_for): the lines it holds that the store lacks
        #: are stored at :meth:`start` (the file runs ahead of the store: a killed run's values in flight,
        #: or an earlier run without the store)
        self.takes_over: tuple[Path, str] | None = None

    @classmethod
    def open_for(cls, plan: SinkPlan) -> StoreSink | None:
        """The run's store (``store``), opened and checked before anything runs; None without a store.

        Opening creates the schema in an empty database and adds the plugin's
        attributes from its definitions when the store lacks them, unless the
        plan ``writes`` nothing (a dry run, which leaves no trace).
        """
        options = plan.options
        if not options.store:
            return None
        sink = cls(options.store, plan.plugin, dict(plan.parameters), plan.definitions, writes=plan.writes)
        # a value stale because its input file changed has this run's signature: not "done" for only_stale
        sink.resumes = options.reason != "recompute" and not options.only_stale
        sink.only_stale_of = plan.plugin if options.only_stale else None
        sink.needs_rows = bool(options.idsproc)
        out = plan.opened(options.out)
        if sink.resumes and plan.writes and out not in (None, "-"):
            sink.takes_over = (Path(out), plan.header_line)
        return sink

    def only_ids(self) -> set[str] | None:
        """``only_stale``: the entities with a stale value (:meth:`stale_ids`); else None (all)."""
        return self.stale_ids(self.only_stale_of) if self.only_stale_of is not None else None

    def done_where(self) -> str:
        return "in the store"

    def destination(self) -> tuple[str, str]:
        return "store", f"{self.url} ({'existing' if self.exists else 'new: would be created'})"

    # ---------------------------------------------------------------- before
    def done_ids(self) -> Any:
        """Entity ids whose current values all come from this very computation (for resume)."""
        if not self.exists or not self.resumes:
            return set()
        return self._ask(ASK, ("done_entities", (self.record.signature, self.record.output)))

    def stale_ids(self, loaded: Any) -> set[str]:
        """Entity ids with a stale value of one of the plugin's attributes (``--only-stale``)."""
        if not self.exists:
            return set()
        # what :func:`provbatch.store.staleness.plugin_now` gives, as the fields of its PluginNow
        now = (loaded.id, str(loaded.version), loaded.sha256() if loaded.path else None, self.record.parameters)
        return set(self._ask(ASK, ("stale_entities", (self.record.output, now))))

    def start(self, report: Any, command: list[str] | None) -> None:
        """Commit the computation's row (status running) before any value; then the child may write."""
        record = self.record
        record.uuid = report.uuid
        record.user_id, record.system_id, record.reason = report.user_id, report.system_id, report.reason
        record.time_start, record.command = report.time_start, command
        record.run_dir = os.path.abspath(report.run_dir) if report.run_dir else None
        record.comp_status, record.origin = "running", "batch-compute"
        self._recorded = self._ask_later(ASK, ("record_computation", record))
        if not self.new:
            self._wait(self._recorded)
        # the child writes the values as the computation it recorded last, this one
        self._send(START, json.dumps({"attributes": list(record.output), "fresh": True}).encode())
        if self.takes_over is not None and self.takes_over[0].is_file():
            self._take_over(*self.takes_over)

    def _take_over(self, path: Path, header: str) -> None:
        """Store the lines of the results file being resumed whose entity the store lacks, as this computation's.

        The engine skips every entity of the results file, so without this a value
        in the file but not in the store would never reach it. The resume checked
        that the file comes from this very computation (plugin, version, source,
        parameters), so its lines are this computation's values. With ``--idsproc``
        in files mode, an id is not its file: their input facts are not recorded.
        """
        done = set(self.done_ids())
        batch: list[str] = []
        size = 0
        files_mode = self.files_mode
        with open(path, encoding="utf-8", errors="surrogateescape") as handle:
            for number, line in enumerate(handle):
                if not line.endswith("\n") or (number == 0 and line == header):
                    continue  # a torn last line (the engine cuts it), or this computation's header
                if line[:line.find("\t")] in done:
                    continue
                batch.append(line)
                size += len(line)
                if size >= 1 << 20:
                    self.write(ResultChunk(["".join(batch)]))
                    batch, size = [], 0
        if batch:
            self.write(ResultChunk(["".join(batch)]))
        if self.needs_rows:
            self.files_mode = files_mode  # decided by the ids above, not by entities: decided again by the first chunk

    # ---------------------------------------------------------------- during
    def write(self, chunk: ResultChunk) -> None:
        """A chunk's TSV text to the child (and, files mode, its input files), after the child's news."""
        self._check(wait=False)
        text = "".join(chunk.lines)
        if not text:
            return
        rows = chunk.stored
        if self.files_mode is None:
            # the first entity: from the rows, else the first id (without --idsproc an entity is its id)
            self.files_mode = os.path.isfile(rows[0][2] if rows else text[:text.index("\t")])
        if self.files_mode:
            entities = ([(entity_id, entity) for entity_id, _fields, entity in rows] if rows else
                        [(line.split("\t", 1)[0],) * 2 for line in text.split("\n")[:-1]])
            # before the values: the facts travel in the same transaction as the values of their entities
            self._send(INPUTS, json.dumps([(entity_id, os.path.abspath(entity)) for entity_id, entity in entities],
                                          ensure_ascii=False).encode("utf-8", "surrogatepass"))
        self._send(DATA, text.encode("utf-8", "surrogatepass"))

    def flush(self) -> None:
        """What was written so far is committed when this returns (the child says so)."""
        self._check(wait=False)
        if self.computation is None:
            return
        self._send(FLUSH, b"")
        self._check(wait=True, until=FLUSHED)

    def _send(self, kind: bytes, payload: bytes) -> None:
        if self._failure is not None:
            self._raise()
        try:
            self.process.send(kind, payload)
        except BrokenPipeError:
            self._check(wait=True)  # the child said why before it went, or it died: raised there
            raise

    @property
    def computation(self) -> int | None:
        """The id of the computation's record (None before :meth:`start`, or when the child failed before
        it answered); waited for when it is still owed."""
        recorded = self._recorded
        if recorded is None or (not recorded.filled and self._failure is not None):
            return None
        return self._wait(recorded)

    def _ask(self, kind: bytes, question: Any) -> Any:
        """A question to the child (``OPEN`` or ``ASK``, pickled), and its answer; its failure is raised here."""
        return self._wait(self._ask_later(kind, question))

    def _ask_later(self, kind: bytes, question: Any) -> _Owed:
        """A question to the child, its answer owed: read by a later :meth:`_check` (:meth:`_wait` for it)."""
        self._send(kind, pickle.dumps(question))
        owed = _Owed()
        self._owed.append(owed)
        return owed

    def _wait(self, owed: _Owed) -> Any:
        """The answer ``owed``, read now if it was not yet; the child's failure is raised here."""
        if not owed.filled:
            self._check(wait=True, until=owed)
        return owed.value

    def _check(self, wait: bool, until: bytes | _Owed | None = None) -> bytes:
        """Read the child's messages (an answer fills the oldest one owed); its failure (or death) is raised
        here. ``wait``: until ``until`` (a kind, whose payload is returned, or an answer owed)."""
        if self._failure is not None:
            self._raise()
        while True:
            if isinstance(until, _Owed) and until.filled:
                return b""
            try:
                answer = self.process.answer(wait)
            except WriterDied as died:
                from ..errors import OutputWriteError

                self._failure = OutputWriteError(f"{self.url}: cannot write the results: {died}; the values it had "
                                                 "not committed are not in the store")
                self._raise()
            if answer is None:
                return b""
            kind, payload = answer
            if kind == FAILED:
                try:
                    raise_failure(payload, self.url)
                except BaseException as exc:  # noqa: BLE001 - kept, raised now and not again at close
                    self._failure = exc
                self._raise()
            if kind == ANSWER:
                self._owed.popleft().fill(payload)
            elif wait and kind == until:
                return payload

    def _raise(self) -> None:
        self._raised = True
        assert self._failure is not None
        raise self._failure

    # ----------------------------------------------------------------- after
    def end(self) -> None:
        """The computing is over: the child is told now (END) and writes what it holds while the engine
        writes its report and run record; :meth:`close` waits for it. A failure is kept for close."""
        self._send_end()

    def _send_end(self) -> None:
        if self._failure is None and not self._ended:
            self._ended = True
            raised_before = self._raised
            try:
                self._send(END, b"")  # the child writes what it holds, says DONE
            except BaseException as exc:  # noqa: BLE001 - close finishes the record first, then raises it
                self._raised = raised_before  # not seen by the engine yet: close raises it
                if self._failure is None:
                    self._failure = exc

    def close(self, report: Any | None = None) -> None:
        """The child writes what it holds; then the end of the computation's record (when the run got that
        far), whose status is ``aborted`` when the child failed; then the child closes the store and exits.
        A failure not raised yet is raised."""
        raised_before = self._raised  # the engine saw the failure already: not raised twice
        try:
            self._send_end()  # a sink closed without end (a run that stopped before it started)
            if self._failure is None:
                try:
                    self._check(wait=True, until=DONE)
                except BaseException as exc:  # noqa: BLE001 - the record is finished first
                    if self._failure is None:
                        self._failure = exc
            if report is not None and self.computation is not None:
                remarks = list(report.remarks) if report.remarks else []
                status = report.comp_status
                if self._failure is not None and not raised_before:
                    status = "aborted"
                    remarks.append(f"store: {' '.join(str(self._failure).split())}")
                fields = {"time_end": report.time_end, "comp_status": status, "n_units": report.n_units,
                          "remarks": "; ".join(remarks) or None}
                self._finish(fields)
        finally:
            self.process.abandon()  # the end of its input: it closes the store and exits, waited for here
            self._reaper.detach()
        if self._failure is not None and not raised_before:
            self._raise()

    def _finish(self, fields: dict[str, Any]) -> None:
        """The end of the computation's record: by the child, or, when it failed (it has exited), by a
        connection of this process's own."""
        assert self.computation is not None
        if self._failure is None:
            try:
                self._ask(ASK, ("finish_computation", (self.computation, fields)))
                return
            except BaseException as exc:  # noqa: BLE001 - raised by close; the record is finished here
                self._failure = exc
                fields = {**fields, "comp_status": "aborted",
                          "remarks": "; ".join(filter(None, [fields["remarks"], f"store: {' '.join(str(exc).split())}"]))}
        from ..store import Store

        try:
            store = Store(self.given_url)
            try:
                store.finish_computation(self.computation, **fields)
            finally:
                store.close()
        except Exception as exc:  # noqa: BLE001 - the child's failure is the error; the record stays "running"
            assert self._failure is not None
            self._failure.add_note(f"the computation's record could not be ended either: {exc}")


def _plain(parameters: dict[str, Any]) -> dict[str, Any]:
    """Parameters as the report writes them (a state object by its type name)."""
    from .report import plain

    return {str(key): plain(value) for key, value in parameters.items()}
