"""Stale values: their computation no longer matches the plugin, the parameters, or the input file.

A current value is stale when the plugin that computed it now has another
version or source hash (the plugin given, else the one at the path the
computation recorded), when the parameters given differ from those it was
computed with, or when the input file it was computed from (files mode)
changed size or content since. ``provbatch stale`` lists them;
``batch-compute --store URL --only-stale`` recomputes exactly those entities.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .records import canonical_json
from .store import Store


@dataclass(frozen=True)
class StaleValue:
    entity: str
    attribute: str
    computation: str
    reason: str


@dataclass(frozen=True)
class PluginNow:
    """What a plugin is now: the values computed by it are compared with this."""

    plugin_id: str
    version: str
    sha256: str | None
    #: the parameters to compare with (None: parameters are not compared)
    parameters: dict[str, Any] | None = None


def plugin_now(loaded: Any, parameters: dict[str, Any] | None = None) -> PluginNow:
    """From a loaded plugin (:class:`provbatch.plugins.loading.LoadedPlugin`)."""
    return PluginNow(loaded.id, str(loaded.version), loaded.sha256() if loaded.path else None, parameters)


def _recorded_plugin(path: str | None, cache: dict[str, PluginNow | str]) -> PluginNow | str:
    """The plugin at a computation's recorded path, or why it cannot be judged."""
    if not path:
        return "the computation recorded no plugin path"
    if path not in cache:
        if not Path(path).exists():
            cache[path] = f"plugin not found at {path}"
        else:
            from ..plugins.loading import load_plugin

            try:
                cache[path] = plugin_now(load_plugin(path))
            except Exception as exc:  # noqa: BLE001 - a plugin that no longer loads cannot be judged
                cache[path] = f"plugin at {path} does not load: {exc}"
    return cache[path]


def _reasons(computation: dict[str, Any], now: PluginNow) -> list[str]:
    reasons = []
    if computation["version"] != now.version:
        reasons.append(f"plugin version {computation['version']} -> {now.version}")
    recorded = computation["plugin_sha256"]
    if recorded and now.sha256 and recorded != now.sha256:
        reasons.append(f"plugin source changed (sha256 {recorded[:12]} -> {now.sha256[:12]})")
    if now.parameters is not None and canonical_json(computation["parameters"]) != canonical_json(now.parameters):
        reasons.append(f"parameters {canonical_json(computation['parameters'])} -> {canonical_json(now.parameters)}")
    return reasons


def _input_change(row: dict[str, Any], digest: Callable[[str], tuple[int, str]]) -> str | None:
    path = row["path"]
    try:
        stat = os.stat(path)
    except OSError:
        return f"input file {path} is gone"
    if row["size"] is not None and stat.st_size != row["size"]:
        return f"input file {path} changed (size {row['size']} -> {stat.st_size})"
    if row["mtime"] is not None and stat.st_mtime == row["mtime"]:
        return None  # same size and modification time: the content is taken as unchanged
    if row["sha256"]:
        _size, sha256 = digest(path)
        if sha256 != row["sha256"]:
            return f"input file {path} changed (sha256 {row['sha256'][:12]} -> {sha256[:12]})"
    return None


def stale_values(store: Store, attributes: Sequence[str] = (), plugin: PluginNow | None = None,
                 notes: list[str] | None = None) -> Iterator[StaleValue]:
    """The stale current values (of ``attributes``), each with its reason.

    ``plugin``: the values computed by that plugin id are compared with it;
    those of other plugins with the plugin found at their recorded path.
    Computations that cannot be judged (plugin file gone) are named in ``notes``.
    """
    from ..provenance.capture import size_and_sha256

    cache: dict[str, PluginNow | str] = {}
    stale: dict[int, str] = {}
    uuids: dict[int, str] = {}
    for computation in store.current_computations(attributes):
        uuids[computation["id"]] = computation["uuid"]
        if plugin is not None and computation["plugin_id"] == plugin.plugin_id:
            now: PluginNow | str = plugin
        else:
            now = _recorded_plugin(computation["plugin_path"], cache)
        if isinstance(now, str):
            if notes is not None:
                notes.append(f"{computation['n_values']} value(s) of computation {computation['uuid']} "
                             f"({computation['plugin_id']} {computation['version']}) not judged: {now}")
            continue
        reasons = _reasons(computation, now)
        if reasons:
            stale[computation["id"]] = "; ".join(reasons)
    reason_of = {uuids[pk]: reason for pk, reason in stale.items()}
    if stale:
        for entity, attribute, computation_uuid in store.current_values_of(list(stale), attributes):
            yield StaleValue(entity, attribute, computation_uuid, reason_of[computation_uuid])
    for row in store.current_inputs(attributes):
        if row["computation"] in reason_of:
            continue
        change = _input_change(row, size_and_sha256)
        if change:
            yield StaleValue(row["entity"], row["attribute"], row["computation"], change)
