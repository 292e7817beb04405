"""Rust plugins: build cache timings, and the Rust GC plugin against the Python one.

Run:  .venv/bin/python benchmarks/bench_rust.py [--size-mb 120] [--data-dir /tmp/provbatch_bench]

Measured in one run and printed side by side:
  * the cold build of rust_plugins/gc_content.rs into a fresh, empty build cache
    (cargo's download cache in ~/.cargo is left as it is: crates are not re-downloaded);
  * the warm load of the same plugin from that cache (a new process: nothing in memory);
  * the build of a second plugin (rust_plugins/state_counter) after the first: the shared
    cargo target dir already holds pyo3;
  * rust_plugins/gc_content.rs vs plugins/gc_content.py per entity on a generated FASTA
    of at least 100 MB (80-column lines), plain and gzipped; the results must be identical.

Builds and loads run in child processes so that each one starts with an empty sys.modules.
The FASTA files are generated into --data-dir (never the repository) and reused by later runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_of, ensure_data, timed_import  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
GC_RS = ROOT / "rust_plugins" / "gc_content.rs"
STATE_CRATE = ROOT / "rust_plugins" / "state_counter"

def build_rows() -> list[tuple[str, str]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="provbatch_bench_cache_") as cache:
        seconds, built, wall = timed_import(GC_RS, Path(cache), ".rs")
        assert built, "a fresh cache must build"
        rows.append(("cold build of gc_content.rs (empty cache)", f"{seconds:8.2f} s   (process {wall:.2f} s)"))
        seconds, built, wall = timed_import(GC_RS, Path(cache), ".rs")
        assert not built, "the second load must come from the cache"
        rows.append(("warm load of gc_content.rs (cache hit)", f"{seconds * 1000:8.0f} ms  (process {wall:.2f} s)"))
        seconds, built, wall = timed_import(STATE_CRATE, Path(cache), ".rs")
        assert built
        rows.append(("build of state_counter/ after it (shared target)", f"{seconds:8.2f} s   (process {wall:.2f} s)"))
    return rows


def speed_rows(plain: Path, packed: Path) -> list[tuple[str, str]]:
    sys.path.insert(0, str(ROOT / "plugins"))
    import gc_content as python_plugin

    from provbatch.plugins.registry import importer

    rust_plugin = importer(GC_RS)
    rows = []
    for label, fasta in (("plain", plain), ("gzipped", packed)):
        size = fasta.stat().st_size / 1e6
        rust_s, rust_result = best_of(lambda path=str(fasta): rust_plugin.compute(path), 5)
        python_s, python_result = best_of(lambda path=str(fasta): python_plugin.compute(path), 2)
        same = list(rust_result[0]) == python_result[0] and list(rust_result[1]) == python_result[1]
        rows.append((
            f"GC per entity, {label} {size:.0f} MB file",
            f"Rust {rust_s:6.3f} s | Python {python_s:6.2f} s | {python_s / rust_s:5.1f}x  "
            f"(results identical: {same}; {rust_result[0]})",
        ))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=120, help="size of the generated FASTA (>= 100)")
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "provbatch_bench")
    args = parser.parse_args()
    plain, packed = ensure_data(args.data_dir, args.size_mb)
    rows = build_rows() + speed_rows(plain, packed)
    width = max(len(name) for name, _ in rows)
    print(f"\nRust plugins on {os.cpu_count()} cores (maturin + pyo3, release builds)")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")


if __name__ == "__main__":
    main()
