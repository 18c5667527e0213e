"""The background prober behind ``/health/ready``.

Readiness is asked for often (every few seconds by each load balancer or orchestrator) and
must answer at once even when QRS hangs, so the route only reads the last report; one
thread probes every component each interval. Each probe runs on a worker of its own and is
waited for at most one interval: a hung upstream marks its component failed in time and
never delays the others or the next round.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from butler.errors import ApiError
from butler_plugins.health.probes import Component

log = logging.getLogger("butler.health")

NOT_PROBED = "not probed yet"


@dataclass(frozen=True)
class ComponentStatus:
    status: str
    critical: bool
    latency_ms: float
    message: str

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "critical": self.critical,
            "latencyMs": self.latency_ms,
            "message": self.message,
        }


@dataclass(frozen=True)
class HealthReport:
    components: dict[str, ComponentStatus]

    @property
    def status(self) -> str:
        """``fail`` when a critical component fails, ``degraded`` for another one, else ok."""
        failed = [c for c in self.components.values() if c.status == "fail"]
        if any(c.critical for c in failed):
            return "fail"
        return "degraded" if failed else "ok"

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "components": {name: c.to_json() for name, c in self.components.items()},
        }


class HealthMonitor:
    """Probes ``components`` every ``interval`` seconds on a thread; ``report()`` is instant."""

    def __init__(self, components: Sequence[Component], interval: float):
        self._components = list(components)
        self._interval = interval
        self._lock = threading.Lock()
        self._report = HealthReport(
            {c.name: ComponentStatus("fail", c.critical, 0.0, NOT_PROBED) for c in self._components}
        )
        self._pending: dict[str, tuple[Future[str], float]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None

    def report(self) -> HealthReport:
        with self._lock:
            return self._report

    def start(self) -> None:
        """Probe once before serving (so the first answer is real), then every interval."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._pool = ThreadPoolExecutor(
            max(1, len(self._components)), thread_name_prefix="butler-health-probe"
        )
        self.probe_all()
        self._thread = threading.Thread(target=self._run, name="butler-health", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.probe_all()

    def probe_all(self) -> HealthReport:
        """One round: start every probe that is not still running, wait at most an interval."""
        assert self._pool is not None
        for component in self._components:
            if component.name not in self._pending:
                future = self._pool.submit(component.probe)
                self._pending[component.name] = (future, time.perf_counter())
        deadline = time.monotonic() + self._interval
        statuses: dict[str, ComponentStatus] = {}
        for component in self._components:
            future, started = self._pending[component.name]
            try:
                message = future.result(timeout=max(0.0, deadline - time.monotonic()))
                status = "ok"
            except FutureTimeout:
                message = f"no answer within {self._interval:g} s"
                status = "fail"
            except Exception as exc:
                message = exc.message if isinstance(exc, ApiError) else str(exc) or repr(exc)
                status = "fail"
            if future.done():
                del self._pending[component.name]
            latency = round((time.perf_counter() - started) * 1000, 1)
            statuses[component.name] = ComponentStatus(status, component.critical, latency, message)
        report = HealthReport(statuses)
        with self._lock:
            previous, self._report = self._report, report
        _log_changes(previous, report)
        return report


def _log_changes(previous: HealthReport, current: HealthReport) -> None:
    for name, now in current.components.items():
        before = previous.components.get(name)
        if before is not None and before.status == now.status and before.message != NOT_PROBED:
            continue
        if now.status == "ok":
            log.info("Health: %s ok: %s (%.1f ms)", name, now.message, now.latency_ms)
        else:
            level = logging.WARNING if now.critical else logging.INFO
            log.log(level, "Health: %s failing: %s", name, now.message)
