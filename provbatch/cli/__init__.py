"""The command line: ``batch-compute`` and ``provbatch`` (run, check, plugins, describe, new, show, rerun, runs, report).

One module per command group (:mod:`.run`, :mod:`.authoring`,
:mod:`.provenance`, :mod:`.runs`), all thin: parse, call the library, print. Every error a
user can cause becomes one line naming the file and the problem, with exit
code 2 for usage errors and 1 for plugin errors; ``--debug`` shows the
traceback (:mod:`.errors`).
"""

from __future__ import annotations

import click

from .authoring import check, describe, new, plugins
from .provenance import rerun, show
from .run import batch_compute, version
from .runs import report, runs
from .store import COMMANDS as STORE_COMMANDS

__all__ = ["batch_compute", "batch_compute_main", "provbatch", "provbatch_main"]


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


def batch_compute_main() -> None:
    batch_compute(prog_name="batch-compute")


def provbatch_main() -> None:
    provbatch(prog_name="provbatch")
