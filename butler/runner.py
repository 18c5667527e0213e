"""Run Butler until a stop signal: build services, serve the app, stop everything in order.

Shared by ``butler run`` and ``butler demo`` (which adds simulators around it), so both
start and stop the same way.
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

import pluggy

from butler import __version__
from butler.app import create_app
from butler.config import Config, ConfigError
from butler.lifecycle import build_services
from butler.logging_setup import configure_logging
from butler.plugins import default_plugin_manager
from butler.server import TlsFiles, build_server
from butler.services import Services

log = logging.getLogger("butler")

EXIT_CONFIG = 2
EXIT_LISTEN = 3


def serve(
    config: Config,
    on_ready: Callable[[str, Callable[[], None]], None] | None = None,
    plugin_manager: pluggy.PluginManager | None = None,
) -> int:
    """Run the service until SIGINT/SIGTERM (CTRL_BREAK on Windows); stop services first.

    ``on_ready`` is called with the listening URL and a function that stops the service
    (the demo prints its curl lines there, and its smoke mode stops right away).
    """
    pm = plugin_manager or default_plugin_manager()
    log_dir = config.resolve_path(config.get("logDirectory", "log"))
    configure_logging(config.log_level, log_dir if config.get("fileLogging") is True else None)
    log.info("Butler %s starting with config %s", __version__, config.path)
    for warning in config.warnings:
        log.warning("%s", warning)
    try:
        services = build_services(config, pm)
    except ConfigError as exc:
        log.error("Config error: %s", exc)
        return EXIT_CONFIG
    if config.get("restServerConfig.enable") is False:
        log.warning("Butler.restServerConfig.enable is false: running without the REST API")
        return _run_headless(services)
    app = create_app(config, services, pm)
    host = config.get("restServerConfig.serverHost")
    port = config.get("restServerConfig.serverPort")
    try:
        server = build_server(
            app,
            host,
            port,
            tls=_tls_files(config),
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

    _on_stop_signals(stop)
    log.info("Butler REST API listening on %s (docs at %s/documentation)", server.url, server.url)
    if on_ready is not None:
        on_ready(server.url, lambda: stop(signal.SIGTERM, None))
    try:
        server.serve_forever()
    finally:
        services.stop()
    log.info("Butler stopped")
    return 0


def _tls_files(config: Config) -> TlsFiles | None:
    if config.get("restServerConfig.tls.enable") is not True:
        return None
    ca = config.get("restServerConfig.tls.ca")
    return TlsFiles(
        cert=config.resolve_path(config.get("restServerConfig.tls.cert", "")),
        key=config.resolve_path(config.get("restServerConfig.tls.key", "")),
        ca=config.resolve_path(ca) if ca else None,
        require_client_cert=config.get("restServerConfig.tls.requireClientCertificate") is True,
    )


def _on_stop_signals(handler: Callable[[int, Any], None]) -> None:
    for name in ("SIGINT", "SIGTERM", "SIGBREAK"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), handler)


def _run_headless(services: Services) -> int:
    """Background services only (schedules, MQTT triggers) until a stop signal."""
    stopped = threading.Event()

    def stop(signum: int, _frame: Any) -> None:
        log.info("Signal %s received: shutting down", signum)
        stopped.set()

    _on_stop_signals(stop)
    services.start()
    try:
        while not stopped.wait(3600):
            pass
    finally:
        services.stop()
    return 0
