"""What the progress line costs: the same batch with stderr on a terminal (progress drawn by tqdm)
and with --no-progress, side by side, interleaved, best of each.

    python benchmarks/bench_progress.py [--entities N] [--rounds R]

Prints the two times and their ratio; issue 18 asks that the progress display cost nothing
notable (the engine updates it once per chunk, not per entity).
"""

from __future__ import annotations

import argparse
import os
import pty
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


def run_on_terminal(args: list[str]) -> float:
    """Wall seconds of ``args`` with stderr on a pseudo-terminal (its output drained as it comes)."""
    leader, follower = pty.openpty()
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=follower)
    os.close(follower)
    while True:
        try:
            if not os.read(leader, 65536):
                break
        except OSError:
            break
    proc.wait()
    seconds = time.perf_counter() - start
    os.close(leader)
    if proc.returncode != 0:
        sys.exit(f"{args} failed with {proc.returncode}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        ids = work / "ids.txt"
        ids.write_text("".join(f"id{i:07d}\n" for i in range(options.entities)))
        os.environ["PROVBATCH_RUNS"] = str(work / "runs")
        base = [str(BIN / "batch-compute"), str(HERE / "plugins" / "trivial.py"), str(ids), "--backend", "serial",
                "--attributes", str(HERE / "plugins" / "attribute_definitions.yaml")]
        shown, hidden = [], []
        for round_ in range(options.rounds):
            for label, extra, times in (("progress", [], shown), ("no-progress", ["--no-progress"], hidden)):
                out = work / f"{label}-{round_}.tsv"
                times.append(run_on_terminal(base + ["--out", str(out), *extra]))
                out.unlink()
        best_shown, best_hidden = min(shown), min(hidden)
        print(f"{options.entities:,} trivial entities, serial backend, best of {options.rounds}:")
        print(f"  progress line shown (tqdm): {best_shown:.2f} s")
        print(f"  --no-progress:              {best_hidden:.2f} s")
        print(f"  ratio shown / hidden:       {best_shown / best_hidden:.3f}")


if __name__ == "__main__":
    main()
