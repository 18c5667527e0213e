"""The plugin contract of Butler.

Plugins implement these hooks with ``@butler.hookimpl``. Built-in plugins live in the
``butler_plugins`` package (the ``plugins/`` folder of the source tree); third-party ones
register a module under the ``butler`` entry-point group. A plugin owns everything of its
API area: the config sections and enable keys it reads, the long-lived objects it needs,
its command-line options and its routes, so adding an area never touches the core. The
hooks are called in this order: ``butler_enable_keys`` and ``butler_config_sections``
(config loading), ``butler_cli_arguments`` and ``butler_cli_overrides`` (command line,
before the config is validated), ``butler_services`` (start-up), ``butler_endpoints``
and ``butler_app_built`` (app build). See ``docs/plugins.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import argparse

    from flask import Flask

    from butler.cli_options import CliOptions
    from butler.config import Config, ConfigSection, EnableKey
    from butler.endpoints import Endpoint
    from butler.services import Services

hookspec = pluggy.HookspecMarker("butler")
hookimpl = pluggy.HookimplMarker("butler")


@hookspec
def butler_enable_keys() -> list[EnableKey]:
    """Return the ``restServerEndpointsEnable`` keys this plugin understands.

    Called when the config is loaded, before anything is validated. Each key may name the
    core services its endpoints need (``EnableKey("senseListApps", needs={ENGINE})``): when
    the key is true the core validates those services' config sections and builds them.
    Every endpoint a plugin returns must carry a key some plugin declared here, and no two
    plugins may declare the same key. A key in the config file that no plugin declares is a
    config error, so declaring it is what makes it valid (the planned keys of
    ``butler.unsupported.RESERVED_ENABLE_KEYS`` only warn until then).
    """


@hookspec
def butler_config_sections() -> list[ConfigSection]:
    """Return the config sections this plugin owns, each with its schema and condition.

    Called when the config is loaded. A section is a dotted path under ``Butler:``, a
    marshmallow schema (or a string list) and the condition under which it is validated,
    e.g. ``when_enabled("heartbeat")``: a stale section of a switched-off feature
    never stops start-up. Validated values, schema defaults included, replace the raw ones,
    so the plugin reads them with ``config.get`` and never re-applies defaults or casts.
    A template placeholder (``<...>``) in a validated section is an error naming its key,
    and claiming a section holding a switch of ``butler.unsupported.UNSUPPORTED`` stops the
    core from warning that the feature is missing.
    """


@hookspec
def butler_cli_arguments(options: CliOptions) -> None:
    """Add command-line options with ``options.add_argument`` (argparse's signature).

    Called once while the ``butler`` command line is built; every option is accepted before
    or after the sub-command. Pair it with ``butler_cli_overrides`` to turn the values into
    config.
    """


@hookspec
def butler_cli_overrides(args: argparse.Namespace) -> Mapping[str, Any] | None:
    """Return dotted config keys to override from the parsed command line, or ``None``.

    Called after parsing and before the config file is validated, so overrides are checked
    by the same schemas as the file's values. Raise ``butler.config.ConfigError`` for an
    unusable combination of options; the message must never echo a secret.
    """


@hookspec
def butler_services(config: Config, services: Services) -> None:
    """Build the long-lived objects of this plugin and register them on ``services``.

    Called once at start-up, after the core services (QRS client, task starter, key-value
    store, Engine client, scheduler, MQTT, outbound HTTP) are built and before anything is
    started. Register with ``services.register(SomeType, instance)``; views look it up with
    ``services.require(SomeType, "why it is missing")``. An object with ``start()`` and
    ``stop()`` is started after the core clients and before the triggers (scheduler, MQTT),
    and stopped in reverse order. Raise ``ConfigError`` for settings that cannot work. Do
    not contact remote systems here.
    """


@hookspec
def butler_endpoints(config: Config, services: Services) -> list[Endpoint]:
    """Return the REST endpoints this plugin offers.

    Called once while the app is built. Return every endpoint the plugin can serve, each
    tagged with its ``restServerEndpointsEnable`` key (``"butlerping"``, or a dotted key for
    nested groups such as ``"scheduler.getSchedule"``); the core mounts only those whose key
    is true, so a plugin never reads the enable map itself. Views close over the services
    they need and look plugin services up at call time; they must not build long-lived
    clients of their own.
    """


@hookspec
def butler_app_built(app: Flask, config: Config, services: Services) -> None:
    """Observe every request of the app just built, for cross-cutting policy (metrics).

    Called once per app, after the routes are mounted and before the core's own request
    hooks are installed, so a ``before_request`` registered here runs first and sees every
    request, refused ones included. Register Flask request hooks only (``before_request``,
    ``after_request``, ``teardown_request``); never add routes here (they belong in
    ``butler_endpoints``, where they are enabled, validated and documented) and never change
    a response's status or body. Label by ``request.url_rule.rule``, never the raw path, so
    the number of series stays bounded.
    """
