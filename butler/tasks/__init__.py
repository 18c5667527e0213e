"""The task starter: the one path by which anything starts a Qlik Sense task."""

from butler.tasks.starter import (
    KvItem,
    StartFilter,
    StartRequest,
    StartResult,
    TaskStarter,
    is_guid,
    parse_mqtt_payload,
    parse_start_body,
)
from butler.tasks.trigger import StartsTasks, Trigger

__all__ = [
    "KvItem",
    "StartFilter",
    "StartRequest",
    "StartResult",
    "StartsTasks",
    "TaskStarter",
    "Trigger",
    "is_guid",
    "parse_mqtt_payload",
    "parse_start_body",
]
