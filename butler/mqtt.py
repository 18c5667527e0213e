"""The one MQTT connection of Butler: status message, task-start topic, and publishing.

A single paho-mqtt client runs its own network thread and reconnects with backoff, so a
broker restart heals without restarting Butler. Task-start messages are handed to a worker
thread: a slow QRS call or a failing handler must never stall pings or kill the network
loop. Publishing answers truthfully: it fails fast when the broker is not connected and,
for QoS 1/2, waits for the broker's acknowledgement instead of pretending success.
"""

from __future__ import annotations

import logging
import queue
import re
import secrets
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho

from butler.errors import BadRequest, UpstreamError, UpstreamTimeout

log = logging.getLogger(__name__)
paho_log = logging.getLogger(f"{__name__}.paho")

STATUS_TOPIC = "qliksense/butler/mqtt/status"
"""Where the original announces each (re)connection; kept for existing subscribers."""

TASK_QUEUE_SIZE = 1000
_MAX_TOPIC_BYTES = 65535
_TOPIC_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
"""MQTT 3.1.1 forbids U+0000 and advises against the other controls; mosquitto drops the
connection on some of them, which would lose the publishes and task starts that follow."""


class MqttConfigError(ValueError):
    """The MQTT settings cannot work (missing certificate file, bad combination)."""


