"""batch-compute --store: values as computed, resume against the store, SIGKILL, --only-stale,
two runs at once; on SQLite and real PostgreSQL and MariaDB servers."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

import sqlalchemy as sa
from conftest import BIN, GC_EXPECTED, REPO, read_tsv, run_cli, write_source

DEFS = """\
length: {definition: number of characters, datatype: Integer, computation_group: text}
upper: {definition: upper case, datatype: "String(64)", computation_group: text}
slow: {definition: a slowly computed number, datatype: Integer}
"""
TEXT_PLUGIN = """\
ID = "text"
VERSION = "1.0"
INPUT = "a string"
OUTPUT = ["length", "upper"]
def compute(entity, **kwargs):
    return [len(entity), entity.upper()], []
"""
SLOW_PLUGIN = """\
import time
ID = "slow"
VERSION = "1.0"
INPUT = "a string"
OUTPUT = ["slow"]
def compute(entity, **kwargs):
    time.sleep(0.002)
    return [int(entity.split("_")[1]) * 2], []
"""


def pb(*args: object, store: str):
    return run_cli(*map(str, args), "--store", store, prog="provbatch")


def jsonl(store: str, *args: str) -> list[dict]:
    result = pb("values", "--format", "jsonl", "--provenance", *args, store=store)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def orphans(url: str) -> int:
    """Rows without their computation row, an (outset, entity, computation) stored twice (in current and in
    history), and an (attribute, entity) current in two rows: must be none."""
    from provbatch.store.packs import placements, read_outsets

    engine = sa.create_engine(url)
    with engine.connect() as connection:
        n = 0
        for table in ("provbatch_current", "provbatch_history"):
            n += connection.execute(sa.text(
                f"SELECT COUNT(*) FROM {table} v LEFT JOIN provbatch_computations c ON c.id = v.computation "
                "WHERE c.id IS NULL")).scalar()
        n += connection.execute(sa.text(
            "SELECT COUNT(*) FROM provbatch_current p JOIN provbatch_history h ON h.outset = p.outset "
            "AND h.entity = p.entity AND h.computation = p.computation")).scalar()
        for where in placements(read_outsets(connection)).values():
            union = " UNION ALL ".join(f"SELECT entity FROM provbatch_current WHERE outset = {place.outset} "
                                       f"AND (current_bits & {place.bit}) <> 0" for place in where)
            n += connection.execute(sa.text(f"SELECT COUNT(*) FROM (SELECT entity FROM ({union}) u GROUP BY entity "
                                            "HAVING COUNT(*) > 1) twice")).scalar()
    engine.dispose()
    return n


def test_values_go_to_the_store_with_their_provenance_and_resume_skips_them(store_url: str, tmp_path: Path) -> None:
    out = tmp_path / "gc.tsv"
    result = run_cli("plugins/gc_content.py", "examples/genomes.txt", "--out", out, "--store", store_url,
                     "--run-dir", tmp_path / "run", "--param", "digits=4")
    assert result.returncode == 0, result.stderr
    report = __import__("yaml").safe_load(Path(f"{out}.report.yaml").read_text())
    rows = jsonl(store_url)
    assert {(r["entity"], r["attribute"]): r["value"] for r in rows} == {
        **{(e, "gc_content"): float(v[0]) for e, v in GC_EXPECTED.items()},
        **{(e, "genome_size"): int(v[1]) for e, v in GC_EXPECTED.items()}}
    assert {(r["computation"], r["plugin_id"], r["plugin_version"]) for r in rows} == {(report["uuid"], "gc_content_py", "1.0.0")}
    why = json.loads(pb("why", "examples/genomes/tiny.fna", "gc_content", "--json", store=store_url).stdout)
    tiny = REPO / "examples/genomes/tiny.fna"
    import hashlib

    assert why["input"] == {"path": str(tiny), "size": tiny.stat().st_size, "sha256": hashlib.sha256(tiny.read_bytes()).hexdigest()}
    assert (why["comp_status"], why["run_dir"], why["parameters"], why["plugin_sha256"]) == (
        "completed", str(tmp_path / "run"), {"digits": 4}, report["plugin_sha256"])
    assert why["redo"] == (f"cd {REPO}/ && printf '%s\\n' examples/genomes/tiny.fna | batch-compute {REPO}/plugins/gc_content.py - "
                           f"--param digits=4 --reason recompute --store {shlex.quote(why['store'])}")
    # the redo command recomputes that one value (a new computation with the same signature)
    redo = subprocess.run(why["redo"] + f" --run-dir {tmp_path / 'redo'}", shell=True, capture_output=True, text=True,
                          env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"})
    assert redo.returncode == 0, redo.stderr
    # without --out, the store alone is the resume list: the same computation again computes nothing
    again = run_cli("plugins/gc_content.py", "examples/genomes.txt", "--store", store_url, "--param", "digits=4",
                    "--report", tmp_path / "again.yaml", "--run-dir", tmp_path / "again")
    assert again.returncode == 0, again.stderr
    assert again.stdout == ""
    assert __import__("yaml").safe_load((tmp_path / "again.yaml").read_text())["n_skipped"] == 6
    # other parameters are another computation: everything is computed again, earlier values kept
    other = run_cli("plugins/gc_content.py", "examples/genomes.txt", "--store", store_url, "--param", "digits=2",
                    "--run-dir", tmp_path / "other")
    assert other.returncode == 0, other.stderr
    assert {(r["entity"], r["value"]) for r in jsonl(store_url, "gc_content")} == {(e, round(float(v[0]), 2)) for e, v in GC_EXPECTED.items()}
    history = jsonl(store_url, "gc_content", "--history", "--entity", "examples/genomes/tiny.fna")
    assert sorted((r["value"], r["current"]) for r in history) == [(0.4083, False), (0.4083, False), (0.41, True)]
    assert orphans(store_url) == 0


def test_the_engine_leaves_the_store_to_its_writer_process(store_url: str, tmp_path: Path) -> None:
    """The engine's process never imports SQLAlchemy (0.35-0.45 s of its start-up): the child opens the store,
    answers the engine's questions and ends the computation's record."""
    ids = tmp_path / "ids.txt"
    ids.write_text("a\nbb\nccc\n")
    plugin = write_source(tmp_path, "text.py", TEXT_PLUGIN)
    (tmp_path / "attribute_definitions.yaml").write_text(DEFS)
    engine = ("import sys\nfrom provbatch.cli import batch_compute_main\ntry:\n    batch_compute_main()\n"
              "except SystemExit as end:\n    print('exit', end.code, 'sqlalchemy' in sys.modules, file=sys.stderr)\n")
    argv = [str(BIN / "python"), "-c", engine, str(plugin), str(ids), "--store", store_url, "--run-dir", str(tmp_path / "run")]
    result = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.stderr.splitlines()[-1] == "exit 0 False", result.stderr
    assert {(r["entity"], r["attribute"], r["value"]) for r in jsonl(store_url)} == {
        ("a", "length", 1), ("bb", "length", 2), ("ccc", "length", 3), ("a", "upper", "A"), ("bb", "upper", "BB"),
        ("ccc", "upper", "CCC")}
    assert json.loads(pb("why", "ccc", "upper", "--json", store=store_url).stdout)["comp_status"] == "completed"


def test_sigkill_leaves_a_consistent_store_and_the_rerun_completes_it(store_url: str, tmp_path: Path) -> None:
    write_source(tmp_path, "attribute_definitions.yaml", DEFS)
    plugin = write_source(tmp_path, "slow.py", SLOW_PLUGIN)
    ids = tmp_path / "ids.txt"
    n = 3000
    ids.write_text("".join(f"e_{i}\n" for i in range(n)))
    argv = [str(BIN / "batch-compute"), str(plugin), str(ids), "--store", store_url, "--backend", "serial",
            "--attributes", str(tmp_path / "attribute_definitions.yaml")]
    process = subprocess.Popen([*argv, "--run-dir", str(tmp_path / "run1")], cwd=tmp_path, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    engine = sa.create_engine(store_url)
    deadline = time.monotonic() + 120
    stored = 0
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with engine.connect() as connection:
                stored = connection.execute(sa.text("SELECT COUNT(*) FROM provbatch_current")).scalar() or 0
        except sa.exc.DBAPIError:
            stored = 0  # the tables are not there yet
        if stored > 0:
            break
        time.sleep(0.05)
    engine.dispose()
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert 0 < stored < n
    assert orphans(store_url) == 0
    partial = jsonl(store_url)
    assert all(r["value"] == int(r["entity"].split("_")[1]) * 2 for r in partial)
    killed = {r["computation"] for r in partial}
    assert len(killed) == 1
    status = json.loads(pb("why", partial[0]["entity"], "slow", "--json", store=store_url).stdout)["comp_status"]
    assert status == "running"  # killed: its record says so, and its values stay
    rerun = subprocess.run([*argv, "--run-dir", str(tmp_path / "run2")], cwd=tmp_path, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    rows = jsonl(store_url)
    assert {r["entity"]: r["value"] for r in rows} == {f"e_{i}": i * 2 for i in range(n)}
    by_computation: dict[str, int] = {}
    for r in rows:
        by_computation[r["computation"]] = by_computation.get(r["computation"], 0) + 1
    assert by_computation[killed.pop()] == len(partial)  # the killed run's values were kept, not recomputed
    assert sum(by_computation.values()) == n and len(by_computation) == 2
    assert orphans(store_url) == 0


def test_stale_inputs_and_only_stale_recompute_exactly_those(store_url: str, tmp_path: Path) -> None:
    data = tmp_path / "genomes"
    shutil.copytree(REPO / "examples" / "genomes", data)
    pattern = str(data / "*.fna")
    first = run_cli(REPO / "plugins/gc_content.py", "--glob", pattern, "--store", store_url, "--run-dir", tmp_path / "r1",
                    "--attributes", REPO / "attribute_definitions.yaml", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert pb("stale", store=store_url).stdout == ""
    changed = data / "tiny.fna"
    changed.write_text(">new\nGGGGCCCCAT\n")
    lines = pb("stale", store=store_url).stdout.splitlines()
    assert sorted(line.split("\t")[:2] for line in lines) == [[str(changed), "gc_content"], [str(changed), "genome_size"]]
    assert lines[0].split("\t")[3].startswith(f"input file {changed} changed (size ")
    report = tmp_path / "only.yaml"
    only = run_cli(REPO / "plugins/gc_content.py", "--glob", pattern, "--store", store_url, "--only-stale", "--report", report,
                   "--run-dir", tmp_path / "r2", "--attributes", REPO / "attribute_definitions.yaml", cwd=tmp_path)
    assert only.returncode == 0, only.stderr
    assert only.stdout == f"{changed}\t0.8\t10\n"
    counts = __import__("yaml").safe_load(report.read_text())
    assert (counts["n_units"], counts["n_skipped"]) == (1, 4)
    assert pb("stale", store=store_url).stdout == ""
    history = jsonl(store_url, "genome_size", "--history", "--entity", str(changed))
    assert sorted((r["value"], r["current"]) for r in history) == [(10, True), (120, False)]


def test_two_runs_writing_different_attributes_at_once_lose_nothing(store_url: str, tmp_path: Path) -> None:
    write_source(tmp_path, "attribute_definitions.yaml", DEFS)
    text = write_source(tmp_path, "text.py", TEXT_PLUGIN)
    slow = write_source(tmp_path, "slow.py", SLOW_PLUGIN)
    n = 1500
    ids = tmp_path / "ids.txt"
    ids.write_text("".join(f"e_{i}\n" for i in range(n)))
    runs = [subprocess.Popen([str(BIN / "batch-compute"), str(plugin), str(ids), "--store", store_url, "--backend", "serial",
                              "--out", str(tmp_path / f"{plugin.stem}.tsv"), "--run-dir", str(tmp_path / f"run-{plugin.stem}")],
                             cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for plugin in (slow, text)]
    for process in runs:
        _out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
    values = {(r["entity"], r["attribute"]): r["value"] for r in jsonl(store_url)}
    expected = {}
    for i in range(n):
        entity = f"e_{i}"
        expected.update({(entity, "slow"): i * 2, (entity, "length"): len(entity), (entity, "upper"): entity.upper()})
    assert values == expected
    assert read_tsv(tmp_path / "text.tsv")["e_7"] == ["3", "E_7"]
    assert orphans(store_url) == 0


def _tables(url: str) -> list[str]:
    engine = sa.create_engine(url)
    try:
        return sorted(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_dry_run_with_a_store_counts_what_it_holds_and_writes_nothing(store_url: str, tmp_path: Path) -> None:
    from provbatch.store.url import display_url

    defs = tmp_path / "attribute_definitions.yaml"
    defs.write_text(DEFS)
    plugin = write_source(tmp_path, "text.py", TEXT_PLUGIN)
    (tmp_path / "ids.txt").write_text("a\nbb\nccc\n")
    (tmp_path / "more.txt").write_text("a\nbb\nccc\ndddd\neeeee\n")
    runs = {"PROVBATCH_RUNS": str(tmp_path / "runs")}

    def dry(ids: str) -> list[str]:
        result = run_cli(plugin, ids, "--store", store_url, "--dry-run", cwd=tmp_path, env=runs)
        assert result.returncode == 0, result.stderr
        return result.stdout.splitlines()

    # a store that does not exist yet is not created by a dry run (no SQLite file, no tables)
    lines = dry("ids.txt")
    assert lines[3] == "entities    ids.txt: 3 read, 0 already done, 0 in the skip file, 0 duplicates: 3 to compute"
    assert lines[-1].endswith(f", store {display_url(store_url)} (new: would be created)")
    if store_url.startswith("sqlite"):
        assert not (tmp_path / "store.sqlite").exists()
    else:
        assert _tables(store_url) == []
    assert not (tmp_path / "runs").exists()

    done = run_cli(plugin, "ids.txt", "--store", store_url, "--out", "t.tsv", cwd=tmp_path, env=runs)
    assert done.returncode == 0, done.stderr
    before = jsonl(store_url)
    lines = dry("more.txt")
    assert lines[3] == ("entities    more.txt: 5 read, 3 already done (in the store), 0 in the skip file, "
                        "0 duplicates: 2 to compute")
    assert lines[-1].endswith(f", store {display_url(store_url)} (existing)")
    assert jsonl(store_url) == before  # nothing written: no computation, no value


def test_a_resume_stores_the_values_the_results_file_holds_and_the_store_lacks(store_url: str, tmp_path: Path) -> None:
    """The results file runs ahead of the store (a killed run's values in flight, or a first run without
    --store): the resume skips those entities, and stores their lines from the file, as its computation's."""
    write_source(tmp_path, "attribute_definitions.yaml", DEFS)
    plugin = write_source(tmp_path, "text.py", TEXT_PLUGIN)
    ids = tmp_path / "ids.txt"
    n = 3000
    ids.write_text("".join(f"e_{i}\n" for i in range(n)))
    out = tmp_path / "out.tsv"
    common = [plugin, ids, "--out", out, "--backend", "serial", "--attributes", tmp_path / "attribute_definitions.yaml"]
    first = run_cli(*common, "--limit", 1200, "--run-dir", tmp_path / "run1")
    assert first.returncode == 0, first.stderr
    resumed = run_cli(*common, "--store", store_url, "--run-dir", tmp_path / "run2", "--report", tmp_path / "resumed.yaml")
    assert resumed.returncode == 0, resumed.stderr
    lines = out.read_text().splitlines()
    assert sorted(lines) == sorted(f"e_{i}\t{len(f'e_{i}')}\tE_{i}" for i in range(n))  # each entity once
    uuid = __import__("yaml").safe_load((tmp_path / "resumed.yaml").read_text())["uuid"]
    rows = jsonl(store_url)
    assert sorted((r["entity"], r["attribute"], r["value"], r["computation"]) for r in rows) == sorted(
        [(f"e_{i}", "length", len(f"e_{i}"), uuid) for i in range(n)] + [(f"e_{i}", "upper", f"E_{i}", uuid) for i in range(n)])
    # a second resume: the store holds everything, nothing is stored twice
    again = run_cli(*common, "--store", store_url, "--run-dir", tmp_path / "run3")
    assert again.returncode == 0, again.stderr
    assert len(jsonl(store_url)) == 2 * n and out.read_text().splitlines() == lines
    assert orphans(store_url) == 0
