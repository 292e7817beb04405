"""``batch-compute`` (also ``provbatch run``): compute the attributes of every entity with a plugin.

Thin: parse the options, build the batch, iterate it, say how it went.
Every error a user can cause becomes one line (see :mod:`.errors`).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

import click

from ..errors import EXIT_ENTITIES_FAILED, EXIT_OUTPUT_CLOSED, FinalizeError, OutputClosed, UsageError
from ..execution.registry import backend_names
from .errors import fail as _fail
from .errors import friendly_errors


def _run_options(command: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.argument("plugin"),
        click.argument("entities", required=False),
        click.option("--glob", "pattern", metavar="PATTERN", help="Each file matching PATTERN is an entity (** recurses); instead of ENTITIES."),
        click.option("--col", "column", type=int, default=1, show_default=True, help="1-based column of ENTITIES holding the entity (TSV)."),
        click.option("--out", "out", type=click.Path(dir_okay=False), help="Results TSV (default stdout). An existing file is appended to; its ids are skipped (resume)."),
        click.option("--log", "log", type=click.Path(dir_okay=False), help="Logs TSV (default stderr)."),
        click.option("--report", "report", type=click.Path(dir_okay=False), help="Report YAML (default: OUT.report.yaml when --out is given): one document, the latest run (earlier runs stay in their run records)."),
        click.option("--param", "param", multiple=True, metavar="KEY=VALUE", help="A computation parameter (repeatable); converted with its PARAMETERS datatype."),
        click.option("--params", "params_file", type=click.Path(dir_okay=False), help="YAML file of computation parameters (--param wins)."),
        click.option("--attributes", type=click.Path(dir_okay=False), help="Attribute definitions (default ./attribute_definitions.yaml, else beside the plugin)."),
        click.option("--backend", type=click.Choice(backend_names()), default="auto", show_default=True, help="auto: in the driver, or local worker processes when that pays off; Ray when --address/RAY_ADDRESS is set; slurm: Slurm job arrays (docs/slurm.md)."),
        click.option("--workers", type=int, help="Number of workers (default: all CPUs; slurm: array tasks running at once, default the partition's CPUs)."),
        click.option("--slurm-partition", metavar="NAME", help="slurm: sbatch --partition."),
        click.option("--slurm-time", metavar="TIME", help="slurm: sbatch --time of each array task (e.g. 30, 2:00:00)."),
        click.option("--slurm-mem", metavar="SIZE", help="slurm: sbatch --mem of each array task (e.g. 4G)."),
        click.option("--slurm-chunk", type=int, metavar="N", help="slurm: entities per array task (default: about 4 tasks per --workers)."),
        click.option("--slurm-opt", metavar="'OPTIONS'", help="slurm: more sbatch options, passed as is (e.g. '--account=lab --qos=short')."),
        click.option("--slurm-workdir", type=click.Path(file_okay=False), help="slurm: work directory on the shared filesystem (default OUT.slurm)."),
        click.option("--address", help="Address of an existing Ray cluster (also RAY_ADDRESS)."),
        click.option("--idsproc", metavar="MODULE", help="Module with compute_id(entity) -> id: a .py, .sh, .rs or .nim file, or an importable module. With ENTITIES compute gets the id too; with --glob it gets the file (as prenacs)."),
        click.option("--skip", type=click.Path(dir_okay=False), help="Skip the ids in the first column of this file."),
        click.option("--nim-path", "nim_path", multiple=True, type=click.Path(file_okay=False), metavar="DIR",
                     help="Nim plugins: a directory searched for imported modules, e.g. of nimble packages (repeatable; also $PROVBATCH_NIM_PATH)."),
        click.option("--user", help="User id for the report."),
        click.option("--system", help="System id for the report."),
        click.option("--reason", type=click.Choice(["new_entities", "new_attributes", "recompute"]), help="Why this computation is run (report)."),
        click.option("--retries", type=int, default=0, show_default=True, help="Compute a failed entity again up to N times (exceptions, lost workers, timeouts), with exponential backoff."),
        click.option("--timeout", type=float, metavar="SECONDS", help="Per entity: a compute running longer is killed (with its child processes) and counts as a failed attempt."),
        click.option("--fail-fast", is_flag=True, help="Stop at the first entity that fails for good (finalize and the report still run)."),
        click.option("--max-failures", type=int, metavar="N", help="Stop after N entities failed for good."),
        click.option("--failures", "failures_path", type=click.Path(dir_okay=False), help="Failures TSV (default OUT.failures.tsv): entity, attempts, error class, message."),
        click.option("--allow-failures", is_flag=True, help="Exit 0 even when some entities failed (they are still listed in the failures file)."),
        click.option("--retry-failed", is_flag=True, help="Compute only the entities of the failures file; they leave it as they succeed."),
        click.option("--run-dir", type=click.Path(file_okay=False), help="Run record directory (manifest.json, events.jsonl); default under the user's state dir ($PROVBATCH_RUNS)."),
        click.option("--header", is_flag=True, help="Write the OUTPUT names as a first line (entity<TAB>name...) into a new results file; "
                     "off by default, so the file stays what prenacs tools read. Readers and resume understand it."),
        click.option("--dry-run", is_flag=True, help="Load, check and count the entities (to compute, already done, skipped); "
                     "print what would run and where it would write; compute nothing, write nothing."),
        click.option("--limit", type=int, metavar="N", help="Trial run: compute only the first N entities to compute (recorded in the report)."),
        click.option("--sample", type=int, metavar="N", help="Trial run: compute N entities drawn at random from those to compute (recorded, with the seed)."),
        click.option("--seed", type=int, help="Seed of --sample (default: a random one, recorded in the report)."),
        click.option("--store", "store", metavar="URL", help="Also write the values into this results store (SQLAlchemy URL or SQLite path; default $PROVBATCH_STORE); resume skips what it holds."),
        click.option("--only-stale", is_flag=True, help="With --store: compute only the entities whose stored values are stale (provbatch stale)."),
        click.option("--no-progress", is_flag=True, help="No progress bar (it is shown only when stderr is a terminal)."),
        click.option("--debug", is_flag=True, help="Show tracebacks."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _run(**kw: Any) -> None:
    from ..contract.parameters import parse_param_options, read_params_file
    from ..engine.batch import BatchRun
    from ..inputs.entities import EntitySource

    entities, pattern = kw["entities"], kw["pattern"]
    if pattern and entities:
        hint = glob_hint([pattern, entities], quoted=True)
        raise UsageError("give either ENTITIES or --glob PATTERN, not both" + (f" ({hint})" if hint else ""))
    if not pattern and not entities and not kw["retry_failed"]:
        raise UsageError("missing ENTITIES (a file of ids, '-' for stdin) or --glob PATTERN")
    params: dict[str, Any] = {}
    if kw["params_file"]:
        params.update(read_params_file(kw["params_file"]))
    params.update(parse_param_options(kw["param"]))
    report = kw["report"] or (f"{kw['out']}.report.yaml" if kw["out"] else None)
    plugin_options: dict[str, Any] = {}
    if kw["nim_path"]:
        from ..plugins.nim.build import NIM_PATH_ENV

        nim_path = [os.path.abspath(p) for p in kw["nim_path"]]
        if str(kw["plugin"]).endswith(".nim"):
            plugin_options["nim_path"] = nim_path  # recorded with the plugin's options (run_config.json)
        # and for a Nim --idsproc module, built in this process too
        os.environ[NIM_PATH_ENV] = os.pathsep.join(nim_path + [p for p in os.environ.get(NIM_PATH_ENV, "").split(os.pathsep) if p])
    run = BatchRun(
        kw["plugin"],
        EntitySource(path=entities, column=kw["column"], pattern=pattern),
        params=params,
        backend=kw["backend"],
        workers=kw["workers"],
        address=kw["address"],
        attributes=kw["attributes"],
        idsproc=kw["idsproc"],
        skip=kw["skip"],
        out=kw["out"],
        log=kw["log"],
        report_path=report,
        user=kw["user"],
        system=kw["system"],
        reason=kw["reason"],
        progress=not kw["no_progress"] and sys.stderr.isatty(),
        retries=kw["retries"],
        timeout=kw["timeout"],
        fail_fast=kw["fail_fast"],
        max_failures=kw["max_failures"],
        failures_path=kw["failures_path"],
        retry_failed=kw["retry_failed"],
        run_dir=kw["run_dir"],
        slurm_partition=kw["slurm_partition"],
        slurm_time=kw["slurm_time"],
        slurm_mem=kw["slurm_mem"],
        slurm_chunk=kw["slurm_chunk"],
        slurm_opt=kw["slurm_opt"],
        slurm_workdir=kw["slurm_workdir"],
        write_std_streams=True,
        command=list(sys.argv),
        store=kw["store"] or os.environ.get("PROVBATCH_STORE") or None,
        only_stale=kw["only_stale"],
        header=kw["header"],
        limit=kw["limit"],
        sample=kw["sample"],
        seed=kw["seed"],
        plugin_options=plugin_options or None,
    )
    if kw["dry_run"]:
        for line in run.plan().lines():
            click.echo(line)
        return
    started = time.monotonic()
    try:
        run.run_to_end()
    except OutputClosed:
        _summary(run, time.monotonic() - started)
        sys.exit(EXIT_OUTPUT_CLOSED)  # quietly, like any tool whose reader went away (| head)
    except FinalizeError:
        _summary(run, time.monotonic() - started)
        raise
    _summary(run, time.monotonic() - started)
    if run.report.comp_status == "aborted":
        _fail("batch-compute", run.report.remarks[-1], 1)
    if run.failures and not kw["allow_failures"]:
        sys.exit(EXIT_ENTITIES_FAILED)


def _shown(path: Any) -> str:
    """A path as the user would type it: relative when under the working directory."""
    relative = os.path.relpath(path)
    return str(path) if relative.startswith("..") else relative


def _summary(run: Any, seconds: float) -> None:
    """The last line of every run on stderr: computed, failed (and where they are listed), skipped, time."""
    n_failed = len(run.failures)
    if n_failed:
        where = f" (listed in {_shown(run.failures_file.shown)})" if run.failures_file else " (see the logs)"
        failed = f"{n_failed} entit{'y' if n_failed == 1 else 'ies'} failed{where}"
    else:
        failed = "0 failed"
    click.echo(f"batch-compute: {run.report.n_units} computed, {failed}, {run.report.n_skipped} skipped, in {seconds:.1f} s",
               err=True)


def glob_hint(paths: list[str], quoted: bool) -> str | None:
    """A hint when ``paths`` look like the expansion of an unquoted pattern: files sharing a folder and a suffix."""
    from pathlib import Path

    files = [Path(p) for p in paths]
    if len(files) < 2 or not all(f.is_file() for f in files):
        return None
    if len({f.parent for f in files}) != 1 or len({f.suffix for f in files}) != 1:
        return None
    folder, suffix = files[0].parent, files[0].suffix
    pattern = f"*{suffix}" if str(folder) == "." else f"{folder}/*{suffix}"
    shown = " ".join(paths)
    if quoted:
        return f"{shown} look like files a shell expanded from an unquoted pattern: quote it, e.g. --glob '{pattern}'"
    return f"{shown} look like files a shell expanded from a pattern: use --glob '{pattern}' for files"


class _RunCommand(click.Command):
    """batch-compute's parser, adding a hint to click's "unexpected extra arguments" when they look like an
    unquoted glob the shell expanded (``--glob data/*.fna`` without quotes)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        given = list(args)  # click's parser consumes the list
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            if "extra argument" not in exc.message:
                raise
            hint = self._hint(given)
            if hint is None:
                raise
            raise _HintedUsageError(exc.message, hint, exc.ctx) from None

    def _hint(self, args: list[str]) -> str | None:
        takes_value = {name for param in self.params if isinstance(param, click.Option) and not param.is_flag
                       for name in param.opts}
        positional: list[str] = []
        glob_value = None
        index = 0
        while index < len(args):
            arg = args[index]
            if arg == "--glob" and index + 1 < len(args):
                glob_value = args[index + 1]
                index += 2
                continue
            if arg in takes_value:
                index += 2
                continue
            if not arg.startswith("-") or arg == "-":
                positional.append(arg)
            index += 1
        candidates = ([glob_value] if glob_value else []) + positional[1:]  # positional[0] is PLUGIN
        return glob_hint(candidates, quoted=glob_value is not None)


class _HintedUsageError(click.UsageError):
    def __init__(self, message: str, hint: str, ctx: click.Context | None) -> None:
        super().__init__(message, ctx)
        self.hint = hint

    def show(self, file: Any = None) -> None:
        super().show(file)
        click.echo(f"batch-compute: hint: {self.hint}", err=True)


def version() -> str:
    """provbatch's version, for --version (the light module: no import of the engine)."""
    from ..version import __version__

    return __version__


@click.command(name="batch-compute", cls=_RunCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version(), "--version", prog_name="batch-compute", message="%(prog)s %(version)s")
@_run_options
@friendly_errors("batch-compute")
def batch_compute(**kw: Any) -> None:
    """Compute the attributes of every entity with PLUGIN.

    PLUGIN is a plugin file (.py, .rs or a Rust crate directory, .nim, .sh) or
    the name of an installed plugin. ENTITIES is a file with one entity per
    line (or a TSV, see --col), '-' for stdin; or use --glob.
    """
    _run(**kw)
