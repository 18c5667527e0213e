"""A hand-driven clock for the scheduler thread: tests move time and wait for it to settle.

The scheduler thread calls ``wait`` with its condition when it has nothing due; ``advance``
and ``jump`` change the time while holding that condition (so the thread never sees wall
and monotonic time half-updated), wake the thread, and return only once it has looked at
the new time and gone back to waiting. No real sleeping is involved.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

SETTLE_TIMEOUT = 10.0


class FakeClock:
    def __init__(self, start: datetime):
        self._now = start
        self._mono = 1000.0
        self._lock = threading.Condition()
        self._tick = 0
        self._read: dict[int, int] = {}
        self._idle_tick = -1
        self._engine: threading.Condition | None = None
        self.timeouts: list[float] = []
        """Every timeout the scheduler asked to sleep for (to check it never busy-polls)."""

    def now(self) -> datetime:
        with self._lock:
            self._read[threading.get_ident()] = self._tick
            return self._now

    def monotonic(self) -> float:
        with self._lock:
            return self._mono

    def wait(self, condition: threading.Condition, timeout: float) -> None:
        with self._lock:
            self._engine = condition
            self._idle_tick = self._read.get(threading.get_ident(), -1)
            self.timeouts.append(timeout)
            self._lock.notify_all()
        condition.wait()

    def settle(self) -> None:
        """Wait until the scheduler thread has seen the current time and is idle."""
        with self._lock:
            settled = self._lock.wait_for(
                lambda: self._engine is not None and self._idle_tick >= self._tick,
                SETTLE_TIMEOUT,
            )
        if not settled:
            raise AssertionError("the scheduler thread did not settle")

    def advance(self, seconds: float) -> None:
        """Let time pass normally (wall and monotonic clocks move together)."""
        self._move(seconds, seconds)

    def advance_to(self, moment: datetime) -> None:
        self.advance((moment - self.now()).total_seconds())

    def jump(self, seconds: float) -> None:
        """Step the wall clock only, as an NTP correction or a manual change does."""
        self._move(seconds, 0.0)

    def _move(self, wall: float, mono: float) -> None:
        engine = self._engine
        if engine is None:
            with self._lock:
                self._now += timedelta(seconds=wall)
                self._mono += mono
                self._tick += 1
            return
        with engine:
            with self._lock:
                self._now += timedelta(seconds=wall)
                self._mono += mono
                self._tick += 1
            engine.notify_all()
        self.settle()
