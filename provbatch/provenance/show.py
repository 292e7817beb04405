"""``provbatch show RUN_DIR``: a run's provenance, readable.

Renders ``manifest.json`` and, when the run has one, ``run_config.json``
(see :mod:`.capture`): status, plugin, parameters, inputs with their sizes
and sha256, outputs, counts, times, environment, command line.
"""

from __future__ import annotations

import json
import shlex
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .rundirs import find_run_dir, load_manifest, load_run_config, run_process_state


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    size: float = n
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)  # pragma: no cover


def _facts(facts: dict[str, Any]) -> str:
    """``path (size, sha256 ...)`` of a recorded file."""
    if "error" in facts:
        return f"{facts.get('path')} (unreadable at the run: {facts['error']})"
    return f"{facts.get('path')} ({_size(facts.get('size'))}, sha256 {facts.get('sha256')})"


def _duration(start: str | None, end: str | None) -> str:
    try:
        seconds = (datetime.fromisoformat(str(end)) - datetime.fromisoformat(str(start))).total_seconds()
    except (TypeError, ValueError):
        return ""
    return f" ({seconds:.1f} s)"


def _entities_lines(entities: dict[str, Any] | None) -> list[str]:
    if not entities:
        return ["entities     (not recorded)"]
    kind = entities.get("kind")
    if kind == "file":
        return [f"entities     file {_facts(entities)}, column {entities.get('column', 1)}"]
    if kind == "glob":
        lines = [f"entities     glob {entities['pattern']}: {entities['count']} files, {_size(entities.get('size'))}"]
        lines += [f"               {_facts(f)}" for f in entities.get("files", [])[:20]]
        if entities["count"] > 20:
            lines.append(f"               ... and {entities['count'] - 20} more (run_config.json lists them all)")
        return lines
    if kind == "stdin":
        return ["entities     stdin (not recorded: cannot be re-checked)"]
    if kind == "failures_file":
        return [f"entities     the {entities['count']} failures of {entities['path']} (stored in run_config.json)"]
    if entities.get("values") is not None:
        return [f"entities     a Python iterable of {entities['count']} entities (stored in run_config.json)"]
    return ["entities     a Python iterable (not stored: cannot be re-checked or replayed)"]


def _plugin_lines(plugin: dict[str, Any]) -> list[str]:
    lines = [f"plugin       {plugin.get('id')} {plugin.get('version')} ({plugin.get('lang')})"]
    where = plugin.get("path") or plugin.get("source")
    if plugin.get("installed"):
        where = f"{where} (installed plugin '{plugin.get('label')}')"
    lines.append(f"  path       {where}")
    lines.append(f"  sha256     {plugin.get('sha256')}")
    sources = plugin.get("sources", [])
    lines.append(f"  sources    {len(sources)} file(s) captured: " + ", ".join(
        f"{s['name']} ({_size(s['size'])})" for s in sources[:8]) + (" ..." if len(sources) > 8 else ""))
    if plugin.get("options"):
        lines.append("  options    " + ", ".join(f"{k}={v}" for k, v in plugin["options"].items()))
    artifact = plugin.get("artifact")
    if artifact and artifact.get("path") != plugin.get("path"):
        lines.append(f"  library    {artifact['path']}")
        lines.append(f"  lib sha256 {artifact.get('sha256')}")
    return lines


def _input_lines(config: dict[str, Any]) -> list[str]:
    lines = _entities_lines(config.get("entities"))
    if config.get("skip"):
        lines.append(f"skip         {_facts(config['skip'])}")
    idsproc = config.get("idsproc")
    if idsproc:
        lines.append(f"idsproc      {_facts(idsproc) if 'sha256' in idsproc or 'error' in idsproc else idsproc.get('spec')}")
    attributes = config.get("attributes")
    if attributes:
        lines.append(f"attributes   {_facts(attributes)}")
    return lines


def _environment_lines(environment: dict[str, Any]) -> list[str]:
    items = [f"Python {environment.get('python')}", f"provbatch {environment.get('provbatch')}"]
    if environment.get("ray"):
        items.append(f"ray {environment['ray']}")
    items += [value if str(value).lower().startswith(name.lower()) else f"{name} {value}"
              for name, value in (environment.get("toolchain") or {}).items()]
    return [f"environment  {', '.join(items)}", f"  platform   {environment.get('platform')}",
            f"  packages   {len(environment.get('packages') or [])} installed (listed in run_config.json)"]


