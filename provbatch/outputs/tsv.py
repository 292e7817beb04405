"""The results TSV and the logs TSV: appending safely, resuming.

Results: ``entity_id<TAB>value<TAB>value...`` in OUTPUT order, one line per
entity. Logs: ``entity_id<TAB>message`` per log string. Lines are written
whole, a chunk at a time, and flushed, so that a killed run leaves at most one
torn last line, which :func:`repair_torn_tail` removes before appending again.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from ..errors import OutputClosed, OutputWriteError, UsageError
from ..execution.capture import unredirected
from ..inputs.seen_ids import SeenIds
from .sink import ResultChunk, ResultSink, SinkPlan


def repair_torn_tail(path: Path) -> int:
    """Cut a last line that has no newline (left by a killed run); returns the bytes removed."""
    with open(path, "r+b") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return 0
        position = size
        while position > 0:
            step = min(65536, position)
            position -= step
            handle.seek(position)
            block = handle.read(step)
            cut = block.rfind(b"\n")
            if cut >= 0:
                keep = position + cut + 1
                handle.truncate(keep)
                return size - keep
        handle.truncate(0)
        return size


def existing_ids(path: Path, into: SeenIds | None = None, header: str | None = None) -> SeenIds:
    """The entity ids already in a results file (first column), to skip them on resume.

    ``header`` is the ``--header`` line of this computation: a first line equal to it is no entity.
    """
    seen = into if into is not None else SeenIds()
    with open(path, encoding="utf-8", errors="replace") as handle:
        if header is not None:
            first = handle.readline()
            if first and first != header and first.endswith("\n"):
                entity_id = first.split("\t", 1)[0].rstrip("\n")
                if entity_id:
                    seen.add(entity_id)
        for line in handle:
            if not line.endswith("\n"):
                continue  # a torn last line (killed run): that entity is not done
            entity_id = line.split("\t", 1)[0].rstrip("\n")
            if entity_id:
                seen.add(entity_id)
    return seen


class TsvSink(ResultSink):
    """Appends lines to a file (or writes to a standard stream), flushing after each batch.

    The results sink (:meth:`write` takes a chunk's TSV lines) and the logs sink (:meth:`write_lines`).
    Made directly, it opens its file at once; a run's results sink (:meth:`open_for`) opens it
    when the engine opens the outputs (:meth:`open`), after it locked and claimed them.
    """

    def __init__(self, path: str | Path | None, default: IO[str], what: str, header: str | None = None,
                 *, open_now: bool = True) -> None:
        """``header``: a first line written when the file is new or empty (``--header``); never into an existing file."""
        self.path = Path(path) if path is not None and str(path) != "-" else None
        self.what = what
        self.header = header
        self._default = default
        #: the header line a resume recognises as no entity (this computation's, written or not)
        self.known_header = header
        #: how messages show the file: as the user gave it (the path opened is absolute)
        self.shown = str(self.path) if self.path is not None else "-"
        self._dup = self._owned = False
        if open_now:
            self.open()

    @classmethod
    def open_for(cls, plan: SinkPlan) -> TsvSink | None:
        """The results TSV: ``out``, else stdout for the command line (``write_std_streams``), else none."""
        options = plan.options
        if not (options.out or options.write_std_streams):
            return None
        sink = cls(plan.opened(options.out), sys.stdout, "results", header=plan.header_line if options.header else None,
                   open_now=False)
        sink.known_header = plan.header_line
        if sink.path is not None:
            sink.shown = str(Path(options.out))  # type: ignore[arg-type]
        return sink

    def add_done_ids(self, into: SeenIds) -> None:
        """The ids the results file holds (a resume skips them), read into ``into`` as they are read
        (millions of them: no other copy); none for a new file or a stream."""
        if self.path is not None and self.path.is_file():
            existing_ids(self.path, into=into, header=self.known_header)

    def done_where(self) -> str:
        return self.shown

    def destination(self) -> tuple[str, str]:
        where = "stdout" if self.path is None else f"{self.shown} ({'appending' if self.path.is_file() else 'new file'})"
        return "results", where

    def open(self) -> None:
        """Open the file for appending (a torn last line cut first), or dup the standard stream."""
        header, what = self.header, self.what
        if self.path is None:
            # a dup of stdout/stderr: the driver may hold fds 1 and 2 on the plugin-output capture meanwhile
            self._handle: IO[str] = unredirected(self._default)
            self._dup = self._handle is not self._default
            self._owned = False
            if header is not None:
                self._handle.write(header)
            return
        self._dup = False
        try:
            if self.path.exists():
                repair_torn_tail(self.path)
            # a log line may quote odd text (a lone surrogate in an id): escaped, never a crash; results are checked before
            # the sink's handle, kept open while it writes, closed by close()
            self._handle = open(self.path, "a", encoding="utf-8", newline="\n",  # noqa: SIM115
                                errors="backslashreplace" if what == "logs" else "strict")
            if header is not None and self._handle.tell() == 0:
                self._handle.write(header)
                self._handle.flush()
        except IsADirectoryError as exc:
            raise UsageError(f"{self.path}: is a directory, cannot write the {what} there") from exc
        except OSError as exc:
            raise UsageError(f"{self.path}: cannot write the {what}: {exc.strerror or exc}") from exc
        self._owned = True

    def write(self, chunk: ResultChunk) -> None:
        """A chunk's result lines, appended and flushed (whole lines: a kill leaves at most one torn line)."""
        self.write_lines(chunk.lines)

    def write_lines(self, lines: Iterable[str]) -> None:
        text = "".join(lines)
        if not text:
            return
        try:
            self._handle.write(text)
            self._handle.flush()
        except BrokenPipeError as exc:
            if self._owned:
                raise
            # the reader of stdout went away (| head): nothing more can be written there;
            # point the fd at /dev/null so that the interpreter's last flush stays quiet
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._handle.fileno())
            os.close(devnull)
            raise OutputClosed(f"the reader of the {self.what} closed its end") from exc
        except OSError as exc:
            where = self.path if self.path is not None else f"<std{'out' if self.what == 'results' else 'err'}>"
            raise OutputWriteError(f"{where}: cannot write the {self.what}: {exc.strerror or exc}") from exc

    def flush(self) -> None:
        """Nothing waits: every write is flushed."""

    def end(self) -> None:
        """The computing is over: close the file (an error makes the run aborted; :meth:`close` is then a no-op)."""
        try:
            self.close()
        finally:
            self._owned = self._dup = False

    def close(self, report: Any = None) -> None:
        """Close the file (a standard stream stays open)."""
        if self._dup:
            self._dup = False
            try:
                self._handle.close()  # flushed after each write: only the fd goes
            except OSError:
                pass
            return
        if self._owned:
            try:
                self._handle.close()
            except OSError as exc:
                raise OutputWriteError(f"{self.path}: cannot write the {self.what}: {exc.strerror or exc}") from exc


def keep_log_lines_of(path: Path, entity_ids: SeenIds) -> int:
    """Rewrite a logs TSV keeping only the lines of the given entities; returns the lines dropped.

    On resume, the log lines of entities whose results never reached the
    results file (a killed run) go, since those entities are logged again.
    """
    dropped = 0
    tmp = path.with_name(path.name + ".tmp")
    with open(path, encoding="utf-8", errors="replace", newline="") as source, open(tmp, "w", encoding="utf-8", newline="") as target:
        for line in source:
            # captured plugin output (empty id, see execution/capture.py) stays: it was written
            if line.endswith("\n") and (line.startswith("\t") or line.split("\t", 1)[0] in entity_ids):
                target.write(line)
            else:
                dropped += 1
    if dropped:
        os.replace(tmp, path)
    else:
        tmp.unlink()
    return dropped
