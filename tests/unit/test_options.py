"""RunOptions: one declaration for the API, the command line, the run record and rerun."""

from __future__ import annotations

import dataclasses

import pytest

from provbatch.execution.registry import backend_names
from provbatch.options import OptionError, RunOptions, flag_of, option_names, option_spec, rerun_options


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
    options = RunOptions(backend="pool", workers=3, retries=2, timeout=1.5, max_failures=4, address="x:1", out="o.tsv",
                         nim_path=(), params={"times": 2})
    recorded = options.recorded()
    assert set(recorded) == set(option_names()) - {"params"}  # the parameters have run_config's "parameters"
    assert (recorded["backend"], recorded["workers"], recorded["address"], recorded["out"], recorded["nim_path"]) == (
        "pool", 3, "x:1", "o.tsv", None)
    assert rerun_options() == ["backend", "workers", "retries", "timeout", "fail_fast", "max_failures", "header",
                               "limit", "sample", "seed"]
    again = RunOptions.restored(recorded, workers=None, out="again.tsv")
    assert (again.backend, again.workers, again.retries, again.timeout, again.max_failures, again.address, again.out) == (
        "pool", 3, 2, 1.5, 4, None, "again.tsv")
    assert RunOptions.restored({"backend": "serial", "workers": None, "retries": None}, backend="pool").backend == "pool"
    assert RunOptions.restored({"retries": None}).retries == 0
    sampled = RunOptions(sample=2, seed=7, fail_fast=True, header=True).recorded()
    assert (RunOptions.restored(sampled).sample, RunOptions.restored(sampled).seed) == (2, 7)
    assert RunOptions.restored(sampled).fail_fast and RunOptions.restored(sampled).header


#: options no command-line flag sets: the command line sets them itself (write_std_streams, command),
#: rerun does (rerun_of), or they are Python's alone (plugin_options, typed)
API_ONLY = {"write_std_streams", "command", "rerun_of", "plugin_options", "typed"}
#: batch-compute's own parameters, which are not run options: the plugin and the entities, and --debug
NOT_RUN_OPTIONS = {"plugin", "entities", "pattern", "column", "debug", "version", "help"}


def test_the_command_line_and_run_options_match_one_to_one():
    """Every flag of batch-compute feeds exactly one run option, and every run option but the
    API's own has its flag: generated from the declaration (same name) or declared in Option.cli."""
    from provbatch.cli.run import batch_compute

    flags = {opt: param.name for param in batch_compute.params for opt in param.opts if param.name not in NOT_RUN_OPTIONS}
    fed: dict[str, str] = {}
    for name in option_names():
        spec = option_spec(name)
        for flag in ([spec.flag] if spec.flag else []) + list(spec.cli):
            assert flag not in fed, f"{flag} feeds both {fed[flag]} and {name}"
            fed[flag] = name
        if spec.flag:
            assert flags.get(spec.flag) == name, f"{spec.flag} is not generated for {name}"
    assert set(flags) == set(fed)
    assert {name for name in option_names() if not option_spec(name).flag and not option_spec(name).cli} == API_ONLY
    assert len(fed) == 37  # batch-compute --help: 42 flags, less --glob, --col, --debug, --version, --help


def test_every_option_is_recorded_and_says_what_a_rerun_does_with_it():
    for name in option_names():
        spec = option_spec(name)
        assert spec.record in ("execution", "parameters"), name
        assert spec.rerun, f"{name}: Option.rerun must say what provbatch rerun does with it"
    assert [name for name in option_names() if option_spec(name).record != "execution"] == ["params"]


def test_every_option_is_declared_once():
    names = option_names()
    assert len(names) == len(set(names)) == len(dataclasses.fields(RunOptions))
    assert [name for name in names if flag_of(name) != name][:3] == ["out", "log", "report_path"]
    assert flag_of("report_path") == "--report" and flag_of("failures_path") == "--failures"
    assert backend_names() == ("auto", "serial", "pool", "ray", "slurm")
