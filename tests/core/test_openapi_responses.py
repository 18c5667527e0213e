"""Every documented operation, called for real, answers what the document declares.

Butler runs with every endpoint on, against the QRS and Engine simulators, a real MQTT
broker and a local receiver standing in for Slack and New Relic, so each route reaches its
success answer. Each answer's status must be documented, and its body must match the
schema declared for that status (a 2xx with a body and no schema is a failure too).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import requests

from butler.app import create_app
from butler.config import Config, endpoint_enable_map
from butler.lifecycle import build_services
from butler.testing.certs import CertPaths
from butler.testing.demo import SCHEDULES, demo_config
from butler.testing.engine_catalogue import demo_apps
from butler.testing.engine_simulator import EngineSimulator
from butler.testing.qrs_simulator import QrsSimulator
from tests.conftest import QLIK_PLACEHOLDERS, deep_merge
from tests.fixtures.engine import engine_config
from tests.fixtures.http_receiver import HttpReceiver, http_receiver
from tests.fixtures.mqtt import Mosquitto, mosquitto, mosquitto_factory
from tests.fixtures.qrs import butler_qrs_config

__all__ = ["http_receiver", "mosquitto", "mosquitto_factory"]

TASK = "e3b27f50-b1c0-4879-88fc-c7cdd9c1cf3e"
APP = demo_apps()[0].id
TIMEOUT = 20
NIGHTLY = {
    "name": "Nightly",
    "cronSchedule": "0 3 * * *",
    "timezone": "Europe/Stockholm",
    "qlikSenseTaskId": TASK,
    "startupState": "stopped",
    "tags": ["night"],
    "owner": "ops",
}


def json_schema(node: Any) -> Any:
    """An OpenAPI 3.0 Schema Object as JSON Schema: ``nullable`` becomes a ``null`` type."""
    if isinstance(node, list):
        return [json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {
        key: (
            {name: json_schema(prop) for name, prop in value.items()}
            if key == "properties"
            else json_schema(value)
        )
        for key, value in node.items()
        if key != "nullable"
    }
    if node.get("nullable") is True:
        if "type" in out:
            out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


def validator_for(document: dict[str, Any], schema: dict[str, Any]) -> Any:
    """A draft-4 validator for ``schema``, with the document's components for its $refs."""
    root = {"allOf": [json_schema(schema)], "components": json_schema(document["components"])}
    return jsonschema_rs.Draft4Validator(root)


def documented_operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, ops in document["paths"].items() for method in ops}


@dataclass
class Checker:
    """Calls Butler and compares each answer with the document."""

    url: str
    document: dict[str, Any]
    called: set[tuple[str, str]] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)

    def call(
        self, method: str, route: str, expect: int, path: str | None = None, **kwargs: Any
    ) -> requests.Response:
        response = requests.request(method, f"{self.url}{path or route}", timeout=TIMEOUT, **kwargs)
        self.called.add((method, route))
        where = f"{method} {path or route} -> {response.status_code}"
        if response.status_code != expect:
            self.problems.append(f"{where}: expected {expect} ({response.text[:300]})")
        self.problems.extend(f"{where}: {p}" for p in self.mismatches(method, route, response))
        return response

    def mismatches(self, method: str, route: str, response: requests.Response) -> list[str]:
        """How ``response`` differs from what the document declares for it."""
        operation = self.document["paths"][route][method.lower()]
        declared = operation["responses"].get(str(response.status_code))
        if declared is None:
            return ["status not documented"]
        content = declared.get("content", {})
        if not response.content:
            return ["documents a body, none came"] if content else []
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        if media_type not in content:
            if not content:
                return ["answers a body but documents no schema for it"]
            return [f"answers {media_type}, documents {sorted(content)}"]
        if "schema" not in content[media_type]:
            return [f"documents no schema for {media_type}"]
        body = response.json() if media_type == "application/json" else response.text
        validator = validator_for(self.document, content[media_type]["schema"])
        return [f"{e.instance_path}: {e.message}" for e in validator.iter_errors(body)]


