"""Nim plugins: build cache timings, the Nim GC plugin against the Python one, the bridge's cost per call.

Run:  .venv/bin/python benchmarks/bench_nim.py [--size-mb 120] [--data-dir /tmp/provbatch_bench] [--calls 100000]

Measured in one run and printed side by side:
  * the cold build of nim_plugins/gc_content.nim into a fresh, empty build cache;
  * the warm load of the same plugin from that cache (a new process: nothing in memory);
  * nim_plugins/gc_content.nim vs plugins/gc_content.py per entity on a generated FASTA
    of at least 100 MB (80-column lines), plain and gzipped; the results must be identical;
  * the per-call overhead of the bridge, on a trivial plugin (the length of the entity):
    a call through the module's compute (kwargs binding, JSON both ways, the library lock),
    the same C function called directly with ctypes, and a plain Python function.

Builds and loads run in child processes so that each one starts with an empty sys.modules.
The FASTA files (same names and format as bench_rust.py's, so either script reuses the
other's) and the trivial plugin are written into --data-dir, never into the repository.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_of, ensure_data, timed_import  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
GC_NIM = ROOT / "nim_plugins" / "gc_content.nim"

TRIVIAL_PLUGIN = """\
    import nimpy

    proc compute(entity: string, times: int = 1): tuple[results: seq[int], logs: seq[string]] {.exportpy.} =
      result.results = @[entity.len * times]
"""

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

    from provbatch.multiplug import importer

    nim_plugin = importer(GC_NIM)
    rows = []
    for label, fasta in (("plain", plain), ("gzipped", packed)):
        size = fasta.stat().st_size / 1e6
        nim_s, nim_result = best_of(lambda: nim_plugin.compute(str(fasta)), 5)
        python_s, python_result = best_of(lambda: python_plugin.compute(str(fasta)), 2)
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


def overhead_rows(folder: Path, calls: int) -> list[tuple[str, str]]:
    from provbatch.multiplug import importer

    plugin = folder / "nim_trivial.nim"
    source = textwrap.dedent(TRIVIAL_PLUGIN)
    if not plugin.exists() or plugin.read_text() != source:
        plugin.write_text(source)
    module = importer(plugin)
    entity = "examples/genomes/ecoli_like.fna"
    assert module.compute(entity, times=2) == ([2 * len(entity)], [])

    def python_compute(entity: str, times: int = 1) -> tuple[list[int], list[str]]:
        return [len(entity) * times], []

    raw = ctypes.CDLL(module.__nim_library__.path).pbx_compute  # the C function alone, no lock
    raw.restype, raw.argtypes = ctypes.c_char_p, [ctypes.c_char_p]
    payload = json.dumps({"entity": entity}).encode()

    def per_call(function: Callable[[], object]) -> float:
        seconds, _ = best_of(lambda: [function() for _ in range(calls)], 3)
        return seconds / calls * 1e6

    through_module = per_call(lambda: module.compute(entity))
    with_kwargs = per_call(lambda: module.compute(entity, times=2))
    direct = per_call(lambda: raw(payload))
    python = per_call(lambda: python_compute(entity))
    return [
        ("per call, module.compute(entity)", f"{through_module:8.2f} us"),
        ("per call, module.compute(entity, times=2)", f"{with_kwargs:8.2f} us"),
        ("per call, the C function via ctypes (JSON in Nim only)", f"{direct:8.2f} us"),
        ("per call, the same compute in pure Python", f"{python:8.2f} us"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=120, help="size of the generated FASTA (>= 100)")
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "provbatch_bench")
    parser.add_argument("--calls", type=int, default=100_000, help="calls per overhead measurement")
    args = parser.parse_args()
    plain, packed = ensure_data(args.data_dir, args.size_mb)
    rows = build_rows() + speed_rows(plain, packed) + overhead_rows(args.data_dir, args.calls)
    width = max(len(name) for name, _ in rows)
    print(f"\nNim plugins on {os.cpu_count()} cores (nim 1.6, --app:lib -d:release --gc:orc, provbatch's bridge)")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")


if __name__ == "__main__":
    main()
