"""``provbatch why ENTITY ATTRIBUTE``: a value, where it came from, and the command that redoes it."""

from __future__ import annotations

import shlex
from typing import Any

from .records import canonical_json
from .url import display_url


def _param_text(value: Any) -> str:
    """A parameter as ``--param`` reads it back (arrays ``a,b``; other structures as YAML flow)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)) and all(isinstance(v, (str, int, float)) for v in value):
        return ",".join(str(v) for v in value)
    if isinstance(value, (dict, list, tuple)):
        return canonical_json(value)
    return str(value)


def redo_command(why: dict[str, Any]) -> str:
    """A shell command computing this one value again, into the same store."""
    entity, folder = why["entity"], None
    if why.get("input"):
        path = why["input"]["path"]
        if path.endswith("/" + entity) and not entity.startswith("/"):
            folder = path[: -len(entity)]  # the entity is a path relative to where the run ran: run it there
        elif path != entity:
            entity = path  # an id made from the file (--idsproc): compute the file
    plugin = why["plugin_path"] or why["plugin_id"]
    params = " ".join(f"--param {shlex.quote(f'{key}={_param_text(value)}')}"
                      for key, value in sorted(why["parameters"].items()) if key != "state")
    command = f"printf '%s\\n' {shlex.quote(entity)} | batch-compute {shlex.quote(plugin)} -"
    if folder:
        command = f"cd {shlex.quote(folder)} && {command}"
    if params:
        command += f" {params}"
    # --reason recompute: computed again even though the store holds this computation's value
    return f"{command} --reason recompute --store {shlex.quote(display_url(why['store']))}"


def format_why(why: dict[str, Any]) -> str:
    """The answer as aligned lines."""
    params = ", ".join(f"{key}={_param_text(value)}" for key, value in sorted(why["parameters"].items())) or "(none)"
    source = f", source sha256 {why['plugin_sha256']}" if why["plugin_sha256"] else ", source hash not recorded"
    lang = f" ({why['plugin_lang']})" if why["plugin_lang"] else ""
    lines = [
        f"{why['attribute']} of {why['entity']}: {why['value_text'] if why['value'] is not None else '(no value)'}"
        f"  [{why['datatype']}]",
        ("computation", f"{why['computation']} ({why['comp_status']}, {why['origin']})"),
        ("plugin", f"{why['plugin_id']} {why['plugin_version']}{lang}{source}"),
        ("plugin file", why["plugin_path"] or "(not recorded)"),
        ("parameters", params),
    ]
    if why["input"]:
        facts = why["input"]
        lines.append(("input", f"{facts['path']}, {facts['size']} bytes, sha256 {facts['sha256']}"))
    lines += [
        ("user", f"{why['user_id'] or '?'} on {why['system_id'] or '?'}" + (f", reason {why['reason']}" if why["reason"] else "")),
        ("time", f"{why['time_start'] or '?'} -> {why['time_end'] or '(not finished)'}"),
        ("run dir", why["run_dir"] or "(none)"),
    ]
    if why["command"]:
        lines.append(("command", shlex.join(why["command"])))
    earlier = why["n_values"] - 1
    if earlier:
        lines.append(("history", f"{earlier} earlier value(s): provbatch values {shlex.quote(why['attribute'])} "
                                 f"--entity {shlex.quote(why['entity'])} --history"))
    lines.append(("redo", redo_command(why)))
    if why["run_dir"]:
        lines.append(("", f"or the whole run: provbatch rerun {shlex.quote(why['run_dir'])}"))
    head, rest = lines[0], lines[1:]
    return "\n".join([str(head)] + [f"  {label:<12} {text}" for label, text in rest])
