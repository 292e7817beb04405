"""The set of entity ids seen so far: exact strings first, 128-bit fingerprints beyond a million.

Used for duplicates in the input, the ids of ``--skip`` and the ids already
in the results file (resume). See :mod:`.fingerprints` for the compact form.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

#: up to this many ids, SeenIds is an exact ``set`` of the strings; beyond, 128-bit fingerprints
EXACT_LIMIT = 1_000_000


class SeenIds:
    """The set of ids seen so far (duplicates, resume, skip list).

    Exact (the strings themselves) for the first :data:`EXACT_LIMIT` ids,
    which is fast and small enough; beyond that the ids move to a
    :class:`~provbatch.inputs.fingerprints.FingerprintSet` (16 bytes per id instead of
    ~100, collision odds ~1e-25 for ten million ids), so that ten million ids
    fit in a few hundred megabytes.
    """

    def __init__(self, ids: Iterable[str] = (), exact_limit: int = EXACT_LIMIT) -> None:
        self._exact: set[str] | None = set()
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
        exact.add(entity_id)
        if len(exact) > self._limit:
            self.make_compact()
        return True

    def make_compact(self) -> None:
        """Move the ids to the compact form (once past :attr:`exact_limit`)."""
        from .fingerprints import FingerprintSet

        assert self._exact is not None
        self._compact = FingerprintSet(self._exact, initial_capacity=2 * len(self._exact) >> 6)
        self._exact = None

    @property
    def exact_ids(self) -> set[str] | None:
        """The ids as a set while exact, else None: the entity stream's hot loop adds to it inline
        (then calls :meth:`make_compact` once it holds more than :attr:`exact_limit`)."""
        return self._exact

    @property
    def exact_limit(self) -> int:
        return self._limit

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
