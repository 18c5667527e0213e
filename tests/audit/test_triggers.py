"""Task starts no HTTP request asked for (MQTT, a schedule, a chain) each leave one audit
record naming their trigger; REST starts are left to the HTTP layer's record."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import paho.mqtt.client as paho
import pytest

from butler.audit import AuditFilter, AuditRecord, AuditStore, AuditTrail, StartAuditor
from butler.events import Events
from butler.qrs import QrsClient
from butler.tasks import TaskStarter
from butler.tasks.trigger import Trigger
from butler.testing.qrs_simulator import QrsSimulator
from tests.audit.conftest import AuditButler
from tests.fixtures.mqtt import Mosquitto

APP1_TASK = "e3b27f50-b1c0-4879-88fc-c7cdd9c1cf3e"
START_TOPIC = "qliksense/start_task"
TIMEOUT = 10.0


@pytest.fixture
def trail() -> Iterator[AuditTrail]:
    started = AuditTrail(AuditStore(None))
    started.start()
    yield started
    started.stop()
    started.close()


@pytest.fixture
def starter(qrs_client: QrsClient, trail: AuditTrail) -> Iterator[TaskStarter]:
    events = Events()
    events.subscribe(StartAuditor(trail))
    made = TaskStarter(qrs_client, events=events)
    yield made
    made.close()


def records(trail: AuditTrail) -> list[AuditRecord]:
    found, _ = trail.query(AuditFilter(), 100)
    return found


def add_task(sim: QrsSimulator, name: str) -> str:
    task_id = str(uuid.uuid4())
    sim.add_task({"id": task_id, "name": name, "tags": []})
    return task_id


def test_a_schedule_start_is_one_record_naming_the_schedule(
    starter: TaskStarter, trail: AuditTrail
) -> None:
    missing = str(uuid.uuid4())
    trigger = Trigger.schedule("'Nightly' (nightly)", {APP1_TASK: "nightly", missing: "nightly"})
    result = starter.start_ids([APP1_TASK, missing], trigger)
    assert result == {APP1_TASK: "started", missing: "notFound"}
    (found,) = records(trail)
    shown = found.to_api()
    assert shown["caller"] == "nightly"
    assert shown["trigger"] == {"kind": "schedule", "caller": "nightly"}
    assert shown["resources"] == {"tasksStarted": [APP1_TASK]}
    assert shown["method"] is None and shown["route"] is None and shown["status"] is None
    assert shown["params"] == {}
    assert found.request_id is not None


def test_schedules_sharing_a_fire_get_a_record_each(
    starter: TaskStarter, trail: AuditTrail, qrs_simulator: QrsSimulator
) -> None:
    other = add_task(qrs_simulator, "Hourly task")
    callers = {APP1_TASK: "nightly", other: "hourly"}
    starter.start_ids([APP1_TASK, other], Trigger.schedule("two", callers))
    found = {r.caller: r for r in records(trail)}
    assert set(found) == {"nightly", "hourly"}
    assert found["nightly"].resources == {"tasksStarted": [APP1_TASK]}
    assert found["hourly"].resources == {"tasksStarted": [other]}
    assert found["nightly"].request_id == found["hourly"].request_id


def test_a_chain_start_names_the_parent_run(starter: TaskStarter, trail: AuditTrail) -> None:
    parent = str(uuid.uuid4())
    starter.start_ids([APP1_TASK], Trigger.chain(parent))
    (found,) = records(trail)
    assert found.caller == parent
    assert found.trigger == {"kind": "chain", "caller": parent}
    assert found.resources == {"tasksStarted": [APP1_TASK]}


def test_a_rest_start_is_left_to_the_http_record(starter: TaskStarter, trail: AuditTrail) -> None:
    starter.start_ids([APP1_TASK], Trigger.rest("10.0.0.1"))
    assert records(trail) == []


def test_an_mqtt_start_is_audited_in_a_running_butler(
    audit_butler: AuditButler, mosquitto: Mosquitto
) -> None:
    _, services = audit_butler(
        {
            "mqttConfig": {
                "enable": True,
                "brokerHost": "127.0.0.1",
                "brokerPort": mosquitto.port,
                "taskStartTopic": START_TOPIC,
            }
        }
    )
    assert services.mqtt is not None and services.mqtt.wait_subscribed(TIMEOUT)
    assert services.audit is not None
    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", mosquitto.port)
    client.loop_start()
    try:
        client.publish(START_TOPIC, APP1_TASK, qos=1).wait_for_publish(TIMEOUT)
    finally:
        client.loop_stop()
        client.disconnect()
    deadline = time.monotonic() + TIMEOUT
    while not records(services.audit) and time.monotonic() < deadline:
        time.sleep(0.05)
    (found,) = records(services.audit)
    assert found.caller == START_TOPIC
    assert found.trigger == {"kind": "mqtt", "caller": START_TOPIC}
    assert found.resources == {"tasksStarted": [APP1_TASK]}
