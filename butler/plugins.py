"""The plugin manager: built-in API areas plus third-party plugins from entry points.

Also the place that reads what plugins declare (enable keys, config sections, endpoints)
with the name of the plugin behind each item, so conflicts name both plugins and
``GET /v4/plugins`` can say which plugin serves which route.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pluggy

from butler import __version__, hookspecs
from butler.config import CORE_SECTIONS, ConfigContract, ConfigSection, EnableKey
from butler.endpoints import Endpoint

if TYPE_CHECKING:
    from butler.config import Config
    from butler.services import Services

BUILTIN_PACKAGE = "butler_plugins"
BUILTIN_PLUGINS: tuple[str, ...] = tuple(
    f"{BUILTIN_PACKAGE}.{module.name}"
    for module in pkgutil.iter_modules(importlib.import_module(BUILTIN_PACKAGE).__path__)
)
"""Every API area that ships with Butler: each module or package of ``butler_plugins``.

Found, not listed, so that adding a built-in area is adding a module, like a third-party one.
"""

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


@functools.cache
def default_plugin_manager() -> pluggy.PluginManager:
    """One shared manager for loading configs when the caller brings none.

    Scanning entry points costs milliseconds, and configs are made often (every test);
    the installed plugins do not change while the process runs.
    """
    return get_plugin_manager()


def per_plugin(pm: pluggy.PluginManager, hook: str, **kwargs: Any) -> Iterator[tuple[str, Any]]:
    """``(plugin name, result)`` of one hook, in the order pluggy calls the plugins.

    The hook is called implementation by implementation (wrappers left out) because the
    core needs to know which plugin contributed what: to name both sides of a conflict and
    to list each plugin's routes.
    """
    caller = getattr(pm.hook, hook)
    for impl in reversed(caller.get_hookimpls()):
        if impl.hookwrapper or impl.wrapper:
            continue
        result = impl.function(*(kwargs[name] for name in impl.argnames))
        if result is not None:
            yield impl.plugin_name, result


def config_contract(pm: pluggy.PluginManager) -> ConfigContract:
    """Enable keys (built-ins first, in their order) and the sections to validate."""
    keys: dict[str, EnableKey] = {}
    owners: dict[str, str] = {}
    for plugin, declared in reversed(list(per_plugin(pm, "butler_enable_keys"))):
        for key in declared:
            if key.name in owners:
                raise RuntimeError(
                    f"Enable key {key.name} is declared by plugins {owners[key.name]} and {plugin}"
                )
            owners[key.name] = plugin
            keys[key.name] = key
    sections: list[ConfigSection] = list(CORE_SECTIONS)
    paths = {section.path: "the core" for section in sections}
    for plugin, declared in reversed(list(per_plugin(pm, "butler_config_sections"))):
        for section in declared:
            if section.path in paths:
                raise RuntimeError(
                    f"Config section Butler.{section.path} is claimed by {paths[section.path]} "
                    f"and by plugin {plugin}"
                )
            paths[section.path] = plugin
            sections.append(section)
    return ConfigContract(enable_keys=keys, sections=tuple(sections))


@dataclass(frozen=True)
class PluginInfo:
    """One loaded plugin as ``GET /v4/plugins`` shows it."""

    name: str
    version: str
    builtin: bool
    hooks: tuple[str, ...]
    enable_keys: tuple[str, ...]
    endpoints: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "builtin": self.builtin,
            "hooks": list(self.hooks),
            "enableKeys": list(self.enable_keys),
            "endpoints": list(self.endpoints),
        }


def plugin_infos(pm: pluggy.PluginManager, mounted: list[tuple[str, Endpoint]]) -> list[PluginInfo]:
    """Every registered plugin, built-ins first, with its distribution's version."""
    versions = {pm.get_name(plugin): dist.version for plugin, dist in pm.list_plugin_distinfo()}
    declared = {
        name: [key.name for key in keys] for name, keys in per_plugin(pm, "butler_enable_keys")
    }
    infos = []
    for plugin in pm.get_plugins():
        name = pm.get_name(plugin) or repr(plugin)
        builtin = name in BUILTIN_PLUGINS
        infos.append(
            PluginInfo(
                name=name,
                version=__version__ if builtin else versions.get(name, "unknown"),
                builtin=builtin,
                hooks=tuple(sorted(caller.name for caller in pm.get_hookcallers(plugin) or [])),
                enable_keys=tuple(declared.get(name, ())),
                endpoints=tuple(f"{ep.method} {ep.rule}" for owner, ep in mounted if owner == name),
            )
        )
    order = {name: i for i, name in enumerate(BUILTIN_PLUGINS)}
    return sorted(infos, key=lambda info: (order.get(info.name, len(order)), info.name))


def collect_endpoints(
    pm: pluggy.PluginManager, config: Config, services: Services
) -> list[tuple[str, Endpoint]]:
    """Every endpoint every plugin offers, with its plugin; clashes fail loudly."""
    known = config_contract(pm).enable_keys
    endpoints: list[tuple[str, Endpoint]] = []
    seen: dict[tuple[str, str], str] = {}
    for plugin, contributed in per_plugin(pm, "butler_endpoints", config=config, services=services):
        for ep in contributed:
            key = (ep.method, ep.rule)
            if key in seen:
                raise RuntimeError(
                    f"Two plugins define {ep.method} {ep.rule}: {seen[key]} and {plugin}"
                )
            if ep.enable_key not in known:
                raise RuntimeError(
                    f"Plugin {plugin} serves {ep.method} {ep.rule} under enable key "
                    f"{ep.enable_key}, which no plugin declares in butler_enable_keys"
                )
            seen[key] = plugin
            endpoints.append((plugin, ep))
    return endpoints
