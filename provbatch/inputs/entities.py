"""Where entities come from, streamed: an ids file (or a TSV column, or stdin) or a glob.

Input is never loaded whole: a batch may have ten million ids. Each entity is
yielded as ``(entity_id, entity)``: ``entity`` is what compute receives (the
line, or the file path), ``entity_id`` is what the output rows and the skip
and resume lists are keyed by. They are the same unless ``--idsproc`` maps
the entity to an id (e.g. a file path to its accession).
"""

from __future__ import annotations

import glob as globlib
import io
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from .errors import UsageError


@dataclass(frozen=True)
class EntitySource:
    """The user's description of the entities."""

    path: str | None = None  # an ids/TSV file, or "-" for stdin
    column: int = 1  # 1-based column of ``path``
    pattern: str | None = None  # --glob PATTERN: each matching file is an entity

    def describe(self) -> str:
        return f"glob {self.pattern}" if self.pattern else ("stdin" if self.path == "-" else str(self.path))


def _open_text(path: str) -> io.TextIOBase:
    if path == "-":
        return sys.stdin
    try:
        return open(path, encoding="utf-8", newline="")
    except FileNotFoundError as exc:
        raise UsageError(f"{path}: entities file not found") from exc
    except IsADirectoryError as exc:
        raise UsageError(f"{path}: is a directory, not an entities file (use --glob for files in a directory)") from exc
    except OSError as exc:
        raise UsageError(f"{path}: cannot read entities file: {exc.strerror or exc}") from exc


