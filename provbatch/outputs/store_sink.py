"""``batch-compute --store URL``: the results go into the results store as they are computed.

Beside the TSV sink (:mod:`.tsv`), with the same rhythm: the engine hands
over each completed chunk; the sink buffers rows and writes them in one
transaction per :data:`FLUSH_VALUES` values or :data:`FLUSH_SECONDS`
seconds, and at the end. The computation's row is committed before any of
its values (status ``running``, completed at the end), so a run killed at
any moment leaves only values with their computation; a resumed run skips
the entities whose values already come from the same computation (plugin
id, version, source hash and parameters), and ``--only-stale`` computes only
the entities with stale values (:mod:`provbatch.store.staleness`).

The values are checked and encoded in the engine's thread (a bad value is
reported where it is met), and written by one writer thread, at most one
batch in flight: the engine computes the next chunks while the database
works (SQLite and the drivers release the GIL while they wait). An error of
the writer is raised at the next flush or at close.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from .sink import ResultChunk, ResultSink, SinkPlan

FLUSH_VALUES = 20_000
FLUSH_SECONDS = 2.0


class StoreSink(ResultSink):
    """Writes one run's values into a store; ``open`` checks everything before the run starts."""

    needs_rows = True

    def __init__(self, url: str, loaded: Any, parameters: dict[str, Any], definitions: Any, writes: bool = True) -> None:
        """Open the store at ``url`` and check the plugin's attributes against it.

        ``writes=False`` (a dry run) creates nothing: a store that is not there
        yet stays absent (:attr:`exists` is False, nothing is done in it), and
        missing attributes are not added.
        """
        from ..store import ComputationRecord, Store, plugin_record
        from ..store.url import display_url, store_url

        self.url = display_url(store_url(url) or url)
        opened = Store(url, create=True) if writes else Store.open_existing(url)
        self.exists = opened is not None
        self.store: Any = opened
        try:
            attributes = definitions.attributes if definitions is not None else {}
            source = str(definitions.path) if definitions is not None else "attribute definitions"
            if opened is not None:
                opened.ensure_attributes(loaded.output, attributes, source, apply=writes)
            self.plugin = plugin_record(loaded)
            self.record = ComputationRecord(
                uuid="", plugin=self.plugin, output=list(loaded.output),
                parameters=_plain(parameters), plugin_sha256=self.plugin.sha256,
                plugin_path=str(loaded.path.resolve()) if loaded.path else loaded.label,
            )
        except BaseException:
            if opened is not None:
                opened.close()
            raise
        self.writer: Any = None
        self.thread: ThreadPoolExecutor | None = None
        self.pending: Future[int] | None = None
        self.rows: list[tuple[str, Sequence[str]]] = []
        self.inputs: list[tuple[str, str, int | None, str | None, float | None]] = []
        self.files_mode: bool | None = None
        self.last_flush = time.monotonic()
        self.n_outputs = max(1, len(loaded.output))
        #: what the run takes from the store before it starts (set by open_for): its done entities
        #: are skipped (a resume), or only its stale ones computed (None: not that run)
        self.resumes = True
        self.only_stale_of: Any = None

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
        return self.store.done_entities(self.record.signature, self.record.output)

    def stale_ids(self, loaded: Any) -> set[str]:
        """Entity ids with a stale value of one of the plugin's attributes (``--only-stale``)."""
        from ..store.staleness import plugin_now, stale_values

        if not self.exists:
            return set()
        now = plugin_now(loaded, self.record.parameters)
        return {value.entity for value in stale_values(self.store, self.record.output, now)}

    def start(self, report: Any, command: list[str] | None) -> None:
        """Commit the computation's row (status running) before any value."""
        record = self.record
        record.uuid = report.uuid
        record.user_id, record.system_id, record.reason = report.user_id, report.system_id, report.reason
        record.time_start, record.command = report.time_start, command
        record.run_dir = os.path.abspath(report.run_dir) if report.run_dir else None
        record.comp_status, record.origin = "running", "batch-compute"
        self.computation, _existed = self.store.record_computation(record, where="--store")
        self.writer = self.store.writer(self.computation, record.output, fresh=True)

    # ---------------------------------------------------------------- during
    def write(self, chunk: ResultChunk) -> None:
        """A chunk's rows (:attr:`ResultChunk.stored`)."""
        self.write_rows(chunk.stored)

    def write_rows(self, rows: Sequence[tuple[str, Sequence[str], str]]) -> None:
        """Rows ``(entity_id, fields, entity)`` of one chunk; written when the buffer is full or old."""
        if not rows:
            return
        if self.files_mode is None:
            self.files_mode = os.path.isfile(rows[0][2])
        self.rows.extend((entity_id, fields) for entity_id, fields, _entity in rows)
        if self.files_mode:
            facts = (_input_facts(entity_id, entity) for entity_id, _fields, entity in rows)
            self.inputs.extend(fact for fact in facts if fact is not None)
        if len(self.rows) * self.n_outputs >= FLUSH_VALUES or time.monotonic() - self.last_flush >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Hand the buffered rows to the writer thread (one transaction); the previous batch is written first."""
        if self.rows:
            encoded = self.writer.encode_rows(self.rows)
            self._wait()
            if self.thread is None:
                self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="provbatch-store")
            self.pending = self.thread.submit(self.writer.write_encoded, encoded, self.inputs)
            self.rows, self.inputs = [], []
        self.last_flush = time.monotonic()

    def _wait(self) -> None:
        """The batch in flight is written (its error, if any, raised here)."""
        pending, self.pending = self.pending, None
        if pending is not None:
            pending.result()

    # ----------------------------------------------------------------- after
    def close(self, report: Any | None = None) -> None:
        """Write what is buffered; then the end of the computation's record (when the run got that far)."""
        try:
            if self.writer is not None:
                self.flush()
                self._wait()
                if report is not None:
                    remarks = "; ".join(report.remarks) if report.remarks else None
                    self.store.finish_computation(self.computation, time_end=report.time_end, comp_status=report.comp_status,
                                                  n_units=report.n_units, remarks=remarks)
        finally:
            if self.thread is not None:
                self.thread.shutdown(wait=True)
            if self.exists:
                self.store.close()


def _input_facts(entity_id: str, entity: str) -> tuple[str, str, int | None, str | None, float | None] | None:
    """(entity id, absolute path, size, sha256, mtime) of an input file; None if it is not readable now."""
    from ..provenance.capture import size_and_sha256

    path = os.path.abspath(entity)
    try:
        mtime = os.stat(path).st_mtime
        size, sha256 = size_and_sha256(path)
    except OSError:
        return None
    return entity_id, path, size, sha256, mtime


def _plain(parameters: dict[str, Any]) -> dict[str, Any]:
    """Parameters as the report writes them (a state object by its type name)."""
    from .report import plain

    return {str(key): plain(value) for key, value in parameters.items()}
