"""An example third-party Butler plugin: a heartbeat that counts while Butler runs.

It exists to prove (and to document, see docs/plugins.md) that an API area is one plugin
and touches no core file. Through the hooks it declares an enable key, owns a config
section, adds a command-line option, builds a service with start/stop and serves a route.
It is installed for the tests as a distribution on ``sys.path`` (the ``.dist-info`` folder
next to this package), so Butler finds it by its ``butler`` entry point like any plugin
installed with pip.
"""

from __future__ import annotations

import argparse
import logging
import threading
from collections.abc import Mapping
from typing import Any

from marshmallow import validate

from butler.cli_options import CliOptions
from butler.config import Config, ConfigSection, EnableKey, when_enabled
from butler.config_schema import OpenSchema, config_integer, config_string
from butler.endpoints import ApiRequest, Endpoint
from butler.hookspecs import hookimpl
from butler.services import Services

log = logging.getLogger(__name__)

ENABLE_KEY = "heartbeat"
SECTION = "heartbeat"


class HeartbeatSection(OpenSchema):
    message = config_string(load_default="still here")
    intervalMs = config_integer(
        validate=validate.Range(10, 60_000, error="must be 10-60000"), load_default=1000
    )


class Heartbeat:
    """Counts beats on a thread of its own between ``start`` and ``stop``."""

    def __init__(self, message: str, interval_ms: int):
        self.message = message
        self.interval = interval_ms / 1000
        self.beats = 0
        self.started = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.started = True
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        self._thread.start()
        log.info("Heartbeat started: %s", self.message)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.started = False
        log.info("Heartbeat stopped after %d beats", self.beats)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.beats += 1


@hookimpl
def butler_enable_keys() -> list[EnableKey]:
    return [EnableKey(ENABLE_KEY)]


@hookimpl
def butler_config_sections() -> list[ConfigSection]:
    return [ConfigSection(SECTION, HeartbeatSection, when_enabled(ENABLE_KEY))]


@hookimpl
def butler_cli_arguments(options: CliOptions) -> None:
    options.add_argument("--heartbeat-message", default=None, help="what the heartbeat says")


@hookimpl
def butler_cli_overrides(args: argparse.Namespace) -> Mapping[str, Any] | None:
    if args.heartbeat_message is None:
        return None
    return {f"{SECTION}.message": args.heartbeat_message}


@hookimpl
def butler_services(config: Config, services: Services) -> None:
    if config.endpoint_enabled(ENABLE_KEY):
        services.register(
            Heartbeat,
            Heartbeat(config.get(f"{SECTION}.message"), config.get(f"{SECTION}.intervalMs")),
        )


@hookimpl
def butler_endpoints(config: Config, services: Services) -> list[Endpoint]:
    def beat(call: ApiRequest) -> Any:
        heartbeat = services.require(Heartbeat, "The heartbeat is not running")
        return {
            "message": heartbeat.message,
            "beats": heartbeat.beats,
            "running": heartbeat.started,
        }

    return [
        Endpoint(
            enable_key=ENABLE_KEY,
            method="GET",
            rule="/v4/heartbeat",
            view=beat,
            summary="How many times the heartbeat has beaten since Butler started",
            tag="Heartbeat",
            responses={200: "message, beats and running", 503: "Heartbeat not built"},
        )
    ]
