"""Where entities come from, streamed: an ids file (or a TSV column, or stdin) or a glob.

Input is never loaded whole: a batch may have ten million ids. Each entity is
yielded as ``(entity_id, entity)``: ``entity`` is what compute receives,
``entity_id`` is what the output rows and the skip and resume lists are keyed
by. With ``--idsproc`` they follow prenacs 1.2: for an ids file (or an
iterable) both are ``compute_id(line)``; for ``--glob`` compute gets the file
path and the row ``compute_id(path)`` (e.g. a file path to its accession).
"""

from __future__ import annotations

import codecs
import glob as globlib
import hashlib
import io
import operator
import os
import stat
import sys
from collections.abc import Callable, Container, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice, repeat
from pathlib import Path
from typing import Any

from ..errors import UsageError, literal
from .seen_ids import SeenIds


@dataclass(frozen=True)
class EntitySource:
    """The user's description of the entities."""

    path: str | None = None  # an ids/TSV file, or "-" for stdin
    column: int = 1  # 1-based column of ``path``
    pattern: str | None = None  # --glob PATTERN: each matching file is an entity

    def describe(self) -> str:
        return f"glob {self.pattern}" if self.pattern else ("stdin" if self.path == "-" else str(self.path))


def is_stream(path: str) -> bool:
    """Whether an input can be read only once (stdin, a pipe, a FIFO, /dev/stdin, <(...)): no pre-scan, no re-read."""
    if path == "-":
        return True
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def _display(path: str) -> str:
    return "<stdin>" if path == "-" else path


def _open_binary(path: str) -> Any:
    if path == "-":
        return sys.stdin.buffer
    try:
        return open(path, "rb")
    except FileNotFoundError as exc:
        raise UsageError(f"{path}: entities file not found") from exc
    except IsADirectoryError as exc:
        raise UsageError.naming(f"{literal(path)}: is a directory, not an entities file "
                                "(use {pattern} for files in a directory)") from exc
    except OSError as exc:
        raise UsageError(f"{path}: cannot read entities file: {exc.strerror or exc}") from exc


@dataclass
class ScanResult:
    """One streamed pass over an input file: what run_config.json and the progress bar need."""

    size: int
    sha256: str
    lines: int


