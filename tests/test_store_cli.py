"""The store commands as a user runs them: store init, attributes, load (provbatch and prenacs reports),
values, why, stale; on SQLite and real PostgreSQL and MariaDB servers."""

from __future__ import annotations

import csv
import io
import json
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import yaml
from conftest import run_cli, write_source

DEFS = """\
gc: {definition: GC fraction, datatype: Float, computation_group: seqstats}
length: {definition: length, datatype: Integer, computation_group: seqstats}
counts: {definition: A C G counts, datatype: "Integer[3]", computation_group: seqstats}
pair: {definition: a composite, datatype: "Float;Integer[2]"}
flag: {definition: a flag, datatype: Boolean}
"""

SEQ_V1 = """\
ID = "seq"
VERSION = "1.0"
INPUT = "a string"
OUTPUT = ["gc", "length", "counts"]
PARAMETERS = [("digits", "Integer", "2", "rounding")]
def compute(entity, digits=2, **kwargs):
    gc = sum(c in "GC" for c in entity) / len(entity)
    return [round(gc, digits), len(entity), [entity.count(c) for c in "ACG"]], []
"""
QUICK = """\
ID = "quick"
VERSION = "0.1"
INPUT = "a string"
OUTPUT = ["gc", "length"]
def compute(entity, **kwargs):
    return [0.5, len(entity) * 10], []
"""
MISC = """\
ID = "misc"
VERSION = "1"
INPUT = "a string"
OUTPUT = ["pair", "flag"]
def compute(entity, **kwargs):
    return [(1.5, [len(entity), 2]), entity.startswith("G")], []
"""


def pb(*args: object, store: str) -> object:
    return run_cli(*map(str, args), "--store", store, prog="provbatch")


def ok(result) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def current_values(store: str) -> dict[tuple[str, str], tuple[object, str, str]]:
    rows = [json.loads(line) for line in ok(pb("values", "--format", "jsonl", "--provenance", store=store)).splitlines()]
    return {(r["entity"], r["attribute"]): (r["value"], r["plugin_id"], r["computation"]) for r in rows}


def compute(tmp_path: Path, plugin: Path, ids: list[str], name: str, *params: str) -> tuple[Path, Path, str]:
    """batch-compute into a results TSV and report (no store): what is later loaded."""
    entities = tmp_path / f"{name}.ids"
    entities.write_text("".join(i + "\n" for i in ids))
    out = tmp_path / f"{name}.tsv"
    result = run_cli(plugin, entities, "--out", out, "--attributes", tmp_path / "defs.yaml", "--backend", "serial",
                     "--run-dir", tmp_path / f"{name}.run", *params)
    assert result.returncode == 0, result.stderr
    report = Path(f"{out}.report.yaml")
    return out, report, yaml.safe_load(report.read_text())["uuid"]


def test_attributes_commands(store_url: str, tmp_path: Path) -> None:
    defs = write_source(tmp_path, "defs.yaml", DEFS)
    assert ok(pb("store", "init", store=store_url)).endswith("store created (schema revision 0005)\n")
    assert ok(pb("store", "init", store=store_url)).endswith("store up to date (schema revision 0005)\n")
    assert ok(pb("attributes", "apply", defs, store=store_url)).splitlines() == [
        "added: gc, length, counts, pair, flag", "5 added, 0 updated, 0 unchanged, 0 differing, 0 dropped"]
    assert ok(pb("attributes", "list", store=store_url)).splitlines() == [
        "counts\tInteger[3]\tseqstats\tA C G counts", "flag\tBoolean\t\ta flag", "gc\tFloat\tseqstats\tGC fraction",
        "length\tInteger\tseqstats\tlength", "pair\tFloat;Integer[2]\t\ta composite"]
    changed = write_source(tmp_path, "changed.yaml", DEFS.replace("GC fraction", "G+C fraction").replace("flag: {definition: a flag, datatype: Boolean}\n", ""))
    assert "differ from the file, kept (use --update): gc" in ok(pb("attributes", "apply", changed, store=store_url))
    assert ok(pb("attributes", "apply", changed, "--update", "--drop-missing", store=store_url)).splitlines() == [
        "updated: gc", "dropped (with their values): flag", "0 added, 1 updated, 3 unchanged, 0 differing, 1 dropped"]
    retyped = write_source(tmp_path, "retyped.yaml", "gc: {definition: x, datatype: Integer, computation_group: seqstats}\n")
    result = pb("attributes", "apply", retyped, "--update", store=store_url)
    assert result.returncode == 1
    assert result.stderr == (f"provbatch attributes apply: error: {retyped}: attribute 'gc': datatype changes from 'Float' to "
                             "'Integer'; the stored values depend on it: 'provbatch attributes drop gc' (deletes its values), then apply again\n")
    assert ok(pb("attributes", "drop", "gc", store=store_url)) == "dropped gc and its 0 value(s)\n"
    assert ok(pb("attributes", "apply", retyped, store=store_url)).startswith("added: gc\n")
    prenacs_style = write_source(tmp_path, "prenacs.yaml", "plain:\n  datatype: String(50)[4]\n")  # no definition: allowed
    assert ok(pb("attributes", "apply", prenacs_style, store=store_url)).startswith("added: plain\n")
    bad = write_source(tmp_path, "bad.yaml", "x: {datatype: Number}\n")
    result = pb("attributes", "apply", bad, store=store_url)
    assert (result.returncode, result.stderr.count("\n")) == (2, 1)
    assert "attribute 'x' has datatype 'Number', which is not one of" in result.stderr


def test_load_overlapping_computations_with_history_why_and_exports(store_url: str, tmp_path: Path) -> None:
    defs = write_source(tmp_path, "defs.yaml", DEFS)
    ok(pb("attributes", "apply", defs, store=store_url))
    seq = write_source(tmp_path, "seq.py", SEQ_V1)
    quick = write_source(tmp_path, "quick.py", QUICK)
    misc = write_source(tmp_path, "misc.py", MISC)

    out1, rep1, u1 = compute(tmp_path, seq, ["GATTACA", "GGCC"], "a1", "--param", "digits=3")
    assert ok(pb("load", out1, rep1, store=store_url)) == f"loaded 6 value(s) of 2 entities from computation {u1}\n"
    state = {("GATTACA", "gc"): (0.286, "seq", u1), ("GATTACA", "length"): (7, "seq", u1), ("GATTACA", "counts"): ([3, 1, 1], "seq", u1),
             ("GGCC", "gc"): (1.0, "seq", u1), ("GGCC", "length"): (4, "seq", u1), ("GGCC", "counts"): ([0, 2, 2], "seq", u1)}
    assert current_values(store_url) == state

    # another plugin of the same computation group, covering gc and length of one entity only
    out2, rep2, u2 = compute(tmp_path, quick, ["GGCC"], "b1")
    assert ok(pb("load", out2, rep2, quick, store=store_url)) == f"loaded 2 value(s) of 1 entity from computation {u2}\n"
    state.update({("GGCC", "gc"): (0.5, "quick", u2), ("GGCC", "length"): (40, "quick", u2)})
    assert current_values(store_url) == state

    # a composite and a boolean, from a third plugin
    out3, rep3, u3 = compute(tmp_path, misc, ["GATTACA", "TT"], "c1")
    ok(pb("load", out3, rep3, store=store_url))
    state.update({("GATTACA", "pair"): ([1.5, [7, 2]], "misc", u3), ("GATTACA", "flag"): (True, "misc", u3),
                  ("TT", "pair"): ([1.5, [2, 2]], "misc", u3), ("TT", "flag"): (False, "misc", u3)})
    assert current_values(store_url) == state

    # the first computation loaded again: its values are current again; again: nothing changes
    assert ok(pb("load", out1, rep1, store=store_url)).endswith("(already loaded: its values are current again)\n")
    state.update({("GGCC", "gc"): (1.0, "seq", u1), ("GGCC", "length"): (4, "seq", u1)})
    assert current_values(store_url) == state
    ok(pb("load", out1, rep1, store=store_url))
    assert current_values(store_url) == state

    history = ok(pb("values", "gc", "length", "--entity", "GGCC", "--history", store=store_url)).splitlines()
    assert history[0] == "entity\tattribute\tvalue\tcomputation\tplugin_id\tplugin_version\ttime_end\tcurrent"
    assert sorted(line.split("\t")[:6] + [line.split("\t")[7]] for line in history[1:]) == sorted([
        ["GGCC", "gc", "1.0", u1, "seq", "1.0", "true"], ["GGCC", "gc", "0.5", u2, "quick", "0.1", "false"],
        ["GGCC", "length", "4", u1, "seq", "1.0", "true"], ["GGCC", "length", "40", u2, "quick", "0.1", "false"]])

    tsv_rows = ok(pb("values", "pair", "counts", store=store_url)).splitlines()
    assert tsv_rows[0] == "entity\tattribute\tvalue"
    assert sorted(tsv_rows[1:]) == sorted(["GATTACA\tcounts\t3,1,1", "GGCC\tcounts\t0,2,2", "GATTACA\tpair\t1.5;7,2", "TT\tpair\t1.5;2,2"])
    csv_rows = list(csv.reader(io.StringIO(ok(pb("values", "flag", "--format", "csv", store=store_url)))))
    assert sorted(csv_rows[1:]) == [["GATTACA", "flag", "true"], ["TT", "flag", "false"]]
    ok(pb("values", "gc", "--format", "parquet", "--out", tmp_path / "gc.parquet", "--provenance", store=store_url))
    table = pq.read_table(tmp_path / "gc.parquet").to_pydict()
    assert sorted(zip(table["entity"], table["value"], table["plugin_id"])) == [("GATTACA", 0.286, "seq"), ("GGCC", 1.0, "seq")]
    ids = tmp_path / "some.ids"
    ids.write_text("TT\nnobody\n")
    jsonl = [json.loads(line) for line in ok(pb("values", "--entities", ids, "--format", "jsonl", store=store_url)).splitlines()]
    assert sorted((r["attribute"], r["value"]) for r in jsonl) == [("flag", False), ("pair", [1.5, [2, 2]])]

    answer = ok(pb("why", "GATTACA", "gc", store=store_url))
    lines = answer.splitlines()
    assert lines[0] == "gc of GATTACA: 0.286  [Float]"
    assert lines[1] == f"  computation  {u1} (completed, provbatch-report)"
    assert lines[2].startswith("  plugin       seq 1.0 (python), source sha256 ")
    assert lines[4] == "  parameters   digits=3"
    assert f"  run dir      {tmp_path / 'a1.run'}" in lines
    assert "  history      1 earlier value(s): provbatch values gc --entity GATTACA --history" not in lines  # one value only
    redo = [line for line in lines if line.startswith("  redo")][0]
    assert redo.startswith(f"  redo         printf '%s\\n' GATTACA | batch-compute {seq} - --param digits=3 --reason recompute --store ")
    data = json.loads(ok(pb("why", "GGCC", "length", "--json", store=store_url)))
    assert (data["value"], data["computation"], data["plugin_id"], data["n_values"], data["parameters"]) == (4, u1, "seq", 2, {"digits": 3})
    result = pb("why", "GGCC", "nothing", store=store_url)
    assert result.returncode == 2 and result.stderr.endswith("attribute 'nothing' is not in the store\n")


