"""Per-client request limit over a fixed one-minute window.

The original keyed its limiter on the proxy's address, so the limit was global; we key on
the real caller so one noisy client cannot starve the others.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int


class RateLimiter:
    def __init__(
        self, limit: int, window_seconds: float = 60.0, clock: Callable[[], float] = time.monotonic
    ):
        self.limit = limit
        self.window = window_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._window_start = clock()
        self._counts: dict[str, int] = {}

    def check(self, client: str) -> RateDecision:
        """Count one request from ``client`` and say whether it may proceed."""
        with self._lock:
            now = self._clock()
            if now - self._window_start >= self.window:
                self._window_start = now
                self._counts.clear()
            count = self._counts.get(client, 0) + 1
            self._counts[client] = count
            reset = max(0, int(self._window_start + self.window - now + 0.999))
        return RateDecision(count <= self.limit, self.limit, max(0, self.limit - count), reset)
