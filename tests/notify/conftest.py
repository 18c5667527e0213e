"""Fixtures for the MQTT / Slack / New Relic tests: a real broker and a real HTTP receiver."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import requests

from butler.outbound_http import new_session
from tests.fixtures.http_receiver import http_receiver
from tests.fixtures.mqtt import WAIT, Mosquitto, Subscriber, mosquitto, mosquitto_factory

__all__ = ["WAIT", "Subscriber", "http_receiver", "mosquitto", "mosquitto_factory"]


@pytest.fixture
def subscribe() -> Iterator[Callable[[Mosquitto, str], Subscriber]]:
    """Factory: ``subscribe(broker, "topic/#")`` returns a connected, subscribed recorder."""
    made: list[Subscriber] = []

    def make(broker: Mosquitto, topic: str) -> Subscriber:
        sub = Subscriber(broker, topic)
        made.append(sub)
        return sub

    yield make
    for sub in made:
        sub.stop()


@pytest.fixture
def http_session() -> Iterator[requests.Session]:
    session = new_session()
    yield session
    session.close()