def test_load_refusals(store_url: str, tmp_path: Path) -> None:
    defs = write_source(tmp_path, "defs.yaml", DEFS)
    ok(pb("attributes", "apply", defs, store=store_url))
    seq = write_source(tmp_path, "seq.py", SEQ_V1)
    out, report, u = compute(tmp_path, seq, ["GATTACA"], "a1")
    quick = write_source(tmp_path, "quick.py", QUICK)
    result = pb("load", out, report, quick, store=store_url)
    assert (result.returncode, result.stderr) == (2, f"provbatch load: error: {report}: plugin ID mismatch: the report says seq, {quick} has quick\n")
    ok(pb("load", out, report, store=store_url))
    seq.write_text(SEQ_V1.replace("round(gc, digits)", "round(gc, digits + 1)"))  # changed, same version
    out2, report2, _u2 = compute(tmp_path, seq, ["GGCC"], "a2")
    result = pb("load", out2, report2, store=store_url)
    assert result.returncode == 1
    assert "plugin seq 1.0 is recorded in the store with another source (sha256 " in result.stderr
    assert result.stderr.endswith("without a version change: increase the plugin's VERSION, or pass --replace-plugin-record\n")
    ok(pb("load", out2, report2, "--replace-plugin-record", store=store_url))
    data = yaml.safe_load(report.read_text())
    data["user_id"] = "mallory"
    report.write_text(yaml.safe_dump(data))
    result = pb("load", out, report, store=store_url)
    assert result.returncode == 1 and f"uuid {u} is already in the store with other user_id: pass --replace-report-record" in result.stderr
    ok(pb("load", out, report, "--replace-report-record", store=store_url))
    assert json.loads(ok(pb("why", "GATTACA", "gc", "--json", store=store_url)))["user_id"] == "mallory"


