"""The ``butler`` command: run (default), demo, check-config, openapi, simulate-qrs."""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from butler import __version__
from butler.config import LOG_LEVELS, Config, ConfigError, load_config
from butler.outbound import apply_new_relic_cli

log = logging.getLogger("butler")

EXIT_CONFIG = 2
EXIT_LISTEN = 3
COMMANDS = ("run", "demo", "check-config", "openapi", "simulate-qrs")


def _add_common(parser: argparse.ArgumentParser, *, top: bool) -> None:
    default = None if top else argparse.SUPPRESS
    parser.add_argument(
        "-c",
        "--configfile",
        default=default,
        help="Butler YAML config file (default: $BUTLER_CONFIG)",
    )
    parser.add_argument("-l", "--loglevel", choices=LOG_LEVELS, default=default)
    parser.add_argument(
        "--api-rate-limit",
        type=int,
        default=default,
        metavar="N",
        help="requests per minute per client address; 0 = off",
    )
    parser.add_argument("--new-relic-account-name", nargs="+", default=default, metavar="NAME")
    parser.add_argument("--new-relic-api-key", nargs="+", default=default, metavar="KEY")
    parser.add_argument("--new-relic-account-id", nargs="+", default=default, metavar="ID")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="butler", description="Butler for Python: REST API companion for Qlik Sense."
    )
    parser.add_argument("--version", action="version", version=f"butler {__version__}")
    _add_common(parser, top=True)
    sub = parser.add_subparsers(dest="command")
    for name, text in (
        ("run", "serve the REST API (the default command)"),
        ("check-config", "validate the config file and summarise enabled features"),
        ("openapi", "print the OpenAPI document for the config's enabled endpoints"),
    ):
        _add_common(sub.add_parser(name, help=text), top=False)
    demo = sub.add_parser("demo", help="run Butler against the bundled QRS simulator")
    _add_common(demo, top=False)
    demo.add_argument("--port", type=int, default=8080, help="Butler's port (0 = any free)")
    demo.add_argument("--workdir", type=Path, default=None, help="where demo files are written")
    demo.add_argument(
        "--exit-after-ready",
        action="store_true",
        help="start everything, print the curl lines, then stop (smoke test)",
    )
    sim = sub.add_parser("simulate-qrs", help="run the QRS simulator on its own")
    sim.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = args.command or "run"
    if command == "simulate-qrs":
        from butler.testing.qrs_simulator import main as simulator_main

        return int(simulator_main(args.args) or 0)
    if command == "demo":
        from butler.demo import run_demo

        return run_demo(args)
    if command == "openapi" and _config_path(args) is None:
        return _print_openapi(None)
    try:
        config = _load(args)
    except ConfigError as exc:
        print(f"Config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if command == "check-config":
        try:
            check_schedule_file(config)
        except ConfigError as exc:
            print(f"Config error: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        print(summarise(config))
        return 0
    if command == "openapi":
        return _print_openapi(config)
    return serve(config)


def _config_path(args: argparse.Namespace) -> str | None:
    return args.configfile or os.environ.get("BUTLER_CONFIG")


def cli_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Command-line options as dotted config overrides."""
    overrides: dict[str, Any] = {}
    if args.loglevel:
        overrides["logLevel"] = args.loglevel
    if args.api_rate_limit is not None:
        if args.api_rate_limit < 0:
            raise ConfigError("--api-rate-limit: must be 0 or more")
        overrides["restServerConfig.rateLimit"] = args.api_rate_limit
    try:
        accounts = apply_new_relic_cli(
            args.new_relic_account_name, args.new_relic_api_key, args.new_relic_account_id
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if accounts:
        overrides["thirdPartyToolsCredentials.newRelic"] = accounts
    return overrides


def _load(args: argparse.Namespace) -> Config:
    path = _config_path(args)
    if path is None:
        raise ConfigError("no config file: pass -c/--configfile or set BUTLER_CONFIG")
    return load_config(path, cli_overrides(args))


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
    lines.append(f"Key-value store: {config.get('keyValueStore.persistence', 'sqlite')}")
    broker = f"{config.get('mqttConfig.brokerHost')}:{config.get('mqttConfig.brokerPort')}"
    lines.append(f"MQTT: {'on, broker ' + broker if config.get('mqttConfig.enable') else 'off'}")
    lines.append("Config OK")
    return "\n".join(lines)


def _print_openapi(config: Config | None) -> int:
    from butler.app import create_app, mounted_endpoints
    from butler.openapi import build_openapi

    if config is None:
        from butler.config import endpoint_enable_map

        config = Config(
            {"restServerEndpointsEnable": endpoint_enable_map(True), "restServerConfig": {}},
            Path.cwd(),
        )
    app = create_app(config)
    print(json.dumps(build_openapi(mounted_endpoints(app)), indent=2, ensure_ascii=False))
    return 0


def serve(config: Config, on_ready: Callable[[str, Callable[[], None]], None] | None = None) -> int:
    """Run the service until SIGINT/SIGTERM (CTRL_BREAK on Windows); stop services first.

    ``on_ready`` is called with the listening URL and a function that stops the service
    (the demo prints its curl lines there, and its smoke mode stops right away).
    """
    from butler.app import create_app
    from butler.lifecycle import build_services
    from butler.logging_setup import configure_logging
    from butler.server import TlsFiles, build_server

    log_dir = (
        config.resolve_path(config.get("logDirectory", "log"))
        if config.get("fileLogging") is True
        else None
    )
    configure_logging(config.log_level, log_dir)
    log.info("Butler %s starting with config %s", __version__, config.path)
    try:
        services = build_services(config)
    except ConfigError as exc:
        log.error("Config error: %s", exc)
        return EXIT_CONFIG
    if config.get("restServerConfig.enable") is False:
        log.warning("Butler.restServerConfig.enable is false: running without the REST API")
        return _run_headless(services)
    tls = None
    if config.get("restServerConfig.tls.enable") is True:
        tls = TlsFiles(
            cert=config.resolve_path(config.get("restServerConfig.tls.cert", "")),
            key=config.resolve_path(config.get("restServerConfig.tls.key", "")),
            ca=(
                config.resolve_path(config.get("restServerConfig.tls.ca"))
                if config.get("restServerConfig.tls.ca")
                else None
            ),
        )
    app = create_app(config, services)
    host = config.get("restServerConfig.serverHost", "127.0.0.1")
    port = int(config.get("restServerConfig.serverPort", 8080))
    try:
        server = build_server(
            app,
            host,
            port,
            threads=int(config.get("restServerConfig.threads", 16)),
            max_body=int(config.get("restServerConfig.maxBodyBytes", 1024 * 1024)),
            tls=tls,
        )
    except OSError as exc:
        log.error("Cannot listen on %s:%s: %s", host, port, exc)
        services.stop()
        return EXIT_LISTEN
    services.start()
    # Long-lived start-up objects (config, schedules) need not be scanned by every GC pass.
    gc.freeze()

    def stop(signum: int, _frame: Any) -> None:
        log.info("Signal %s received: shutting down", signum)
        services.stop()
        server.shutdown()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    if hasattr(signal, "SIGBREAK"):
        signal.signal(signal.SIGBREAK, stop)
    log.info("Butler REST API listening on %s (docs at %s/documentation)", server.url, server.url)
    if on_ready is not None:
        on_ready(server.url, lambda: stop(signal.SIGTERM, None))
    try:
        server.serve_forever()
    finally:
        services.stop()
    log.info("Butler stopped")
    return 0


def _run_headless(services: Any) -> int:
    """Background services only (schedules, MQTT triggers) until a stop signal."""
    import threading

    stopped = threading.Event()

    def stop(signum: int, _frame: Any) -> None:
        log.info("Signal %s received: shutting down", signum)
        stopped.set()

    for name in ("SIGINT", "SIGTERM", "SIGBREAK"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), stop)
    services.start()
    try:
        while not stopped.wait(3600):
            pass
    finally:
        services.stop()
    return 0
