"""Limits both servers put on one client: connections per address, time to send a request.

waitress (plain HTTP) and cheroot (TLS) guard themselves differently, but a client is
counted and cut by the same rules and an operator reads the same log lines for both.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger("butler.server")


class ClientCounts:
    """Open connections per client address, at most ``limit`` each (thread-safe)."""

    def __init__(self, limit: int):
        self._limit = limit
        self._open: dict[str, int] = {}
        self._lock = threading.Lock()

    def admit(self, client: str) -> bool:
        """Count one more connection of ``client``; ``False`` (and a log line) when it is full."""
        with self._lock:
            held = self._open.get(client, 0)
            if held < self._limit:
                self._open[client] = held + 1
                return True
        log.warning(
            "Connection from %s closed: it already holds %d connections", client, self._limit
        )
        return False

    def release(self, client: str) -> None:
        with self._lock:
            left = self._open.get(client, 1) - 1
            if left > 0:
                self._open[client] = left
            else:
                self._open.pop(client, None)


def log_cut(client: str, read_timeout: float) -> None:
    """The line written when a client is cut for not sending its request in time."""
    log.warning("Connection from %s closed: no complete request within %g s", client, read_timeout)
