"""Run Butler until a stop signal: build services, serve the app, stop everything in order.

Shared by ``butler run`` and ``butler demo`` (which adds simulators around it), so both
start and stop the same way; ``butler check-config`` runs :func:`prepare`, the same
loading, so a config it accepts is one ``run`` starts with.
"""

from __future__ import annotations

import gc
import logging
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pluggy
from flask import Flask

from butler import __version__
from butler.app import create_app
from butler.certificates import load_server_certificate
from butler.config import Config, ConfigError
from butler.lifecycle import build_services
from butler.logging_setup import LogSettings, configure_logging
from butler.plugins import default_plugin_manager
from butler.server import ServerHandle, TlsFiles, build_server
from butler.services import Services

log = logging.getLogger("butler")

EXIT_CONFIG = 2
EXIT_LISTEN = 3

STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGBREAK")
"""SIGBREAK is CTRL_BREAK on Windows (what a service wrapper sends); absent elsewhere."""


@dataclass
class Prepared:
    """Everything built from the config before Butler listens; ``app`` is ``None`` headless."""

    services: Services
    app: Flask | None
    tls: TlsFiles | None


def prepare(config: Config, plugin_manager: pluggy.PluginManager) -> Prepared:
    """Load what the config names (log settings, certificates, stores, schedule file, TLS files)
    and build the services and the app, without starting or contacting anything.

    ``ConfigError`` names the key path of the first problem.
    """
    LogSettings.from_config(config)
    services = build_services(config, plugin_manager)
    try:
        if config.get("restServerConfig.enable") is False:
            return Prepared(services, None, None)
        tls = _tls_files(config)
        return Prepared(services, create_app(config, services, plugin_manager), tls)
    except BaseException:
        services.stop()
        raise


def headless_summary(config: Config) -> str:
    """What Butler does with the REST API off, said at start-up and by ``check-config``."""
    running = []
    if config.get("scheduler.enable") is True:
        running.append("the scheduler")
    if config.get("mqttConfig.enable") is True:
        running.append("MQTT")
    what = (
        " and ".join(running) + " only" if running else "nothing (scheduler and MQTT are off too)"
    )
    return f"off (Butler.restServerConfig.enable is false): runs {what}"


def serve(
    config: Config,
    on_ready: Callable[[str, Callable[[], None]], None] | None = None,
    plugin_manager: pluggy.PluginManager | None = None,
) -> int:
    """Run the service until a stop signal; answer what is in flight, then stop services.

    ``on_ready`` is called with the listening URL and a function that stops the service
    (the demo prints its curl lines there, and its smoke mode stops right away).
    """
    pm = plugin_manager or default_plugin_manager()
    try:
        configure_logging(LogSettings.from_config(config))
    except ConfigError as exc:
        print(f"Config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    log.info("Butler %s starting with config %s", __version__, config.path)
    for warning in config.warnings:
        log.warning("%s", warning)
    try:
        prepared = prepare(config, pm)
    except ConfigError as exc:
        log.error("Config error: %s", exc)
        return EXIT_CONFIG
    services = prepared.services
    if prepared.app is None:
        return _run_headless(services, headless_summary(config))
    host = config.get("restServerConfig.serverHost")
    port = config.get("restServerConfig.serverPort")
    try:
        server = build_server(
            prepared.app, host, port, tls=prepared.tls, server=config.get("restServerConfig.server")
        )
    except OSError as exc:
        log.error("Cannot listen on %s:%s: %s", host, port, exc)
        services.stop()
        return EXIT_LISTEN
    services.start()
    # Long-lived start-up objects (config, schedules) need not be scanned by every GC pass.
    gc.freeze()
    stopper = _ServerStopper(server)
    _on_stop_signals(stopper.on_signal)
    log.info("Butler REST API listening on %s (docs at %s/documentation)", server.url, server.url)
    if on_ready is not None:
        on_ready(server.url, stopper.stop)
    try:
        server.serve_forever()
        stopper.wait()
    finally:
        services.stop()
    log.info("Butler stopped")
    return 0


class _ServerStopper:
    """Stops the server once, from a thread of its own, and lets the serving thread wait.

    A signal handler runs on the main thread, which is inside ``serve_forever``: stopping
    cheroot there waits for its own serve loop to end, for ever. From another thread the
    loop ends, in-flight requests are answered (both servers wait for their workers), and
    only then does ``serve`` stop the services those requests use.
    """

    def __init__(self, server: ServerHandle):
        self._server = server
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def on_signal(self, signum: int, _frame: Any) -> None:
        log.info("Signal %s received: shutting down", _signal_name(signum))
        self.stop()

    def stop(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._server.shutdown, name="butler-stop")
                self._thread.start()

    def wait(self) -> None:
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join()


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


def _tls_files(config: Config) -> TlsFiles | None:
    if config.get("restServerConfig.tls.enable") is not True:
        return None
    load_server_certificate(config)
    ca = config.get("restServerConfig.tls.ca")
    return TlsFiles(
        cert=config.resolve_path(config.get("restServerConfig.tls.cert")),
        key=config.resolve_path(config.get("restServerConfig.tls.key")),
        ca=config.resolve_path(ca) if ca else None,
        require_client_cert=config.get("restServerConfig.tls.requireClientCertificate") is True,
    )


def _on_stop_signals(handler: Callable[[int, Any], None]) -> None:
    for name in STOP_SIGNALS:
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), handler)


def _run_headless(services: Services, summary: str) -> int:
    """Background services only (schedules, MQTT triggers) until a stop signal.

    ``summary`` is logged once the stop signals are handled: a supervisor that waits for
    that line can stop Butler right after it.
    """
    stopped = threading.Event()

    def stop(signum: int, _frame: Any) -> None:
        log.info("Signal %s received: shutting down", _signal_name(signum))
        stopped.set()

    _on_stop_signals(stop)
    log.warning("REST API %s", summary)
    services.start()
    try:
        # A timed wait keeps signals (CTRL_BREAK on Windows) handled promptly.
        while not stopped.wait(1.0):
            pass
    finally:
        services.stop()
    log.info("Butler stopped")
    return 0
