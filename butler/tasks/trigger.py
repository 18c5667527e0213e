"""Who asked for a task start: the trigger kind and the caller behind it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

TriggerKind = Literal["rest", "mqtt", "schedule", "chain"]

_LOG_NAMES = {
    "rest": "REST from",
    "mqtt": "MQTT topic",
    "schedule": "schedule",
    "chain": "chain after run",
}


@dataclass(frozen=True)
class Trigger:
    """Kind of trigger plus the caller (client address, MQTT topic, schedule id, parent run).

    ``str()`` is the wording of the task starter's log line. Schedules due at one instant
    share one start, so ``task_callers`` names the schedule behind each task id.
    """

    kind: TriggerKind
    caller: str = ""
    task_callers: Mapping[str, str] = field(default_factory=dict, compare=False)

    def caller_for(self, task_id: str) -> str:
        """Who asked for this task: what a run records as its ``caller``."""
        return self.task_callers.get(task_id, self.caller)

    @classmethod
    def rest(cls, client: str) -> Trigger:
        return cls("rest", client)

    @classmethod
    def mqtt(cls, topic: str) -> Trigger:
        return cls("mqtt", topic)

    @classmethod
    def schedule(
        cls, schedules: str = "", task_callers: Mapping[str, str] | None = None
    ) -> Trigger:
        """``schedules`` names the schedules that fired (``'Nightly' (id)``, ...) for the log;
        ``task_callers`` maps each task id to the id of the schedule that wanted it."""
        return cls("schedule", schedules, dict(task_callers or {}))

    @classmethod
    def chain(cls, parent_run_id: str) -> Trigger:
        """Tasks started after an app reload: the caller is the reload's run."""
        return cls("chain", parent_run_id)

    def __str__(self) -> str:
        return f"{_LOG_NAMES[self.kind]} {self.caller}".rstrip()


class StartsTasks(Protocol):
    """What app-reload chains need of the task starter."""

    def start_ids(self, task_ids: Sequence[str], trigger: Trigger) -> dict[str, str]:
        """Start tasks by id; the outcome per lower-case id (``started``, ``failed: ...``)."""
        ...


@dataclass(frozen=True)
class IdStarts:
    """A start by ids with the runs it recorded: schedules keep them for fire history and
    to tell whether their previous fire is still running (``overlap: forbid``)."""

    outcomes: Mapping[str, str]
    """Lower-case task id -> ``started``, ``failed: ...``, ``notFound``, ``denied``, ``invalid``."""
    run_ids: Mapping[str, str] = field(default_factory=dict)
    """Lower-case task id -> id of the run this start recorded for it."""


class StartsScheduledTasks(Protocol):
    """What the scheduler needs of the task starter."""

    def start_ids_with_runs(self, task_ids: Sequence[str], trigger: Trigger) -> IdStarts:
        """Start tasks by id; the outcome and the run id per lower-case id.

        Raises ``ApiError`` when nothing could be started; a
        :class:`~butler.tasks.starter.StartOutcomeUnknown` carries the runs it recorded.
        """
        ...
