"""The ``provbatch`` command group: every command of :mod:`provbatch.cli`'s modules under one name."""

from __future__ import annotations

import click

from .authoring import check, describe, new, plugins
from .provenance import rerun, show
from .run import batch_compute, version
from .runs import report, runs
from .store import COMMANDS as STORE_COMMANDS

__all__ = ["batch_compute", "provbatch"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version(), "--version", prog_name="provbatch", message="%(prog)s %(version)s")
def provbatch() -> None:
    """provbatch: compute attributes of entities with plugins, keeping their provenance."""


provbatch.add_command(batch_compute, name="run")
provbatch.add_command(check)
provbatch.add_command(plugins)
provbatch.add_command(describe)
provbatch.add_command(new)
provbatch.add_command(show)
provbatch.add_command(rerun)
provbatch.add_command(runs)
provbatch.add_command(report)
for _command in STORE_COMMANDS:  # store init, attributes, load, values, why, stale (issue 16)
    provbatch.add_command(_command)
