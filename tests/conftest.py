"""Shared fixtures: configs built in tmp_path and apps served over real sockets."""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from butler.app import create_app
from butler.config import Config, endpoint_enable_map
from butler.lifecycle import build_services
from butler.logging_setup import stop_logging
from butler.server import SERVERS, ServerHandle, TlsFiles, build_server
from butler.services import Services
from tests.fixtures.qrs import qrs_certs, qrs_client, qrs_simulator

__all__ = ["qrs_certs", "qrs_client", "qrs_simulator"]


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


QLIK_PLACEHOLDERS: dict[str, Any] = {
    "cert": {"clientCert": "client.pem", "clientCertKey": "client_key.pem"},
    "configQRS": {"host": "127.0.0.1", "port": 4242},
    "configEngine": {"host": "127.0.0.1", "port": 4747},
    "thirdPartyToolsCredentials": {"newRelic": None},
    "restServerEndpointsConfig": {
        "newRelic": {
            "postNewRelicEvent": {"url": "http://127.0.0.1:9/"},
            "postNewRelicMetric": {"url": "http://127.0.0.1:9/metric/v1"},
        }
    },
}
"""Qlik-facing sections that let every endpoint be enabled (nothing is contacted)."""

BASE_CONFIG: dict[str, Any] = {
    "logLevel": "info",
    "restServerConfig": {"enable": True, "serverHost": "127.0.0.1", "serverPort": 8080},
    "restServerEndpointsEnable": endpoint_enable_map(False),
}


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., Config]:
    """Factory: a validated Config rooted in tmp_path, with ``butler`` merged over a base."""

    def factory(butler: dict[str, Any] | None = None) -> Config:
        return Config.from_mapping(deep_merge(BASE_CONFIG, butler or {}), tmp_path)

    return factory


@pytest.fixture
def make_app() -> Iterator[Callable[[Config], Flask]]:
    """Factory: the app of ``config`` with its services built (not started) as ``run`` does.

    Building is where plugins read their settings (and refuse bad ones), so tests of
    start-up behaviour use this instead of a bare ``create_app``.
    """
    built: list[Services] = []

    def factory(config: Config) -> Flask:
        services = build_services(config)
        built.append(services)
        return create_app(config, services)

    yield factory
    for services in built:
        services.stop()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "servers(*names): run this test's live_server on these servers only "
        "(default: every server, waitress and granian)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test that serves over ``live_server`` runs once per server, so none can drift.

    A test of one server's own guards (waitress's channel limits, cheroot's TLS answers)
    says so with ``@pytest.mark.servers("waitress")``.
    """
    if "server_kind" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("servers")
    kinds = list(marker.args) if marker else list(SERVERS)
    metafunc.parametrize("server_kind", kinds, ids=[f"on-{kind}" for kind in kinds])


@pytest.fixture
def live_server(server_kind: str) -> Iterator[Callable[..., str]]:
    """Factory: serve an app on 127.0.0.1 port 0 in a thread; returns the base URL.

    ``server_kind`` is parametrised (see ``pytest_generate_tests``): waitress (cheroot with
    TLS) and granian.
    """
    started: list[tuple[ServerHandle, threading.Thread]] = []

    def factory(app: Any, tls: TlsFiles | None = None) -> str:
        server = build_server(app, "127.0.0.1", 0, tls=tls, server=server_kind)  # type: ignore[arg-type]
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        started.append((server, thread))
        return server.url

    yield factory
    for server, thread in started:
        server.shutdown()
        thread.join(timeout=10)
        assert not thread.is_alive(), "server thread did not stop"


StartedButler = Callable[[dict[str, Any]], tuple[str, Services]]


@pytest.fixture
def started_butler(make_config, live_server) -> Iterator[StartedButler]:
    """Factory: ``(base URL, services)`` of a Butler built from ``settings`` (merged over
    the base config), its services started and its app served; all stopped at teardown."""
    started: list[Services] = []

    def start(settings: dict[str, Any]) -> tuple[str, Services]:
        config = make_config(settings)
        services = build_services(config)
        services.start()
        started.append(services)
        return live_server(create_app(config, services)), services

    yield start
    for services in started:
        services.stop()


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """For tests that let Butler configure the root logger: put the test's logging back."""
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    yield
    stop_logging()
    root.handlers[:] = saved[1]
    root.setLevel(saved[0])
