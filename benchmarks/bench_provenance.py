"""What capturing run_config.json costs on a 10-million-line ids file, next to what the run costs.

Printed side by side, measured in one go:

1. hashing the ids file (size + sha256, one streamed read: what capture does to it);
2. the whole capture (:func:`provbatch.provenance.capture.capture_run_config`: the
   file's hash, the plugin's source, the environment with the installed packages);
3. reading the ids through the entity stream alone (no compute: a floor
   under any run on this file);
4. a whole run of a trivial plugin over the file (serial, results to a file),
   with run_config.json written by the run itself;
5. the input check of ``provbatch rerun`` (size, then one hash of the file).

Usage: python benchmarks/bench_provenance.py [--lines N] [--no-run]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import textwrap
import time
from pathlib import Path

TRIVIAL = textwrap.dedent("""\
    ID = "bench_length"
    VERSION = "1"
    INPUT = "an id"
    OUTPUT = ["length"]

    def compute(entity, **kwargs):
        return [len(entity)], []
    """)
DEFINITIONS = "length: {definition: number of characters of the entity, datatype: Integer}\n"


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


def write_ids(path: Path, lines: int) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        block = 100_000
        for start in range(0, lines, block):
            handle.write("".join(f"GCA_{i:09d}.1\n" for i in range(start, min(start + block, lines))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=10_000_000)
    parser.add_argument("--no-run", action="store_true", help="skip the whole run (4.)")
    args = parser.parse_args()

    from provbatch.engine.batch import BatchRun
    from provbatch.inputs.entities import EntitySource, EntityStream
    from provbatch.provenance import capture as provenance
    from provbatch.provenance.rerun import check_inputs

    with tempfile.TemporaryDirectory(prefix="bench-provenance-") as folder:
        tmp = Path(folder)
        os.environ["PROVBATCH_RUNS"] = str(tmp / "runs")
        ids, plugin, definitions = tmp / "ids.txt", tmp / "length.py", tmp / "attribute_definitions.yaml"
        plugin.write_text(TRIVIAL)
        definitions.write_text(DEFINITIONS)
        print(f"writing {args.lines:,} ids ...", flush=True)
        write_ids(ids, args.lines)
        size = ids.stat().st_size
        print(f"{ids.name}: {args.lines:,} lines, {size / 1e6:.0f} MB\n")

        hash_s, _ = timed(provenance.size_and_sha256, ids)
        run = BatchRun(str(plugin), EntitySource(path=str(ids)), attributes=str(definitions), backend="serial",
                       out=tmp / "out.tsv", run_dir=tmp / "run")
        start = run.run_start()
        capture_s, config = timed(provenance.capture_run_config, run.options, start)
        for sink in [*run.sinks, run.logs]:
            if sink is not None:
                sink.close()
        stream_s, n = timed(lambda: sum(1 for _ in EntityStream(EntitySource(path=str(ids)))))
        check_s, check = timed(check_inputs, config)
        assert n == args.lines and not check.differences

        rows = [
            ("hash the ids file (size + sha256, 1 read)", hash_s),
            ("whole capture_run_config", capture_s),
            ("rerun's input check", check_s),
            ("stream the ids, no compute (floor of a run)", stream_s),
        ]
        if not args.no_run:
            (tmp / "out.tsv").unlink()
            run_s, whole = timed(lambda: BatchRun(str(plugin), EntitySource(path=str(ids)), attributes=str(definitions),
                                                  backend="serial", out=tmp / "out.tsv", run_dir=tmp / "run2"))
            run_s, _ = timed(lambda: [None for _ in whole])
            assert (tmp / "run2" / provenance.RUN_CONFIG).is_file() and whole.report.n_units == args.lines
            rows.append(("whole run, trivial plugin, serial (with capture)", run_s))
        for label, seconds in rows:
            print(f"{label:<52} {seconds:8.3f} s   {size / 1e6 / seconds:8.0f} MB/s")
        if not args.no_run:
            print(f"\ncapture / whole run: {capture_s / run_s:.1%}")
        print(f"capture / streaming the ids alone: {capture_s / stream_s:.1%}")


if __name__ == "__main__":
    sys.exit(main())
