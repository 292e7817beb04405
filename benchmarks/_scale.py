"""Helpers shared by the performance benchmarks (issue 8): data, timed CLI runs, output checks, verdicts.

Every benchmark prints its measurements, then one line per target::

    RESULT {"target": "...", "measured": "...", "goal": "...", "pass": true}

which benchmarks/run_all.py collects into its table.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PLUGINS = REPO / "benchmarks" / "plugins"
BIN = Path(sys.executable).parent


def cache_dir() -> Path:
    """Where generated ids files and the prenacs venv are kept between runs ($PROVBATCH_BENCH_CACHE)."""
    env = os.environ.get("PROVBATCH_BENCH_CACHE")
    if env:
        folder = Path(env).expanduser()
    else:
        import platformdirs

        folder = Path(platformdirs.user_cache_dir("provbatch")) / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def ids_file(n: int, prefix: str = "id") -> Path:
    """``n`` distinct ids ``{prefix}_{i:08d}``, one per line, generated once into the cache."""
    path = cache_dir() / f"ids_{prefix}_{n}.txt"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w") as out:
            step = 1_000_000
            for start in range(0, n, step):
                out.write("".join(f"{prefix}_{i:08d}\n" for i in range(start, min(n, start + step))))
        tmp.replace(path)
    return path


def load_average() -> str:
    one, five, _fifteen = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} CPUs"


@dataclass
class Timed:
    seconds: float
    max_rss_mb: float  # peak resident memory of the process (and of the children it waited for)
    returncode: int
    stderr: str


def timed_run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> Timed:
    """Run a command, its wall time and peak RSS (os.wait4 of that very process)."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, cwd=cwd, env={**os.environ, **(env or {})},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stderr = process.stderr.read() if process.stderr else ""
    _pid, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    return Timed(seconds, usage.ru_maxrss / 1024, process.returncode, stderr)


def batch_compute(*args: object) -> list[str]:
    return [str(BIN / "batch-compute"), *map(str, args)]


def run_env(work: Path) -> dict[str, str]:
    """Run records of the benchmark runs go to ``work``, not to the user's state directory."""
    return {"PROVBATCH_RUNS": str(work / "runs")}


def check_results(path: Path, n: int, ids: Path | None = None) -> str:
    """The results file has ``n`` lines with ``n`` distinct ids (all of them from ``ids`` when given);
    exits with the problem otherwise. Uses sort(1), which handles ten million lines in seconds."""
    lines = int(subprocess.run(["wc", "-l", str(path)], capture_output=True, text=True, check=True).stdout.split()[0])
    env = {**os.environ, "LC_ALL": "C"}
    script = f"cut -f1 '{path}' | sort -u -S 25% | wc -l"
    distinct = int(subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True, env=env).stdout)
    problems = []
    if lines != n:
        problems.append(f"{lines} lines, expected {n}")
    if distinct != lines:
        problems.append(f"{lines - distinct} duplicate ids")
    if ids is not None and not problems:
        script = f"cut -f1 '{path}' | sort -S 25% | comm -13 <(sort -S 25% '{ids}') - | head -3"
        stray = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True, env=env).stdout.split()
        if stray:
            problems.append(f"ids that are not in the input, e.g. {stray}")
    if problems:
        sys.exit(f"{path}: output check failed: {'; '.join(problems)}")
    return f"checked: {lines} lines, {distinct} distinct ids"


def paired_ratio(rounds: list[dict[str, float]], numerator: str, denominator: str) -> tuple[float, list[float]]:
    """The median of the rounds' own ratios ``numerator / denominator``, and those ratios.

    The verdict of an interleaved comparison here: each round's runs are neighbours in time, and on
    this shared VM one and the same command's time moves by up to 10 % from one minute to the next,
    so the best of each side pairs runs of different minutes (its luckiest of each; docs/performance.md).
    """
    ratios = [times[numerator] / times[denominator] for times in rounds]
    return statistics.median(ratios), ratios


def result(target: str, measured: str, goal: str, passed: bool) -> None:
    """The verdict line of a target (collected by run_all.py)."""
    print(f"{target}: {measured} (goal: {goal}) -> {'PASS' if passed else 'FAIL'}")
    print("RESULT " + json.dumps({"target": target, "measured": measured, "goal": goal, "pass": passed}), flush=True)


def fresh(folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder
