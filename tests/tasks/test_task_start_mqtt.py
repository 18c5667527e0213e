"""Task start triggered by MQTT messages on a real mosquitto broker."""

import json

import paho.mqtt.client as paho
import pytest

from butler.lifecycle import build_services
from tests.fixtures.mqtt import mosquitto, mosquitto_factory
from tests.fixtures.qrs import butler_qrs_config

__all__ = ["mosquitto", "mosquitto_factory"]

APP1 = "e3b27f50-b1c0-4879-88fc-c7cdd9c1cf3e"
APP3 = "fb0f317d-da91-4b86-aafa-0174ae1e8c8f"
TOPIC = "qliksense/start_task"


@pytest.fixture
def running(make_config, mosquitto, qrs_simulator, qrs_certs):
    started = []

    def start(start_filter=None):
        config = make_config(
            {
                **butler_qrs_config(qrs_simulator, qrs_certs),
                "restServerEndpointsEnable": {"senseStartTask": True},
                "mqttConfig": {
                    "enable": True,
                    "brokerHost": "127.0.0.1",
                    "brokerPort": mosquitto.port,
                    "subscriptionRootTopic": "qliksense/#",
                    "taskStartTopic": TOPIC,
                },
                "startTaskFilter": start_filter or {"enable": False},
            }
        )
        services = build_services(config)
        services.start()
        started.append(services)
        assert services.mqtt.wait_subscribed(10)
        return services

    yield start
    for services in started:
        services.stop()


def publish(broker, payload):
    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    info = client.publish(TOPIC, payload, qos=1)
    info.wait_for_publish(5)
    client.loop_stop()
    client.disconnect()


def test_bare_task_id_payload_starts_the_task(running, mosquitto, qrs_simulator):
    running()
    publish(mosquitto, APP1)
    starts = qrs_simulator.wait_for_starts(1, timeout=10)
    assert [s.task_id for s in starts] == [APP1]


def test_json_payload_forms(running, mosquitto, qrs_simulator):
    running()
    publish(mosquitto, json.dumps({"tag": ["startTask1"]}))
    starts = qrs_simulator.wait_for_starts(3, timeout=10)
    assert len({s.task_id for s in starts}) == 3
    qrs_simulator.reset_log()
    publish(mosquitto, json.dumps([{"type": "starttaskid", "payload": {"taskId": APP3}}]))
    assert [s.task_id for s in qrs_simulator.wait_for_starts(1, timeout=10)] == [APP3]


def test_filter_applies_to_mqtt(running, mosquitto, qrs_simulator):
    running({"enable": True, "allowTask": {"taskId": [APP3], "tag": None, "customProperty": None}})
    publish(mosquitto, APP1)  # denied
    publish(mosquitto, APP3)  # allowed: proves the first message was handled, not lost
    starts = qrs_simulator.wait_for_starts(1, timeout=10)
    assert [s.task_id for s in starts] == [APP3]
    assert [s.task_id for s in qrs_simulator.starts()] == [APP3]


def test_bad_payloads_do_not_stop_the_listener(running, mosquitto, qrs_simulator):
    services = running()
    for bad in ("{not json", "[1, 2]", "", "\xff"):
        publish(mosquitto, bad)
    publish(mosquitto, APP1)
    assert [s.task_id for s in qrs_simulator.wait_for_starts(1, timeout=10)] == [APP1]
    assert services.mqtt.connected
