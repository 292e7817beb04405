"""The results store commands: ``store init``, ``attributes``, ``load``, ``values``, ``why``, ``stale``.

Thin over :mod:`provbatch.store` (imported inside the commands, so that
``--help`` stays fast): parse, call, print. ``--store URL`` (or a plain path,
SQLite) is on every command; else ``$PROVBATCH_STORE``; else ``./provbatch.sqlite``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ..errors import UsageError
from .errors import friendly_errors

STORE_HELP = "The store: a SQLAlchemy URL or a path (SQLite); default $PROVBATCH_STORE, else ./provbatch.sqlite."


def _common(command: Callable[..., Any]) -> Callable[..., Any]:
    command = click.option("--debug", is_flag=True, help="Show tracebacks.")(command)
    return click.option("--store", "store", metavar="URL", help=STORE_HELP)(command)


def _open(url: str | None, create: bool = False) -> Any:
    from ..store import Store

    return Store(url, create=create)


@click.group(name="store")
def store_group() -> None:
    """Set up the results store."""


@store_group.command(name="init")
@_common
@friendly_errors("provbatch store init")
def store_init(store: str | None, debug: bool) -> None:
    """Create the store, or migrate it to this provbatch's schema."""
    from ..store import Store
    from ..store.url import display_url

    url, before, after = Store.init(store)
    where = display_url(url)
    if before is None:
        click.echo(f"{where}: store created (schema revision {after})")
    elif before == after:
        click.echo(f"{where}: store up to date (schema revision {after})")
    else:
        click.echo(f"{where}: store migrated from schema revision {before} to {after}")


@click.group(name="attributes")
def attributes_group() -> None:
    """Manage the attribute definitions of the store."""


@attributes_group.command(name="apply")
@click.argument("definitions", type=click.Path(dir_okay=False))
@click.option("--update", is_flag=True, help="Update the metadata of attributes already in the store.")
@click.option("--drop-missing", is_flag=True, help="Drop the attributes missing from the file, WITH THEIR VALUES.")
@_common
@friendly_errors("provbatch attributes apply")
def attributes_apply(definitions: str, update: bool, drop_missing: bool, store: str | None, debug: bool) -> None:
    """Add the attributes of a definitions file (attribute_definitions.yaml, or prenacs')."""
    from ..store import read_definitions

    parsed = read_definitions(definitions)
    with _open(store, create=True) as opened:
        result = opened.apply_attributes(parsed, update=update, drop_missing=drop_missing, source=definitions)
    for label, names in (("added", result.added), ("updated", result.updated), ("dropped (with their values)", result.dropped)):
        if names:
            click.echo(f"{label}: {', '.join(names)}")
    if result.differing:
        click.echo(f"differ from the file, kept (use --update): {', '.join(result.differing)}")
    click.echo(f"{len(result.added)} added, {len(result.updated)} updated, {len(result.unchanged)} unchanged, "
               f"{len(result.differing)} differing, {len(result.dropped)} dropped")


@attributes_group.command(name="list")
@_common
@friendly_errors("provbatch attributes list")
def attributes_list(store: str | None, debug: bool) -> None:
    """The attributes of the store: name, datatype, computation group, definition."""
    with _open(store) as opened:
        for name, entry in opened.attributes().items():
            click.echo("\t".join([name, entry["datatype"], entry["computation_group"] or "", entry["definition"] or ""]))


@attributes_group.command(name="drop")
@click.argument("name")
@_common
@friendly_errors("provbatch attributes drop")
def attributes_drop(name: str, store: str | None, debug: bool) -> None:
    """Drop attribute NAME with all its values (and their history)."""
    with _open(store) as opened:
        deleted = opened.drop_attribute(name)
    click.echo(f"dropped {name} and its {deleted} value(s)")


@click.command(name="load")
@click.argument("results", type=click.Path(dir_okay=False))
@click.argument("report", type=click.Path(dir_okay=False))
@click.argument("plugin", required=False)
@click.option("--replace-plugin-record", "replace_plugin", is_flag=True, help="The plugin changed without a version bump: replace its record.")
@click.option("--replace-report-record", "replace_report", is_flag=True, help="A computation with this uuid is stored with other fields: replace them.")
@_common
@friendly_errors("provbatch load")
def load(results: str, report: str, plugin: str | None, replace_plugin: bool, replace_report: bool,
         store: str | None, debug: bool) -> None:
    """Load a results TSV with its report (provbatch's or prenacs 1.2's).

    PLUGIN (default: the plugin path the report names) gives the OUTPUT
    attributes; its ID and VERSION must match the report's. Loading the same
    report again changes nothing; loading an earlier one makes its values current again.
    """
    from ..plugins.loading import load_plugin
    from ..store import computation_from_report, plugin_record, read_report

    data = read_report(report)
    if plugin is None:
        recorded = data.get("plugin_path")
        if not recorded or not Path(str(recorded)).exists():
            raise UsageError(f"{report}: name the plugin that computed it: provbatch load RESULTS REPORT PLUGIN"
                             + (f" (the report's plugin_path {recorded} does not exist)" if recorded else ""))
        plugin = str(recorded)
    loaded = load_plugin(plugin)
    for key, have in (("ID", loaded.id), ("VERSION", str(loaded.version))):
        wanted = str(data[f"plugin_{key.lower()}"])
        if have != wanted:
            raise UsageError(f"{report}: plugin {key} mismatch: the report says {wanted}, {plugin} has {have}")
    record = computation_from_report(data, plugin_record(loaded), loaded.output, str(loaded.path.resolve()) if loaded.path else None)
    with _open(store, create=True) as opened:
        result = opened.load(results, record, replace_plugin, replace_report, report_path=report)
    again = " (already loaded: its values are current again)" if result.already_loaded else ""
    click.echo(f"loaded {result.values} value(s) of {result.entities} entit{'y' if result.entities == 1 else 'ies'} "
               f"from computation {result.computation}{again}")


