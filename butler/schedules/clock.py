"""The scheduler's time source, separate so tests can drive the scheduler by hand.

The scheduler needs both clocks: the wall clock says which cron slot is due, the monotonic
one shows when the wall clock jumped (NTP steps, manual changes). Waiting is part of the
clock too, so a test clock can release a waiting scheduler the moment time is advanced.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """Time source of the scheduler; tests substitute one they can advance by hand."""

    def now(self) -> datetime:
        """Current wall-clock time, timezone-aware (UTC)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps."""
        ...

    def wait(self, condition: threading.Condition, timeout: float) -> None:
        """Block on ``condition`` (held by the caller) for up to ``timeout`` seconds."""
        ...


class SystemClock:
    """The real clocks."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def wait(self, condition: threading.Condition, timeout: float) -> None:
        condition.wait(timeout)
