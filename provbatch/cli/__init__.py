"""The command line: ``batch-compute`` and ``provbatch`` (run, check, plugins, describe, new, show, rerun, runs, report).

One module per command group (:mod:`.run`, :mod:`.authoring`,
:mod:`.provenance`, :mod:`.runs`, :mod:`.store`), all thin: parse, call the library, print; the
``provbatch`` group that holds them is :mod:`.commands`. Every error a user can cause becomes
one line naming the file and the problem, with exit code 2 for usage errors and 1 for plugin
errors; ``--debug`` shows the traceback (:mod:`.errors`).

This module is the entry points alone, and imports no command (nor click) before it has
looked at the command line: a run that writes into a store starts its store writer process
first (:func:`_start_store_writer_if_asked`).
"""

from __future__ import annotations

import os
import sys
from typing import Any

__all__ = ["batch_compute", "batch_compute_main", "provbatch", "provbatch_main"]


def __getattr__(name: str) -> Any:
    """``batch_compute`` and ``provbatch``, the click commands, imported when first asked for."""
    if name == "batch_compute":
        from .run import batch_compute

        return batch_compute
    if name == "provbatch":
        from .commands import provbatch

        return provbatch
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _start_store_writer_if_asked(args: list[str]) -> bool:
    """Start the store writer process now when ``args`` (a run's options) ask for a store and a real run.

    The writer's start-up (SQLAlchemy's import, ~0.4 s of CPU) is on the path of every
    ``batch-compute --store`` run, which waits for the writer; begun here, before the command
    line's own imports and parsing (~0.08 s), it begins that much earlier (measured: the
    child started 0.07 s after the process, where it started 0.14-0.15 s after it when the
    parsed options started it). A look at the words, not a parse: a ``--store`` that is
    another option's value starts a child that no run takes, and that is killed at the end
    (:meth:`~provbatch.outputs.store_process.WriterProcess.discard_early`); a store the
    words do not show is started by the run itself, as before.
    """
    if any(arg in ("--dry-run", "--help", "-h", "--version") for arg in args):
        return False
    if not (os.environ.get("PROVBATCH_STORE") or any(arg == "--store" or arg.startswith("--store=") for arg in args)):
        return False
    from ..outputs.store_process import WriterProcess

    WriterProcess.start_early()
    return True


def _run_command(name: str, args: list[str]) -> None:
    """Run the command ``name`` (``batch-compute`` or ``provbatch``) on the process's command line, its
    store writer started first when ``args`` ask for one, and ended if no run took it."""
    started = _start_store_writer_if_asked(args)
    try:
        command: Any
        if name == "batch-compute":
            from .run import batch_compute as command
        else:
            from .commands import provbatch as command
        command(prog_name=name)
    finally:
        if started:
            from ..outputs.store_process import WriterProcess

            WriterProcess.discard_early()


def batch_compute_main() -> None:
    _run_command("batch-compute", sys.argv[1:])


def provbatch_main() -> None:
    _run_command("provbatch", sys.argv[2:] if sys.argv[1:2] == ["run"] else [])
