"""The command line: ``batch-compute`` and ``provbatch`` (run, check, ...).

Commands are thin: parse, call the library, print. Every error a user can
cause becomes one line naming the file and the problem, with exit code 2 for
usage errors and 1 for plugin errors; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

import click

from .cli_errors import fail as _fail, friendly_errors
from .errors import PluginValidationError, UsageError


def _run_options(command: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.argument("plugin"),
        click.argument("entities", required=False),
        click.option("--glob", "pattern", metavar="PATTERN", help="Each file matching PATTERN is an entity (** recurses); instead of ENTITIES."),
        click.option("--col", "column", type=int, default=1, show_default=True, help="1-based column of ENTITIES holding the entity (TSV)."),
        click.option("--out", "out", type=click.Path(dir_okay=False), help="Results TSV (default stdout). An existing file is appended to; its ids are skipped (resume)."),
        click.option("--log", "log", type=click.Path(dir_okay=False), help="Logs TSV (default stderr)."),
        click.option("--report", "report", type=click.Path(dir_okay=False), help="Report YAML (default: OUT.report.yaml when --out is given); appended as a new document."),
        click.option("--param", "param", multiple=True, metavar="KEY=VALUE", help="A computation parameter (repeatable); converted with its PARAMETERS datatype."),
        click.option("--params", "params_file", type=click.Path(dir_okay=False), help="YAML file of computation parameters (--param wins)."),
        click.option("--attributes", type=click.Path(dir_okay=False), help="Attribute definitions (default ./attribute_definitions.yaml, else beside the plugin)."),
        click.option("--backend", type=click.Choice(["auto", "serial", "pool", "ray"]), default="auto", show_default=True, help="auto: in the driver, or local worker processes when that pays off; Ray when --address/RAY_ADDRESS is set."),
        click.option("--workers", type=int, help="Number of workers (default: all CPUs)."),
        click.option("--address", help="Address of an existing Ray cluster (also RAY_ADDRESS)."),
        click.option("--idsproc", metavar="MODULE", help="Module (.py or importable) with compute_id(entity) -> id for the output rows."),
        click.option("--skip", type=click.Path(dir_okay=False), help="Skip the ids in the first column of this file."),
        click.option("--user", help="User id for the report."),
        click.option("--system", help="System id for the report."),
        click.option("--reason", type=click.Choice(["new_entities", "new_attributes", "recompute"]), help="Why this computation is run (report)."),
        click.option("--retries", type=int, default=0, show_default=True, help="Compute a failed entity again up to N times (exceptions, lost workers, timeouts), with exponential backoff."),
        click.option("--timeout", type=float, metavar="SECONDS", help="Per entity: a compute running longer is killed (with its child processes) and counts as a failed attempt."),
        click.option("--fail-fast", is_flag=True, help="Stop at the first entity that fails for good (finalize and the report still run)."),
        click.option("--max-failures", type=int, metavar="N", help="Stop after N entities failed for good."),
        click.option("--failures", "failures_path", type=click.Path(dir_okay=False), help="Failures TSV (default OUT.failures.tsv): entity, attempts, error class, message."),
        click.option("--retry-failed", is_flag=True, help="Compute only the entities of the failures file; they leave it as they succeed."),
        click.option("--run-dir", type=click.Path(file_okay=False), help="Run record directory (manifest.json, events.jsonl); default under the user's state dir ($PROVBATCH_RUNS)."),
        click.option("--no-progress", is_flag=True, help="No progress bar (it is shown only when stderr is a terminal)."),
        click.option("--debug", is_flag=True, help="Show tracebacks."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _run(**kw: Any) -> None:
    from .batch import BatchRun
    from .entities import EntitySource
    from .params import parse_param_options, read_params_file

    entities, pattern = kw["entities"], kw["pattern"]
    if pattern and entities:
        raise UsageError("give either ENTITIES or --glob PATTERN, not both")
    if not pattern and not entities and not kw["retry_failed"]:
        raise UsageError("missing ENTITIES (a file of ids, '-' for stdin) or --glob PATTERN")
    params: dict[str, Any] = {}
    if kw["params_file"]:
        params.update(read_params_file(kw["params_file"]))
    params.update(parse_param_options(kw["param"]))
    report = kw["report"] or (f"{kw['out']}.report.yaml" if kw["out"] else None)
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
        write_std_streams=True,
        command=list(sys.argv),
    )
    for _row in run:
        pass
    if run.failures:
        where = f" (listed in {run.failures_file.path})" if run.failures_file else " (see the logs)"
        click.echo(f"batch-compute: {len(run.failures)} entit{'y' if len(run.failures) == 1 else 'ies'} failed{where}", err=True)
    if run.report.comp_status == "aborted":
        _fail("batch-compute", run.report.remarks[-1], 1)


@click.command(name="batch-compute", context_settings={"help_option_names": ["-h", "--help"]})
@_run_options
@friendly_errors("batch-compute")
def batch_compute(**kw: Any) -> None:
    """Compute the attributes of every entity with PLUGIN.

    PLUGIN is a plugin file (.py, .rs or a Rust crate directory, .nim, .sh) or
    the name of an installed plugin. ENTITIES is a file with one entity per
    line (or a TSV, see --col), '-' for stdin; or use --glob.
    """
    _run(**kw)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def provbatch() -> None:
    """provbatch: compute attributes of entities with plugins, keeping their provenance."""


provbatch.add_command(batch_compute, name="run")


@provbatch.command()
@click.argument("plugin")
@click.option("--attributes", type=click.Path(dir_okay=False), help="Attribute definitions (default ./attribute_definitions.yaml, else beside the plugin).")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@friendly_errors("provbatch check")
def check(plugin: str, attributes: str | None, debug: bool) -> None:
    """Check PLUGIN against the plugin contract; list every problem found."""
    from .plugin import check_plugin, load_plugin, resolve_attributes

    loaded = load_plugin(plugin)
    definitions = resolve_attributes(attributes, loaded)
    problems = check_plugin(loaded, definitions)
    where = loaded.path or loaded.label
    if problems:
        raise PluginValidationError(str(where), problems) if len(problems) == 1 else _ProblemList(str(where), problems)
    used = f"; attributes checked against {definitions.path}" if definitions else ""
    click.echo(f"{where}: OK: {loaded.id} {loaded.version} ({loaded.lang}), outputs {', '.join(loaded.output)}{used}")


class _ProblemList(PluginValidationError):
    """Several problems: one line each."""

    def __str__(self) -> str:
        lines = [f"{self.filename}: {len(self.problems)} problems"]
        lines.extend(f"  - {problem}" for problem in self.problems)
        return "\n".join(lines)


from .cli_authoring import describe, new, plugins  # noqa: E402

provbatch.add_command(plugins)
provbatch.add_command(describe)
provbatch.add_command(new)

from .cli_provenance import rerun, show  # noqa: E402

provbatch.add_command(show)
provbatch.add_command(rerun)

from .cli_runs import report, runs  # noqa: E402

provbatch.add_command(runs)
provbatch.add_command(report)


def batch_compute_main() -> None:
    batch_compute(prog_name="batch-compute")


def provbatch_main() -> None:
    provbatch(prog_name="provbatch")


if __name__ == "__main__":  # pragma: no cover
    provbatch_main()