@dataclass(frozen=True)
class Running:
    url: str
    data: Path
    receiver: HttpReceiver


@pytest.fixture
def running(
    tmp_path: Path,
    make_config: Callable[..., Config],
    live_server: Callable[..., str],
    qrs_simulator: QrsSimulator,
    qrs_certs: CertPaths,
    http_receiver: HttpReceiver,
    mosquitto: Mosquitto,
) -> Iterator[Running]:
    """The demo's configuration, with Slack, New Relic and MQTT pointed at real receivers."""
    (tmp_path / "schedule.yaml").write_text(SCHEDULES, encoding="utf-8")
    with EngineSimulator(qrs_certs) as engine:
        butler = deep_merge(
            demo_config(tmp_path, 0, qrs_simulator.port, engine.port),
            {
                **butler_qrs_config(qrs_simulator, qrs_certs),
                "configEngine": engine_config(engine.port, qrs_certs)["configEngine"],
                "mqttConfig": {"enable": True, "brokerPort": mosquitto.port},
                "scheduler": {"calendars": {"closed": {"weekdays": [6, 7]}}},
                "slackNotification": {
                    "restMessage": {"webhookURL": f"{http_receiver.url}/services/T1/B2/c3"}
                },
                "thirdPartyToolsCredentials": {
                    "newRelic": [
                        {"accountName": "Production", "insertApiKey": "k", "accountId": 1234}
                    ]
                },
                "restServerEndpointsConfig": {
                    "newRelic": {
                        "postNewRelicEvent": {
                            "destinationAccount": ["Production", "Staging"],
                            "url": http_receiver.url + "/",
                        },
                        "postNewRelicMetric": {
                            "destinationAccount": ["Production"],
                            "url": http_receiver.url + "/metric/v1",
                        },
                    }
                },
            },
        )
        config = make_config(butler)
        services = build_services(config)
        services.start()
        try:
            assert services.mqtt is not None and services.mqtt.wait_connected(TIMEOUT)
            url = live_server(create_app(config, services))
            yield Running(url, tmp_path / "data", http_receiver)
        finally:
            services.stop()


