"""Living with many runs as a user does: ``provbatch runs`` (with --plugin, --since), ``runs prune``,
``provbatch show`` of the latest run, and ``provbatch report`` rendered in a real headless Chromium.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from conftest import run_cli, write_source

#: every datatype of the grammar, a composite and an array among them
TYPES_DEFINITIONS = """\
n: {definition: length of the id, datatype: Integer}
ratio: {definition: a fraction, datatype: Float}
even: {definition: length is even, datatype: Boolean}
tag: {definition: a short tag, datatype: "String(8)"}
note: {definition: free text, datatype: Text}
pair: {definition: length and its half, datatype: "Integer;Float"}
digits: {definition: the digits of the length, datatype: "Integer[4]"}
"""
TYPES_PLUGIN = """\
import time
ID = "types"
VERSION = "1.0"
INPUT = "an id"
OUTPUT = ["n", "ratio", "even", "tag", "note", "pair", "digits"]

def compute(entity, delay=0.0, **kwargs):
    time.sleep(float(delay))
    if entity.startswith("bad"):
        raise ValueError(f"bad entity {entity}")
    if entity.startswith("odd"):
        raise KeyError(entity)
    n = len(entity)
    return [n, n / 10, n % 2 == 0, "t" + str(n % 3), "note " + entity, (n, n / 2), [int(d) for d in str(n)]], []
"""
DELAY_PARAMETERS = 'PARAMETERS = [("delay", "Float", "0", "seconds per entity")]\n'


@pytest.fixture
def runs_env(tmp_path):
    """A runs root of its own, so that listing and pruning see only this test's runs."""
    root = tmp_path / "runs"
    return {"PROVBATCH_RUNS": str(root)}, root


def types_plugin(folder: Path) -> Path:
    write_source(folder, "attribute_definitions.yaml", TYPES_DEFINITIONS)
    return write_source(folder, "types.py", TYPES_PLUGIN.replace('OUTPUT = [', DELAY_PARAMETERS + 'OUTPUT = ['))


def provbatch(*args, cwd, env) -> subprocess.CompletedProcess:
    return run_cli(*args, cwd=cwd, env=env, prog="provbatch")


def one_run(folder: Path, env: dict, ids: list[str], name: str, *extra: str) -> Path:
    (folder / f"{name}.txt").write_text("".join(i + "\n" for i in ids))
    proc = run_cli("types.py", f"{name}.txt", "--out", f"{name}.tsv", *extra, cwd=folder, env=env)
    assert proc.returncode in (0, 1, 3), proc.stderr  # 3: some entities failed (EXIT_ENTITIES_FAILED)
    return folder / f"{name}.tsv"


def set_started(run_dir: Path, when: datetime) -> None:
    """Age a run: rewrite the start time in its manifest (the only clock ``runs`` and ``prune`` read)."""
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["started"] = when.isoformat(timespec="milliseconds")
    (run_dir / "manifest.json").write_text(json.dumps(manifest))


def run_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir())


# --------------------------------------------------------------------------- runs, prune, show


