"""What issue 13's guards cost on trivial entities: fd-level capture of plugin output, and the resume check.

Side by side in one process, on N trivial entities (default 1,000,000, the ``trivial.py``
benchmark plugin, chunks of 256 as the driver computes them):

- capture, the whole batch (11a): ``BatchRun.run_to_end()`` (what ``batch-compute ids.txt
  --out o.tsv`` runs, default backend ``auto``, which computes trivial entities in the
  driver) on an ids file, with the real :class:`~provbatch.execution.capture.OutputCapture`
  and with one that captures nothing put in its place; CPU time (and wall). Each paired round
  runs in a fresh interpreter of its own (``--one-round``: a warm-up of both sides on a tenth
  of the ids, then the two sides, the order alternating between processes), and the verdict is
  the median of the rounds' CPU ratios, the best of each printed beside it; every results file
  checked (N lines, N distinct ids). A process of its own per round because the process's memory
  layout decides the sign: with all rounds in one process they agreed in sign within it and not
  from one process to the next (-8 % in one sitting, +15 % in the next), and with address-space
  randomization off (``setarch -R``: one and the same layout every time) three processes gave
  -7.9, -7.0 and -6.5 %, with it on +12.8, +1.0 and +5.6 % (docs/performance.md, 2026-12-02).
  A fresh layout per round samples that effect instead of drawing it once for the whole row
  (as Curtsinger and Berger's Stabilizer argues for performance comparisons);
- capture, the compute loop alone (11b): the same chunks computed by a ChunkRunner as the
  driver's serial path does (capture held over the whole span, taken after each chunk), and
  (for information, 11b') as workers and the API's iterator do (fds pointed away and back
  around each chunk), against a runner whose capture does nothing, and a second such runner as the control (the
  noise floor of the machine); the four take turns every
  40 chunks (so that the load of other processes falls on them alike), best of 5 passes; each
  turn of the held side starts by pointing the fds at the capture, once (2 dup2 per 40 chunks);
- resume check (11c, 11d): claiming a results file of N * 35 % rows (identity read and
  compared, or the column check of a file written before identities: the worst case), against
  the time the same run spends reading those rows to skip them (existing_ids, which resume
  did before issue 13).

Prints the ratios; the target is < 5 % for each (issue 13). Not a timed test.

    python benchmarks/bench_integrity_cost.py [--n 1000000] [--rounds 8] [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _scale import PLUGINS, check_results, ids_file, load_average, paired_ratio, result  # noqa: E402

import provbatch.engine.lifecycle as lifecycle_module
from provbatch.execution.capture import OutputCapture
from provbatch.execution.runner import ChunkRunner, RunnerConfig
from provbatch.inputs.entities import EntitySource
from provbatch.outputs.identity import ResultsIdentity, claim, identity_path
from provbatch.outputs.tsv import existing_ids
from provbatch.plugins.loading import load_plugin

HERE = Path(__file__).resolve().parent
PLUGIN = HERE / "plugins" / "trivial.py"
CHUNK = 256
#: 11a: the runs of each side in one round (one process), taking turns; the round's figure is the best of each
RUNS_PER_ROUND = 3
#: the compute loop's sides take turns every BLOCK chunks; best of ROUNDS passes
BLOCK = 40
ROUNDS = 5


class NoCapture:
    """A capture that captures nothing: the baseline (same methods as OutputCapture)."""

    closed = False

    def __enter__(self) -> NoCapture:
        return self

    def __exit__(self, *_exc: Any) -> None:
        return None

    def take(self) -> list[str]:
        return []

    def hold(self) -> None:
        return None

    def restore(self) -> None:
        return None

    def close(self) -> None:
        self.closed = True


def compute_all(runner: ChunkRunner, chunks: list[list[tuple[str, str, int]]], held: bool) -> tuple[float, float]:
    """The driver's loop (SerialPool): compute a chunk, take its captured output; wall and CPU seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    if held:
        runner.capture.hold()
    for chunk in chunks:
        runner.run_chunk(chunk)
        runner.take_output()
    runner.capture.restore()
    return time.perf_counter() - wall, time.process_time() - cpu


