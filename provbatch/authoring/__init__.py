"""Tools for plugin authors: list the plugins (:mod:`.listing`), describe one
(:mod:`.describe`), write a new one (:mod:`.new`, skeletons in ``templates/``).

The command line (``provbatch plugins``, ``describe``, ``new``) only prints
what these functions return.
"""

from __future__ import annotations

from .describe import describe_plugin, parameter_table
from .listing import PluginEntry, PluginListing, format_plugin_list, list_plugins, repo_root
from .new import NewPlugin, new_plugin

__all__ = [
    "describe_plugin", "parameter_table", "PluginEntry", "PluginListing", "format_plugin_list", "list_plugins",
    "repo_root", "NewPlugin", "new_plugin",
]
