"""A compact set of strings: 128-bit fingerprints in open-addressing numpy tables.

Ten million ids in a Python ``set`` take over a gigabyte (a ``str`` object of
~60 bytes each, plus the set's table). :class:`FingerprintSet` keeps 16 bytes
per string instead: the 128-bit BLAKE2b digest of its UTF-8 text, in one of
64 open-addressing tables (linear probing, at most 3/4 full, doubled when
fuller). 64 tables rather than one, so that a doubling copies 1/64 of the
set, not all of it: memory stays below ~43 bytes per string at any moment
(:attr:`FingerprintSet.nbytes`).

Exactness: two different strings are taken for the same one only if their
128-bit digests are equal. For ``n`` strings the probability that this
happens at all is at most ``n² / 2**129``: about 1.5e-25 for ten million
strings, 1.5e-21 for a billion, far below the odds of a hardware memory
error during the run.
"""

from __future__ import annotations

from collections.abc import Iterable
from hashlib import blake2b

import numpy as np

#: the tables are picked by the top bits of the digest's high half
SHARD_BITS = 6
#: a table is doubled when more than this share of its slots is taken
MAX_LOAD = 0.75
_M64 = (1 << 64) - 1


def fingerprint(text: str) -> tuple[int, int]:
    """(low, high) 64-bit halves of the 128-bit digest; low is never 0 (0 marks an empty slot)."""
    value = int.from_bytes(blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest(), "little")
    return (value & _M64) or 1, value >> 64


def fingerprints(texts: Iterable[str]) -> np.ndarray:
    """The fingerprints of ``texts`` as an (n, 2) uint64 array of (low, high), vectorized where it can be."""
    digests = b"".join(blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest() for text in texts)
    pairs = np.frombuffer(digests, dtype="<u8").reshape(-1, 2).astype(np.uint64)
    pairs[pairs[:, 0] == 0, 0] = 1
    return pairs


def _place(low_words: np.ndarray, high_words: np.ndarray, low: np.ndarray, high: np.ndarray) -> None:
    """Insert fingerprints that are distinct and absent from a table, vectorized: each round,
    every key still waiting tries its current slot; of those aiming at one free slot, the
    first takes it; the others move on to the next slot (linear probing)."""
    mask = np.uint64(len(low_words) - 1)
    position = low & mask
    waiting = np.arange(len(low))
    while waiting.size:
        slots = position[waiting]
        free = np.flatnonzero(low_words[slots] == 0)
        _taken, first = np.unique(slots[free], return_index=True)
        winners = free[first]
        low_words[slots[winners]] = low[waiting[winners]]
        high_words[slots[winners]] = high[waiting[winners]]
        keep = np.ones(waiting.size, dtype=bool)
        keep[winners] = False
        waiting = waiting[keep]
        position[waiting] = (position[waiting] + np.uint64(1)) & mask


class _Table:
    """One open-addressing table: slot i holds a fingerprint's halves in low[i] and high[i]; low 0 is empty."""

    __slots__ = ("low", "high", "low_words", "high_words", "mask", "count", "limit")

    def __init__(self, capacity: int) -> None:
        self.low = np.zeros(capacity, dtype=np.uint64)
        self.high = np.zeros(capacity, dtype=np.uint64)
        # memoryviews: reading one slot from Python is several times faster than numpy indexing
        self.low_words = self.low.data.cast("B").cast("Q")
        self.high_words = self.high.data.cast("B").cast("Q")
        self.mask = capacity - 1
        self.count = 0
        self.limit = int(capacity * MAX_LOAD)

    def find(self, low: int, high: int) -> int:
        """The slot holding the fingerprint, or -1 - the free slot where it would go."""
        low_words, high_words, mask = self.low_words, self.high_words, self.mask
        slot = low & mask
        while True:
            found = low_words[slot]
            if found == 0:
                return -1 - slot
            if found == low and high_words[slot] == high:
                return slot
            slot = (slot + 1) & mask

    def insert_new(self, low: np.ndarray, high: np.ndarray) -> _Table:
        """Insert distinct fingerprints absent from this table; a bigger table if they do not fit."""
        table = self
        if self.count + len(low) > self.limit:
            capacity = len(self.low)
            while self.count + len(low) > int(capacity * MAX_LOAD):
                capacity *= 2
            table = _Table(capacity)
            used = self.low != 0
            _place(table.low, table.high, self.low[used], self.high[used])
            table.count = self.count
        _place(table.low, table.high, low, high)
        table.count += len(low)
        return table

    @property
    def nbytes(self) -> int:
        return self.low.nbytes + self.high.nbytes


class FingerprintSet:
    """A set of strings kept as 128-bit fingerprints (see the module docstring for the odds of a collision)."""

    def __init__(self, texts: Iterable[str] = (), initial_capacity: int = 256) -> None:
        capacity = 1 << max(2, (initial_capacity - 1).bit_length())
        self._tables = [_Table(capacity) for _ in range(1 << SHARD_BITS)]
        self._shift = 64 - SHARD_BITS
        self.add_many(texts)

    def add(self, text: str) -> bool:
        """Add ``text``; False if it was already there."""
        value = int.from_bytes(blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest(), "little")
        low, high = (value & _M64) or 1, value >> 64
        table = self._tables[high >> self._shift]
        slot = table.find(low, high)
        if slot >= 0:
            return False
        if table.count >= table.limit:
            self._tables[high >> self._shift] = table.insert_new(np.array([low], np.uint64), np.array([high], np.uint64))
            return True
        slot = -1 - slot
        table.low_words[slot] = low
        table.high_words[slot] = high
        table.count += 1
        return True

    def __contains__(self, text: object) -> bool:
        if not isinstance(text, str):
            return False
        low, high = fingerprint(text)
        return self._tables[high >> self._shift].find(low, high) >= 0

    def add_many(self, texts: Iterable[str]) -> int:
        """Add many strings at once (vectorized placement); returns how many were new."""
        pairs = fingerprints(texts)
        if not len(pairs):
            return 0
        # distinct fingerprints, in the order first seen
        keys = pairs.view(np.dtype((np.void, 16))).ravel()
        _distinct, first = np.unique(keys, return_index=True)
        pairs = pairs[np.sort(first)]
        shard = pairs[:, 1] >> np.uint64(self._shift)
        order = np.argsort(shard, kind="stable")
        bounds = np.searchsorted(shard[order], np.arange((1 << SHARD_BITS) + 1))
        added = 0
        for index in range(1 << SHARD_BITS):
            mine = pairs[order[bounds[index]:bounds[index + 1]]]
            if not len(mine):
                continue
            table = self._tables[index]
            if table.count:
                absent = [table.find(lo, hi) < 0 for lo, hi in mine.tolist()]
                mine = mine[np.array(absent, dtype=bool)]
            if len(mine):
                self._tables[index] = table.insert_new(mine[:, 0].copy(), mine[:, 1].copy())
                added += len(mine)
        return added

    def __len__(self) -> int:
        return sum(table.count for table in self._tables)

    @property
    def nbytes(self) -> int:
        """Bytes held by the tables."""
        return sum(table.nbytes for table in self._tables)
