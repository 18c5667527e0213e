"""The ``butler`` command: run (default), demo, check-config, openapi, simulate-qrs, new-api-key.

``check-config`` runs :func:`butler.runner.prepare`, the loading ``run`` does, so it cannot
accept a config that ``run`` refuses. A shared option that a command would ignore is
refused (``UNUSED_OPTIONS``), so nobody believes ``-l debug`` changed what they saw.

Plugins add their own options through ``butler_cli_arguments`` and turn them into config
overrides through ``butler_cli_overrides``; the same plugin manager then loads the config,
builds the services and the app, so a plugin's option, section and routes always agree.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pluggy

from butler import __version__
from butler.auth.keys import hash_key, new_key
from butler.cli_options import CliOptions
from butler.config import LOG_LEVELS, Config, ConfigError, endpoint_enable_map, load_config
from butler.plugins import config_contract, default_plugin_manager
from butler.runner import EXIT_CONFIG, headless_summary, prepare, serve
from butler.service_command import add_service_parser, run_service_command


def _add_common(options: CliOptions) -> None:
    options.add_argument(
        "-c",
        "--configfile",
        default=None,
        help="Butler YAML config file (default: $BUTLER_CONFIG)",
    )
    options.add_argument(
        "-l",
        "--loglevel",
        choices=LOG_LEVELS,
        default=None,
        help="log level, overriding Butler.logLevel (run and demo)",
    )
    options.add_argument(
        "--api-rate-limit",
        type=int,
        default=None,
        metavar="N",
        help="requests per minute per client address; 0 = off",
    )


COMMANDS = (
    (
        "run",
        "serve the REST API (the default command)",
        "Serve the REST API and run the scheduler and MQTT triggers until stopped "
        "(SIGINT, SIGTERM, CTRL_BREAK). Exit 2 on a config error, 3 when the port is taken.",
    ),
    (
        "check-config",
        "validate the config file and summarise enabled features",
        "Load the config exactly as run does (sections, certificates and keys, TLS files, "
        "the schedule file and the key-value store) without listening or contacting "
        "anything; print a summary and 'Config OK', or one 'Config error:' line and exit 2.",
    ),
    (
        "openapi",
        "print the OpenAPI document for the config's enabled endpoints",
        "Print the OpenAPI 3 document of the routes the config enables (every route without "
        "a config file) on stdout, and nothing else.",
    ),
)

UNUSED_OPTIONS = {
    "check-config": {"loglevel": "-l/--loglevel: check-config writes no log (run and demo do)"},
    "openapi": {"loglevel": "-l/--loglevel: openapi writes no log (run and demo do)"},
    "demo": {"configfile": "-c/--configfile: the demo writes and uses its own config"},
    "new-api-key": {
        "configfile": "-c/--configfile: new-api-key needs no config file",
        "loglevel": "-l/--loglevel: new-api-key writes no log",
        "api_rate_limit": "--api-rate-limit: new-api-key serves nothing",
    },
}
"""Shared options a command would otherwise ignore without a word: refused instead."""


def build_parser(pm: pluggy.PluginManager) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="butler", description="Butler for Python: REST API companion for Qlik Sense."
    )
    parser.add_argument("--version", action="version", version=f"butler {__version__}")
    sub = parser.add_subparsers(dest="command")
    commands = [
        sub.add_parser(name, help=text, description=description)
        for name, text, description in COMMANDS
    ]
    demo = sub.add_parser(
        "demo",
        help="run Butler against the bundled QRS simulator",
        description="Run Butler with every endpoint on against the bundled QRS and Engine "
        "simulators, with generated certificates, config and schedules, and print curl lines.",
    )
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
    # The simulator's options belong to its own parser (butler simulate-qrs --help), so
    # this one neither knows nor answers them: everything after the name is passed on.
    sub.add_parser(
        "simulate-qrs",
        add_help=False,
        help="run the QRS simulator on its own (options: butler simulate-qrs --help)",
    )
    add_service_parser(sub)
    _add_new_api_key_parser(sub)
    return parser


def _add_new_api_key_parser(sub: argparse._SubParsersAction) -> None:
    """Not among the commands that take the shared options: it needs no config file."""
    command = sub.add_parser(
        "new-api-key",
        help="make a random API key and print the config lines for it",
        description="Print a fresh random API key once, and the lines (with the key's salted "
        "scrypt hash, never the key) to paste under Butler.restServerConfig.auth.apiKeys. "
        "Needs no config file; nothing is stored, so store the key now.",
    )
    command.add_argument(
        "--name", required=True, help="the caller's name, as audit records and logs show it"
    )
    command.add_argument(
        "--scopes",
        default="read",
        metavar="A,B",
        help="comma-separated scopes the key grants (default: read)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    pm = default_plugin_manager()
    parser = build_parser(pm)
    args, extra = parser.parse_known_args(words)
    command = args.command or "run"
    _refuse_unused_options(parser, args, command)
    if command == "simulate-qrs":
        from butler.testing.qrs_simulator import main as simulator_main

        return int(simulator_main(extra) or 0)
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if command == "service":
        return run_service_command(args)
    if command == "new-api-key":
        return _new_api_key(parser, args)
    if command == "demo":
        from butler.testing.demo import run_demo

        return run_demo(args, pm)
    if command == "openapi" and _config_path(args) is None:
        if cli_overrides(args, pm):
            parser.error("openapi: command-line config overrides need -c/--configfile")
        return _print_openapi(None, pm)
    try:
        config = _load(args, pm)
        if command == "check-config":
            prepare(config, pm).services.stop()
    except ConfigError as exc:
        print(f"Config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if command == "check-config":
        for warning in config.warnings:
            print(f"Warning: {warning}", file=sys.stderr)
        print(summarise(config))
        return 0
    if command == "openapi":
        return _print_openapi(config, pm)
    return serve(config, plugin_manager=pm)


_SCOPE = re.compile(r"^[A-Za-z0-9*][A-Za-z0-9.*_-]*$")
_PLAIN_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9 ._-]*(?<! )$")
_YAML_WORDS = {"y", "n", "yes", "no", "true", "false", "on", "off", "null"}


def _new_api_key(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """The key goes to stdout once and nowhere else: no log, no file."""
    name = args.name.strip()
    if not name:
        parser.error("new-api-key: --name must not be empty")
    scopes = [scope.strip() for scope in args.scopes.split(",") if scope.strip()]
    if not scopes:
        parser.error("new-api-key: --scopes needs at least one scope")
    bad = [scope for scope in scopes if not _SCOPE.match(scope)]
    if bad:
        parser.error(f"new-api-key: not a scope name: {', '.join(bad)}")
    key = new_key()
    # A name YAML could read as something else (a number, "yes", "a: b") is quoted; JSON's
    # string form is a valid YAML double-quoted scalar.
    plain = _PLAIN_NAME.match(name) and name.lower() not in _YAML_WORDS
    shown_name = name if plain else json.dumps(name)
    print(f"API key for {json.dumps(name)} (shown once, store it now): {key}")
    print("Paste under Butler.restServerConfig.auth.apiKeys in your config file:")
    print(f"      - name: {shown_name}")
    print(f"        keyHash: {hash_key(key)}")
    print(f"        scopes: [{', '.join(scopes)}]")
    return 0


def _refuse_unused_options(
    parser: argparse.ArgumentParser, args: argparse.Namespace, command: str
) -> None:
    """A shared option given to a command that does not use it is an error, not a no-op."""
    given = {
        dest: value
        for dest, value in vars(args).items()
        if dest != "command" and value != parser.get_default(dest)
    }
    if command == "simulate-qrs" and given:
        parser.error(
            "simulate-qrs takes only its own options (butler simulate-qrs --help), not "
            + ", ".join(f"--{dest.replace('_', '-')}" for dest in given)
        )
    for dest, why in UNUSED_OPTIONS.get(command, {}).items():
        if dest in given:
            parser.error(f"{command} does not take {why}")


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


def summarise(config: Config) -> str:
    """A short human summary of what this config switches on."""
    if config.get("restServerConfig.enable") is False:
        rest = headless_summary(config)
        endpoints = "none served (the REST API is off)"
    else:
        rest = (
            f"{config.get('restServerConfig.serverHost')}:"
            f"{config.get('restServerConfig.serverPort')}"
            f"{' (TLS)' if config.get('restServerConfig.tls.enable') is True else ''}"
        )
        endpoints = ", ".join(config.enabled_endpoint_keys) or "none"
    lines = [
        f"Config file: {config.path}",
        f"REST server: {rest}",
        f"Enabled endpoints: {endpoints}",
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
    from butler.app import create_app

    if config is None:
        contract = config_contract(pm)
        config = Config.from_mapping(
            {"restServerEndpointsEnable": endpoint_enable_map(True, contract)},
            Path.cwd(),
            contract=contract,
            feature_sections=False,
        )
    # The document the service itself would serve, so the two cannot differ.
    document = create_app(config, plugin_manager=pm).test_client().get("/documentation/json")
    print(json.dumps(document.json, indent=2, ensure_ascii=False))
    return 0
