"""Nim plugins: build cache timings, the Nim GC plugin against the Python one, the bridge's cost
per call, and a Nim plugin against the same plugin in Rust through the engine.

Run:  .venv/bin/python benchmarks/bench_nim.py [--size-mb 120] [--data-dir /tmp/provbatch_bench]
                                               [--calls 1000000] [--entities 1000000] [--rounds 3]
      .venv/bin/python benchmarks/bench_nim.py --targets [--quick]   (benchmarks/run_all.py: the
      per-call and engine rows only, with their RESULT lines)

Measured in one run and printed side by side:
  * the cold build of nim_plugins/gc_content.nim into a fresh, empty build cache;
  * the warm load of the same plugin from that cache (a new process: nothing in memory);
  * nim_plugins/gc_content.nim vs plugins/gc_content.py per entity on a generated FASTA
    of at least 100 MB (80-column lines), plain and gzipped; the results must be identical;
  * the cost of one call of ``module.compute(entity)`` of benchmarks/plugins/trivial.nim
    (the native bridge: a built-in function of the extension module, arguments and result
    converted in Nim, the GIL released around the proc), beside the same compute as a bare
    Python function, the Rust twin (benchmarks/plugins/trivial.rs, pyo3) and len(): the
    calls are interleaved, best of 5; goal: the bridge adds < 0.2 us to a Python call;
  * ``batch-compute --backend serial`` on --entities ids (default 1,000,000) with
    benchmarks/plugins/trivial.{py,rs,nim}, rounds interleaved, best of --rounds; the results
    files are checked; goal: Nim within 1.1x of Rust.

Builds and loads run in child processes so that each one starts with an empty sys.modules.
The FASTA files (same names and format as bench_rust.py's, so either script reuses the
other's) are written into --data-dir, never into the repository.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_of, ensure_data, timed_import
from _scale import (
    PLUGINS,
    batch_compute,
    cache_dir,
    check_results,
    fresh,
    ids_file,
    load_average,
    result,
    run_env,
    timed_run,
)

ROOT = Path(__file__).resolve().parent.parent
GC_NIM = ROOT / "nim_plugins" / "gc_content.nim"
ATTRIBUTES = PLUGINS / "attribute_definitions.yaml"

TRIVIAL = {lang: PLUGINS / f"trivial.{lang}" for lang in ("py", "rs", "nim")}
PER_CALL_GOAL_US = 0.2
ENGINE_GOAL = 1.1


def build_rows() -> list[tuple[str, str]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="provbatch_bench_cache_") as cache:
        seconds, built, wall = timed_import(GC_NIM, Path(cache), ".nim")
        assert built, "a fresh cache must build"
        rows.append(("cold build of gc_content.nim (empty cache)", f"{seconds:8.2f} s   (process {wall:.2f} s)"))
        seconds, built, wall = timed_import(GC_NIM, Path(cache), ".nim")
        assert not built, "the second load must come from the cache"
        rows.append(("warm load of gc_content.nim (cache hit)", f"{seconds * 1000:8.0f} ms  (process {wall:.2f} s)"))
    return rows


def speed_rows(plain: Path, packed: Path) -> list[tuple[str, str]]:
    sys.path.insert(0, str(ROOT / "plugins"))
    import gc_content as python_plugin

    from provbatch.plugins.registry import importer

    nim_plugin = importer(GC_NIM)
    rows = []
    for label, fasta in (("plain", plain), ("gzipped", packed)):
        size = fasta.stat().st_size / 1e6
        nim_s, nim_result = best_of(lambda path=str(fasta): nim_plugin.compute(path), 5)
        python_s, python_result = best_of(lambda path=str(fasta): python_plugin.compute(path), 2)
        same = list(nim_result[0]) == python_result[0] and nim_result[1] == python_result[1]
        rows.append((
            f"GC per entity, {label} {size:.0f} MB file",
            f"Nim {nim_s:6.3f} s | Python {python_s:6.2f} s | {python_s / nim_s:5.1f}x  "
            f"(results identical: {same}; {nim_result[0]})",
        ))
    inflate_s, _ = best_of(lambda: inflate_only(packed), 3)
    rows.append((f"  zlib inflate alone of the {packed.stat().st_size / 1e6:.0f} MB file (the floor for .gz)",
                 f"{inflate_s:6.3f} s"))
    return rows


def inflate_only(path: Path) -> int:
    """Decompress with zlib (what both plugins use for .gz) and count nothing: the floor of any .gz timing."""
    import zlib

    total, inflater = 0, zlib.decompressobj(wbits=31)
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            total += len(inflater.decompress(block))
    return total


def per_call_rows(calls: int) -> list[tuple[str, str]]:
    """One call of each trivial compute (interleaved, best of 5), in microseconds."""
    from provbatch.plugins.registry import importer

    nim, rust = importer(TRIVIAL["nim"]), importer(TRIVIAL["rs"])
    entity = "id_00001234"
    assert nim.compute(entity) == rust.compute(entity) == ((len(entity),), [])

    def python_compute(entity: str) -> tuple[tuple[int], list[str]]:
        return (len(entity),), []

    subjects = {"nim": nim.compute, "python": python_compute, "rust": rust.compute, "len": len}
    best = dict.fromkeys(subjects, float("inf"))
    for _ in range(5):
        for name, function in subjects.items():
            seconds = timeit.timeit("f(e)", globals={"f": function, "e": entity}, number=calls)
            best[name] = min(best[name], seconds / calls * 1e6)
    bridge = best["nim"] - best["python"]
    result("Nim bridge per call (trivial compute)",
           f"{best['nim']:.3f} us: {bridge:+.3f} us vs a Python function ({best['python']:.3f} us); Rust {best['rust']:.3f} us",
           f"< {PER_CALL_GOAL_US} us over a Python call", bridge < PER_CALL_GOAL_US)
    return [
        ("per call, Nim module.compute(entity) (native bridge)", f"{best['nim']:8.3f} us"),
        ("per call, the same compute as a Python function", f"{best['python']:8.3f} us"),
        ("per call, the Rust twin (pyo3, through the panic guard)", f"{best['rust']:8.3f} us"),
        ("per call, len(entity) (a C built-in: the floor)", f"{best['len']:8.3f} us"),
        ("  Nim / Python function", f"{best['nim'] / best['python']:8.2f}x"),
    ]


def engine_rows(entities: int, rounds: int) -> list[tuple[str, str]]:
    """batch-compute --backend serial with the trivial plugin in Python, Rust and Nim, interleaved."""
    from provbatch.plugins.registry import importer

    for lang in ("rs", "nim"):
        importer(TRIVIAL[lang])  # built into the cache before any timing
    ids = ids_file(entities)
    work = fresh(cache_dir() / "work-nim-vs-rust")
    best = dict.fromkeys(TRIVIAL, float("inf"))
    rss = dict.fromkeys(TRIVIAL, 0.0)
    for round_ in range(rounds):
        for lang, plugin in TRIVIAL.items():
            out = work / f"{lang}.tsv"
            for stale in work.glob(f"{lang}.tsv*"):
                stale.unlink()
            timed = timed_run(batch_compute(plugin, ids, "--backend", "serial", "--attributes", ATTRIBUTES,
                                            "--out", out, "--no-progress"), cwd=work, env=run_env(work))
            if timed.returncode != 0:
                sys.exit(f"batch-compute {plugin.name} failed (exit {timed.returncode}):\n{timed.stderr[-2000:]}")
            if round_ == 0:
                check_results(out, entities, ids)
            best[lang] = min(best[lang], timed.seconds)
            rss[lang] = max(rss[lang], timed.max_rss_mb)
    ratio = best["nim"] / best["rs"]
    result(f"Nim vs Rust, {entities:,} trivial ids, CLI --backend serial",
           f"{ratio:.2f}x (Nim {best['nim']:.2f} s, Rust {best['rs']:.2f} s, Python {best['py']:.2f} s)",
           f"<= {ENGINE_GOAL}x", ratio <= ENGINE_GOAL)
    return [
        (f"batch-compute --backend serial, {entities:,} ids, trivial.py", f"{best['py']:8.2f} s  (peak RSS {rss['py']:.0f} MB)"),
        (f"batch-compute --backend serial, {entities:,} ids, trivial.rs", f"{best['rs']:8.2f} s  (peak RSS {rss['rs']:.0f} MB)"),
        (f"batch-compute --backend serial, {entities:,} ids, trivial.nim", f"{best['nim']:8.2f} s  (peak RSS {rss['nim']:.0f} MB)"),
        ("  Nim / Rust", f"{ratio:8.2f}x"),
        ("  Nim / Python", f"{best['nim'] / best['py']:8.2f}x"),
    ]


def print_rows(title: str, rows: list[tuple[str, str]]) -> None:
    width = max(len(name) for name, _ in rows)
    print(f"\n{title}")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=120, help="size of the generated FASTA (>= 100)")
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "provbatch_bench")
    parser.add_argument("--calls", type=int, help="calls per per-call measurement (default 1,000,000)")
    parser.add_argument("--entities", type=int, help="ids per engine run (default 1,000,000)")
    parser.add_argument("--rounds", type=int, help="engine rounds, best of (default 3)")
    parser.add_argument("--targets", action="store_true", help="only the per-call and engine rows (for run_all.py)")
    parser.add_argument("--quick", action="store_true", help="with --targets: 200,000 ids, 2 rounds, 200,000 calls")
    args = parser.parse_args()
    calls = args.calls or (200_000 if args.quick else 1_000_000)
    entities = args.entities or (200_000 if args.quick else 1_000_000)
    rounds = args.rounds or (2 if args.quick else 3)
    title = (f"Nim plugins on {os.cpu_count()} cores (nim 1.6, --app:lib -d:release --gc:orc, provbatch's native bridge); "
             f"{load_average()}")
    print(title, flush=True)
    rows = []
    if not args.targets:
        plain, packed = ensure_data(args.data_dir, args.size_mb)
        rows += build_rows() + speed_rows(plain, packed)
    rows += per_call_rows(calls) + engine_rows(entities, rounds)
    print_rows(f"results; {load_average()} at the end", rows)


if __name__ == "__main__":
    main()
