"""Long-lived services shared by plugins.

The core builds its services once, from the config, and hands the container to every
plugin; plugins add their own objects to the typed registry (``register``/``require``),
keyed by class so a lookup is checked by mypy instead of failing at run time on a typo.
Core services that are switched off in the config are ``None``; a plugin whose feature
needs a missing service answers 503 naming the config key.

Start order: key-value store, runs (their tracker), the audit trail, Engine client, plugin
objects (in registration order), then the triggers (scheduler, MQTT); stop is the reverse,
then the clients are closed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from butler.errors import FeatureUnavailable
from butler.events import Events

if TYPE_CHECKING:
    from butler.audit import AuditTrail
    from butler.config import Config
    from butler.engine import EngineClient
    from butler.kvstore import KvStore
    from butler.mqtt import MqttService
    from butler.outbound_http import OutboundSession
    from butler.qrs import QrsClient
    from butler.runs import Runs
    from butler.schedules import Scheduler
    from butler.tasks import TaskStarter

log = logging.getLogger(__name__)

T = TypeVar("T")


@runtime_checkable
class Lifecycle(Protocol):
    """A registered object with these methods is started and stopped with Butler."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


@dataclass
class Services:
    """Everything with a lifetime longer than one request."""

    config: Config
    http: OutboundSession | None = None
    """Outbound HTTP to third parties: one pooled session, secrets kept out of logs."""
    qrs: QrsClient | None = None
    task_starter: TaskStarter | None = None
    runs: Runs | None = None
    """Every start's run record and the tracker that follows it (with the QRS client)."""
    audit: AuditTrail | None = None
    """Durable audit records of every change (``Butler.audit.enable``)."""
    kv_store: KvStore | None = None
    scheduler: Scheduler | None = None
    mqtt: MqttService | None = None
    engine: EngineClient | None = None
    events: Events = field(default_factory=Events)
    """What the QRS client, task starter and scheduler report; plugins subscribe observers."""
    _registry: dict[type, Any] = field(default_factory=dict, init=False, repr=False)

    def register(self, kind: type[T], service: T) -> T:
        """Add a plugin's object under its type; one object per type."""
        if kind in self._registry:
            raise RuntimeError(f"A {kind.__name__} is already registered")
        if not isinstance(service, kind):
            raise TypeError(f"{service!r} is not a {kind.__name__}")
        self._registry[kind] = service
        return service

    def get(self, kind: type[T]) -> T | None:
        """The registered object of this type, or ``None``."""
        found: T | None = self._registry.get(kind)
        return found

    def require(self, kind: type[T], missing: str) -> T:
        """The registered object of this type; 503 with ``missing`` as message otherwise."""
        found = self.get(kind)
        if found is None:
            raise FeatureUnavailable(missing)
        return found

    def ordered(self) -> list[Lifecycle]:
        """Objects with a lifecycle, in start order."""
        plugin_objects = [s for s in self._registry.values() if isinstance(s, Lifecycle)]
        return [
            s
            for s in (
                self.kv_store,
                self.runs,
                self.audit,
                self.engine,
                *plugin_objects,
                self.scheduler,
                self.mqtt,
            )
            if s is not None
        ]

    def start(self) -> None:
        for service in self.ordered():
            service.start()

    def stop(self) -> None:
        """Stop triggers before the clients they use; safe to call more than once."""
        for service in reversed(self.ordered()):
            try:
                service.stop()
            except Exception:
                log.exception("Error while stopping %s", type(service).__name__)
        closables = (self.task_starter, self.audit, self.runs, self.qrs, self.kv_store, self.http)
        for closable in closables:
            if closable is not None:
                closable.close()
