"""The provenance commands: ``provbatch show RUN_DIR`` and ``provbatch rerun RUN_DIR``.

Thin, like the rest of the CLI: parse, call :mod:`provbatch.provenance.show` or
:func:`provbatch.api.prepare_rerun` (imported inside the command, so ``--help`` stays
fast), print; errors are one line, or one line per difference for a refused
rerun (``friendly_errors``).
"""

from __future__ import annotations

import sys

import click

from .errors import friendly_errors
from .run import run_option


@click.command()
@click.argument("run_dir", required=False)
@click.option("--source", is_flag=True, help="Print the code a rerun of the run would execute (the captured sources), "
              "and say on stderr when the record is inconsistent (a rerun then refuses it).")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@friendly_errors("provbatch show")
def show(run_dir: str | None, source: bool, debug: bool) -> None:
    """Print the provenance of a run: uuid, status, plugin, parameters, inputs
    with their sizes and sha256, outputs, counts, times, environment, command line.

    RUN_DIR is a run directory, or the uuid (its first 8 characters suffice)
    of a run under $PROVBATCH_RUNS; without it, the latest run there.
    With --source, the code a rerun would execute: a rerun runs the captured
    code, like a script someone hands you, so read it before re-running a
    run you did not make.
    """
    from ..provenance.rundirs import latest_run
    from ..provenance.show import summarize_run

    target = run_dir if run_dir else latest_run()
    if not source:
        click.echo(summarize_run(target))
        return
    from ..provenance.show import captured_code

    text, differences = captured_code(target)
    if differences:
        count = f"{len(differences)} difference{'' if len(differences) == 1 else 's'}"
        click.echo(f"provbatch show: warning: the record is inconsistent: a rerun refuses it ({count}):", err=True)
        for difference in differences:
            click.echo(f"  - {difference}", err=True)
    click.echo(text, nl=False)


@click.command()
@click.argument("run_dir")
@click.option("--out", type=click.Path(dir_okay=False), help="Results TSV (default RUN_DIR/rerun-results.tsv, or .2.tsv, ... never overwriting). "
              "An existing file is resumed into, as batch-compute does; the original run's results file is refused.")
@click.option("--allow-changed-inputs", is_flag=True, help="Re-run even when inputs differ from the run (the differences are still listed).")
@run_option("backend", default=None, show_default=False, help="Backend (default: the one the run requested).")
@run_option("workers", help="Number of workers (default: as the run).")
@click.option("--run-dir", "record_dir", type=click.Path(file_okay=False), help="Run record directory of the rerun (default: a new one under $PROVBATCH_RUNS).")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@friendly_errors("provbatch rerun")
def rerun(run_dir: str, out: str | None, allow_changed_inputs: bool, backend: str | None, workers: int | None,
          record_dir: str | None, debug: bool) -> None:
    """Redo a run from its run_config.json: rebuild the plugin from the captured
    source (the original file may have changed or be gone), check every input
    (size and sha256) and compute again with the captured parameters.

    A rerun executes the captured code, like running a script someone hands
    you: 'provbatch show --source RUN_DIR' prints it. The record must agree
    with itself (each captured file with its sha256, the sources with the
    plugin sha256 of the manifest and of the report), else the rerun is
    refused (exit 1, one line per difference; no flag allows it).

    Refuses (exit 1, one line per difference) when an input changed, unless
    --allow-changed-inputs. The rerun is a new run of its own (uuid, run
    directory) that records which run it redoes; its logs and report go
    beside the results (OUT.log.tsv, OUT.report.yaml).
    """
    from ..api import prepare_rerun

    def say(text: str) -> None:
        click.echo(f"provbatch rerun: {text}", err=True)

    plan = prepare_rerun(run_dir, out, allow_changed_inputs, backend=backend, workers=workers,
                         record_dir=record_dir, progress=sys.stderr.isatty(), command=list(sys.argv))
    for difference in plan.check.differences:
        say(f"input differs (allowed): {difference}")
    for note in plan.notes:
        say(f"note: {note}")
    if plan.resuming:
        say(f"{plan.out} exists: resuming into it (the entities already in it are not computed again)")
    plan.run()
    batch = plan.batch
    report = batch.report
    say(f"rerun of {plan.config['uuid']}: {report.n_units} entities computed into {plan.out} "
        f"(run {report.uuid}, record {report.run_dir})")
    if batch.failures:
        say(f"{len(batch.failures)} entit{'y' if len(batch.failures) == 1 else 'ies'} failed (see {plan.out}.log.tsv)")
    same = plan.same_as_original() if report.comp_status == "completed" else None
    if same is not None:
        say("the results are the same as the original run's (compared as sorted lines)" if same
            else "the results DIFFER from the original run's results file (compared as sorted lines)")
    if report.comp_status == "aborted":
        say(f"error: {report.remarks[-1] if report.remarks else 'the rerun stopped'}")
        sys.exit(1)
