"""The ``butler`` command: run (default), demo, check-config, openapi, simulate-qrs.

Plugins add their own options through ``butler_cli_arguments`` and turn them into config
overrides through ``butler_cli_overrides``; the same plugin manager then loads the config,
builds the services and the app, so a plugin's option, section and routes always agree.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pluggy

from butler import __version__
from butler.cli_options import CliOptions
from butler.config import LOG_LEVELS, Config, ConfigError, endpoint_enable_map, load_config
from butler.plugins import config_contract, default_plugin_manager
from butler.runner import EXIT_CONFIG, serve
from butler.service_command import add_service_parser, run_service_command


def _add_common(options: CliOptions) -> None:
    options.add_argument(
        "-c",
        "--configfile",
        default=None,
        help="Butler YAML config file (default: $BUTLER_CONFIG)",
    )
    options.add_argument("-l", "--loglevel", choices=LOG_LEVELS, default=None)
    options.add_argument(
        "--api-rate-limit",
        type=int,
        default=None,
        metavar="N",
        help="requests per minute per client address; 0 = off",
    )


def build_parser(pm: pluggy.PluginManager) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="butler", description="Butler for Python: REST API companion for Qlik Sense."
    )
    parser.add_argument("--version", action="version", version=f"butler {__version__}")
    sub = parser.add_subparsers(dest="command")
    commands = [
        sub.add_parser(name, help=text)
        for name, text in (
            ("run", "serve the REST API (the default command)"),
            ("check-config", "validate the config file and summarise enabled features"),
            ("openapi", "print the OpenAPI document for the config's enabled endpoints"),
        )
    ]
    demo = sub.add_parser("demo", help="run Butler against the bundled QRS simulator")
    demo.add_argument("--port", type=int, default=8080, help="Butler's port (0 = any free)")
    demo.add_argument("--workdir", type=Path, default=None, help="where demo files are written")
    demo.add_argument(
        "--exit-after-ready",
        action="store_true",
        help="start everything, print the curl lines, then stop (smoke test)",
    )
    options = CliOptions(parser, [*commands, demo])
    _add_common(options)
    pm.hook.butler_cli_arguments(options=options)
    sub.add_parser("simulate-qrs", help="run the QRS simulator on its own (see its --help)")
    add_service_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    if words[:1] == ["simulate-qrs"]:
        # Its options belong to the simulator's own parser; argparse's REMAINDER would
        # refuse the ones that start with "-".
        from butler.testing.qrs_simulator import main as simulator_main

        return int(simulator_main(words[1:]) or 0)
    pm = default_plugin_manager()
    args = build_parser(pm).parse_args(words)
    command = args.command or "run"
    if command == "service":
        return run_service_command(args)
    if command == "demo":
        from butler.testing.demo import run_demo

        return run_demo(args, pm)
    if command == "openapi" and _config_path(args) is None:
        return _print_openapi(None, pm)
    try:
        config = _load(args, pm)
    except ConfigError as exc:
        print(f"Config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if command == "check-config":
        try:
            check_schedule_file(config)
        except ConfigError as exc:
            print(f"Config error: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        for warning in config.warnings:
            print(f"Warning: {warning}", file=sys.stderr)
        print(summarise(config))
        return 0
    if command == "openapi":
        return _print_openapi(config, pm)
    return serve(config, plugin_manager=pm)


def _config_path(args: argparse.Namespace) -> str | None:
    return args.configfile or os.environ.get("BUTLER_CONFIG")


def cli_overrides(args: argparse.Namespace, pm: pluggy.PluginManager) -> dict[str, Any]:
    """Command-line options (the core's and every plugin's) as dotted config overrides."""
    overrides: dict[str, Any] = {}
    if args.loglevel:
        overrides["logLevel"] = args.loglevel
    if args.api_rate_limit is not None:
        if args.api_rate_limit < 0:
            raise ConfigError("--api-rate-limit: must be 0 or more")
        overrides["restServerConfig.rateLimit"] = args.api_rate_limit
    for plugin_overrides in pm.hook.butler_cli_overrides(args=args):
        overrides.update(plugin_overrides)
    return overrides


def _load(args: argparse.Namespace, pm: pluggy.PluginManager) -> Config:
    path = _config_path(args)
    if path is None:
        raise ConfigError("no config file: pass -c/--configfile or set BUTLER_CONFIG")
    return load_config(path, cli_overrides(args, pm), config_contract(pm))


def check_schedule_file(config: Config) -> None:
    """Read the schedule file as start-up would, so check-config reports its errors too."""
    if config.get("scheduler.enable") is True:
        from butler.schedules import ScheduleStore

        ScheduleStore(config.resolve_path(config.get("scheduler.configfile")))


def summarise(config: Config) -> str:
    """A short human summary of what this config switches on."""
    lines = [
        f"Config file: {config.path}",
        f"REST server: {config.get('restServerConfig.serverHost')}:"
        f"{config.get('restServerConfig.serverPort')}"
        f"{' (TLS)' if config.get('restServerConfig.tls.enable') is True else ''}",
        "Enabled endpoints: " + (", ".join(config.enabled_endpoint_keys) or "none"),
    ]
    if config.get("configQRS.host"):
        lines.append(f"QRS: {config.get('configQRS.host')}:{config.get('configQRS.port')}")
    lines.append(
        "Scheduler: "
        + (
            f"on, file {config.resolve_path(config.get('scheduler.configfile'))}"
            if config.get("scheduler.enable") is True
            else "off"
        )
    )
    lines.append(f"Key-value store: {config.get('keyValueStore.persistence')}")
    broker = f"{config.get('mqttConfig.brokerHost')}:{config.get('mqttConfig.brokerPort')}"
    lines.append(f"MQTT: {'on, broker ' + broker if config.get('mqttConfig.enable') else 'off'}")
    lines.append("Config OK")
    return "\n".join(lines)


def _print_openapi(config: Config | None, pm: pluggy.PluginManager) -> int:
    """The document of ``config``, or of every route when no config is given."""
    from butler.app import create_app, mounted_endpoints
    from butler.openapi import build_openapi

    if config is None:
        contract = config_contract(pm)
        config = Config.from_mapping(
            {"restServerEndpointsEnable": endpoint_enable_map(True, contract)},
            Path.cwd(),
            contract=contract,
            feature_sections=False,
        )
    app = create_app(config, plugin_manager=pm)
    document = build_openapi(
        mounted_endpoints(app), rate_limited=config.get("restServerConfig.rateLimit") > 0
    )
    print(json.dumps(document, indent=2, ensure_ascii=False))
    return 0
