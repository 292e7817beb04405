"""The commands for plugin authors: ``provbatch check``, ``plugins``, ``describe`` and ``new``.

Thin, like the rest of the CLI: each parses its arguments, calls
:mod:`provbatch.authoring` (imported inside the command, so ``--help``
stays fast) and prints the result; errors are one line (``friendly_errors``).
"""

from __future__ import annotations

import shlex

import click

from ..errors import PluginValidationError
from .errors import friendly_errors

#: the languages and the names people type for them (python, rs, sh); authoring.language resolves the aliases
_LANGS = ["py", "python", "rust", "rs", "nim", "bash", "sh"]


@click.command()
@click.argument("plugin")
@click.option("--attributes", type=click.Path(dir_okay=False), help="Attribute definitions (default ./attribute_definitions.yaml, else beside the plugin).")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@friendly_errors("provbatch check")
def check(plugin: str, attributes: str | None, debug: bool) -> None:
    """Check PLUGIN against the plugin contract; list every problem found."""
    from ..plugins.loading import check_plugin, load_plugin, plugin_warnings, resolve_attributes

    loaded = load_plugin(plugin)
    definitions = resolve_attributes(attributes, loaded)
    problems = check_plugin(loaded, definitions)
    where = loaded.path or loaded.label
    for warning in plugin_warnings(loaded, definitions):
        click.echo(f"{where}: warning: {warning}")
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


@click.command()
@click.option("--installed-only", is_flag=True, help="Only the installed plugins (entry points), not those bundled in the repository.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@friendly_errors("provbatch plugins")
def plugins(installed_only: bool, debug: bool) -> None:
    """List the installed plugins (entry-point group provbatch.plugins) and those
    bundled in provbatch's repository, with their ID, VERSION and language.

    Each plugin is loaded to read its constants: compiled plugins are built
    the first time (then taken from the build cache). A plugin that fails to
    load is listed with its error.
    """
    from ..authoring import format_plugin_list, list_plugins

    click.echo(format_plugin_list(list_plugins(root=None if installed_only else "auto")))


@click.command()
@click.argument("plugin")
@click.option("--attributes", type=click.Path(dir_okay=False), help="Attribute definitions (default ./attribute_definitions.yaml, else beside the plugin).")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@friendly_errors("provbatch describe")
def describe(plugin: str, attributes: str | None, debug: bool) -> None:
    """Show PLUGIN's metadata, its OUTPUT attributes and its PARAMETERS.

    PLUGIN is a plugin file (.py, .rs or a Rust crate directory, .nim, .sh)
    or the name of an installed plugin.
    """
    from ..authoring import describe_plugin

    click.echo(describe_plugin(plugin, attributes))


@click.command()
@click.argument("name")
@click.option("--lang", type=click.Choice(_LANGS, case_sensitive=False), required=True, help="Language of the plugin.")
@click.option("--dir", "directory", type=click.Path(file_okay=False), default=".", show_default=True, help="Folder to write to (created if missing).")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@friendly_errors("provbatch new")
def new(name: str, lang: str, directory: str, debug: bool) -> None:
    """Write a plugin skeleton NAME.py/.rs/.nim/.sh, its test test_NAME.py, and
    the definitions of its attributes (appended to attribute_definitions.yaml).

    The skeleton counts the lines and bytes of a text file and passes
    'provbatch check': replace its computation with yours. Existing files
    are never overwritten.
    """
    from ..authoring import new_plugin

    made = new_plugin(name, lang, directory)
    click.echo(f"wrote {made.plugin} (the plugin) and {made.test} (its test)")
    if made.added:
        click.echo(f"{made.attributes}: added the attributes {', '.join(made.added)}")
    if made.kept:
        click.echo(f"{made.attributes}: kept the existing entries of {', '.join(made.kept)}: check that they fit what {name} returns (Integer)")
    plugin = shlex.quote(str(made.plugin))
    attributes = " ".join(shlex.quote(arg) for arg in made.attributes_option())
    extra = f" {attributes}" if attributes else ""
    click.echo("next:")
    click.echo(f"  provbatch check {plugin}{extra}")
    click.echo(f"  echo {plugin} | batch-compute {plugin} -{extra}    # runs it on its own source file")
    click.echo(f"  pytest {shlex.quote(str(made.test))}")
