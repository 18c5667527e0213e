"""/health and /health/ready over real sockets, against the QRS simulator and a real store."""

from __future__ import annotations

import logging
import socket
import time

import pytest
import requests

from butler.config import Config, ConfigError
from butler.testing.processes import free_port
from butler.testing.qrs_simulator import QrsSimulator
from tests.fixtures.qrs import butler_qrs_config
from tests.health.conftest import poll

INTERVAL = 0.2


def health_config(**extra):
    return {
        "restServerEndpointsEnable": {"health": True},
        "health": {"probeIntervalSeconds": INTERVAL},
        **extra,
    }


def test_liveness_is_on_without_a_health_key(running_butler, tmp_path):
    old = {
        "restServerConfig": {"enable": True, "serverHost": "127.0.0.1", "serverPort": 8080},
        "restServerEndpointsEnable": {"butlerping": True},
    }
    url = running_butler(Config.from_mapping(old, tmp_path))
    response = requests.get(f"{url}/health", timeout=5)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_explicit_false_switches_health_off(make_config, running_butler):
    url = running_butler(make_config({"restServerEndpointsEnable": {"health": False}}))
    assert requests.get(f"{url}/health", timeout=5).status_code == 404
    assert requests.get(f"{url}/health/ready", timeout=5).status_code == 404


def test_ready_follows_qrs_going_away_and_coming_back(make_config, running_butler, qrs_certs):
    simulator = QrsSimulator(qrs_certs, port=free_port()).start()
    try:
        config = make_config(
            {
                **butler_qrs_config(simulator, qrs_certs),
                **health_config(),
                "restServerEndpointsEnable": {"health": True, "senseStartTask": True},
            }
        )
        ready = f"{running_butler(config)}/health/ready"
        first = requests.get(ready, timeout=5)
        assert first.status_code == 200
        body = first.json()
        assert body["status"] == "ok"
        assert body["components"]["qrs"]["status"] == "ok"
        assert body["components"]["qrs"]["critical"] is True
        assert "30.9.1.0" in body["components"]["qrs"]["message"]
        assert set(body["components"]["qrs"]) == {"status", "critical", "latencyMs", "message"}

        simulator.stop()
        stopped = time.monotonic()
        down = poll(ready, lambda r: r.status_code == 503, timeout=INTERVAL + 2)
        assert down.status_code == 503, down.text
        assert time.monotonic() - stopped < INTERVAL + 2
        assert down.json()["status"] == "fail"
        assert down.json()["components"]["qrs"]["status"] == "fail"
        assert "unreachable" in down.json()["components"]["qrs"]["message"]

        simulator.start()
        up = poll(ready, lambda r: r.status_code == 200, timeout=INTERVAL + 2)
        assert up.status_code == 200, up.text
        assert up.json()["status"] == "ok"
    finally:
        simulator.stop()


def test_failing_non_critical_component_is_degraded_not_503(make_config, running_butler):
    config = make_config(
        {
            **health_config(),
            "mqttConfig": {"enable": True, "brokerHost": "127.0.0.1", "brokerPort": free_port()},
        }
    )
    ready = f"{running_butler(config)}/health/ready"
    response = poll(ready, lambda r: r.json()["status"] == "degraded", timeout=INTERVAL + 2)
    assert response.status_code == 200
    mqtt = response.json()["components"]["mqtt"]
    assert mqtt["status"] == "fail"
    assert mqtt["critical"] is False
    assert "not connected" in mqtt["message"]


def test_key_value_store_is_probed_with_a_durable_write(make_config, running_butler, tmp_path):
    config = make_config(
        {
            **health_config(),
            "restServerEndpointsEnable": {"health": True, "keyValueStore": True},
            "keyValueStore": {"persistence": "sqlite", "dbFile": str(tmp_path / "kv.sqlite")},
        }
    )
    ready = f"{running_butler(config)}/health/ready"
    body = requests.get(ready, timeout=5).json()
    assert body["components"] == {
        "kvStore": {
            "status": "ok",
            "critical": True,
            "latencyMs": body["components"]["kvStore"]["latencyMs"],
            "message": f"writable ({tmp_path / 'kv.sqlite'})",
        }
    }
    namespaces = requests.get(ready.replace("/health/ready", "/v4/keyvaluesnamespaces"), timeout=5)
    assert namespaces.json() == []  # the probe writes no namespace or key


def test_a_hung_upstream_never_holds_the_route(make_config, running_butler):
    """An Engine that accepts connections and never answers: the route still answers at once."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        config = make_config(
            {
                **health_config(),
                "restServerEndpointsEnable": {"health": True, "senseListApps": True},
                "cert": {"clientCert": "c.pem", "clientCertKey": "k.pem"},
                "configEngine": {
                    "host": "127.0.0.1",
                    "port": silent.getsockname()[1],
                    "useSSL": False,
                },
            }
        )
        ready = f"{running_butler(config)}/health/ready"
        response = poll(ready, lambda r: r.json()["status"] == "degraded", timeout=INTERVAL + 2)
        engine = response.json()["components"]["engine"]
        assert engine["status"] == "fail"
        assert engine["critical"] is False
        assert engine["message"] == f"no answer within {INTERVAL:g} s"
        started = time.monotonic()
        requests.get(ready, timeout=5)
        assert time.monotonic() - started < INTERVAL  # answered from the last report


def test_start_up_probes_qrs_once_and_logs_it(
    make_config, running_butler, qrs_simulator, qrs_certs, caplog
):
    caplog.set_level(logging.INFO, logger="butler.health")
    config = make_config(
        {
            **butler_qrs_config(qrs_simulator, qrs_certs),
            "restServerEndpointsEnable": {"health": True, "senseStartTask": True},
        }
    )
    running_butler(config)
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("Health: qrs ok: QRS 30.9.1.0") for m in messages), messages
    assert [r.path for r in qrs_simulator.requests()] == ["/qrs/about"]


def test_start_up_with_qrs_unreachable_warns_and_keeps_running(
    make_config, running_butler, qrs_simulator, qrs_certs, caplog
):
    caplog.set_level(logging.INFO, logger="butler.health")
    settings = butler_qrs_config(qrs_simulator, qrs_certs)
    settings["configQRS"]["port"] = free_port()
    config = make_config(
        {**settings, "restServerEndpointsEnable": {"health": True, "senseStartTask": True}}
    )
    url = running_butler(config)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(m.startswith("Health: qrs failing:") for m in warnings), warnings
    assert requests.get(f"{url}/health/ready", timeout=5).status_code == 503
    assert requests.get(f"{url}/health", timeout=5).status_code == 200


@pytest.mark.parametrize("value", [0, 11, "often"])
def test_probe_interval_is_bounded(make_config, value):
    with pytest.raises(ConfigError, match=r"^Butler\.health\.probeIntervalSeconds: must be"):
        make_config(
            {
                "restServerEndpointsEnable": {"health": True},
                "health": {"probeIntervalSeconds": value},
            }
        )


def test_probe_interval_defaults_to_five_seconds(make_config):
    assert (
        make_config({"restServerEndpointsEnable": {"health": True}}).get(
            "health.probeIntervalSeconds"
        )
        == 5.0
    )
