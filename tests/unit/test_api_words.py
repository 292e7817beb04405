"""The API's error messages name options in API words (RunOptions fields); the command line spells the
same messages with its flags (cli/errors.py: cli_name, from the command's own declarations).

Each error is raised by the real code of the layer that words it; the CLI's side of each is also
asserted word for word by the end-to-end tests (test_bad_input.py, test_slurm.py, test_cli_ux.py).
"""

from __future__ import annotations

import socket
from pathlib import Path

import click
import pytest

from provbatch.cli.errors import cli_name
from provbatch.cli.run import batch_compute
from provbatch.engine.batch import BatchRun
from provbatch.errors import OptionError, ProvBatchError, UsageError, literal
from provbatch.execution import registry
from provbatch.execution.ray import probe
from provbatch.execution.slurm import SlurmOptions
from provbatch.inputs.entities import iter_column
from provbatch.options import flag_of


def on_the_command_line(error: ProvBatchError) -> str:
    """The message as batch-compute words it (the names its own declarations give each parameter)."""
    with click.Context(batch_compute):
        return error.spelled(cli_name)


def test_an_unknown_backend():
    with pytest.raises(OptionError) as info:
        registry.backend("dask")
    assert str(info.value) == "backend must be one of auto, serial, pool, ray, slurm, got 'dask'"
    assert on_the_command_line(info.value) == "--backend must be one of auto, serial, pool, ray, slurm, got 'dask'"


def test_user_text_with_braces_stays_text():
    with pytest.raises(OptionError) as info:
        registry.backend("{workers}")
    assert str(info.value) == "backend must be one of auto, serial, pool, ray, slurm, got '{workers}'"
    assert info.value.spelled(flag_of) == "--backend must be one of auto, serial, pool, ray, slurm, got '{workers}'"
    assert literal("a{b}c") == "a{{b}}c"


def test_slurm_options_without_the_slurm_backend():
    with pytest.raises(UsageError) as info:
        BatchRun("plugin.py", ["a"], slurm_mem="1G", slurm_chunk=5)
    assert str(info.value) == "slurm_mem, slurm_chunk only apply to backend slurm"
    assert on_the_command_line(info.value) == "--slurm-mem, --slurm-chunk only apply to --backend slurm"


def test_slurm_options_that_cannot_be_used():
    with pytest.raises(UsageError) as info:
        SlurmOptions(opt="--account='lab").check()
    assert str(info.value) == "slurm_opt: cannot split '--account='lab': No closing quotation"
    assert on_the_command_line(info.value) == "--slurm-opt: cannot split '--account='lab': No closing quotation"
    with pytest.raises(UsageError) as chunk_info:
        SlurmOptions(chunk=0).check()
    assert (str(chunk_info.value), on_the_command_line(chunk_info.value)) == (
        "slurm_chunk must be 1 or more, got 0", "--slurm-chunk must be 1 or more, got 0")


def test_the_entity_column(tmp_path: Path):
    tsv = tmp_path / "ids.tsv"
    tsv.write_text("a\t1\nb\n")
    with pytest.raises(UsageError) as info:
        list(iter_column(str(tsv), 2))
    assert str(info.value) == f"{tsv}:2: entities file has 1 column(s), column is 2"
    assert on_the_command_line(info.value) == f"{tsv}:2: entities file has 1 column(s), --col is 2"
    with pytest.raises(UsageError) as zero:
        list(iter_column(str(tsv), 0))
    assert (str(zero.value), on_the_command_line(zero.value)) == ("column must be 1 or more, got 0", "--col must be 1 or more, got 0")


def test_a_ray_address_where_nothing_listens():
    with socket.socket() as sock:  # a loopback port nobody listens on any more
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(UsageError) as info:
        probe(f"127.0.0.1:{port}", "{address}")
    assert str(info.value) == (f"address: no Ray cluster reachable at 127.0.0.1:{port} (Connection refused; from address); "
                               "start one with 'ray start --head', or leave out address for a private local instance")
    assert on_the_command_line(info.value) == (
        f"--address: no Ray cluster reachable at 127.0.0.1:{port} (Connection refused; from --address); "
        "start one with 'ray start --head', or leave out --address for a private local instance")