def test_load_prenacs_report(store_url: str, tmp_path: Path) -> None:
    """A prenacs 1.2 report: one YAML document, uuid as 16 raw bytes (!!binary), parameters as a YAML string."""
    defs = write_source(tmp_path, "defs.yaml", DEFS)
    ok(pb("attributes", "apply", defs, store=store_url))
    seq = write_source(tmp_path, "seq.py", SEQ_V1)
    raw = uuid.uuid4()
    report = tmp_path / "prenacs.report.yaml"
    with open(report, "w") as handle:  # as prenacs' Report.finalize writes it
        yaml.dump({"plugin_id": "seq", "plugin_version": "1.0", "system_id": "cluster7", "user_id": "giorgio",
                   "reason": "new_entities", "parameters": yaml.dump({"digits": 4}), "uuid": raw.bytes,
                   "time_start": "2022-03-01 10:00:00.123456", "time_end": "2022-03-01 10:05:00.654321",
                   "n_units": 2, "comp_status": "completed"}, handle)
    assert "!!binary" in report.read_text()
    results = tmp_path / "prenacs.tsv"
    results.write_text("g1\t0.5\t10\t1,2,3\ng2\t0.25\t4\t0,0,1\n")
    assert ok(pb("load", results, report, seq, store=store_url)) == f"loaded 6 value(s) of 2 entities from computation {raw}\n"
    data = json.loads(ok(pb("why", "g2", "counts", "--json", store=store_url)))
    assert (data["value"], data["computation"], data["parameters"], data["user_id"], data["system_id"], data["time_start"],
            data["origin"]) == ([0, 0, 1], str(raw), {"digits": 4}, "giorgio", "cluster7", "2022-03-01 10:00:00.123456", "prenacs-report")
    assert data["plugin_sha256"] is not None  # the plugin given stands for the source that ran
    assert ok(pb("load", results, report, seq, store=store_url)).endswith("(already loaded: its values are current again)\n")


def test_stale_after_plugin_change_and_parameters(store_url: str, tmp_path: Path) -> None:
    defs = write_source(tmp_path, "defs.yaml", DEFS)
    ok(pb("attributes", "apply", defs, store=store_url))
    seq = write_source(tmp_path, "seq.py", SEQ_V1)
    quick = write_source(tmp_path, "quick.py", QUICK)
    out, report, u1 = compute(tmp_path, seq, ["GATTACA", "GGCC"], "a1")
    ok(pb("load", out, report, store=store_url))
    out2, report2, u2 = compute(tmp_path, quick, ["TT"], "b1")
    ok(pb("load", out2, report2, store=store_url))
    result = pb("stale", store=store_url)
    assert (result.stdout, result.stderr) == ("", "0 stale value(s)\n")
    # parameters other than those given
    lines = ok(pb("stale", "gc", "--plugin", seq, "--param", "digits=5", store=store_url)).splitlines()
    assert sorted(lines) == [f"GATTACA\tgc\t{u1}\tparameters {{\"digits\":2}} -> {{\"digits\":5}}",
                             f"GGCC\tgc\t{u1}\tparameters {{\"digits\":2}} -> {{\"digits\":5}}"]
    # a new version of the plugin at the recorded path
    seq.write_text(SEQ_V1.replace('VERSION = "1.0"', 'VERSION = "1.1"'))
    lines = ok(pb("stale", store=store_url)).splitlines()
    assert {tuple(line.split("\t")[:3]) for line in lines} == {(e, a, u1) for e in ("GATTACA", "GGCC") for a in ("gc", "length", "counts")}
    assert lines[0].split("\t")[3].startswith("plugin version 1.0 -> 1.1; plugin source changed (sha256 ")
    assert ok(pb("stale", "length", store=store_url)).count("\n") == 2
    quick.unlink()
    result = pb("stale", "gc", store=store_url)
    assert f"provbatch stale: 1 value(s) of computation {u2} (quick 0.1) not judged: plugin not found at {quick}" in result.stderr
