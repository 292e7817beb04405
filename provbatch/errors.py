"""Error types of provbatch.

Every error a user can cause derives from :class:`ProvBatchError` and carries a
message that fits on one line and names the file involved, so that the command
line can print it as-is (no traceback) and exit with :attr:`exit_code`:
2 for usage errors (bad arguments, bad input files), 1 for plugin errors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Self


class ProvBatchError(Exception):
    """Base of all errors reported to the user as one line.

    A message that names run options (or other arguments of the API) names
    them in API words, the fields of :class:`~provbatch.options.RunOptions`
    (``backend``, ``slurm_chunk``, the entity source's ``column``): an error
    made by :meth:`naming` keeps its message as a template in which
    ``{workers}`` is the option ``workers``, and the command line, at its edge
    (:mod:`provbatch.cli.errors`), spells the same message with its own flags
    (``--workers``) through :meth:`spelled`.
    """

    exit_code: int = 1
    #: the message, naming options as ``{field}`` (see :meth:`naming`); None: it names none
    template: str | None = None

    @classmethod
    def naming(cls, template: str) -> Self:
        """The error whose message is ``template`` with each ``{option}`` in API words (the option's name).

        Text that comes from elsewhere (a path, a value, another error) goes
        into the template through :func:`literal`, so that its braces stay text.
        """
        error = cls(template.format_map(_Names(str)))
        error.template = template
        return error

    def spelled(self, name: Callable[[str], str]) -> str:
        """The message with each option it names spelled by ``name`` (the command line: its flag)."""
        if self.template is None:
            return str(self)
        return self.template.format_map(_Names(name))


def literal(text: object) -> str:
    """``text`` as part of a :meth:`ProvBatchError.naming` template: its braces are text, not options."""
    return str(text).replace("{", "{{").replace("}", "}}")


class UsageError(ProvBatchError):
    """Bad command-line arguments or input files (entities, params, skip lists)."""

    exit_code = 2


class PluginError(ProvBatchError):
    """The plugin cannot be loaded, built or used."""

    exit_code = 1


class PluginLoadError(PluginError):
    """The plugin file is missing, has an unsupported suffix, or fails to import/build."""


class InterfaceRequirementError(PluginError):
    """A name the caller requires (a constant or a function) is missing from the plugin."""

    def __init__(self, filename: str, name: str, kind: str = "name") -> None:
        self.filename = filename
        self.name = name
        super().__init__(f"{filename}: required {kind} '{name}' is not defined by the plugin")


class PluginValidationError(PluginError):
    """The plugin's metadata or signatures break the plugin contract.

    Holds every problem found, not just the first, so that ``provbatch check``
    and ``batch-compute`` can list them all.
    """

    def __init__(self, filename: str, problems: list[str]) -> None:
        self.filename = filename
        self.problems = list(problems)
        first = problems[0] if problems else "invalid plugin"
        more = f" (and {len(problems) - 1} more problem(s); run 'provbatch check')" if len(problems) > 1 else ""
        super().__init__(f"{filename}: {first}{more}")


class OptionError(UsageError):
    """A run option has a bad value (or options that do not go together).

    The message names options in API words, the fields of
    :class:`~provbatch.options.RunOptions` (``workers must be 1 or more``);
    ``problem`` may name other options as ``{name}``. :meth:`spelled` words it
    for another audience: the command line gives
    :func:`~provbatch.options.flag_of` (``--workers must be 1 or more``).
    """

    def __init__(self, option: str, problem: str) -> None:
        self.option = option
        self.problem = problem
        self.template = f"{{{option}}} {problem}"
        super().__init__(self.spelled(str))


class _Names(dict):
    def __init__(self, name: Callable[[str], str]) -> None:
        super().__init__()
        self.name = name

    def __missing__(self, key: str) -> str:
        return self.name(key)


class AttributeDefinitionsError(UsageError):
    """attribute_definitions.yaml is unreadable or malformed."""


class UnsafePathError(ProvBatchError):
    """A directory provbatch trusts (the build cache, a run directory) is not the user's alone:
    owned by another user, writable by group or others, or reached through a symbolic link.
    Its message says how to fix it."""

    exit_code = 1


class SkippedEntitiesWarning(UserWarning):
    """A run into an existing results file skipped entities already in it (a resume): the caller
    gets fewer rows than entities, which looks like "nothing computed" when it is not said."""


#: exit codes of ``batch-compute`` (docs/user-guide.md, "Exit codes")
EXIT_OK = 0
EXIT_ENTITIES_FAILED = 3
EXIT_FINALIZE_FAILED = 4
EXIT_OUTPUT_CLOSED = 141


class FinalizeError(PluginError):
    """finalize (or merge, or a worker's finalize) raised after the entities were computed.

    The results are written and the records closed (report ``finalize_failed``,
    manifest ``failed``); the command exits with :data:`EXIT_FINALIZE_FAILED`.
    """

    exit_code = EXIT_FINALIZE_FAILED


class OutputClosed(ProvBatchError):
    """The results went to a stdout whose reader went away (``batch-compute ... | head -1``)."""

    exit_code = EXIT_OUTPUT_CLOSED


class OutputWriteError(ProvBatchError):
    """An output file could not be written (disk full, I/O error): the message names that file."""

    exit_code = 1