def test_an_output_that_is_an_input(tmp_path: Path):
    plugin = tmp_path / "lengths.py"
    plugin.write_text('ID = "lengths"; VERSION = "1"; INPUT = "a word"; OUTPUT = ["length"]\n'
                      "def compute(entity, **kwargs):\n    return [len(entity)], []\n")
    (tmp_path / "attribute_definitions.yaml").write_text("length: {definition: number of characters, datatype: Integer}\n")
    skip = tmp_path / "skip.txt"
    skip.write_text("a\n")
    run = BatchRun(plugin, ["a"], attributes=str(tmp_path / "attribute_definitions.yaml"), skip=skip, log=skip)
    with pytest.raises(UsageError) as info:
        run.check_inputs()
    assert str(info.value) == (f"{skip}: log is the skip file: the results would be appended to the input; "
                               "write them to another file")
    assert on_the_command_line(info.value) == (f"{skip}: --log is the --skip file: the results would be appended to "
                                               "the input; write them to another file")


def test_a_results_file_of_another_computation(tmp_path: Path):
    from provbatch.outputs.identity import ResultsIdentity, claim

    results = tmp_path / "out.tsv"
    results.write_text("a\t1\t2\n")  # three columns: not the results of a plugin with one OUTPUT
    with pytest.raises(UsageError) as info:
        claim(results, ResultsIdentity("lengths", "1", "", {}, ("length",)))
    assert str(info.value) == (f"{results}:1: a row of 3 columns, lengths writes 2 (entity id + length): "
                               "not its results; use another out")
    assert on_the_command_line(info.value) == (f"{results}:1: a row of 3 columns, lengths writes 2 (entity id + length): "
                                               "not its results; use another --out")


def test_a_store_in_a_folder_that_does_not_exist(tmp_path: Path):
    from provbatch.cli.store import store_group
    from provbatch.store.url import create_engine

    url = f"sqlite:///{tmp_path}/missing/store.sqlite"
    with pytest.raises(UsageError) as info:
        create_engine(url)
    assert str(info.value) == f"store {url}: folder {tmp_path}/missing does not exist"
    assert on_the_command_line(info.value) == f"--store {url}: folder {tmp_path}/missing does not exist"
    with click.Context(store_group.commands["init"]):  # provbatch store's commands declare --store too
        assert info.value.spelled(cli_name) == f"--store {url}: folder {tmp_path}/missing does not exist"


def test_an_output_that_is_the_entities_file(tmp_path: Path):
    from provbatch.inputs.entities import EntitySource

    plugin = tmp_path / "lengths.py"
    plugin.write_text('ID = "lengths"; VERSION = "1"; INPUT = "a word"; OUTPUT = ["length"]\n'
                      "def compute(entity, **kwargs):\n    return [len(entity)], []\n")
    (tmp_path / "attribute_definitions.yaml").write_text("length: {definition: number of characters, datatype: Integer}\n")
    ids = tmp_path / "ids.txt"
    ids.write_text("a\n")
    run = BatchRun(plugin, EntitySource(path=str(ids)), attributes=str(tmp_path / "attribute_definitions.yaml"), out=ids)
    with pytest.raises(UsageError) as info:
        run.check_inputs()
    assert str(info.value) == (f"{ids}: out is the entities file: the results would be appended to the input; "
                               "write them to another file")
    assert on_the_command_line(info.value) == (f"{ids}: --out is the ENTITIES file: the results would be appended to the "
                                               "input; write them to another file")


def test_the_export_format_and_its_output_file(tmp_path: Path):
    from provbatch.cli.store import values
    from provbatch.store import Store
    from provbatch.store.export import export_values

    with Store(f"sqlite:///{tmp_path}/store.sqlite", create=True) as store:
        with pytest.raises(UsageError) as info:
            export_values(store, [], None, "xml", None)
        assert str(info.value) == "fmt must be one of tsv, csv, jsonl, parquet, got 'xml'"
        with pytest.raises(UsageError) as parquet:
            export_values(store, [], None, "parquet", None)
    assert str(parquet.value) == "fmt parquet needs an output file: out"
    with click.Context(values):  # provbatch values declares --format (fmt) and --out
        assert info.value.spelled(cli_name) == "--format must be one of tsv, csv, jsonl, parquet, got 'xml'"
        assert parquet.value.spelled(cli_name) == "--format parquet needs an output file: --out"
