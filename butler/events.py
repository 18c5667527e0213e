"""What the core's services report as they work, for observers such as metrics.

The QRS client, the task starter, the scheduler and the run tracker each hold one
:class:`Events` (the one in ``Services.events``) and call it in one line where something
happened; a plugin that wants to count or time those things subscribes an
:class:`Observer` from ``butler_services``.
The core services thus never import a plugin, and a plugin never reaches into a service.
Calls happen on the service's own thread, so observers must be quick and must not raise;
an observer that raises is logged and skipped, never allowed to break a task start.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from butler.tasks.trigger import Trigger

log = logging.getLogger(__name__)

_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def route_template(path: str) -> str:
    """``/task/<guid>/start`` as ``/task/{id}/start``: one label per route, not per task."""
    return _GUID.sub("{id}", path)


class Observer:
    """Override the methods you need; the others do nothing."""

    def qrs_request(self, route: str, status: str, seconds: float) -> None:
        """One QRS call: route template (``/qrs/task/{id}/start``), HTTP status or
        ``timeout`` / ``unreachable`` / ``tls``, and its duration."""

    def task_starts(self, trigger: str, outcomes: Mapping[str, str]) -> None:
        """One task-start request of ``trigger`` (rest, mqtt, schedule, chain) finished with
        these outcomes per task id (``started``, ``failed: ...``, ``notFound``, ...)."""

    def start_requested(
        self, trigger: Trigger, request_id: str | None, outcomes: Mapping[str, str]
    ) -> None:
        """As ``task_starts``, with the whole trigger (its caller, and for schedules the
        schedule behind each task) and the request id: what an audit record names."""

    def schedules_fired(self, lateness_seconds: float, count: int) -> None:
        """``count`` schedules due at one instant were handed to the starter this late."""

    def schedule_results(self, results: Sequence[tuple[str, str]]) -> None:
        """The outcome of each fired schedule, ``(schedule id, result)``; ``skipped`` for
        a schedule whose previous start was still running."""

    def run_finished(self, run: Mapping[str, Any]) -> None:
        """A run became final; ``run`` is its API object (``runId``, ``status``, ...)."""


class Events(Observer):
    """The fan-out the core services call; subscribe observers before services start."""

    def __init__(self) -> None:
        self._observers: list[Observer] = []

    def subscribe(self, observer: Observer) -> None:
        self._observers.append(observer)

    def qrs_request(self, route: str, status: str, seconds: float) -> None:
        for observer in self._observers:
            _call(observer.qrs_request, route, status, seconds)

    def task_starts(self, trigger: str, outcomes: Mapping[str, str]) -> None:
        for observer in self._observers:
            _call(observer.task_starts, trigger, outcomes)

    def start_requested(
        self, trigger: Trigger, request_id: str | None, outcomes: Mapping[str, str]
    ) -> None:
        for observer in self._observers:
            _call(observer.start_requested, trigger, request_id, outcomes)

    def schedules_fired(self, lateness_seconds: float, count: int) -> None:
        for observer in self._observers:
            _call(observer.schedules_fired, lateness_seconds, count)

    def schedule_results(self, results: Sequence[tuple[str, str]]) -> None:
        for observer in self._observers:
            _call(observer.schedule_results, results)

    def run_finished(self, run: Mapping[str, Any]) -> None:
        for observer in self._observers:
            _call(observer.run_finished, run)


def _call(method: Callable[..., None], *args: object) -> None:
    try:
        method(*args)
    except Exception:
        log.exception("Observer %r failed", method)