def test_every_operation_answers_what_the_document_declares(running: Running) -> None:
    document = requests.get(f"{running.url}/documentation/json", timeout=TIMEOUT).json()
    check = Checker(running.url, document)
    data = running.data
    for name in ("copy.qvd", "move.qvd"):
        (data / "from" / name).write_text("qvd", encoding="utf-8")
    (data / "delete" / "old.qvd").write_text("qvd", encoding="utf-8")

    check.call("GET", "/v4/butlerping", 200)
    check.call("GET", "/v4/configfile/endpointsenabled", 200)
    check.call("GET", "/v4/plugins", 200)
    check.call("GET", "/health", 200)
    check.call("GET", "/health/ready", 200)
    check.call("GET", "/metrics", 200)
    check.call("GET", "/v4/base62tobase16", 200, params={"base62": "NKIdk1R6R0AZFcJl"})
    check.call("GET", "/v4/base16tobase62", 200, params={"base16": "7b9c8a2e44d14f6a"})

    kv = "/v4/keyvalues/{namespace}"
    entry = {"key": "k1", "value": "v1", "ttl": 60000}
    check.call("POST", kv, 201, path="/v4/keyvalues/Sales", json=entry)
    check.call("POST", kv, 201, path="/v4/keyvalues/Sales", json={"key": "k2", "value": 7})
    check.call("GET", kv, 200, path="/v4/keyvalues/Sales", params={"key": "k1"})
    exists = "/v4/keyvalues/{namespace}/keyexists"
    check.call("GET", exists, 200, path="/v4/keyvalues/Sales/keyexists", params={"key": "k1"})
    check.call("GET", exists, 200, path="/v4/keyvalues/Sales/keyexists", params={"key": "no"})
    check.call("GET", "/v4/keyvaluesnamespaces", 200)
    check.call("GET", "/v4/keylist/{namespace}", 200, path="/v4/keylist/Sales")
    check.call("DELETE", kv + "/{key}", 204, path="/v4/keyvalues/Sales/k1")
    check.call("DELETE", kv, 204, path="/v4/keyvalues/Sales")

    by_id = [{"type": "starttaskid", "payload": {"taskId": TASK}}]
    for method in ("PUT", "POST"):
        check.call(
            method, "/v4/reloadtask/{taskId}/start", 200, path=f"/v4/reloadtask/{TASK}/start"
        )
        check.call(
            method,
            "/v4/reloadtask/start",
            200,
            json=[*by_id, {"type": "starttaskid", "payload": {"taskId": 42}}],
        )
    check.call(
        "PUT",
        "/v4/reloadtask/start",
        200,
        json={"taskId": ["abc", TASK], "tag": ["startTask1", "Nope"]},
    )
    waited = check.call(
        "PUT",
        "/v4/reloadtask/{taskId}/start",
        200,
        path=f"/v4/reloadtask/{TASK}/start",
        params={"wait": "true", "timeout": "20"},
    ).json()
    assert waited.get("outcome") == "success"
    check.call("GET", "/v4/runs", 200, params={"limit": "2", "trigger": "rest"})
    check.call("GET", "/v4/runs/summary", 200)
    run_path = f"/v4/runs/{waited['runs'][0]['runId']}"
    check.call("GET", "/v4/runs/{runId}", 200, path=run_path)
    check.call(
        "GET", "/v4/audit", 200, params={"limit": "5", "route": "/v4/reloadtask/{taskId}/start"}
    )

    schedules = "/v4/schedules"
    check.call("GET", schedules, 200)
    check.call("GET", schedules, 200, params={"id": "task-1"})
    created = check.call(
        "POST",
        schedules,
        201,
        json=NIGHTLY,
    ).json()
    one = f"{schedules}/{created.get('id')}"
    check.call("PUT", schedules + "/{scheduleId}", 200, path=one, json={"name": "Nightly 2"})
    check.call("PUT", schedules + "/{scheduleId}/start", 200, path=f"{one}/start")
    check.call("PUT", schedules + "/{scheduleId}/stop", 200, path=f"{one}/stop")
    check.call(
        "GET",
        schedules + "/{scheduleId}/preview",
        200,
        path=f"{one}/preview",
        params={"count": "3", "from": "2026-03-29T00:00:00Z"},
    )
    check.call(
        "POST",
        schedules + "/preview",
        200,
        params={"count": "2"},
        json={**NIGHTLY, "dst": "skip", "jitterSeconds": 30},
    )
    check.call("POST", schedules + "/{scheduleId}/run", 200, path=f"{one}/run")
    check.call(
        "GET", schedules + "/{scheduleId}/fires", 200, path=f"{one}/fires", params={"limit": "5"}
    )
    check.call("PUT", schedules + "/stopall", 200)
    check.call("PUT", schedules + "/startall", 200)
    check.call("GET", schedules + "/status", 200)
    check.call("GET", "/v4/scheduler/calendars", 200)
    check.call("DELETE", schedules + "/{scheduleId}", 204, path=one)

    check.call("GET", "/v4/apps/list", 200)
    check.call("GET", "/v4/senselistapps", 200)
    check.call("GET", "/v4/app/{appId}/dump", 200, path=f"/v4/app/{APP}/dump")
    check.call("GET", "/v4/senseappdump/{appId}", 200, path=f"/v4/senseappdump/{APP}")
    reload = "/v4/app/{appId}/reload"
    check.call("PUT", reload, 201, path=f"/v4/app/{APP}/reload", json={})
    check.call(
        "PUT",
        reload,
        201,
        path=f"/v4/app/{APP}/reload",
        params={"wait": "true"},
        json={"startQSEoWTaskOnSuccess": [TASK]},
    )

    transfer = {"overwrite": False}
    check.call(
        "PUT",
        "/v4/filecopy",
        201,
        json={
            **transfer,
            "fromFile": str(data / "from" / "copy.qvd"),
            "toFile": str(data / "to" / "copy.qvd"),
            "preserveTimestamp": "true",
        },
    )
    check.call(
        "PUT",
        "/v4/filemove",
        201,
        json={
            **transfer,
            "fromFile": str(data / "from" / "move.qvd"),
            "toFile": str(data / "to" / "move.qvd"),
        },
    )
    check.call(
        "DELETE", "/v4/filedelete", 204, json={"deleteFile": str(data / "delete" / "old.qvd")}
    )
    check.call("POST", "/v4/createdirqvd", 201, json={"directory": "sales/2026"})
    check.call("POST", "/v4/createdir", 201, json={"directory": str(data / "made")})

    publish = {"topic": "qliksense/test", "message": "hello", "qos": 1, "team": "bi"}
    check.call("PUT", "/v4/mqttpublishmessage", 201, json=publish)
    slack = {"channel": "#bi", "from_user": "Butler", "msg": "Reloaded"}
    check.call("PUT", "/v4/slackpostmessage", 201, json=slack)
    event = {"eventType": "reload-failed", "attributes": [{"name": "app", "value": "Sales"}]}
    check.call("POST", "/v4/newrelic/event", 202, json=event)
    metric = {"name": "reload.duration", "type": "gauge", "value": 12.5}
    check.call("POST", "/v4/newrelic/metric", 202, json=metric)

    assert check.problems == []
    assert check.called == documented_operations(document)


