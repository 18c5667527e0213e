"""Injected failures for the QRS simulator: errors, slowness and dropped connections.

Butler must be proven against the failures a real Qlik Sense site produces, not only against
a healthy QRS. A fault is aimed at a path prefix or at a task id (so one task of a
``start/many`` call can fail), and a latency applies to every answer (a WAN-like QRS).

Delays wait on an event that ``interrupt_delays`` sets, so a reset between tests (or a stop)
cuts off requests still waiting: a request a test gave up on cannot start a task or appear
in the log of the next test. Faults share the simulator's lock, so the latency, the fault
taken and the event to wait on are read in one step that a reset cannot split.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from butler.testing.qrs_catalogue import Task

__all__ = ["Fault", "FaultInjector", "Injection"]

_GUID_RE = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


@dataclass
class Fault:
    """An injected failure.

    ``target`` is a path prefix (starts with ``/``, case-insensitive) or a task id (matches any
    request addressing that task: by id in the path, in a ``start/many`` body, or by name).
    The fault waits ``delay`` seconds, then drops the connection (``drop``), answers
    ``status`` with ``body``, or, with neither, lets the request proceed normally. ``times``
    limits how often it applies (``None`` = until removed).
    """

    target: str
    status: int | None = None
    delay: float = 0.0
    drop: bool = False
    method: str | None = None
    times: int | None = None
    body: str = ""


@dataclass(frozen=True)
class Injection:
    """What one request gets: the fault it took (if any) and how long it must wait first."""

    fault: Fault | None
    delay: float
    interrupt: threading.Event

    def wait(self) -> bool:
        """Wait out the delay; ``True`` when a reset or stop cut it short."""
        return bool(self.delay) and self.interrupt.wait(self.delay)


class FaultInjector:
    """The active faults and latency; ``find_task`` resolves a task name for task-id faults."""

    def __init__(
        self,
        lock: threading.RLock,
        latency: float,
        find_task: Callable[[str], Task | None],
    ):
        self._lock = lock
        self._find_task = find_task
        self._faults: list[Fault] = []
        self._latency = float(latency)
        self._interrupt = threading.Event()

    def set_latency(self, seconds: float) -> None:
        with self._lock:
            self._latency = max(0.0, float(seconds))

    def add(
        self,
        target: str,
        *,
        status: int | None = None,
        delay: float = 0.0,
        drop: bool = False,
        method: str | None = None,
        times: int | None = None,
        body: str = "",
    ) -> Fault:
        if not target.startswith("/") and not _GUID_RE.fullmatch(target):
            raise ValueError("fault target must be a path prefix ('/qrs/...') or a task id")
        fault = Fault(
            target=target.lower(),
            status=status,
            delay=max(0.0, float(delay)),
            drop=drop,
            method=method.upper() if method else None,
            times=times,
            body=body,
        )
        with self._lock:
            self._faults.append(fault)
        return fault

    def remove(self, fault: Fault) -> None:
        with self._lock:
            if fault in self._faults:
                self._faults.remove(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def reset(self) -> None:
        """No faults, no latency, and every request still waiting out a delay is cut off."""
        with self._lock:
            self.interrupt_delays()
            self.clear()
            self._latency = 0.0

    def interrupt_delays(self) -> None:
        """Wake every request waiting out a delay; later requests wait on a fresh event."""
        with self._lock:
            self._interrupt.set()
            self._interrupt = threading.Event()

    def take(self, method: str, path: str, query: Mapping[str, str], body: Any) -> Injection:
        """The injection for one request, consuming one of its fault's ``times``.

        Fault, latency and interrupt event are read in one locked step, so a reset either
        comes before (no fault, no latency) or cuts this request's delay short.
        """
        with self._lock:
            fault = self._take_fault(method, path, query, body)
            delay = self._latency + (fault.delay if fault else 0.0)
            return Injection(fault, delay, self._interrupt)

    def _take_fault(
        self, method: str, path: str, query: Mapping[str, str], body: Any
    ) -> Fault | None:
        """The first fault matching this request; caller holds the lock."""
        if not self._faults:
            return None
        lowered = path.lower()
        targets: set[str] | None = None
        for fault in self._faults:
            if fault.method and fault.method != method:
                continue
            if fault.target.startswith("/"):
                if not lowered.startswith(fault.target):
                    continue
            else:
                if targets is None:
                    targets = self._request_task_ids(lowered, query, body)
                if fault.target not in targets:
                    continue
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
            return fault
        return None

    def _request_task_ids(self, path: str, query: Mapping[str, str], body: Any) -> set[str]:
        ids = {match.lower() for match in _GUID_RE.findall(path)}
        if path.startswith("/qrs/task/start/many") and isinstance(body, list):
            ids.update(str(item).lower() for item in body)
        if "name" in query:
            task = self._find_task(query["name"])
            if task is not None:
                ids.add(task.id)
        return ids
