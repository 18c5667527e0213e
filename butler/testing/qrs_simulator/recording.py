"""What the QRS simulator saw: requests, task starts and TLS connections.

Everything observable is recorded so tests can assert what Butler actually sent instead of
trusting what it says it sent. The logs keep only the newest ``max_log`` entries, so a long
demo run stays small. Butler starts tasks from asynchronous triggers (MQTT, schedules) and,
with TLS 1.3, a client sees a rejected handshake before the server has counted it; the wait
helpers let tests block on the record instead of sleeping and hoping.

The recorder shares the simulator's lock (and builds its condition on it), so a reset of the
whole simulator is atomic against requests that are being recorded.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import Message
from typing import Any

__all__ = ["Recorder", "RequestRecord", "StartRecord", "recorded_headers"]

_RECORDED_HEADERS = ("x-qlik-xrfkey", "x-qlik-user", "content-type", "user-agent", "connection")


@dataclass(frozen=True)
class RequestRecord:
    """One request as the simulator saw it (``status`` is ``None`` for a dropped connection)."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: Any
    time: float
    connection_id: int
    new_connection: bool
    tls_session_reused: bool
    status: int | None


@dataclass(frozen=True)
class StartRecord:
    """One task start the simulator accepted; ``route`` is the QRS route template used."""

    task_id: str
    task_name: str
    time: float
    route: str
    session_id: str


def recorded_headers(headers: Message) -> dict[str, str]:
    """The headers tests assert on (Xrfkey, user, content type, ...), not the whole set."""
    return {name: value for name in _RECORDED_HEADERS if (value := headers.get(name))}


class Recorder:
    """The bounded request and start logs and the connection counters, behind ``lock``."""

    def __init__(self, lock: threading.RLock, max_log: int):
        self._lock = lock
        self._changed = threading.Condition(lock)
        self._requests: deque[RequestRecord] = deque(maxlen=max_log)
        self._starts: deque[StartRecord] = deque(maxlen=max_log)
        self._new_connections = 0
        self._rejected_connections = 0
        self._delayed = 0
        self._request_count = 0

    def add_request(self, record: RequestRecord) -> None:
        with self._lock:
            self._requests.append(record)
            self._request_count += 1

    def add_start(self, record: StartRecord) -> None:
        """Record a start and wake ``wait_for_starts``."""
        with self._changed:
            self._starts.append(record)
            self._changed.notify_all()

    def count_new_connection(self) -> None:
        with self._lock:
            self._new_connections += 1

    def count_rejected_connection(self) -> None:
        """Count a failed TLS handshake and wake ``wait_for_rejected_connections``."""
        with self._changed:
            self._rejected_connections += 1
            self._changed.notify_all()

    def delaying(self, delta: int) -> None:
        """Count a request starting (+1) or ending (-1) its fault delay; wakes the waiters."""
        with self._changed:
            self._delayed += delta
            self._changed.notify_all()

    @property
    def delayed(self) -> int:
        with self._lock:
            return self._delayed

    def wait_for_delayed(self, count: int, timeout: float) -> int:
        with self._changed:
            if not self._changed.wait_for(lambda: self._delayed >= count, timeout):
                raise TimeoutError(
                    f"expected {count} requests held by a delay within {timeout} s, "
                    f"saw {self._delayed}"
                )
            return self._delayed

    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._requests)

    def starts(self) -> list[StartRecord]:
        with self._lock:
            return list(self._starts)

    @property
    def request_count(self) -> int:
        with self._lock:
            return self._request_count

    @property
    def new_connections(self) -> int:
        with self._lock:
            return self._new_connections

    @property
    def rejected_connections(self) -> int:
        with self._lock:
            return self._rejected_connections

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._starts.clear()
            self._request_count = 0
            self._new_connections = 0
            self._rejected_connections = 0

    def wait_for_starts(self, count: int, timeout: float) -> list[StartRecord]:
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._starts) >= count, timeout):
                raise TimeoutError(
                    f"expected {count} task starts within {timeout} s, saw {len(self._starts)}"
                )
            return list(self._starts)

    def wait_for_rejected_connections(self, count: int, timeout: float) -> int:
        with self._changed:
            if not self._changed.wait_for(lambda: self._rejected_connections >= count, timeout):
                raise TimeoutError(
                    f"expected {count} rejected connections within {timeout} s, "
                    f"saw {self._rejected_connections}"
                )
            return self._rejected_connections
