"""Audit records for task starts nobody asked for over HTTP: MQTT, schedules, chains.

A REST start is audited by the HTTP layer like every other change, with its route and
status; the starts below have no request, so the task starter's event is their record.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from butler.audit.model import AuditRecord
from butler.events import Observer

if TYPE_CHECKING:
    from butler.audit.service import AuditTrail
    from butler.tasks.trigger import Trigger


class StartAuditor(Observer):
    """Writes one record per caller of a non-HTTP start (each schedule of a shared fire)."""

    def __init__(self, trail: AuditTrail, clock: Callable[[], float] = time.time):
        self._trail = trail
        self._clock = clock

    def start_requested(
        self, trigger: Trigger, request_id: str | None, outcomes: Mapping[str, str]
    ) -> None:
        if trigger.kind == "rest":
            return
        # Schedules due at one instant share a start; each schedule is a caller of its own.
        started: dict[str, list[str]] = {}
        for task_id in outcomes:
            started.setdefault(trigger.caller_for(task_id), [])
        for task_id, outcome in outcomes.items():
            if outcome == "started":
                started[trigger.caller_for(task_id)].append(task_id)
        now = self._clock()
        for caller, task_ids in (started or {trigger.caller: []}).items():
            self._trail.record(
                AuditRecord(
                    time=now,
                    caller=caller,
                    resources={"tasksStarted": task_ids},
                    request_id=request_id,
                    trigger={"kind": trigger.kind, "caller": caller},
                )
            )
