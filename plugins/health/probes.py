"""One probe per component: what ``/health/ready`` checks, and whether it is critical.

A probe returns a short message when the component works and raises when it does not; the
exception's text (never a secret: the core's errors are phrased for callers) becomes the
component's message. Which components exist follows what the config switched on, because
the services are built the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from butler.engine import EngineClient
from butler.kvstore import KvStore
from butler.mqtt import MqttService
from butler.qrs import QrsClient
from butler.schedules import Scheduler
from butler.services import Services

MAX_OVERDUE_SECONDS = 30.0
"""A due fire this late means the scheduler thread is stuck, although it is alive."""


class ProbeFailed(Exception):
    """The component answered, but not as a working one."""


@dataclass(frozen=True)
class Component:
    name: str
    critical: bool
    probe: Callable[[], str]


def components(services: Services) -> list[Component]:
    """The components of this Butler, in the order the readiness body lists them."""
    found: list[Component] = []
    if services.qrs is not None:
        found.append(Component("qrs", True, qrs_probe(services.qrs)))
    if services.kv_store is not None:
        found.append(Component("kvStore", True, kv_probe(services.kv_store)))
    if services.scheduler is not None:
        found.append(Component("scheduler", True, scheduler_probe(services.scheduler)))
    if services.engine is not None:
        found.append(Component("engine", False, engine_probe(services.engine)))
    if services.mqtt is not None:
        found.append(Component("mqtt", False, mqtt_probe(services.mqtt)))
    return found


def qrs_probe(qrs: QrsClient) -> Callable[[], str]:
    def probe() -> str:
        about = qrs.about()
        return f"QRS {about.get('buildVersion', 'unknown version')} at {qrs.base_url}"

    return probe


def kv_probe(store: KvStore) -> Callable[[], str]:
    def probe() -> str:
        store.check_writable()
        return f"writable ({store.path})" if store.path is not None else "in memory"

    return probe


def scheduler_probe(scheduler: Scheduler) -> Callable[[], str]:
    def probe() -> str:
        state, overdue = scheduler.health()
        if state in ("stopped", "dead"):
            raise ProbeFailed(f"firing thread {state}")
        if overdue > MAX_OVERDUE_SECONDS:
            raise ProbeFailed(f"firing thread {state} but a due fire is {overdue:.0f} s late")
        return f"firing thread {state}, next due fire {overdue:.1f} s late"

    return probe


def engine_probe(engine: EngineClient) -> Callable[[], str]:
    def probe() -> str:
        return f"Engine {engine.engine_version() or 'unknown version'} at {engine.url}"

    return probe


def mqtt_probe(mqtt: MqttService) -> Callable[[], str]:
    def probe() -> str:
        if not mqtt.connected:
            raise ProbeFailed(f"not connected to {mqtt.host}:{mqtt.port}")
        return f"connected to {mqtt.host}:{mqtt.port}"

    return probe