def summarize_run(run_dir: str | Path) -> str:
    """The provenance of a run, readable: what ``provbatch show`` prints."""
    run_dir = find_run_dir(run_dir)
    manifest = load_manifest(run_dir)
    try:
        config: dict[str, Any] | None = load_run_config(run_dir)
    except UsageError:
        config = None
    counts = manifest.get("counts") or {}
    status = manifest.get("status", "?") + (f", {manifest['comp_status']}" if manifest.get("comp_status") else "")
    if manifest.get("status") == "running":
        state, detail = run_process_state(manifest)
        status = f"{'died' if state == 'gone' else 'running'} ({detail})"
    lines = [f"run          {manifest.get('uuid')}", f"status       {status}"]
    if manifest.get("failure"):
        lines.append(f"failure      {manifest['failure']}")
    lines.append(f"directory    {run_dir}")
    if config and config.get("rerun_of"):
        lines.append(f"rerun of     {config['rerun_of']}")
    command = manifest.get("command")
    lines.append(f"command      {shlex.join(command) if command else '(Python API)'}")
    if config:
        lines.append(f"working dir  {config.get('cwd')}")
    lines.append(f"started      {manifest.get('started')}")
    lines.append(f"ended        {manifest.get('ended') or '-'}{_duration(manifest.get('started'), manifest.get('ended'))}")
    if config:
        reason = config.get("reason") or "-"
        lines.append(f"who          {config.get('user')} on {config.get('system')}, reason {reason}")
        if config.get("trial"):
            lines.append(f"trial run    {config['trial']}")
        lines += _plugin_lines(config["plugin"])
        params = config.get("parameters") or {}
        unrestorable = config.get("unrestorable_parameters") or {}
        shown = [f"{k}={json.dumps(v)}" for k, v in params.items()] + [f"{k}=<{t}> (not restorable)" for k, t in unrestorable.items()]
        lines.append(f"parameters   {', '.join(shown) or '(none)'}")
        lines += _input_lines(config)
    else:
        plugin = manifest.get("plugin") or {}
        lines.append(f"plugin       {plugin.get('id')} {plugin.get('version')} ({plugin.get('lang')}) {plugin.get('path')}")
        lines.append(f"  sha256     {plugin.get('sha256')}")
        lines.append(f"parameters   {', '.join(f'{k}={v}' for k, v in (manifest.get('parameters') or {}).items()) or '(none)'}")
        lines.append(f"entities     {manifest.get('entities')}")
        lines.append("(no run_config.json: no captured sources or input hashes)")
    outputs = manifest.get("outputs") or {}
    lines.append("outputs      " + (", ".join(f"{k} {v}" for k, v in outputs.items() if v) or "(none: results went to stdout or the caller)"))
    lines.append("counts       " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items()))
    backend = manifest.get("backend") or "-"
    if config:
        execution = config.get("execution") or {}
        timeout = execution.get("timeout")
        lines.append(f"backend      {backend} (requested {execution.get('backend')}), workers {manifest.get('workers', '-')}, "
                     f"retries {execution.get('retries')}, timeout {f'{timeout} s' if timeout else 'none'}")
        lines += _environment_lines(config.get("environment") or {})
    else:
        lines.append(f"backend      {backend}, workers {manifest.get('workers', '-')}")
    return "\n".join(lines)


def captured_code(run_dir: str | Path) -> tuple[str, list[str]]:
    """What ``provbatch show --source`` prints: the code a rerun of ``run_dir`` would execute
    (the captured plugin sources, and the idsproc module's), and where the record disagrees
    with itself (then a rerun refuses it)."""
    from .rerun import record_differences

    source_run = find_run_dir(run_dir)
    config = load_run_config(source_run)
    differences, _notes = record_differences(config, load_manifest(source_run))
    plugin = config.get("plugin") or {}
    entries = [("", entry) for entry in plugin.get("sources") or []]
    idsproc = config.get("idsproc") or {}
    if idsproc.get("source"):
        entries.append(("idsproc ", idsproc["source"]))
    lines = [f"# a rerun of {config.get('uuid')} executes this code "
             f"({plugin.get('lang')} plugin {plugin.get('id')} {plugin.get('version')}):"]
    if not entries:
        lines.append("# (no source was captured: a rerun loads the installed module by name)")
    text = "\n".join(lines) + "\n"
    for prefix, entry in entries:
        text += f"# ---- {prefix}{entry.get('name')} ({entry.get('size')} bytes, sha256 {entry.get('sha256')}) ----\n"
        if "text" in entry:
            body = str(entry["text"])
            text += body if body.endswith("\n") or not body else body + "\n"
        else:
            text += "# (not UTF-8 text: stored in base64 in run_config.json)\n"
    return text, differences