def one_round(ids: Path, n: int, sides: list[str], work: Path) -> dict[str, tuple[float, float]]:
    """One paired round of 11a in this process (``--one-round``): both sides warmed up on a tenth of the ids,
    then :data:`RUNS_PER_ROUND` runs of each side, taking turns (ABBAAB: each side as often first as second);
    the best (wall, CPU) seconds of each side."""
    from provbatch.engine.batch import BatchRun

    attributes = PLUGINS / "attribute_definitions.yaml"

    def run_side(side: str, source: Path, label: str) -> tuple[float, float]:
        out = work / f"o-{label}-{side}.tsv"
        lifecycle_module.OutputCapture = NoCapture if side == "none" else OutputCapture  # type: ignore[misc]
        try:
            run = BatchRun(str(PLUGINS / "trivial.py"), EntitySource(path=str(source)), out=str(out),
                           attributes=str(attributes), run_dir=str(work / f"run-{label}-{side}"))
            wall, cpu = time.perf_counter(), time.process_time()
            run.run_to_end()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        finally:
            lifecycle_module.OutputCapture = OutputCapture  # type: ignore[misc]
        if label == "timed":
            check = check_results(out, n)
            print(f"    {'with' if side == 'capture' else 'without'} capture: {wall:.3f} s wall, {cpu:.3f} s CPU, "
                  f"backend {run.report.backend} ({check})", flush=True)
        out.unlink()
        return wall, cpu

    warm_up = ids_file(max(n // 10, 1))
    for side in sides:
        run_side(side, warm_up, "warm-up")
    best = {side: (float("inf"), float("inf")) for side in sides}
    for turn in range(RUNS_PER_ROUND):
        for side in sides if turn % 2 == 0 else sides[::-1]:
            wall, cpu = run_side(side, ids, "timed")
            best[side] = (min(best[side][0], wall), min(best[side][1], cpu))
    return best


def whole_batch(n: int, rounds: int, work: Path) -> None:
    """11a: ``rounds`` paired rounds of run_to_end() on the ids file, real capture against none, each round in
    a fresh interpreter (one memory layout per round), the order alternating."""
    best = {"capture": [float("inf"), float("inf")], "none": [float("inf"), float("inf")]}
    cpu_rounds: list[dict[str, float]] = []
    for round_ in range(rounds):
        sides = ["none", "capture"] if round_ % 2 == 0 else ["capture", "none"]
        print(f"  round {round_ + 1}, a fresh process:", flush=True)
        child = subprocess.run([sys.executable, __file__, "--one-round", ",".join(sides), "--n", str(n),
                                "--work", str(work)], stdout=subprocess.PIPE, text=True)
        lines = child.stdout.splitlines()
        print("\n".join(line for line in lines if not line.startswith("ROUND ")), flush=True)
        measured = [json.loads(line[len("ROUND "):]) for line in lines if line.startswith("ROUND ")]
        if child.returncode != 0 or not measured:
            sys.exit(f"11a: round {round_ + 1} failed (exit {child.returncode})")
        for side, (wall, cpu) in measured[0].items():
            best[side] = [min(best[side][0], wall), min(best[side][1], cpu)]
        cpu_rounds.append({side: cpu for side, (_wall, cpu) in measured[0].items()})
    wall_ratio = best["capture"][0] / best["none"][0] - 1
    best_cpu_ratio = best["capture"][1] / best["none"][1] - 1
    cpu_ratio, ratios = paired_ratio(cpu_rounds, "capture", "none")
    cpu_ratio, cpu_ratios = cpu_ratio - 1, [ratio - 1 for ratio in ratios]
    print(f"whole batch, {n} trivial ids to a file (run_to_end, as batch-compute), a process per round: best of {rounds}: "
          f"{best['none'][0]:.3f} s without capture, {best['capture'][0]:.3f} s with: {wall_ratio * 100:+.2f} % wall; "
          f"CPU {best['none'][1]:.3f} s vs {best['capture'][1]:.3f} s: {best_cpu_ratio * 100:+.2f} %; the rounds' own CPU "
          f"ratios {', '.join(f'{ratio * 100:+.1f}' for ratio in cpu_ratios)} %: median {cpu_ratio * 100:+.2f} %")
    # the verdict on CPU time: what the capture costs is system calls of this process; on a machine shared
    # with other work the wall time of a round moves by more than that from one round to the next
    result(f"11a capture of plugin output, whole batch, {n} trivial ids", f"{cpu_ratio * 100:+.2f} % CPU (median of "
           f"{rounds} paired rounds, a process each; best of each {best_cpu_ratio * 100:+.2f} %), {wall_ratio * 100:+.2f} % wall",
           "< 5 % (CPU)", cpu_ratio < 0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=8, help="paired rounds of the whole batch, a process each (default 8)")
    parser.add_argument("--quick", action="store_true", help="100,000 entities: a smoke run (run_all.py --quick)")
    parser.add_argument("--one-round", metavar="SIDES", help=argparse.SUPPRESS)  # a round of 11a, in its own process
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    options = parser.parse_args()
    n = 100_000 if options.quick else options.n
    if options.one_round:
        measured = one_round(ids_file(n), n, options.one_round.split(","), options.work)
        print("ROUND " + json.dumps(measured), flush=True)
        return
    print(f"issue 13 guards on {n} trivial entities; {load_average()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="provbatch-bench-") as folder:
        whole_batch(n, 3 if options.quick else options.rounds, Path(folder))
    plugin = load_plugin(str(PLUGIN))
    config = RunnerConfig(spec=plugin.spec, params={}, datatypes=("Integer",), output_names=tuple(plugin.output))
    ids = [f"id{i:07d}" for i in range(n)]
    chunks = [[(i, i, 1) for i in ids[start:start + CHUNK]] for start in range(0, n, CHUNK)]
    with_capture = ChunkRunner(config, module=plugin.module)
    without = ChunkRunner(config, module=plugin.module, capture=NoCapture())  # type: ignore[arg-type]
    # interleaved finely: blocks of BLOCK chunks (~10-50 ms), each computed by the three sides in turn (the
    # order turning), times summed per side over a pass; best of ROUNDS passes. Load from other processes then
    # falls on the three sides alike, which whole passes one after the other (seconds each) do not ensure.
    blocks = [chunks[start:start + BLOCK] for start in range(0, len(chunks), BLOCK)]
    # "again": a second runner without capture, the control: how far two identical sides differ here
    again = ChunkRunner(config, module=plugin.module, capture=NoCapture())  # type: ignore[arg-type]
    runners = {"without": without, "again": again, "held": with_capture, "per chunk": with_capture}
    best = {side: [float("inf"), float("inf")] for side in runners}
    for _round in range(ROUNDS):
        total = {side: [0.0, 0.0] for side in best}
        for number, block in enumerate(blocks):
            sides = list(runners)
            sides = sides[number % 4:] + sides[:number % 4]
            for side in sides:
                runner = runners[side]
                wall, cpu = compute_all(runner, block, held=side != "per chunk")
                total[side][0] += wall
                total[side][1] += cpu
        for side in best:
            best[side] = [min(best[side][0], total[side][0]), min(best[side][1], total[side][1])]
    ratios = {side: (best[side][0] / best["without"][0] - 1, best[side][1] / best["without"][1] - 1)
              for side in ("again", "held", "per chunk")}
    per_chunk_us = (best["per chunk"][1] - best["without"][1]) / len(chunks) * 1e6
    print(f"compute loop, {n} trivial entities in chunks of {CHUNK}, four sides in turn every {BLOCK} chunks, best of {ROUNDS} (wall / CPU): "
          f"{best['without'][0]:.3f} / {best['without'][1]:.3f} s without capture; "
          f"{best['held'][0]:.3f} / {best['held'][1]:.3f} s with the capture held (the driver): "
          f"{ratios['held'][0] * 100:+.2f} % / {ratios['held'][1] * 100:+.2f} %; "
          f"{best['per chunk'][0]:.3f} / {best['per chunk'][1]:.3f} s with fds pointed away and back per chunk "
          f"(workers, iter_batch): {ratios['per chunk'][0] * 100:+.2f} % / {ratios['per chunk'][1] * 100:+.2f} % "
          f"({per_chunk_us:.1f} µs of CPU per chunk)")
    result(f"11b capture of plugin output, compute loop in the driver, {n} trivial entities",
           f"{ratios['held'][1] * 100:+.2f} % CPU, {ratios['held'][0] * 100:+.2f} % wall", "< 5 % (CPU)",
           ratios["held"][1] < 0.05)
    print(f"11b' (information) the same, fds pointed away and back around each chunk of {CHUNK}: "
          f"{ratios['per chunk'][1] * 100:+.2f} % CPU, {ratios['per chunk'][0] * 100:+.2f} % wall")
    print(f"control: a second runner without capture, the same way: {ratios['again'][1] * 100:+.2f} % CPU, "
          f"{ratios['again'][0] * 100:+.2f} % wall (differences within this are the machine's, not the capture's)")

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
        result(f"11{'c' if what == 'identity check' else 'd'} resume: {what}, {done} rows", f"+{ratio * 100:.2f} %",
               "< 5 %" if what == "identity check" else "< 5 % (once per old file)", ratio < 0.05)


if __name__ == "__main__":
    main()