def scan_text_file(path: str, what: str = "entities file") -> ScanResult:
    """Check that a file is UTF-8 text, in one pass that also gives its size, sha256 and line count.

    Run before anything is computed, so that a bad byte stops the batch with its
    line number instead of half-way through (a stream cannot be scanned ahead:
    there the line is named when it is read, see :func:`iter_column`).
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    digest = hashlib.sha256()
    size = lines = 0
    with _open_binary(path) as handle:
        while True:
            block = handle.read(1 << 20)
            final = not block
            pending = decoder.getstate()[0]  # the undecoded end of the previous block, decoded with this one
            try:
                decoder.decode(block, final)
            except UnicodeDecodeError as exc:
                at = max(exc.start - len(pending), 0)
                line = lines + block[:at].count(b"\n") + 1
                raise UsageError(f"{path}:{line}: not UTF-8 text ({exc.reason}): the {what} must be UTF-8") from exc
            if final:
                break
            digest.update(block)
            size += len(block)
            lines += block.count(b"\n")
    return ScanResult(size, digest.hexdigest(), lines)


class StreamDigest:
    """sha256 and size of a stream, computed while it is read (a pipe cannot be read twice)."""

    def __init__(self) -> None:
        self._digest = hashlib.sha256()
        self.size = 0
        self.complete = False

    def update(self, data: bytes) -> None:
        self._digest.update(data)
        self.size += len(data)

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()


def _text_lines(path: str, digest: StreamDigest | None) -> Iterator[tuple[int, str]]:
    """(line number, text) of each line; lines end at LF only (a CR inside a line stays in it); BOM dropped.

    A regular file (already checked by :func:`scan_text_file`) is read in text
    mode, fast; a stream in binary, line by line, so that a bad byte is named by
    its line and the digest sees every byte.
    """
    if not is_stream(path):
        with open(path, encoding="utf-8-sig", newline="\n") as handle:
            yield from enumerate(handle, 1)
        return
    handle = _open_binary(path)
    try:
        for lineno, data in enumerate(handle, 1):
            if digest is not None:
                digest.update(data)
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise UsageError(f"{_display(path)}:{lineno}: not UTF-8 text ({exc.reason}): the entities must be UTF-8 "
                                 f"(the lines before it were computed)") from exc
            if lineno == 1 and text.startswith("\ufeff"):
                text = text[1:]
            yield lineno, text
        if digest is not None:
            digest.complete = True
    finally:
        if handle is not sys.stdin.buffer:
            handle.close()


def iter_column(path: str, column: int = 1, what: str = "entities file", digest: StreamDigest | None = None) -> Iterator[str]:
    """The stripped values of a 1-based column of a text/TSV file; blank lines are skipped."""
    if column < 1:
        raise UsageError.naming(f"{{column}} must be 1 or more, got {column}")
    for lineno, line in _text_lines(path, digest):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        if column == 1:
            value = line.split("\t", 1)[0].strip()
        else:
            fields = line.split("\t")
            if column > len(fields):
                raise UsageError.naming(f"{literal(_display(path))}:{lineno}: {what} has {len(fields)} column(s), "
                                        f"{{column}} is {column}")
            value = fields[column - 1].strip()
        if value:
            yield value


def iter_glob(pattern: str) -> Iterator[str]:
    """The files matching ``pattern`` (``**`` recurses), sorted so that runs are repeatable."""
    return iter(sorted(p for p in globlib.glob(pattern, recursive=True) if Path(p).is_file()))


@dataclass
class EntityCounts:
    """What the stream dropped, for the report."""

    skipped: int = 0  # in --skip or already in --out
    duplicates: int = 0  # the same entity again
    #: other entities that --idsproc mapped to the id of an earlier one (not computed: the id is taken)
    id_collisions: int = 0
    #: up to three (entity, id, the earlier entity with that id), for the warning
    collision_examples: list[tuple[str, str, str]] = field(default_factory=list)
    read: int = 0  # set when the stream ends


@dataclass
class EntityStream:
    """The entities to compute, streamed, with skip, resume and de-duplication applied."""

    #: an :class:`EntitySource`, or any iterable of entity strings (the Python API)
    source: EntitySource | Iterable[str]
    idsproc: Callable[[str], str] | None = None
    skip: SeenIds = field(default_factory=SeenIds)
    counts: EntityCounts = field(default_factory=EntityCounts)
    #: when set, only these ids are computed, the others counted as skipped (``--only-stale``)
    only: Container[str] | None = None
    #: trial runs: the first ``limit`` entities to compute, or ``sample`` of them drawn with ``seed``
    limit: int | None = None
    sample: int | None = None
    seed: int | None = None
    #: sha256 and size of a stream source, filled as it is read (run_config.json)
    digest: StreamDigest = field(default_factory=StreamDigest)

    @property
    def files_mode(self) -> bool:
        """prenacs' "files" mode (--glob): compute gets the file, the row the processed id.
        Else "ids" mode: compute gets the processed id too."""
        return isinstance(self.source, EntitySource) and bool(self.source.pattern)

    def raw(self) -> Iterator[str]:
        if not isinstance(self.source, EntitySource):
            return filter(str.strip, map(str, self.source))  # blank entities are dropped; in C, no Python frame per entity
        if self.source.pattern:
            return iter_glob(self.source.pattern)
        if self.source.path is None:
            raise UsageError("no entities given: the EntitySource has neither a path (a file, '-' for stdin) nor a pattern")
        return iter_column(self.source.path, self.source.column, digest=self.digest)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for entity_id, entity, _attempt in self.items():
            yield entity_id, entity

    def items(self) -> Iterator[tuple[str, str, int]]:
        """The scheduler's items; for a trial run only the first ``limit``, or a ``sample`` in input order.

        The sample is drawn by reservoir sampling (one pass, ``sample`` items
        in memory), so every entity to compute has the same chance and the
        same seed draws the same entities from the same input.
        """
        if self.limit is not None:
            if self.idsproc is None and self.only is None:
                return ItemReader(self, self.limit)
            import itertools

            return itertools.islice(self._all_items(), self.limit)
        if self.sample is not None:
            return self._sampled(self.sample)
        return self._all_items()

    def _sampled(self, size: int) -> Iterator[tuple[str, str, int]]:
        import random

        rng = random.Random(self.seed)
        reservoir: list[tuple[int, tuple[str, str, int]]] = []
        for index, item in enumerate(self._all_items()):
            if index < size:
                reservoir.append((index, item))
            else:
                slot = rng.randrange(index + 1)
                if slot < size:
                    reservoir[slot] = (index, item)
        reservoir.sort(key=lambda entry: entry[0])
        for _index, item in reservoir:
            yield item

    def _all_items(self) -> Iterator[tuple[str, str, int]]:
        """``(entity_id, entity, 1)``: the scheduler's items (first attempt), straight from the input.

        Without --idsproc an :class:`ItemReader`, which also gives whole chunks
        (:meth:`ItemReader.take`): the scheduler reads a chunk at a time, so that reading,
        de-duplication and the skip list cost no Python step per entity in the common case.
        ``counts.read`` grows as entities are read.
        """
        if self.idsproc is not None:
            return self._mapped_items(self.idsproc)
        if self.only is not None:
            return self._items_one_by_one()
        return ItemReader(self)

    def _items_one_by_one(self) -> Iterator[tuple[str, str, int]]:
        """The items entity by entity, for ``only`` (--only-stale: ids outside it are skipped)."""
        seen = SeenIds()
        counts = self.counts
        idsproc = None
        skip = self.skip if len(self.skip) else None  # filled before the stream starts
        only = self.only
        exact = seen.exact_ids
        limit = seen.exact_limit
        read = 0
        try:
            for entity in self.raw():
                read += 1
                entity_id = idsproc(entity) if idsproc else entity
                if (skip is not None and entity_id in skip) or (only is not None and entity_id not in only):
                    counts.skipped += 1
                elif exact is not None:
                    if entity_id in exact:
                        counts.duplicates += 1
                        continue
                    exact.add(entity_id)
                    if len(exact) > limit:
                        seen.make_compact()
                        exact = None
                    yield entity_id, entity, 1
                elif not seen.add(entity_id):
                    counts.duplicates += 1
                else:
                    yield entity_id, entity, 1
        finally:
            counts.read += read

    def _mapped_items(self, idsproc: Callable[[str], str]) -> Iterator[tuple[str, str, int]]:
        """Items when --idsproc maps entities to ids: a repeated id is a duplicate only if the entity is the same.

        Two different entities with one id are a collision (the second is not
        computed: its row would be indistinguishable), counted apart so that the
        run can warn with examples. The first entity of each id is kept while the
        seen set is exact (memory: one more string per id).
        """
        seen = SeenIds()
        first: dict[str, str] | None = {}
        ids_mode = not self.files_mode  # prenacs: in ids mode compute gets the processed id too
        counts = self.counts
        skip = self.skip if len(self.skip) else None
        read = 0
        try:
            for entity in self.raw():
                read += 1
                entity_id = idsproc(entity)
                if skip is not None and entity_id in skip:
                    counts.skipped += 1
                    continue
                if seen.add(entity_id):
                    if first is not None:
                        first[entity_id] = entity
                        if not seen.exact:
                            first = None
                    yield entity_id, entity_id if ids_mode else entity, 1
                    continue
                earlier = first.get(entity_id) if first is not None else None
                if earlier is not None and earlier != entity:
                    counts.id_collisions += 1
                    if len(counts.collision_examples) < 3:
                        counts.collision_examples.append((entity, entity_id, earlier))
                else:
                    counts.duplicates += 1
        finally:
            counts.read += read


def _first_field_values(handle: Iterable[str]) -> Iterator[str]:
    """``line.split("\t", 1)[0].strip()`` of each line, blank ones left out: what
    :func:`iter_column` yields for column 1, computed by C loops (no Python frame per line)."""
    return filter(None, map(str.strip, map(_FIRST, map(_PARTITION_TAB, handle))))


_FIRST = operator.itemgetter(0)
_PARTITION_TAB = operator.methodcaller("partition", "\t")


#: characters read at once from an ids file by :class:`_FileValues`
BLOCK_CHARS = 1 << 16


class _FileValues:
    """The column-1 values of a regular ids file, read by blocks: what :func:`iter_column` yields
    for it, with C loops only (a block is split at LF, its lines stripped, blank ones dropped, a
    tab cuts a line's first field) and no Python step per line.

    Lines end at LF only, as :func:`_text_lines` reads a file (a CR is stripped with the other
    whitespace); the BOM goes (utf-8-sig). A line without a newline at the end of a block waits
    for the next block. Split lines carry no LF, so ``str.strip`` gives most of them back as they
    are, with no new string.
    """

    def __init__(self, path: str) -> None:
        self._handle: io.TextIOBase | None = open(path, encoding="utf-8-sig", newline="\n")  # noqa: SIM115 - closed by close()
        self._rest = ""  # the start of a line that the next block ends
        self._values: list[str] = []
        self._at = 0  # how many of _values were taken

    def take(self, n: int) -> list[str]:
        """The next ``n`` values (fewer only at the end of the file)."""
        values, at = self._values, self._at
        while len(values) - at < n and self._handle is not None:
            block = self._handle.read(BLOCK_CHARS)
            text = self._rest + block
            if block:
                lines = text.split("\n")
                self._rest = lines.pop()
            else:  # the end: a last line without a newline is a line too
                lines, self._rest = [text], ""
                self.close()
            if at:
                del values[:at]
                at = 0
            if "\t" in text:
                values.extend(_first_field_values(lines))
            else:  # no tab: the first field is the whole line
                values.extend(filter(None, map(str.strip, lines)))
        taken = values[at:at + n]
        self._values, self._at = values, at + len(taken)
        return taken

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


class ItemReader:
    """The items of an :class:`EntityStream`, one at a time (iteration) or a chunk at a time (:meth:`take`).

    :meth:`take` is the engine's hot path: it reads ``n`` values with C loops, and when
    the chunk has no duplicate, nothing seen before and no skip list to consult (almost
    every chunk of almost every batch), adds the chunk to the seen ids with two dict
    operations; otherwise it goes through the chunk entity by entity, which gives the
    same items and counts.
    """

    def __init__(self, stream: EntityStream, limit: int | None = None) -> None:
        #: a trial run's --limit: items left to give
        self._remaining = limit
        self.counts = stream.counts
        assert stream.idsproc is None, "with --idsproc, EntityStream._mapped_items gives the items"
        self.skip = stream.skip if len(stream.skip) else None  # filled before the stream starts
        self.seen = SeenIds()
        self._exact = self.seen.exact_ids
        self._limit = self.seen.exact_limit
        self._file: _FileValues | None = None
        self._values: Iterator[str] | None = None
        source = stream.source
        #: an ids file read by column 1 (what nearly every batch reads): opened at the first read, read by C loops
        self._path: str | None = None
        if (isinstance(source, EntitySource) and source.path not in (None, "-") and not source.pattern
                and source.column == 1 and not is_stream(source.path)):
            self._path = source.path  # a regular file, checked by scan_text_file before the run
        else:
            self._values = stream.raw()
        self._started = False

    def __iter__(self) -> ItemReader:
        return self

    def __next__(self) -> tuple[str, str, int]:
        items = self.take(1)
        if not items:
            raise StopIteration
        return items[0]

    def close(self) -> None:
        """Stop reading: the entities file is closed (also done when it is read to its end)."""
        values, self._values, self._started = self._values, None, True
        if self._file is not None:
            self._file.close()
            self._file = None
        elif values is not None and hasattr(values, "close"):
            values.close()

    def take(self, n: int) -> list[tuple[str, str, int]]:
        """The next items, at most ``n``: fewer when duplicates or skipped ids were among the
        ``n`` entities read, none only at the end of the input."""
        while True:
            if self._remaining is not None:
                n = min(n, self._remaining)
                if n <= 0:
                    self.close()
                    return []
            items = self._read(n)
            if self._remaining is not None:
                self._remaining -= len(items)
            if items or (self._values is None and self._file is None):  # none only at the end
                return items

    def _read(self, n: int) -> list[tuple[str, str, int]]:
        """The items of the next ``n`` entities of the input."""
        if not self._started:
            self._started = True
            if self._path is not None:
                self._file = _FileValues(self._path)  # read as _text_lines reads a file
        values, file = self._values, self._file
        if file is None and values is None:
            return []
        try:
            raw = file.take(n) if file is not None else list(islice(values or (), n))  # values is set: not both None
        except UnicodeDecodeError as exc:
            self.close()
            raise UsageError(f"{self._path}: not UTF-8 text ({exc.reason}): the entities must be UTF-8 (the file changed "
                             "since it was checked)") from exc
        except BaseException:
            self.close()
            raise
        if len(raw) < n:
            self.close()
        self.counts.read += len(raw)
        ids = raw
        exact, skip = self._exact, self.skip
        if exact is not None and exact.isdisjoint(ids) and (skip is None or (skip.exact_ids is not None and skip.exact_ids.isdisjoint(ids))):
            # nothing of the chunk seen before nor in the skip list: add it whole, and count what was new
            # (the probes of isdisjoint bring the set's slots into the cache for those of the update)
            before = len(exact)
            exact.update(ids)
            if len(exact) - before == len(ids):
                items = list(zip(ids, raw, repeat(1)))
            else:  # the same id more than once within the chunk: its first occurrence is computed
                items = self._without_duplicates(ids, raw, set(ids))
            if len(exact) > self._limit:
                self.seen.make_compact()
                self._exact = None
            return items
        return self._take_slowly(ids, raw)

    def _without_duplicates(self, ids: list[str], raw: list[str], new: set[str]) -> list[tuple[str, str, int]]:
        """The items of a chunk already added to the seen ids, ``new`` being the ids it added: the
        first occurrence of each of those, every other entity counted as a duplicate."""
        items = []
        for entity_id, entity in zip(ids, raw):
            if entity_id in new:
                new.discard(entity_id)
                items.append((entity_id, entity, 1))
            else:
                self.counts.duplicates += 1
        return items

    def _take_slowly(self, ids: list[str], raw: list[str]) -> list[tuple[str, str, int]]:
        """Entity by entity: skipped ids, duplicates, and the seen ids once they are fingerprints."""
        counts, skip, seen = self.counts, self.skip, self.seen
        items = []
        for entity_id, entity in zip(ids, raw):
            if skip is not None and entity_id in skip:
                counts.skipped += 1
                continue
            exact = self._exact
            if exact is not None:
                if entity_id in exact:
                    counts.duplicates += 1
                    continue
                exact.add(entity_id)
                if len(exact) > self._limit:
                    seen.make_compact()
                    self._exact = None
            elif not seen.add(entity_id):
                counts.duplicates += 1
                continue
            items.append((entity_id, entity, 1))
        return items
