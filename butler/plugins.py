"""The plugin manager: built-in API areas plus third-party plugins from entry points."""

from __future__ import annotations

import importlib

import pluggy

from butler import hookspecs

BUILTIN_PLUGINS: tuple[str, ...] = (
    "butler_plugins.meta",
    "butler_plugins.base_conversion",
    "butler_plugins.task_start",
    "butler_plugins.schedules",
    "butler_plugins.keyvalue",
    "butler_plugins.file_ops",
    "butler_plugins.mqtt_publish",
    "butler_plugins.slack",
    "butler_plugins.newrelic",
    "butler_plugins.apps",
)
"""Every API area that ships with Butler, one module each."""

ENTRY_POINT_GROUP = "butler"


def get_plugin_manager(load_entry_points: bool = True) -> pluggy.PluginManager:
    """A manager with the hookspecs, the built-in plugins and (optionally) installed ones."""
    pm = pluggy.PluginManager("butler")
    pm.add_hookspecs(hookspecs)
    for name in BUILTIN_PLUGINS:
        pm.register(importlib.import_module(name), name)
    if load_entry_points:
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    return pm
