"""RunOptions: one declaration for the API, the command line, the run record and rerun."""

from __future__ import annotations

import dataclasses

import pytest

from provbatch.execution.registry import backend_names
from provbatch.options import OptionError, RunOptions, flag_of, option_names, rerun_options


@pytest.mark.parametrize("values,api,cli", [
    ({"workers": 0}, "workers must be 1 or more, got 0", "--workers must be 1 or more, got 0"),
    ({"retries": -1}, "retries must be 0 or more, got -1", "--retries must be 0 or more, got -1"),
    ({"timeout": 0}, "timeout must be a positive number of seconds, got 0", "--timeout must be a positive number of seconds, got 0"),
    ({"max_failures": 0}, "max_failures must be 1 or more, got 0", "--max-failures must be 1 or more, got 0"),
    ({"backend": "slurmish"}, "backend must be one of auto, serial, pool, ray, slurm, got 'slurmish'",
     "--backend must be one of auto, serial, pool, ray, slurm, got 'slurmish'"),
    ({"limit": 0}, "limit must be 1 or more, got 0", "--limit must be 1 or more, got 0"),
    ({"reason": "why"}, "reason must be one of new_entities, new_attributes, recompute, got 'why'",
     "--reason must be one of new_entities, new_attributes, recompute, got 'why'"),
])
def test_errors_in_api_words_and_flags_at_the_edge(values, api, cli):
    with pytest.raises(OptionError) as info:
        RunOptions(**values)
    assert str(info.value) == api
    assert info.value.spelled(flag_of) == cli
    assert info.value.exit_code == 2


def test_problems_naming_other_options():
    error = OptionError("retry_failed", "needs {out} or {failures_path}")
    assert str(error) == "retry_failed needs out or failures_path"
    assert error.spelled(flag_of) == "--retry-failed needs --out or --failures"


def test_fail_fast_is_max_failures_one_and_a_sample_gets_a_seed():
    assert RunOptions(fail_fast=True).max_failures == 1
    assert RunOptions(sample=3, seed=5).seed == 5
    assert isinstance(RunOptions(sample=3).seed, int)
    assert RunOptions(limit=3).seed is None


@pytest.mark.parametrize("values,api,cli", [
    ({"limit": 1, "sample": 1}, "limit and sample exclude each other: give one", "--limit and --sample exclude each other: give one"),
    ({"only_stale": True}, "only_stale needs store URL (the store whose stale values are recomputed)",
     "--only-stale needs --store URL (the store whose stale values are recomputed)"),
])
def test_options_that_go_together(values, api, cli):
    with pytest.raises(OptionError) as info:
        RunOptions(**values)
    assert (str(info.value), info.value.spelled(flag_of)) == (api, cli)


def test_recorded_and_restored():
    options = RunOptions(backend="pool", workers=3, retries=2, timeout=1.5, max_failures=4, address="x:1", out="o.tsv")
    recorded = options.recorded()
    assert recorded == {"backend": "pool", "workers": 3, "address": "x:1", "retries": 2, "timeout": 1.5,
                        "fail_fast": False, "max_failures": 4, "retry_failed": False,
                        "header": False, "limit": None, "sample": None, "seed": None}
    assert rerun_options() == ["backend", "workers", "retries", "timeout", "max_failures", "header", "limit", "sample", "seed"]
    again = RunOptions.restored(recorded, workers=None, out="again.tsv")
    assert (again.backend, again.workers, again.retries, again.timeout, again.max_failures, again.address, again.out) == (
        "pool", 3, 2, 1.5, 4, None, "again.tsv")
    assert RunOptions.restored({"backend": "serial", "workers": None, "retries": None}, backend="pool").backend == "pool"
    assert RunOptions.restored({"retries": None}).retries == 0


def test_every_option_is_declared_once():
    names = option_names()
    assert len(names) == len(set(names)) == len(dataclasses.fields(RunOptions))
    assert [name for name in names if flag_of(name) != name][:3] == ["out", "log", "report_path"]
    assert flag_of("report_path") == "--report" and flag_of("failures_path") == "--failures"
    assert backend_names() == ("auto", "serial", "pool", "ray", "slurm")
