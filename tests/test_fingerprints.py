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


def test_chunks_read_from_an_ids_file_give_the_items_and_counts_of_the_per_entity_rule(tmp_path, monkeypatch):
    """ItemReader.take adds a chunk to the seen ids whole when nothing in it was seen or skipped;
    whatever the chunk sizes, duplicates (within a chunk, across chunks), skip lists (exact or
    fingerprints), blank lines, tabs, CRLF, a BOM, lines across the blocks the file is read by, a
    last line without newline and the switch to fingerprints give what one entity at a time
    gives: the first occurrence of each id not skipped, in input order."""
    import provbatch.inputs.entities as entities
    import provbatch.inputs.seen_ids as seen_ids
    from provbatch.inputs.entities import EntitySource, iter_column

    monkeypatch.setattr(seen_ids, "EXACT_LIMIT", 60)
    for seed in range(60):
        rng = random.Random(seed)
        monkeypatch.setattr(entities, "BLOCK_CHARS", rng.choice([1, 2, 7, 64, 1 << 16]))
        universe = rng.choice([30, 300, 3_000])
        ids = [f"e{rng.randrange(universe)}" for _ in range(rng.randrange(1, 700))]
        lines = [entity + rng.choice(["", "", "\textra", "  ", "\r", " \t x\r"]) for entity in ids]
        if seed % 3 == 0:
            lines.insert(rng.randrange(len(lines) + 1), rng.choice(["   ", "", "\r"]))  # a blank line: no entity
        path = tmp_path / f"ids{seed}.txt"
        text = "\n".join(lines) + rng.choice(["\n", ""])
        path.write_bytes((b"\xef\xbb\xbf" if seed % 4 == 0 else b"") + text.encode())
        assert list(iter_column(str(path))) == ids  # the per-line reader, the reference
        skipped_ids = {f"e{i}" for i in range(0, universe, rng.choice([5, 11, universe + 1]))}
        skip = SeenIds(sorted(skipped_ids), exact_limit=rng.choice([10, 10_000]))
        reader = EntityStream(EntitySource(str(path)), skip=skip).items()
        got = []
        while True:
            chunk = reader.take(rng.choice([1, 3, 16, 64, 256]))
            if not chunk:
                break
            got.extend(chunk)
        expected = list(dict.fromkeys(entity for entity in ids if entity not in skipped_ids))
        assert [item[0] for item in got] == expected and all(item == (item[0], item[0], 1) for item in got)
        n_skipped = sum(entity in skipped_ids for entity in ids)
        assert reader.counts.read == len(ids) and reader.counts.skipped == n_skipped
        assert reader.counts.duplicates == len(ids) - n_skipped - len(expected)
