"""RunOptions as a user meets them: a batch-compute run records every option in run_config.json
(by API name), and provbatch rerun restores each option marked RESTORED from that record."""

from __future__ import annotations

import json

from conftest import read_tsv, run_cli, write_source

from provbatch.options import RESTORED, option_names, option_spec, rerun_options

PLUGIN = """\
ID = "scale"
VERSION = "1.0"
INPUT = "an id"
OUTPUT = ["length"]
PARAMETERS = [("times", "Integer", "1", "multiplier")]

def compute(entity, times=1, **kwargs):
    return [len(entity) * times], []
"""


def test_every_option_is_recorded_and_rerun_restores_the_restored_ones(tmp_path, attributes_file, ids_file, monkeypatch):
    from provbatch.provenance.rerun import plan_rerun

    write_source(tmp_path, "scale.py", PLUGIN)
    ids_file(["a", "bb", "ccc", "dddd", "eeeee"])
    ids_file(["bb"], name="skip.txt")
    (tmp_path / "nimlib").mkdir()
    proc = run_cli("scale.py", "ids.txt", "--attributes", "attribute_definitions.yaml", "--param", "times=2",
                   "--out", "out.tsv", "--log", "log.tsv", "--report", "rep.yaml", "--failures", "fail.tsv",
                   "--run-dir", "run", "--skip", "skip.txt", "--nim-path", "nimlib", "--user", "ann", "--system", "lab",
                   "--reason", "new_attributes", "--backend", "serial", "--workers", "2", "--retries", "2",
                   "--timeout", "30", "--max-failures", "5", "--header", "--limit", "3", "--allow-failures",
                   "--store", "st.sqlite", "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert read_tsv(tmp_path / "out.tsv") == {"entity": ["length"], "a": ["2"], "ccc": ["6"], "dddd": ["8"]}
    config = json.loads((tmp_path / "run" / "run_config.json").read_text())
    execution = config["execution"]
    assert set(option_names()) - set(execution) == {"params"}
    assert config["parameters"] == {"times": 2}
    given = {"out": "out.tsv", "log": "log.tsv", "report_path": "rep.yaml", "attributes": "attribute_definitions.yaml",
             "backend": "serial", "workers": 2, "address": None, "idsproc": None, "skip": "skip.txt",
             "nim_path": ["nimlib"], "user": "ann", "system": "lab", "reason": "new_attributes",
             "retries": 2, "timeout": 30.0, "fail_fast": False, "max_failures": 5, "failures_path": "fail.tsv",
             "allow_failures": True, "retry_failed": False, "run_dir": "run", "header": True, "dry_run": False,
             "limit": 3, "sample": None, "seed": None, "store": "st.sqlite", "only_stale": False, "progress": False,
             "write_std_streams": True, "rerun_of": None, "plugin_options": None, "typed": False,
             "slurm_partition": None, "slurm_time": None, "slurm_mem": None, "slurm_chunk": None, "slurm_opt": None,
             "slurm_workdir": None}
    assert {name: execution[name] for name in given} == given
    assert execution["command"][-2:] == ["st.sqlite", "--no-progress"]

    monkeypatch.chdir(tmp_path)  # relative inputs: a rerun is checked from the run's working directory
    plan = plan_rerun(tmp_path / "run", out=tmp_path / "again.tsv", record_dir=tmp_path / "run2")
    restored = {name: getattr(plan.options, name) for name in rerun_options()}
    assert restored == {name: given[name] for name in rerun_options()}
    assert all(option_spec(name).rerun == RESTORED for name in restored)
    # the others: where the rerun's values come from instead (Option.rerun)
    assert (plan.options.out, plan.options.reason, plan.options.rerun_of, plan.options.store) == (
        tmp_path / "again.tsv", "recompute", config["uuid"], None)
    assert plan.options.params == {"times": 2} and plan.options.skip == str(tmp_path / "skip.txt")
