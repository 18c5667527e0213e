"""Who asked for a task start: the trigger kind and the caller behind it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

TriggerKind = Literal["rest", "mqtt", "schedule", "chain"]

_LOG_NAMES = {
    "rest": "REST from",
    "mqtt": "MQTT topic",
    "schedule": "schedule",
    "chain": "reload of app",
}


@dataclass(frozen=True)
class Trigger:
    """Kind of trigger plus the caller (client address, MQTT topic, schedule, parent app).

    ``str()`` is the wording of the task starter's log line.
    """

    kind: TriggerKind
    caller: str = ""

    @classmethod
    def rest(cls, client: str) -> Trigger:
        return cls("rest", client)

    @classmethod
    def mqtt(cls, topic: str) -> Trigger:
        return cls("mqtt", topic)

    @classmethod
    def schedule(cls, schedules: str = "") -> Trigger:
        """``schedules`` names the schedules that fired (``'Nightly' (id)``, ...)."""
        return cls("schedule", schedules)

    @classmethod
    def chain(cls, app_id: str) -> Trigger:
        return cls("chain", app_id)

    def __str__(self) -> str:
        return f"{_LOG_NAMES[self.kind]} {self.caller}".rstrip()


class StartsTasks(Protocol):
    """What schedules and app-reload chains need of the task starter."""

    def start_ids(self, task_ids: Sequence[str], trigger: Trigger) -> dict[str, str]:
        """Start tasks by id; the outcome per lower-case id (``started``, ``failed: ...``)."""
        ...
