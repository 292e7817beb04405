"""One-line errors and exit codes for every ``provbatch`` command.

Shared by every command module (:mod:`.run`, :mod:`.authoring`,
:mod:`.provenance`); a module of its own so that those import it at import
time without a circular import through :mod:`provbatch.cli`.
Every error a user can cause becomes ``PROG: error: message`` on stderr
with exit code 2 (usage) or 1 (plugin); SIGINT exits 130 and SIGTERM 143
after the command's own clean-up; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import functools
import signal
import sys
from collections.abc import Callable
from typing import Any

import click

from ..errors import ProvBatchError
from ..options import flag_of

EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: stop like on Ctrl-C (cancel, finalize, report), then exit 143."""


def fail(prog: str, message: str, code: int) -> None:
    click.echo(f"{prog}: error: {message}", err=True)
    sys.exit(code)


def friendly_errors(prog: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Turn errors into one-line messages and exit codes, unless ``debug`` is set."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            debug = kwargs.get("debug", False)
            previous = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)

            def on_term(_signum: int, _frame: Any) -> None:
                raise Terminated()

            signal.signal(signal.SIGTERM, on_term)
            # Also when started in the background by a shell, which leaves SIGINT
            # ignored: an explicit SIGINT means "stop", as Ctrl-C does.
            signal.signal(signal.SIGINT, signal.default_int_handler)
            show_build_messages()
            try:
                return command(*args, **kwargs)
            except Terminated:
                click.echo(f"{prog}: terminated", err=True)
                sys.exit(EXIT_TERMINATED)
            except KeyboardInterrupt:
                click.echo(f"{prog}: interrupted", err=True)
                sys.exit(EXIT_INTERRUPTED)
            except ProvBatchError as exc:  # options named in API words: the command line names its flags
                if debug:
                    raise
                fail(prog, exc.spelled(cli_name), exc.exit_code)
            except Exception as exc:  # a plugin's initialize/finalize/merge, or a bug of ours
                if debug:
                    raise
                fail(prog, f"{type(exc).__name__}: {exc} (run with --debug for the traceback)", 1)
            finally:
                signal.signal(signal.SIGTERM, previous[0])
                signal.signal(signal.SIGINT, previous[1])

        return wrapper

    return decorate


def cli_name(name: str) -> str:
    """How the command line names the option (or argument) ``name`` of the API, for its error messages.

    The flag the running command declares for that parameter (``column`` is
    ``--col``, ``pattern`` is ``--glob``, ``entities`` is ``ENTITIES``): the
    command's own declarations, which for the run options are generated from
    :class:`~provbatch.options.RunOptions`; else the option's flag there
    (:func:`~provbatch.options.flag_of`), else the name as it is.
    """
    context = click.get_current_context(silent=True)
    if context is not None:
        for param in context.command.params:
            if param.name == name:
                return param.human_readable_name if isinstance(param, click.Argument) else param.opts[0]
    return flag_of(name)


def show_build_messages() -> None:
    """Builds of compiled plugins can take a minute: say on stderr that one is under way, and why."""
    import logging

    logger = logging.getLogger("provbatch.build")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("provbatch: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
