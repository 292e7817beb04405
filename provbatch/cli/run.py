"""``batch-compute`` (also ``provbatch run``): compute the attributes of every entity with a plugin.

Thin: parse the options, build the batch, iterate it, say how it went.
The run options are generated from their one declaration
(:class:`provbatch.options.RunOptions`); this module adds only what is the
command line's own: the PLUGIN and ENTITIES arguments with ``--glob`` and
``--col``, ``--param``/``--params``, ``--nim-path``, ``--allow-failures``,
``--dry-run``, ``--no-progress`` and ``--debug``. Every error a user can
cause becomes one line (see :mod:`.errors`).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import click

from ..errors import EXIT_ENTITIES_FAILED, EXIT_OUTPUT_CLOSED, FinalizeError, OutputClosed, UsageError
from ..options import DIRECTORY, FILE, RunOptions, option_default, option_names, option_spec
from .errors import fail as _fail
from .errors import friendly_errors

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def run_option(name: str, **overrides: Any) -> Decorator:
    """The click option of one run option, from its declaration (``overrides`` for a command's own default or help)."""
    spec = option_spec(name)
    if spec.flag is None:
        raise KeyError(f"{name} has no command-line flag")
    settings: dict[str, Any] = {"help": spec.help}
    if spec.metavar:
        settings["metavar"] = spec.metavar
    if spec.multiple:
        settings["multiple"] = True
    if spec.kind is bool:
        settings["is_flag"] = True
    elif spec.choices is not None:
        settings["type"] = click.Choice(list(spec.choices()))
    elif spec.kind == FILE:
        settings["type"] = click.Path(dir_okay=False)
    elif spec.kind == DIRECTORY:
        settings["type"] = click.Path(file_okay=False)
    elif spec.kind in (int, float):
        settings["type"] = spec.kind
    default = option_default(name)
    if default is not None and default is not False and default is not dataclasses.MISSING:
        settings["default"] = default
        settings["show_default"] = spec.show_default
    settings.update(overrides)
    return click.option(spec.flag, name, **settings)


#: what the command line declares itself, in the place of the run option it feeds (each named in
#: that option's ``Option.cli``): --param/--params -> params, --no-progress -> progress
_OWN: dict[str, list[Decorator]] = {
    "params": [
        click.option("--param", "param", multiple=True, metavar="KEY=VALUE",
                     help="A computation parameter (repeatable); converted with its PARAMETERS datatype."),
        click.option("--params", "params_file", type=click.Path(dir_okay=False), help="YAML file of computation parameters (--param wins)."),
    ],
    "progress": [click.option("--no-progress", is_flag=True, help="No progress bar (it is shown only when stderr is a terminal).")],
}


def _run_options(command: Callable[..., Any]) -> Callable[..., Any]:
    options: list[Decorator] = [
        click.argument("plugin"),
        click.argument("entities", required=False),
        click.option("--glob", "pattern", metavar="PATTERN", help="Each file matching PATTERN is an entity (** recurses); instead of ENTITIES."),
        click.option("--col", "column", type=int, default=1, show_default=True, help="1-based column of ENTITIES holding the entity (TSV)."),
    ]
    for name in option_names():
        if name in _OWN:
            options += _OWN[name]
        elif option_spec(name).flag is not None:
            options.append(run_option(name))
    options.append(click.option("--debug", is_flag=True, help="Show tracebacks."))
    for option in reversed(options):
        command = option(command)
    return command


def _run(**kw: Any) -> None:
    store = kw["store"] or os.environ.get("PROVBATCH_STORE") or None
    if store and not kw["dry_run"]:
        from ..outputs.store_process import WriterProcess

        WriterProcess.start_early()  # before the engine's imports: its start-up overlaps them
        try:
            _run_batch(kw, store)
        finally:
            WriterProcess.discard_early()
        return
    _run_batch(kw, store)


def _run_batch(kw: dict[str, Any], store: str | None) -> None:
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
    report = kw["report_path"] or (f"{kw['out']}.report.yaml" if kw["out"] else None)
    given = {name: kw[name] for name in option_names() if name in kw and name not in ("report_path", "store")}
    options = RunOptions(
        **given,
        report_path=report,
        params=params,
        progress=not kw["no_progress"] and sys.stderr.isatty(),
        write_std_streams=True,
        command=list(sys.argv),
        store=store,
    )
    run = BatchRun(kw["plugin"], EntitySource(path=entities, column=kw["column"], pattern=pattern), options)
    if options.dry_run:
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
    if run.failures and not options.allow_failures:
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
