"""Fixtures for the MQTT / Slack / New Relic tests: a real broker and a real HTTP receiver."""

from __future__ import annotations

import queue
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
import pytest
import requests

from butler.outbound_http import new_session
from tests.fixtures.http_receiver import http_receiver
from tests.fixtures.mqtt import Mosquitto, mosquitto, mosquitto_factory

__all__ = ["http_receiver", "mosquitto", "mosquitto_factory"]

WAIT = 10.0


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    qos: int
    retain: bool


class Subscriber:
    """An independent paho client that records what the broker delivered."""

    def __init__(self, broker: Mosquitto, topic: str):
        self.messages: queue.Queue[Received] = queue.Queue()
        self._subscribed = threading.Event()
        self._topic = topic
        self._client = paho.Client(
            paho.CallbackAPIVersion.VERSION2, client_id=f"test-sub-{secrets.token_hex(4)}"
        )
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = lambda *args: self._subscribed.set()
        self._client.on_message = lambda client, userdata, msg: self.messages.put(
            Received(msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain))
        )
        self._client.connect(broker.host, broker.port)
        self._client.loop_start()
        assert self._subscribed.wait(WAIT), "test subscriber could not subscribe"

    def _on_connect(self, client: paho.Client, *args: Any) -> None:
        client.subscribe(self._topic, qos=2)

    def get(self, timeout: float = WAIT) -> Received:
        return self.messages.get(timeout=timeout)

    def next_on(self, topic: str, timeout: float = WAIT) -> Received:
        """The next message on ``topic``, skipping others (e.g. status messages)."""
        while True:
            item = self.get(timeout)
            if item.topic == topic:
                return item

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


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
