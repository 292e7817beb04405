"""Living with many runs: ``provbatch runs``, ``provbatch runs prune`` and ``provbatch report``.

Thin, like the rest of the CLI: parse, call :mod:`provbatch.provenance.rundirs` or the
HTML report module (imported inside the command, so ``--help`` stays fast),
print; errors are one line (``friendly_errors``).
"""

from __future__ import annotations

from pathlib import Path

import click

from .errors import friendly_errors


@click.group(invoke_without_command=True)
@click.option("--plugin", "plugin_id", metavar="ID", help="Only the runs of this plugin id.")
@click.option("--since", metavar="DATE", help="Only runs started since DATE (2024-05-01, 2024-05-01T14:00, or an age: 3d, 12h).")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.pass_context
@friendly_errors("provbatch runs")
def runs(ctx: click.Context, plugin_id: str | None, since: str | None, debug: bool) -> None:
    """List the runs under $PROVBATCH_RUNS, oldest first: uuid prefix, plugin,
    status, counts, start time, directory. 'provbatch runs prune' removes old ones."""
    if ctx.invoked_subcommand is not None:
        return
    from ..provenance.rundirs import RUNS_HEADER, format_table, iter_runs, parse_since, runs_root, select_runs

    selected = select_runs(iter_runs(), plugin_id, parse_since(since) if since else None)
    if not selected:
        click.echo(f"no runs under {runs_root()}" + (" matching the filters" if plugin_id or since else ""), err=True)
        return
    click.echo(format_table([run.row() for run in selected], RUNS_HEADER))


@runs.command()
@click.option("--older-than", "older_than", required=True, metavar="AGE", help="Remove runs started more than AGE ago (30d, 12h, 2w).")
@click.option("--keep-failed", is_flag=True, help="Keep runs that failed, were interrupted or had failed entities.")
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@friendly_errors("provbatch runs prune")
def prune(older_than: str, keep_failed: bool, dry_run: bool, debug: bool) -> None:
    """Remove the run directories (manifest, events, run_config) of old runs.

    The results, logs and reports the runs wrote are not touched.
    """
    from ..provenance.rundirs import iter_runs, parse_age, prunable, remove_run, runs_root

    age = parse_age(older_than)
    every = list(iter_runs())
    doomed = prunable(every, age, keep_failed)
    for run in doomed:
        if not dry_run:
            remove_run(run)
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{verb} {len(doomed)} of {len(every)} runs under {runs_root()} (started more than {older_than} ago"
               f"{', failed ones kept' if keep_failed else ''})")


@click.command()
@click.argument("run_dir", required=False)
@click.option("--html", "html_path", type=click.Path(dir_okay=False), help="Write the HTML report to FILE (default RUN_DIR/report.html).")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@friendly_errors("provbatch report")
def report(run_dir: str | None, html_path: str | None, debug: bool) -> None:
    """Write a self-contained HTML report of a run (no network needed to view it):
    provenance, a distribution plot and summary statistics per attribute,
    failures by error class with examples, throughput over time.

    RUN_DIR is a run directory or a uuid (prefix); default: the latest run.
    """
    from ..outputs.report_html import write_html_report
    from ..provenance.rundirs import find_run_dir, latest_run

    directory = find_run_dir(run_dir) if run_dir else latest_run()
    target = Path(html_path) if html_path else directory / "report.html"
    write_html_report(directory, target)
    click.echo(f"report: {target}")