@dataclass(frozen=True)
class MqttTls:
    """TLS towards a plain broker; ``verify=False`` mirrors ``rejectUnauthorized: false``."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    verify: bool = True


@dataclass(frozen=True)
class AzureEventGrid:
    """Azure Event Grid MQTT broker: mqtts, client id = user name, client certificate.

    ``ca_file`` is only for brokers whose certificate is not signed by a system-trusted CA
    (tests); Azure itself is verified against the system store.
    """

    client_id: str
    cert_file: Path
    key_file: Path
    ca_file: Path | None = None


def validate_topic(topic: Any) -> str:
    """Refuse topics a publisher may not use, before they reach the broker.

    One bad topic must never cost the shared connection: the broker would close it and the
    messages queued behind it would fail.
    """
    if not isinstance(topic, str) or not topic:
        raise BadRequest("MQTT topic must be a non-empty string")
    if "+" in topic or "#" in topic:
        raise BadRequest("MQTT topic must not contain the wildcards '+' or '#'")
    if _TOPIC_CONTROL.search(topic):
        raise BadRequest("MQTT topic must not contain control characters")
    try:
        encoded = topic.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest("MQTT topic is not valid Unicode text") from None
    if len(encoded) > _MAX_TOPIC_BYTES:
        raise BadRequest("MQTT topic is longer than 65535 bytes")
    return topic


class MqttService:
    """Owns the broker connection; thread-safe ``publish`` for request threads."""

    def __init__(
        self,
        host: str,
        port: int,
        client_id: str | None = None,
        username: str | None = None,
        password: str | None = None,
        tls: MqttTls | None = None,
        azure_event_grid: AzureEventGrid | None = None,
        subscription_root_topic: str | None = "qliksense/#",
        task_start_topic: str | None = "qliksense/start_task",
        keepalive: int = 60,
        reconnect_min_delay: int = 1,
        reconnect_max_delay: int = 30,
    ):
        self.host = host
        self.port = port
        self.subscription_root_topic = subscription_root_topic or None
        self.task_start_topic = task_start_topic or None
        self._on_task_start: Callable[[bytes], None] | None = None
        self._keepalive = keepalive
        if azure_event_grid is not None:
            client_id = azure_event_grid.client_id
            username = azure_event_grid.client_id
            password = None
        self.client_id = client_id or f"butler-{secrets.token_hex(4)}"
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._pending_subscriptions: set[int] = set()
        self._stopping = threading.Event()
        self._started = False
        self._tasks: queue.Queue[bytes | None] = queue.Queue(maxsize=TASK_QUEUE_SIZE)
        self._worker: threading.Thread | None = None

        client = paho.Client(
            callback_api_version=paho.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=paho.MQTTv311,
        )
        client.suppress_exceptions = True
        client.on_log = _log_paho
        client.reconnect_delay_set(reconnect_min_delay, reconnect_max_delay)
        if username:
            client.username_pw_set(username, password or None)
        if azure_event_grid is not None:
            _apply_tls(
                client,
                MqttTls(
                    ca_file=azure_event_grid.ca_file,
                    cert_file=azure_event_grid.cert_file,
                    key_file=azure_event_grid.key_file,
                ),
            )
        elif tls is not None:
            _apply_tls(client, tls)
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_message = self._handle_message
        client.on_subscribe = self._handle_subscribe
        self._client = client

    def set_task_start_handler(self, handler: Callable[[bytes], None]) -> None:
        """Who handles task-start messages (set before :meth:`start`; without one they drop).

        The handler runs on the MQTT service's own worker thread, never on paho's network
        thread, and an exception it raises is logged, not fatal.
        """
        self._on_task_start = handler

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        """Block until the broker accepted the connection; False on timeout."""
        return self._connected.wait(timeout)

    def wait_subscribed(self, timeout: float) -> bool:
        """Block until the broker acknowledged every subscription of the current connection.

        Messages published before that are not delivered to Butler, so a caller that must
        not lose its first task-start message waits for this rather than for the connection.
        """
        return self._subscribed.wait(timeout)

    def start(self) -> None:
        """Connect in the background; an unreachable broker is retried, never fatal."""
        if self._started:
            return
        self._started = True
        self._stopping.clear()
        self._worker = threading.Thread(
            target=self._run_task_worker, name="butler-mqtt-tasks", daemon=True
        )
        self._worker.start()
        self._client.connect_async(self.host, self.port, keepalive=self._keepalive)
        self._client.loop_start()
        log.info("MQTT connecting to %s:%s as client ID %s", self.host, self.port, self.client_id)

    def stop(self) -> None:
        """Disconnect, end the network thread and the task worker."""
        if not self._started:
            return
        self._started = False
        self._stopping.set()
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()
        _drain(self._tasks)
        self._tasks.put_nowait(None)
        if self._worker is not None:
            self._worker.join(timeout=10)
            self._worker = None

    def publish(
        self,
        topic: str,
        message: str | bytes,
        qos: int = 0,
        retain: bool = False,
        timeout: float = 5.0,
    ) -> None:
        """Publish and return only once the message left (QoS 0) or was acknowledged.

        Raises ``BadRequest`` for an unusable topic or QoS, ``UpstreamError`` when the
        broker is not connected or refuses, ``UpstreamTimeout`` when no acknowledgement
        arrived within ``timeout`` seconds (the outcome is then unknown: paho may still
        deliver a QoS 1/2 message after a reconnect).
        """
        validate_topic(topic)
        if qos not in (0, 1, 2):
            raise BadRequest("MQTT qos must be 0, 1 or 2")
        if not self.connected:
            raise UpstreamError(f"MQTT broker {self.host}:{self.port} is not connected")
        try:
            info = self._client.publish(topic, message, qos=qos, retain=retain)
        except ValueError as exc:
            raise BadRequest(f"MQTT message refused: {exc}") from None
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise UpstreamError(f"MQTT publish failed: {paho.error_string(info.rc)}")
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError) as exc:
            raise UpstreamError(f"MQTT publish failed: {exc}") from None
        if not info.is_published():
            raise UpstreamTimeout(
                f"MQTT broker {self.host}:{self.port} did not acknowledge the message "
                f"within {timeout:g} s"
            )

    def publish_later(self, topic: str, message: str, qos: int = 1) -> None:
        """Hand a message to paho without waiting: for reports sent from service threads
        (the run tracker) that must not stall on the broker. paho keeps a QoS 1 message
        queued while the broker is away and sends it after the reconnect; a refusal is
        logged, never raised."""
        try:
            info = self._client.publish(validate_topic(topic), message, qos=qos)
        except (ValueError, BadRequest) as exc:
            log.warning("MQTT message to %s not sent: %s", topic, exc)
            return
        if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):
            log.warning("MQTT message to %s not sent: %s", topic, paho.error_string(info.rc))

    def _handle_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: Any,
        reason_code: Any,
        properties: Any,
    ) -> None:
        if reason_code.is_failure:
            log.warning(
                "MQTT broker %s:%s refused the connection: %s", self.host, self.port, reason_code
            )
            return
        self._connected.set()
        log.info("MQTT connected to %s:%s as client ID %s", self.host, self.port, self.client_id)
        client.publish(
            STATUS_TOPIC,
            f"Connected to MQTT broker {self.host}:{self.port} with client ID {self.client_id}",
        )
        self._subscribed.clear()
        topics = self._subscriptions()
        if not topics:
            self._subscribed.set()
        for topic in topics:
            result, mid = client.subscribe(topic)
            if result == paho.MQTT_ERR_SUCCESS and mid is not None:
                self._pending_subscriptions.add(mid)

    def _handle_subscribe(
        self, client: paho.Client, userdata: Any, mid: int, reason_codes: Any, properties: Any
    ) -> None:
        self._pending_subscriptions.discard(mid)
        if any(code.is_failure for code in reason_codes):
            log.warning("MQTT broker %s:%s refused a subscription", self.host, self.port)
        if not self._pending_subscriptions:
            self._subscribed.set()

    def _subscriptions(self) -> list[str]:
        """The root topic, plus the task topic when the root does not cover it."""
        topics = [self.subscription_root_topic] if self.subscription_root_topic else []
        task_topic = self.task_start_topic
        if task_topic and not any(paho.topic_matches_sub(t, task_topic) for t in topics):
            topics.append(task_topic)
        return topics

    def _handle_disconnect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: Any,
        reason_code: Any,
        properties: Any,
    ) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        self._subscribed.clear()
        if was_connected and not self._stopping.is_set():
            log.warning(
                "MQTT connection to %s:%s lost (%s); reconnecting",
                self.host,
                self.port,
                reason_code,
            )

    def _handle_message(self, client: paho.Client, userdata: Any, message: Any) -> None:
        if message.topic != self.task_start_topic or self._on_task_start is None:
            return
        try:
            self._tasks.put_nowait(bytes(message.payload))
        except queue.Full:
            log.warning(
                "MQTT task-start message dropped: %d messages already waiting", TASK_QUEUE_SIZE
            )

    def _run_task_worker(self) -> None:
        while True:
            payload = self._tasks.get()
            if payload is None or self._stopping.is_set():
                return
            handler = self._on_task_start
            if handler is None:
                continue
            try:
                handler(payload)
            except Exception:
                log.exception(
                    "MQTT task-start message on %s could not be handled (payload %r)",
                    self.task_start_topic,
                    payload[:200],
                )


def _log_paho(client: paho.Client, userdata: Any, level: int, text: str) -> None:
    """paho's own lines (callback errors included); a normal reconnect gap is only debug."""
    if level in (paho.MQTT_LOG_ERR, paho.MQTT_LOG_WARNING) and "not connected" not in text:
        paho_log.warning("%s", text)
    else:
        paho_log.debug("%s", text)


def _apply_tls(client: paho.Client, tls: MqttTls) -> None:
    """Load certificates now, so a wrong path stops start-up instead of every reconnect."""
    for name, path in (("CA", tls.ca_file), ("certificate", tls.cert_file), ("key", tls.key_file)):
        if path is not None and not Path(path).is_file():
            raise MqttConfigError(f"MQTT TLS {name} file not found: {path}")
    if (tls.cert_file is None) != (tls.key_file is None):
        raise MqttConfigError("MQTT TLS needs both a client certificate and its key, or neither")
    try:
        client.tls_set(
            ca_certs=str(tls.ca_file) if tls.ca_file else None,
            certfile=str(tls.cert_file) if tls.cert_file else None,
            keyfile=str(tls.key_file) if tls.key_file else None,
            cert_reqs=ssl.CERT_REQUIRED if tls.verify else ssl.CERT_NONE,
        )
    except (OSError, ssl.SSLError) as exc:
        raise MqttConfigError(f"MQTT TLS files could not be loaded: {exc}") from None
    if not tls.verify:
        client.tls_insecure_set(True)


def _drain(tasks: queue.Queue[bytes | None]) -> None:
    while True:
        try:
            tasks.get_nowait()
        except queue.Empty:
            return
