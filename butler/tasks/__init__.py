"""The task starter: the one path by which anything starts a Qlik Sense task."""

from butler.tasks.starter import (
    KvItem,
    StartFilter,
    StartOutcomeUnknown,
    StartRequest,
    StartResult,
    TaskStarter,
)
from butler.tasks.trigger import IdStarts, StartsScheduledTasks, StartsTasks, Trigger

__all__ = [
    "IdStarts",
    "KvItem",
    "StartFilter",
    "StartOutcomeUnknown",
    "StartRequest",
    "StartResult",
    "StartsScheduledTasks",
    "StartsTasks",
    "TaskStarter",
    "Trigger",
]
