"""Butler served over a real socket with its services started, as ``butler run`` does."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from butler.app import create_app
from butler.config import Config
from butler.lifecycle import build_services
from butler.services import Services


@pytest.fixture
def running_butler(live_server: Callable[..., str]) -> Iterator[Callable[[Config], str]]:
    """Factory: build and start the services of ``config``, serve its app; base URL."""
    started: list[Services] = []

    def factory(config: Config) -> str:
        services = build_services(config)
        started.append(services)
        services.start()
        return live_server(create_app(config, services))

    yield factory
    for services in started:
        services.stop()


def poll(
    url: str, wanted: Callable[[requests.Response], bool], timeout: float
) -> requests.Response:
    """GET ``url`` until ``wanted(response)`` or ``timeout`` seconds; the last response."""
    deadline = time.monotonic() + timeout
    while True:
        response = requests.get(url, timeout=5)
        if wanted(response) or time.monotonic() > deadline:
            return response
        time.sleep(0.02)


def metric_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus exposition, keyed by name and sorted labels."""
    from prometheus_client.parser import text_string_to_metric_families

    samples: dict[tuple[str, tuple[tuple[str, str], ...]], Any] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples
