"""Long-lived services shared by plugins.

The core builds each service once, from the config, and hands the container to every
plugin. Services that are switched off in the config are ``None``; a plugin whose feature
needs a missing service answers 503 naming the config key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from butler.config import Config
    from butler.engine import EngineClient
    from butler.kvstore import KvStore
    from butler.mqtt import MqttService
    from butler.qrs import QrsClient
    from butler.scheduler import Scheduler
    from butler.tasks import TaskStarter


@dataclass
class Services:
    """Everything with a lifetime longer than one request."""

    config: Config
    qrs: QrsClient | None = None
    task_starter: TaskStarter | None = None
    kv_store: KvStore | None = None
    scheduler: Scheduler | None = None
    mqtt: MqttService | None = None
    engine: EngineClient | None = None
    extras: dict[str, Any] = field(default_factory=dict)