def test_runs_lists_each_run_with_uuid_plugin_status_counts_and_directory(tmp_path, runs_env, write_plugin):
    env, root = runs_env
    types_plugin(tmp_path)
    one_run(tmp_path, env, ["a", "bb", "bad1"], "first")
    write_plugin('ID = "other"\nVERSION = "1"\nINPUT = "x"\nOUTPUT = ["n"]\n'
                 'def compute(entity, **kw):\n    return [len(entity)], []\n', "other.py")
    (tmp_path / "o.txt").write_text("x\nyy\n")
    assert run_cli("other.py", "o.txt", "--out", "o.tsv", cwd=tmp_path, env=env).returncode == 0
    first, second = run_dirs_by_start(root)
    proc = provbatch("runs", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["RUN", "PLUGIN", "STATUS", "COUNTS", "STARTED", "DIRECTORY"]
    assert len(lines) == 3
    uuid_1 = json.loads((first / "manifest.json").read_text())["uuid"]
    assert re.match(uuid_1[:8] + r"  types +finished  2 computed, 1 failed, 0 skipped  \d{4}-\d\d-\d\d \d\d:\d\d:\d\d  ", lines[1])
    assert lines[1].endswith(str(first))
    assert lines[2].split()[1:7] == ["other", "finished", "2", "computed,", "0", "failed,"]
    assert lines[2].endswith(str(second))

    only = provbatch("runs", "--plugin", "other", cwd=tmp_path, env=env)
    assert only.stdout.splitlines()[1:] == [lines[2]]
    set_started(first, datetime.now(timezone.utc) - timedelta(days=10))
    recent = provbatch("runs", "--since", "3d", cwd=tmp_path, env=env)
    assert recent.stdout.splitlines()[1:] == [lines[2]]
    by_date = provbatch("runs", "--since", (datetime.now() - timedelta(days=11)).strftime("%Y-%m-%d"), cwd=tmp_path, env=env)
    assert len(by_date.stdout.splitlines()) == 3
    none = provbatch("runs", "--since", "2999-01-01", cwd=tmp_path, env=env)
    assert (none.returncode, none.stdout, none.stderr) == (0, "", f"no runs under {root} matching the filters\n")
    bad = provbatch("runs", "--since", "last tuesday", cwd=tmp_path, env=env)
    assert bad.returncode == 2
    assert bad.stderr == ("provbatch runs: error: --since last tuesday: not a date "
                          "(use 2024-05-01, 2024-05-01T14:00 or an age such as 3d)\n")


def run_dirs_by_start(root: Path) -> list[Path]:
    return sorted(run_dirs(root), key=lambda p: json.loads((p / "manifest.json").read_text())["started"])


def test_prune_removes_old_run_records_only_and_keeps_failed_ones_when_asked(tmp_path, runs_env):
    env, root = runs_env
    types_plugin(tmp_path)
    results = [one_run(tmp_path, env, ["a", "bb"], "ok_old"),
               one_run(tmp_path, env, ["a", "bad1"], "failed_old"),
               one_run(tmp_path, env, ["ccc"], "ok_new")]
    ok_old, failed_old, ok_new = run_dirs_by_start(root)
    (root / "not-a-run").mkdir()  # a folder without a manifest is never touched
    now = datetime.now(timezone.utc)
    set_started(ok_old, now - timedelta(days=40))
    set_started(failed_old, now - timedelta(days=31))
    contents = [p.read_bytes() for p in results]

    dry = provbatch("runs", "prune", "--older-than", "30d", "--dry-run", cwd=tmp_path, env=env)
    assert dry.stdout == f"would remove 2 of 3 runs under {root} (started more than 30d ago)\n"
    assert len(run_dirs(root)) == 4
    kept = provbatch("runs", "prune", "--older-than", "30d", "--keep-failed", cwd=tmp_path, env=env)
    assert kept.returncode == 0, kept.stderr
    assert kept.stdout == f"removed 1 of 3 runs under {root} (started more than 30d ago, failed ones kept)\n"
    assert run_dirs(root) == sorted([failed_old, ok_new, root / "not-a-run"])
    gone = provbatch("runs", "prune", "--older-than", "30d", cwd=tmp_path, env=env)
    assert gone.stdout == f"removed 1 of 2 runs under {root} (started more than 30d ago)\n"
    assert run_dirs(root) == sorted([ok_new, root / "not-a-run"])
    assert [p.read_bytes() for p in results] == contents  # the user's results are never touched
    bad = provbatch("runs", "prune", "--older-than", "a month", cwd=tmp_path, env=env)
    assert (bad.returncode, bad.stderr) == (2, "provbatch runs prune: error: --older-than a month: not an age "
                                                "(use a number and a unit: 30d, 12h, 90m, 2w, 45s)\n")


def test_show_without_argument_shows_the_latest_run(tmp_path, runs_env):
    env, root = runs_env
    empty = provbatch("show", cwd=tmp_path, env=env)
    assert (empty.returncode, empty.stderr) == (2, f"provbatch show: error: {root}: no runs yet (run a batch, or give a run directory)\n")
    types_plugin(tmp_path)
    one_run(tmp_path, env, ["a"], "one")
    one_run(tmp_path, env, ["a", "bb", "ccc"], "two")
    latest = run_dirs_by_start(root)[-1]
    proc = provbatch("show", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert f"directory    {latest}" in proc.stdout.splitlines()
    assert "counts       computed 3, failed 0" in proc.stdout


# --------------------------------------------------------------------------- the HTML report


def chromium(*args: str) -> subprocess.CompletedProcess:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    assert binary, "chromium is needed (Debian package 'chromium'; make system-deps installs it)"
    return subprocess.run([binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--no-first-run", "--disable-background-networking", *args],
                          capture_output=True, text=True, timeout=120)


def test_html_report_renders_in_headless_chromium_with_a_plot_per_attribute(tmp_path, runs_env):
    env, root = runs_env
    types_plugin(tmp_path)
    ids = [f"e{'x' * (i % 13)}{i}" for i in range(36)] + ["bad1", "bad2", "bad3", "bad4", "oddA"]
    results = one_run(tmp_path, env, ids, "all", "--param", "delay=0.06", "--backend", "serial")
    run_dir = run_dirs(root)[0]
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events].count("progress") >= 1  # the run took > 2 s: progress events were written

    proc = provbatch("report", str(run_dir), "--html", "page.html", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "report: page.html\n"
    page = (tmp_path / "page.html").read_text()
    # self-contained: no script, no stylesheet or image to fetch, no URL but the SVG namespace
    assert not re.search(r"<script|<link|<img|src=|href=|@import|url\(", page)
    assert set(re.findall(r"https?://[^\"' ]+", page)) == {"http://www.w3.org/2000/svg"}

    dom = chromium("--dump-dom", (tmp_path / "page.html").as_uri())
    assert dom.returncode == 0, dom.stderr
    html = dom.stdout
    for section in ("overview", "attributes", "failures", "throughput", "provenance"):
        assert f'<section id="{section}">' in html
    # one plot per attribute, a composite per component: histograms of numbers, bars of the rest
    for name in ("n", "ratio", "pair[1]", "pair[2]", "digits"):
        assert f'aria-label="histogram of {name}"' in html
    for name in ("even", "tag", "note"):
        assert f'aria-label="value counts of {name}"' in html
    assert html.count('class="plot histogram"') == 5 and html.count('class="plot bars"') == 3
    assert '<svg class="plot line" role="img" aria-label="entities computed"' in html
    # summary statistics from the typed values: 36 computed, lengths 2..15
    lengths = sorted(len(i) for i in ids[:36])
    assert '<div class="attribute" id="attr-n">' in html
    n_stats = html.split('id="attr-n"')[1].split("</table>")[0]
    assert f"<th>values</th><td>36</td>" in n_stats and f"<th>min</th><td>{lengths[0]}</td>" in n_stats
    assert f"<th>max</th><td>{lengths[-1]}</td>" in n_stats
    even_stats = html.split('id="attr-even"')[1].split("</table>")[0]
    n_even = sum(1 for n in lengths if n % 2 == 0)
    top = ("true", n_even) if n_even >= 36 - n_even else ("false", 36 - n_even)
    assert f"<th>distinct</th><td>2</td>" in even_stats and f"<th>most frequent</th><td>{top[0]} ({top[1]})</td>" in even_stats
    # failures by error class, most frequent first, with examples
    failures = html.split('<table class="failures">')[1].split("</table>")[0]
    assert re.findall(r"<tr><td>(\w+)</td><td>(\d+)</td>", failures) == [("ValueError", "4"), ("KeyError", "1")]
    assert "<code>bad1</code>: bad entity bad1" in failures and "<code>bad4</code>" not in failures  # 3 examples a class
    assert re.search(r"<p>36 entities in \d+\.\d\d s: [\d.]+ entities/s overall</p>", html)
    assert f"directory    {run_dir}" in html
    assert results.is_file()

    shot = tmp_path / "page.png"
    picture = chromium("--window-size=1200,2400", f"--screenshot={shot}", (tmp_path / "page.html").as_uri())
    assert picture.returncode == 0, picture.stderr
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (1200, 2400)


def test_report_of_the_latest_run_by_default_and_errors_in_one_line(tmp_path, runs_env):
    env, root = runs_env
    types_plugin(tmp_path)
    one_run(tmp_path, env, ["a", "bb"], "one")
    run_dir = run_dirs(root)[0]
    proc = provbatch("report", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"report: {run_dir / 'report.html'}\n"
    missing = provbatch("report", "nowhere", cwd=tmp_path, env=env)
    assert (missing.returncode, missing.stderr) == (2, "provbatch report: error: nowhere: no such run directory "
                                                       "(give its path, or the uuid of a run under $PROVBATCH_RUNS)\n")
    (tmp_path / "mine.html").write_text("my own notes\n")
    refused = provbatch("report", str(run_dir), "--html", "mine.html", cwd=tmp_path, env=env)
    assert (refused.returncode, refused.stderr) == (2, "provbatch report: error: mine.html: exists and is not a provbatch "
                                                       "report; not overwritten (choose another --html FILE)\n")
    assert (tmp_path / "mine.html").read_text() == "my own notes\n"
    again = provbatch("report", cwd=tmp_path, env=env)  # its own page is replaced
    assert again.returncode == 0, again.stderr
    (tmp_path / "one.tsv").unlink()
    gone = provbatch("report", str(run_dir), "--html", "p.html", cwd=tmp_path, env=env)
    assert gone.returncode == 0
    assert f"{tmp_path / 'one.tsv'}: not found (moved or deleted since the run)" in (tmp_path / "p.html").read_text()
