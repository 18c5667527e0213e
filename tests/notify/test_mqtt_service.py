"""MqttService against a real mosquitto broker (and a stub broker that never acknowledges)."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from butler.errors import BadRequest, UpstreamError, UpstreamTimeout
from butler.mqtt import STATUS_TOPIC, AzureEventGrid, MqttConfigError, MqttService, MqttTls
from tests.fixtures.mqtt import BrokerTls, Mosquitto

from .conftest import WAIT, Subscriber


def _poll(condition: Callable[[], bool], timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not condition():
        if time.monotonic() > deadline:
            return False
        pause.wait(0.02)
    return True


@pytest.fixture
def certs(tmp_path: Path) -> Any:
    from butler.testing.certs import generate_certificates

    return generate_certificates(tmp_path / "certs")


@pytest.fixture
def make_service() -> Iterator[Callable[..., MqttService]]:
    """Factory: a started MqttService for a broker; stopped at teardown."""
    made: list[MqttService] = []

    def make(
        broker: Any,
        *,
        connect: bool = True,
        on_task_start: Callable[[bytes], None] | None = None,
        **kwargs: Any,
    ) -> MqttService:
        service = MqttService(broker.host, broker.port, **kwargs)
        if on_task_start is not None:
            service.set_task_start_handler(on_task_start)
        made.append(service)
        service.start()
        if connect:
            assert service.wait_connected(WAIT), "service did not connect"
        return service

    yield make
    for service in made:
        service.stop()


class SilentBroker:
    """Accepts MQTT connections, answers CONNACK, then never acknowledges anything."""

    host = "127.0.0.1"

    def __init__(self) -> None:
        self._server = socket.create_server((self.host, 0))
        self.port = self._server.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self._server.accept()
        except OSError:
            return
        self._conns.append(conn)
        try:
            conn.recv(4096)
            conn.sendall(b"\x20\x02\x00\x00")
            while conn.recv(4096):
                pass
        except OSError:
            return

    def stop(self) -> None:
        for conn in self._conns:
            conn.close()
        self._server.close()
        self._thread.join(timeout=5)


def test_connect_announces_status_and_publishes_exact_message(
    mosquitto: Mosquitto, subscribe: Callable[..., Subscriber], make_service: Any
) -> None:
    sub = subscribe(mosquitto, "#")
    service = make_service(mosquitto, client_id="butler-test")
    status = sub.next_on(STATUS_TOPIC)
    assert status.payload == (
        f"Connected to MQTT broker 127.0.0.1:{mosquitto.port} with client ID butler-test".encode()
    )

    service.publish("qliksense/new_data/sales", "dt=20201028")
    got = sub.next_on("qliksense/new_data/sales")
    assert got.payload == b"dt=20201028"
    assert got.qos == 0


def test_qos1_waits_for_ack_and_retain_reaches_late_subscribers(
    mosquitto: Mosquitto, subscribe: Callable[..., Subscriber], make_service: Any
) -> None:
    service = make_service(mosquitto)
    service.publish("butler/retained", "ÅÄÖ payload", qos=1, retain=True)
    late = subscribe(mosquitto, "butler/retained")
    got = late.next_on("butler/retained")
    assert got.payload == "ÅÄÖ payload".encode()
    assert got.retain is True
    assert got.qos == 1


@pytest.mark.parametrize("topic", ["", "a/+/b", "a/#", "#", "bad\x00topic", 5])
def test_invalid_topic_is_bad_request(mosquitto: Mosquitto, make_service: Any, topic: Any) -> None:
    service = make_service(mosquitto)
    with pytest.raises(BadRequest):
        service.publish(topic, "x")


def test_invalid_qos_is_bad_request(mosquitto: Mosquitto, make_service: Any) -> None:
    service = make_service(mosquitto)
    with pytest.raises(BadRequest, match="qos"):
        service.publish("a/b", "x", qos=3)


def test_broker_down_gives_502_then_recovers_after_restart(
    mosquitto: Mosquitto, subscribe: Callable[..., Subscriber], make_service: Any
) -> None:
    service = make_service(mosquitto)
    mosquitto.stop()
    assert _poll(lambda: not service.connected), "disconnect not noticed"
    with pytest.raises(UpstreamError, match="not connected"):
        service.publish("a/b", "lost", qos=1)

    mosquitto.start()
    assert service.wait_connected(WAIT), "service did not reconnect to the restarted broker"
    sub = subscribe(mosquitto, "a/#")
    service.publish("a/b", "after restart", qos=1)
    assert sub.next_on("a/b").payload == b"after restart"


def test_never_connected_broker_gives_502(make_service: Any) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    class Nowhere:
        host = "127.0.0.1"

    Nowhere.port = port  # type: ignore[attr-defined]
    service = make_service(Nowhere, connect=False)
    assert not service.connected
    with pytest.raises(UpstreamError):
        service.publish("a/b", "x")


def test_missing_ack_is_504() -> None:
    broker = SilentBroker()
    service = MqttService(broker.host, broker.port)
    try:
        service.start()
        assert service.wait_connected(WAIT)
        with pytest.raises(UpstreamTimeout, match="did not acknowledge"):
            service.publish("a/b", "x", qos=1, timeout=0.3)
    finally:
        service.stop()
        broker.stop()


def test_task_start_topic_calls_callback_and_survives_bad_handler(
    mosquitto: Mosquitto,
    subscribe: Callable[..., Subscriber],
    make_service: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    received: list[bytes] = []
    seen = threading.Event()

    def handler(payload: bytes) -> None:
        if payload == b"boom":
            raise ValueError("handler exploded")
        received.append(payload)
        if payload == b"second":
            seen.set()

    service = make_service(
        mosquitto,
        subscription_root_topic="qliksense/#",
        task_start_topic="qliksense/start_task",
        on_task_start=handler,
    )
    sub = subscribe(mosquitto, "qliksense/#")
    service.publish("qliksense/other", "not a task")
    sub.next_on("qliksense/other")
    service.publish("qliksense/start_task", "e3b27f50-b1c0-4879-88fc-c7cdd9c1cf3e", qos=1)
    service.publish("qliksense/start_task", "boom", qos=1)
    service.publish("qliksense/start_task", "second", qos=1)
    assert seen.wait(WAIT), "second task message never reached the handler"
    assert received == [b"e3b27f50-b1c0-4879-88fc-c7cdd9c1cf3e", b"second"]
    assert "could not be handled" in caplog.text
    assert service.connected


def test_task_topic_outside_root_is_subscribed_too(mosquitto: Mosquitto, make_service: Any) -> None:
    got = threading.Event()
    payloads: list[bytes] = []

    def handler(payload: bytes) -> None:
        payloads.append(payload)
        got.set()

    service = make_service(
        mosquitto,
        subscription_root_topic="qliksense/#",
        task_start_topic="butler/start",
        on_task_start=handler,
    )
    other = MqttService(mosquitto.host, mosquitto.port)
    other.start()
    try:
        assert other.wait_connected(WAIT)
        assert _poll(lambda: _publish_and_check(other, got))
    finally:
        other.stop()
    assert payloads[0] == b"task-id"
    assert service.connected


def _publish_and_check(publisher: MqttService, got: threading.Event) -> bool:
    """Publish until the subscription (set up asynchronously on connect) is in place."""
    publisher.publish("butler/start", "task-id", qos=1)
    return got.wait(0.2)


def test_username_password_and_no_password_in_logs(
    mosquitto_factory: Callable[..., Mosquitto],
    make_service: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "s3cr3t-Pa55word"
    broker = mosquitto_factory(passwords={"butler": secret})
    service = make_service(broker, username="butler", password=secret)
    service.publish("a/b", "x", qos=1)
    assert "u'butler'" in broker.log_text()

    wrong = make_service(broker, connect=False, username="butler", password="wr0ng-" + secret)
    assert _poll(lambda: "refused the connection" in caplog.text)
    assert not wrong.connected
    assert secret not in caplog.text


def test_azure_event_grid_uses_tls_client_cert_and_client_id_as_username(
    mosquitto_factory: Callable[..., Mosquitto], make_service: Any, certs: Any
) -> None:
    broker = mosquitto_factory(
        tls=BrokerTls(
            cert_file=certs.server_cert,
            key_file=certs.server_key,
            ca_file=certs.ca,
            require_certificate=True,
        )
    )
    azure = AzureEventGrid(
        client_id="butler-azure-1",
        cert_file=certs.client_cert,
        key_file=certs.client_key,
        ca_file=certs.ca,
    )
    service = make_service(broker, azure_event_grid=azure, username="ignored")
    assert service.client_id == "butler-azure-1"
    service.publish("a/b", "over tls", qos=1)
    log = broker.log_text()
    assert "as butler-azure-1" in log
    assert "u'butler-azure-1'" in log


def test_plain_tls_with_ca_verification(
    mosquitto_factory: Callable[..., Mosquitto], make_service: Any, certs: Any
) -> None:
    broker = mosquitto_factory(
        tls=BrokerTls(cert_file=certs.server_cert, key_file=certs.server_key, ca_file=certs.ca)
    )
    service = make_service(broker, tls=MqttTls(ca_file=certs.ca))
    service.publish("a/b", "verified", qos=1)
    assert service.connected


def test_missing_certificate_file_fails_at_construction(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(MqttConfigError, match="not found"):
        MqttService(
            "127.0.0.1",
            1,
            azure_event_grid=AzureEventGrid("id", cert_file=missing, key_file=missing),
        )


def test_stop_ends_all_threads(mosquitto: Mosquitto) -> None:
    before = set(threading.enumerate())
    service = MqttService(mosquitto.host, mosquitto.port)
    service.set_task_start_handler(lambda payload: None)
    service.start()
    assert service.wait_connected(WAIT)
    service.stop()
    leftover = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    assert leftover == []
    assert not service.connected
