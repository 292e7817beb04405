"""The compact id sets: FingerprintSet (128-bit fingerprints in numpy tables) and SeenIds
(exact strings, then fingerprints past a limit). Memory is checked by nbytes, never by time."""

from __future__ import annotations

import random

from provbatch.inputs.entities import EntityStream
from provbatch.inputs.seen_ids import SeenIds
from provbatch.inputs.fingerprints import MAX_LOAD, SHARD_BITS, FingerprintSet, fingerprint


def test_fingerprint_is_128_bits_and_never_empty():
    low, high = fingerprint("id_1")
    assert 0 < low < 2**64 and 0 <= high < 2**64
    assert fingerprint("id_1") == (low, high) != fingerprint("id_2")
    assert fingerprint("\udcff") != fingerprint("")  # lone surrogates (from odd file names) are fingerprinted too


def test_inserts_are_exact_and_membership_holds_through_growth():
    ids = [f"entity-{i}" for i in range(30_000)]
    fps = FingerprintSet(initial_capacity=4)  # tiny tables: every table grows many times
    assert [fps.add(entity) for entity in ids] == [True] * len(ids)
    assert len(fps) == len(ids)
    assert [fps.add(entity) for entity in ids] == [False] * len(ids)
    assert all(entity in fps for entity in ids)
    assert not any(f"other-{i}" in fps for i in range(30_000))
    assert 42 not in fps  # not a string: never a member
    assert len(fps) == len(ids)


def test_bulk_add_matches_one_by_one_and_counts_new_ones():
    ids = [f"x{i}" for i in range(5_000)]
    bulk = FingerprintSet(ids + ids[:100])  # duplicates inside one bulk add count once
    assert len(bulk) == 5_000
    assert bulk.add_many(ids[:10] + ["new-1", "new-2", "new-1"]) == 2
    assert len(bulk) == 5_002
    assert all(entity in bulk for entity in ids) and "new-2" in bulk
    assert not bulk.add("x7") and bulk.add("x5000")


def test_memory_is_bounded_by_the_load_factor():
    fps = FingerprintSet(initial_capacity=4)
    n = 50_000
    for i in range(n):
        fps.add(str(i))
    # 16 bytes per slot; no table is fuller than MAX_LOAD, and a table just doubled is half that full
    assert fps.nbytes >= n * 16 / MAX_LOAD
    tables = 1 << SHARD_BITS
    assert fps.nbytes <= (n * 16 / (MAX_LOAD / 2)) * 1.2 + tables * 4 * 16


def test_seen_ids_become_fingerprints_past_the_limit_and_stay_exact_before():
    seen = SeenIds(exact_limit=1_000)
    ids = [f"id{i}" for i in range(2_500)]
    assert all(seen.add(entity) for entity in ids[:1_000])
    assert seen.exact and seen.nbytes == 0
    assert all(seen.add(entity) for entity in ids[1_000:])
    assert not seen.exact and seen.nbytes > 0
    assert len(seen) == 2_500
    assert not any(seen.add(entity) for entity in ids)
    assert all(entity in seen for entity in ids) and "id2500" not in seen


def test_entity_stream_counts_duplicates_and_skips_across_the_switch(monkeypatch):
    import provbatch.inputs.seen_ids as entities

    monkeypatch.setattr(entities, "EXACT_LIMIT", 50)
    rng = random.Random(8)
    source = [f"e{rng.randrange(400)}" for _ in range(2_000)]
    skip = SeenIds([f"e{i}" for i in range(0, 400, 7)], exact_limit=20)
    stream = EntityStream(source, skip=skip)
    yielded = [entity_id for entity_id, _entity, _attempt in stream.items()]
    skipped = [entity for entity in source if int(entity[1:]) % 7 == 0]
    expected = list(dict.fromkeys(entity for entity in source if int(entity[1:]) % 7))
    assert yielded == expected
    assert stream.counts.skipped == len(skipped)
    assert stream.counts.duplicates == len(source) - len(skipped) - len(expected)
    assert stream.counts.read == len(source)
