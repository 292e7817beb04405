"""What issue 13's guards cost on trivial entities: fd-level capture of plugin output, and the resume check.

Side by side in one process, on N trivial entities (default 1,000,000, the ``trivial.py``
benchmark plugin, chunks of 256 as the driver computes them):

- capture: the same chunks computed by a ChunkRunner whose capture is the real
  :class:`~provbatch.execution.capture.OutputCapture` (dup2 of fds 1 and 2 around
  each chunk, C and Python buffers flushed, the capture files read) and by one
  whose capture does nothing; best of 6 interleaved rounds each;
- resume check: claiming a results file of N * 35 % rows (identity read and
  compared, or the column check of a file written before identities: the worst
  case), against the time the same run spends reading those rows to skip them
  (existing_ids, which resume did before issue 13).

Prints the ratios; the target is < 5 % for each (issue 13). Not a timed test.

    python benchmarks/bench_integrity_cost.py [--n 1000000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from provbatch.execution.runner import ChunkRunner, RunnerConfig
from provbatch.outputs.identity import ResultsIdentity, claim, identity_path
from provbatch.outputs.tsv import existing_ids
from provbatch.plugins.loading import load_plugin

from _scale import result

HERE = Path(__file__).resolve().parent
PLUGIN = HERE / "plugins" / "trivial.py"
CHUNK = 256


class NoCapture:
    """A capture that captures nothing: the baseline."""

    closed = False

    def __enter__(self) -> "NoCapture":
        return self

    def __exit__(self, *_exc: Any) -> None:
        return None

    def take(self) -> list[str]:
        return []


def compute_all(runner: ChunkRunner, chunks: list[list[tuple[str, str, int]]]) -> float:
    started = time.perf_counter()
    for chunk in chunks:
        runner.run_chunk(chunk)
        runner.take_output()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="100,000 entities: a smoke run (run_all.py --quick)")
    options = parser.parse_args()
    n = 100_000 if options.quick else options.n
    plugin = load_plugin(str(PLUGIN))
    config = RunnerConfig(spec=plugin.spec, params={}, datatypes=("Integer",), output_names=tuple(plugin.output))
    ids = [f"id{i:07d}" for i in range(n)]
    chunks = [[(i, i, 1) for i in ids[start:start + CHUNK]] for start in range(0, n, CHUNK)]
    with_capture = ChunkRunner(config, module=plugin.module)
    without = ChunkRunner(config, module=plugin.module, capture=NoCapture())  # type: ignore[arg-type]
    best_with, best_without = float("inf"), float("inf")
    for round_ in range(6):  # interleaved, alternating which goes first: load from other processes hits both
        pair = (without, with_capture) if round_ % 2 == 0 else (with_capture, without)
        for runner in pair:
            seconds = compute_all(runner, chunks)
            if runner is without:
                best_without = min(best_without, seconds)
            else:
                best_with = min(best_with, seconds)
    capture_ratio = best_with / best_without - 1
    print(f"compute of {n} trivial entities in chunks of {CHUNK}: {best_without:.3f} s without capture, "
          f"{best_with:.3f} s with capture: +{capture_ratio * 100:.2f} % ({'PASS' if capture_ratio < 0.05 else 'FAIL'} < 5 %)")
    result(f"11a capture of plugin output, {n} trivial entities", f"+{capture_ratio * 100:.2f} %", "< 5 %",
           capture_ratio < 0.05)

    with tempfile.TemporaryDirectory(prefix="provbatch-bench-") as folder:
        results = Path(folder) / "o.tsv"
        done = int(n * 0.35)
        results.write_text("".join(f"{i}\t{len(i)}\n" for i in ids[:done]))
        identity = ResultsIdentity(plugin.id, plugin.version, plugin.sha256(), {}, tuple(plugin.output))
        started = time.perf_counter()
        existing_ids(results)
        read_seconds = time.perf_counter() - started
        started = time.perf_counter()
        claim(results, identity)  # no identity yet: the column check of an old file (worst case), then recorded
        legacy_seconds = time.perf_counter() - started
        started = time.perf_counter()
        claim(results, identity)  # the identity recorded: read and compared
        check_seconds = time.perf_counter() - started
        identity_path(results).unlink()
    for what, seconds in (("identity check", check_seconds), ("first resume of an old file (column check)", legacy_seconds)):
        ratio = seconds / read_seconds
        print(f"resume of {done} rows: {what} {seconds * 1e3:.1f} ms vs {read_seconds * 1e3:.1f} ms reading the done ids: "
              f"+{ratio * 100:.2f} % ({'PASS' if ratio < 0.05 else 'over 5 %' } )")
        result(f"11{'b' if what == 'identity check' else 'c'} resume: {what}, {done} rows", f"+{ratio * 100:.2f} %",
               "< 5 %" if what == "identity check" else "< 5 % (once per old file)", ratio < 0.05)


if __name__ == "__main__":
    main()
