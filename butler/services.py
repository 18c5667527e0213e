"""Long-lived services shared by plugins.

The core builds each service once, from the config, and hands the container to every
plugin. Services that are switched off in the config are ``None``; a plugin whose feature
needs a missing service answers 503 naming the config key.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from butler.config import Config
    from butler.engine import EngineClient
    from butler.kvstore import KvStore
    from butler.mqtt import MqttService
    from butler.qrs import QrsClient
    from butler.schedules import Scheduler
    from butler.tasks import TaskStarter

log = logging.getLogger(__name__)


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

    def _ordered(self) -> list[Any]:
        """Services with a lifecycle: stores first, then clients, then what triggers work."""
        return [s for s in (self.kv_store, self.engine, self.scheduler, self.mqtt) if s is not None]

    def start(self) -> None:
        for service in self._ordered():
            if hasattr(service, "start"):
                service.start()

    def stop(self) -> None:
        """Stop triggers before the clients they use; safe to call more than once."""
        for service in reversed(self._ordered()):
            if hasattr(service, "stop"):
                try:
                    service.stop()
                except Exception:
                    log.exception("Error while stopping %s", type(service).__name__)
        for closable in (self.task_starter, self.qrs, self.kv_store):
            if closable is not None:
                closable.close()