@click.command(name="values")
@click.argument("attributes", nargs=-1)
@click.option("--entity", "entity", multiple=True, metavar="ID", help="Only this entity (repeatable).")
@click.option("--entities", "entities_file", type=click.Path(dir_okay=False), help="Only the entities listed in this file (first column).")
@click.option("--format", "fmt", type=click.Choice(["tsv", "csv", "jsonl", "parquet"]), default="tsv", show_default=True)
@click.option("--provenance", is_flag=True, help="Add computation (uuid), plugin_id, plugin_version, time_end.")
@click.option("--history", is_flag=True, help="Every value ever stored, not only the current ones (column 'current').")
@click.option("--out", type=click.Path(dir_okay=False), help="Output file (default stdout; parquet needs one).")
@_common
@friendly_errors("provbatch values")
def values(attributes: tuple[str, ...], entity: tuple[str, ...], entities_file: str | None, fmt: str, provenance: bool,
           history: bool, out: str | None, store: str | None, debug: bool) -> None:
    """Export the values of ATTRIBUTES (default: all), one row per value."""
    from ..inputs.entities import iter_column
    from ..store.export import export_values

    selected: list[str] | None = list(entity) if entity else None
    if entities_file:
        if not Path(entities_file).is_file():
            raise UsageError(f"{entities_file}: entities file not found")
        selected = (selected or []) + list(iter_column(entities_file, 1, "entities file"))
    with _open(store) as opened:
        export_values(opened, list(attributes), selected, fmt, out, provenance=provenance, history=history)


@click.command(name="why")
@click.argument("entity")
@click.argument("attribute")
@click.option("--json", "as_json", is_flag=True, help="As one JSON object.")
@_common
@friendly_errors("provbatch why")
def why(entity: str, attribute: str, as_json: bool, store: str | None, debug: bool) -> None:
    """Where the value of ATTRIBUTE for ENTITY comes from, and the command that redoes it."""
    from ..store.explain import format_why, redo_command
    from ..store.url import display_url

    with _open(store) as opened:
        answer = opened.why(entity, attribute)
        if answer is None:
            known = attribute in opened.attributes()
            what = f"no value of {attribute} for entity '{entity}'" if known else f"attribute '{attribute}' is not in the store"
            raise UsageError(f"{display_url(opened.url)}: {what}")
    if as_json:
        click.echo(json.dumps({**answer, "store": display_url(answer["store"]), "redo": redo_command(answer)}, indent=2))
    else:
        click.echo(format_why(answer))


@click.command(name="stale")
@click.argument("attributes", nargs=-1)
@click.option("--plugin", metavar="PLUGIN", help="Compare the values of this plugin's id with it (default: the plugin at each computation's recorded path).")
@click.option("--param", "param", multiple=True, metavar="KEY=VALUE", help="With --plugin: the parameters values should have been computed with.")
@click.option("--params", "params_file", type=click.Path(dir_okay=False), help="With --plugin: a YAML file of parameters.")
@_common
@friendly_errors("provbatch stale")
def stale(attributes: tuple[str, ...], plugin: str | None, param: tuple[str, ...], params_file: str | None,
          store: str | None, debug: bool) -> None:
    """List the values whose computation no longer matches the plugin (version, source), parameters or input file.

    One line per value: entity, attribute, computation uuid, reason.
    """
    from ..store.staleness import plugin_now, stale_values

    now = None
    if plugin is not None:
        from ..contract.parameters import (
            parse_param_options,
            read_params_file,
            resolve_params,
        )
        from ..plugins.loading import load_plugin

        loaded = load_plugin(plugin)
        given: dict[str, Any] = dict(read_params_file(params_file)) if params_file else {}
        given.update(parse_param_options(param))
        now = plugin_now(loaded, dict(resolve_params(given, loaded.parameters, origin="parameters")))
    elif param or params_file:
        raise UsageError("--param and --params need --plugin (the plugin whose parameters they are)")
    notes: list[str] = []
    n = 0
    with _open(store) as opened:
        for value in stale_values(opened, list(attributes), now, notes):
            click.echo(f"{value.entity}\t{value.attribute}\t{value.computation}\t{value.reason}")
            n += 1
    for note in notes:
        click.echo(f"provbatch stale: {note}", err=True)
    click.echo(f"{n} stale value(s)", err=True)


COMMANDS = (store_group, attributes_group, load, values, why, stale)
