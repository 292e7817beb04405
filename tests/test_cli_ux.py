"""The command line as a new user meets it: --version, --lang aliases, the unquoted-glob hint, a
missing plugin path, trial runs (--dry-run, --limit, --sample), progress on a terminal, and the
plugin definitions of an installed package."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess

import pytest
import yaml

from conftest import BIN, REPO, install_plugin_package, run_cli

LENGTH = """\
import time
ID = "length"; VERSION = "1"; INPUT = "x"; OUTPUT = ["length"]
PARAMETERS = [("sleep", "Float", "0", "seconds per entity")]
def compute(entity, sleep=0.0, **kwargs):
    time.sleep(sleep)
    if entity.startswith("bad"):
        raise ValueError("bad " + entity)
    return [len(entity)], []
"""


@pytest.fixture
def length(tmp_path, write_plugin, attributes_file):
    return write_plugin(LENGTH, "length.py")


def test_version_on_both_commands():
    from provbatch import __version__

    for prog in ("batch-compute", "provbatch"):
        proc = run_cli("--version", prog=prog)
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, f"{prog} {__version__}\n", "")


def test_lang_aliases_for_new(tmp_path):
    for number, (lang, suffix) in enumerate((("python", ".py"), ("sh", ".sh"), ("Python", ".py"))):
        proc = run_cli("new", f"p{number}", "--lang", lang, "--dir", tmp_path, prog="provbatch")
        assert proc.returncode == 0, proc.stderr
        assert (tmp_path / f"p{number}{suffix}").is_file()
    bad = run_cli("new", "q", "--lang", "java", "--dir", tmp_path, prog="provbatch")
    assert bad.returncode == 2 and "'java' is not one of" in bad.stderr and "python" in bad.stderr


def test_unquoted_glob_gets_a_hint_to_quote_it(tmp_path, length):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("a.fna", "b.fna", "c.fna"):
        (data / name).write_text(">x\nACGT\n")
    # what the shell makes of: batch-compute length.py --glob data/*.fna
    proc = run_cli(length, "--glob", "data/a.fna", "data/b.fna", "data/c.fna", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1] == (
        "batch-compute: hint: data/a.fna data/b.fna data/c.fna look like files a shell expanded from an unquoted "
        "pattern: quote it, e.g. --glob 'data/*.fna'")
    two = run_cli(length, "--glob", "data/a.fna", "data/b.fna", cwd=tmp_path)
    assert two.returncode == 2 and "quote it, e.g. --glob 'data/*.fna'" in two.stderr
    # and without --glob: batch-compute length.py data/*.fna
    bare = run_cli(length, "data/a.fna", "data/b.fna", "data/c.fna", cwd=tmp_path)
    assert bare.returncode == 2 and "use --glob 'data/*.fna'" in bare.stderr


def test_a_plugin_path_that_does_not_exist_is_a_usage_error(tmp_path, length):
    (tmp_path / "ids.txt").write_text("a\n")
    proc = run_cli("missing.py", "ids.txt", cwd=tmp_path)
    assert (proc.returncode, proc.stderr) == (2, "batch-compute: error: missing.py: plugin file not found\n")


def test_dry_run_computes_nothing_and_writes_nothing(tmp_path, length):
    runs = tmp_path / "runs"
    (tmp_path / "ids.txt").write_text("a\nbb\nccc\nbb\ndddd\n")
    (tmp_path / "out.tsv").write_text("a\t1\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    proc = run_cli(length, "ids.txt", "--out", "out.tsv", "--dry-run", cwd=tmp_path, env={"PROVBATCH_RUNS": str(runs)})
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before and not runs.exists()
    assert (tmp_path / "out.tsv").read_text() == "a\t1\n"
    assert proc.stdout.splitlines() == [
        "dry run: nothing computed, nothing written",
        f"plugin      length 1 (python) {length}",
        "parameters  sleep=0.0",
        "entities    ids.txt: 5 read, 1 already done (out.tsv), 0 in the skip file, 1 duplicate: 3 to compute",
        "backend     auto",
        "would write results out.tsv (appending), logs stderr, report out.tsv.report.yaml, "
        "failures out.tsv.failures.tsv, run record under " + str(runs),
    ]


def test_limit_and_sample_are_trial_runs_recorded_in_the_report(tmp_path, length):
    (tmp_path / "ids.txt").write_text("".join(f"e{i}\n" for i in range(100)))
    proc = run_cli(length, "ids.txt", "--out", "lim.tsv", "--limit", "7", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert [line.split("\t")[0] for line in (tmp_path / "lim.tsv").read_text().splitlines()] == [f"e{i}" for i in range(7)]
    report = yaml.safe_load((tmp_path / "lim.tsv.report.yaml").read_text())
    assert report["trial"] == "--limit 7: the first 7 entities to compute"
    assert report["n_units"] == 7

    sample = run_cli(length, "ids.txt", "--out", "s.tsv", "--sample", "10", "--seed", "5", cwd=tmp_path)
    assert sample.returncode == 0, sample.stderr
    chosen = [line.split("\t")[0] for line in (tmp_path / "s.tsv").read_text().splitlines()]
    assert len(chosen) == 10 and len(set(chosen)) == 10 and set(chosen) <= {f"e{i}" for i in range(100)}
    assert chosen != [f"e{i}" for i in range(10)]
    report = yaml.safe_load((tmp_path / "s.tsv.report.yaml").read_text())
    assert report["trial"] == "--sample 10 --seed 5: 10 entities drawn at random from those to compute"
    again = run_cli(length, "ids.txt", "--out", "s2.tsv", "--sample", "10", "--seed", "5", cwd=tmp_path)
    assert (tmp_path / "s2.tsv").read_text() == (tmp_path / "s.tsv").read_text()  # the seed makes it repeatable
    assert again.returncode == 0
    config = json.loads(open(os.path.join(report["run_dir"], "run_config.json")).read())
    assert config["trial"] == report["trial"]
    # redone from its record: the same trial, the same sample
    redo = run_cli("rerun", report["run_dir"], "--out", str(tmp_path / "redo.tsv"), prog="provbatch", cwd=tmp_path)
    assert redo.returncode == 0, redo.stderr
    assert sorted((tmp_path / "redo.tsv").read_text().splitlines()) == sorted((tmp_path / "s.tsv").read_text().splitlines())
    shown = run_cli("show", report["run_dir"], prog="provbatch", cwd=tmp_path)
    assert "trial run    --sample 10 --seed 5: 10 entities drawn at random from those to compute" in shown.stdout.splitlines()
    # the HTML report says it was a trial
    page = run_cli("report", report["run_dir"], "--html", str(tmp_path / "s.html"), prog="provbatch", cwd=tmp_path)
    assert page.returncode == 0, page.stderr
    assert ('<p class="trial"><strong>trial run</strong>: --sample 10 --seed 5: 10 entities drawn at random from those '
            "to compute</p>") in (tmp_path / "s.html").read_text()
    both = run_cli(length, "ids.txt", "--limit", "3", "--sample", "3", cwd=tmp_path)
    assert both.returncode == 2 and "--limit and --sample" in both.stderr


def _run_on_terminal(args: list[str], cwd) -> str:
    leader, follower = pty.openpty()
    proc = subprocess.Popen(args, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=follower)
    os.close(follower)
    received = b""
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:
            break
        if not data:
            break
        received += data
    proc.wait(timeout=120)
    os.close(leader)
    return received.decode(errors="replace")


def test_progress_shows_done_of_total_rate_eta_failures_and_skipped(tmp_path, length):
    ids = [f"e{i}" for i in range(60)] + ["bad1", "bad2"]
    (tmp_path / "ids.txt").write_text("".join(i + "\n" for i in ids))
    (tmp_path / "out.tsv").write_text("".join(f"e{i}\t{len(f'e{i}')}\n" for i in range(20)))  # 20 done before
    screen = _run_on_terminal([str(BIN / "batch-compute"), str(length), "ids.txt", "--out", "out.tsv", "--backend", "serial",
                               "--param", "sleep=0.03"], tmp_path)
    final = [part for part in re.split(r"[\r\n]", screen) if " entities " in part and "failed=" in part][-1]
    assert re.search(r"42/42 entities", final), final
    assert re.search(r"\d+(\.\d+)?entities/s|\d+(\.\d+)?it/s|entities/s", final), final
    assert "failed=2" in final and "skipped=20" in final
    assert re.search(r"<\d\d:\d\d", screen)  # an ETA was shown while running


def test_installed_plugin_finds_the_definitions_of_its_package(tmp_path):
    (tmp_path / "pkg_src").mkdir()
    site = install_plugin_package(tmp_path / "pkg_src", "lengthpkg", {}, {"lengthy": "lengthpkg.plugins.size"})
    # as package data ships it: the definitions at the top of the package, the plugin in a sub-package
    (site / "lengthpkg" / "attribute_definitions.yaml").write_text("size: {definition: characters of the id, datatype: Integer}\n")
    sub = site / "lengthpkg" / "plugins"
    sub.mkdir()
    (sub / "__init__.py").write_text("")
    (sub / "size.py").write_text('ID = "size"; VERSION = "1"; INPUT = "x"; OUTPUT = ["size"]\n'
                                 "def compute(entity, **kw):\n    return [len(entity)], []\n")
    elsewhere = tmp_path / "work"
    elsewhere.mkdir()
    (elsewhere / "ids.txt").write_text("abc\nde\n")
    proc = run_cli("lengthy", "ids.txt", "--out", "o.tsv", cwd=elsewhere, env={"PYTHONPATH": str(site)})
    assert proc.returncode == 0, proc.stderr
    assert (elsewhere / "o.tsv").read_text() == "abc\t3\nde\t2\n"


def test_address_auto_with_a_stale_cluster_file_fails_fast_in_one_line(tmp_path, length):
    import socket
    import time

    with socket.socket() as sock:  # a loopback port nobody listens on any more: the stale cluster
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (tmp_path / "raytmp" / "ray").mkdir(parents=True)
    (tmp_path / "raytmp" / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{port}")
    (tmp_path / "ids.txt").write_text("a\n")
    started = time.monotonic()
    proc = run_cli(length, "ids.txt", "--out", "o.tsv", "--address", "auto", cwd=tmp_path,
                   env={"RAY_TMPDIR": str(tmp_path / "raytmp"), "RAY_ADDRESS": ""})
    elapsed = time.monotonic() - started
    assert elapsed < 30, elapsed
    assert proc.returncode == 2
    assert proc.stderr == (f"batch-compute: error: --address: no Ray cluster reachable at 127.0.0.1:{port} (Connection refused; "
                           f"from the address file {tmp_path / 'raytmp' / 'ray' / 'ray_current_cluster'} of an earlier "
                           "'ray start'); start one with 'ray start --head', or leave out --address for a private local instance\n")
    assert not (tmp_path / "o.tsv").exists() or (tmp_path / "o.tsv").read_text() == ""


@pytest.mark.ray
def test_ray_warnings_are_filtered_to_what_a_user_must_act_on(tmp_path, write_plugin, attributes_file):
    """Ray's token-authentication WARNING (its secure default: nothing to do) and the raylet's long
    paragraph about a dead worker (provbatch lists that entity as failed itself) no longer reach the user."""
    plugin = write_plugin('import os\nID = "crash"; VERSION = "1"; INPUT = "x"; OUTPUT = ["length"]\n'
                          'def compute(entity, **kw):\n    if entity == "x3":\n        os._exit(3)\n'
                          '    return [len(entity)], []\n', "crash.py")
    (tmp_path / "ids.txt").write_text("x1\nx2\nx3\nx4\n")
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    proc = subprocess.run([str(BIN / "batch-compute"), str(plugin), "ids.txt", "--backend", "ray", "--workers", "1",
                           "--out", "o.tsv", "--log", "l.tsv"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert "Token authentication" not in proc.stderr and "WARNING" not in proc.stderr, proc.stderr
    assert "(raylet)" not in proc.stderr and "A worker died" not in proc.stderr, proc.stderr
    assert (tmp_path / "o.tsv").read_text().splitlines() == ["x1\t2", "x2\t2", "x4\t2"]
    failures = (tmp_path / "o.tsv.failures.tsv").read_text().split("\t")
    assert failures[0] == "x3" and failures[2] == "WorkerLost"


def test_dry_run_from_python_returns_the_plan_and_writes_nothing(tmp_path, length, monkeypatch):
    import provbatch

    monkeypatch.chdir(tmp_path)
    runs = tmp_path / "runs"
    monkeypatch.setenv("PROVBATCH_RUNS", str(runs))
    (tmp_path / "out.tsv").write_text("a\t1\n")
    plan = provbatch.run_batch(length, ["a", "bb", "bb", "ccc"], out="out.tsv", limit=1, dry_run=True)
    assert (plan.read, plan.done, plan.duplicates, plan.to_compute) == (4, 1, 1, 1)
    assert plan.trial == "--limit 1: the first 1 entity to compute"
    assert (tmp_path / "out.tsv").read_text() == "a\t1\n" and not runs.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["attribute_definitions.yaml", "length.py", "out.tsv"]