@pytest.fixture
def all_routes(make_config: Callable[..., Config], live_server: Callable[..., str]) -> str:
    """Every route mounted, no services built: enough for the document and the core's checks."""
    config = make_config(
        {**QLIK_PLACEHOLDERS, "restServerEndpointsEnable": endpoint_enable_map(True)}
    )
    return live_server(create_app(config))


def test_the_check_finds_a_wrong_body_and_an_undocumented_status(all_routes: str) -> None:
    document = requests.get(f"{all_routes}/documentation/json", timeout=TIMEOUT).json()
    ping = document["paths"]["/v4/butlerping"]["get"]["responses"]
    validator = validator_for(document, ping["200"]["content"]["application/json"]["schema"])
    assert validator.is_valid({"response": "ok", "butlerVersion": "1"})
    assert not validator.is_valid({"response": "ok", "butlerVersion": 1})
    assert not validator.is_valid({"response": "ok", "butlerVersion": "1", "extra": 0})

    del ping["200"]["content"]
    check = Checker(all_routes, document)
    check.call("GET", "/v4/butlerping", 200)
    check.call(
        "GET", "/v4/keyvaluesnamespaces", 200, headers={"Content-Type": "text/plain"}, data="x"
    )
    assert check.problems == [
        "GET /v4/butlerping -> 200: answers a body but documents no schema for it",
        "GET /v4/keyvaluesnamespaces -> 415: expected 200 "
        '({"statusCode": 415, "error": "Unsupported Media Type", '
        '"message": "Unsupported Content-Type \'text/plain\': send application/json"})',
        "GET /v4/keyvaluesnamespaces -> 415: status not documented",
    ]


def test_every_declared_body_has_an_example_that_matches_its_schema(all_routes: str) -> None:
    document = requests.get(f"{all_routes}/documentation/json", timeout=TIMEOUT).json()
    wrong = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, declared in operation["responses"].items():
                for media_type, content in declared.get("content", {}).items():
                    assert "example" in content, f"{method} {path} {status} has no example"
                    validator = validator_for(document, content["schema"])
                    wrong.extend(
                        f"{method} {path} {status} {media_type}: {e.message}"
                        for e in validator.iter_errors(content["example"])
                    )
    assert wrong == []