def iter_column(path: str, column: int = 1, what: str = "entities file") -> Iterator[str]:
    """The stripped values of a 1-based column of a text/TSV file; blank lines are skipped."""
    if column < 1:
        raise UsageError(f"--col must be 1 or more, got {column}")
    handle = _open_text(path)
    try:
        for lineno, line in enumerate(handle, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            if column == 1:
                value = line.split("\t", 1)[0].strip()
            else:
                fields = line.split("\t")
                if column > len(fields):
                    raise UsageError(f"{path}:{lineno}: {what} has {len(fields)} column(s), --col is {column}")
                value = fields[column - 1].strip()
            if value:
                yield value
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: {what} is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    finally:
        if handle is not sys.stdin:
            handle.close()


def iter_glob(pattern: str) -> Iterator[str]:
    """The files matching ``pattern`` (``**`` recurses), sorted so that runs are repeatable."""
    return iter(sorted(p for p in globlib.glob(pattern, recursive=True) if Path(p).is_file()))


def load_idsproc(spec: str) -> Callable[[str], str]:
    """``compute_id`` of an idsproc module, given as a ``.py`` path or an importable module name."""
    import importlib
    import hashlib

    from .multiplug.python import exec_python_file
    from .errors import PluginLoadError

    path = Path(spec)
    try:
        if spec.endswith(".py") or path.exists():
            if not path.is_file():
                raise UsageError(f"{spec}: idsproc module not found")
            module = exec_python_file(path.resolve(), "provbatch_idsproc_" + hashlib.sha1(spec.encode()).hexdigest()[:12])
        else:
            module = importlib.import_module(spec)
    except PluginLoadError as exc:
        raise UsageError(f"idsproc {exc}") from exc
    except ImportError as exc:
        raise UsageError(f"{spec}: cannot import idsproc module: {exc}") from exc
    func = getattr(module, "compute_id", None)
    if not callable(func):
        raise UsageError(f"{spec}: idsproc module must define compute_id(entity: str) -> str")
    return func


#: up to this many ids, SeenIds is an exact ``set`` of the strings; beyond, 128-bit fingerprints
EXACT_LIMIT = 1_000_000


class SeenIds:
    """The set of ids seen so far (duplicates, resume, skip list).

    Exact (the strings themselves) for the first :data:`EXACT_LIMIT` ids,
    which is fast and small enough; beyond that the ids move to a
    :class:`~provbatch.fingerprints.FingerprintSet` (16 bytes per id instead of
    ~100, collision odds ~1e-25 for ten million ids), so that ten million ids
    fit in a few hundred megabytes.
    """

    def __init__(self, ids: Iterable[str] = (), exact_limit: int = EXACT_LIMIT) -> None:
        # A dict of str -> None, not a set: a dict holding only strings is not tracked by the
        # garbage collector, a set always is, and the collector's full passes (one every few
        # chunks) would walk all its entries: 4 µs per entity at a million ids.
        self._exact: dict[str, None] | None = {}
        self._compact: Any = None
        self._limit = exact_limit
        for entity_id in ids:
            self.add(entity_id)

    def add(self, entity_id: str) -> bool:
        """Add the id; False if it was already there."""
        exact = self._exact
        if exact is None:
            return self._compact.add(entity_id)
        if entity_id in exact:
            return False
        exact[entity_id] = None
        if len(exact) > self._limit:
            self._make_compact()
        return True

    def _make_compact(self) -> None:
        from .fingerprints import FingerprintSet

        assert self._exact is not None
        self._compact = FingerprintSet(self._exact, initial_capacity=2 * len(self._exact) >> 6)
        self._exact = None

    @property
    def exact(self) -> bool:
        """Whether the ids are still kept as strings (no collision possible)."""
        return self._exact is not None

    @property
    def nbytes(self) -> int:
        """Memory held for the compact form (0 while exact)."""
        return self._compact.nbytes if self._compact is not None else 0

    def __contains__(self, entity_id: str) -> bool:
        if self._exact is not None:
            return entity_id in self._exact
        return entity_id in self._compact

    def __len__(self) -> int:
        return len(self._exact) if self._exact is not None else len(self._compact)


@dataclass
class EntityCounts:
    """What the stream dropped, for the report."""

    skipped: int = 0  # in --skip or already in --out
    duplicates: int = 0
    read: int = 0  # set when the stream ends


@dataclass
class EntityStream:
    """The entities to compute, streamed, with skip, resume and de-duplication applied."""

    #: an :class:`EntitySource`, or any iterable of entity strings (the Python API)
    source: EntitySource | Iterable[str]
    idsproc: Callable[[str], str] | None = None
    skip: SeenIds = field(default_factory=SeenIds)
    counts: EntityCounts = field(default_factory=EntityCounts)

    def raw(self) -> Iterator[str]:
        if not isinstance(self.source, EntitySource):
            return filter(str.strip, map(str, self.source))  # blank entities are dropped; in C, no Python frame per entity
        if self.source.pattern:
            return iter_glob(self.source.pattern)
        if self.source.path is None:
            raise UsageError("no entities given: pass an ENTITIES file, '-' for stdin, or --glob PATTERN")
        return iter_column(self.source.path, self.source.column)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for entity_id, entity, _attempt in self.items():
            yield entity_id, entity

    def items(self) -> Iterator[tuple[str, str, int]]:
        """``(entity_id, entity, 1)``: the scheduler's items (first attempt), straight from the input.

        Once per entity, so written for speed: the seen set is used inline
        while it is an exact ``set``; ``counts.read`` is set when the stream ends.
        """
        seen = SeenIds()
        counts = self.counts
        idsproc = self.idsproc
        skip = self.skip if len(self.skip) else None  # filled before the stream starts
        exact = seen._exact
        read = 0
        try:
            for entity in self.raw():
                read += 1
                entity_id = idsproc(entity) if idsproc else entity
                if skip is not None and entity_id in skip:
                    counts.skipped += 1
                elif exact is not None:
                    if entity_id in exact:
                        counts.duplicates += 1
                        continue
                    exact[entity_id] = None
                    if len(exact) > seen._limit:
                        seen._make_compact()
                        exact = None
                    yield entity_id, entity, 1
                elif not seen.add(entity_id):
                    counts.duplicates += 1
                else:
                    yield entity_id, entity, 1
        finally:
            counts.read += read
