"""Every route that changes or starts something writes exactly one audit record, and no
secret reaches anything the service writes.

One real ``butler`` process with every feature on (QRS and Engine simulators, a real
mosquitto with a password, Slack and New Relic posting to a local receiver, auth and audit
on) serves the whole module; each case checks the records its own request added.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from ruamel.yaml import YAML

from butler.audit import AuditFilter, AuditStore
from butler.auth.keys import hash_key, new_key
from butler.runs.model import iso
from butler.testing.certs import generate_certificates
from butler.testing.demo import demo_config
from butler.testing.engine_catalogue import demo_apps
from butler.testing.engine_simulator import EngineSimulator
from butler.testing.processes import free_port, wait_until_answering
from butler.testing.qrs_simulator import QrsSimulator
from tests.fixtures.butler_process import BUTLER
from tests.fixtures.http_receiver import HttpReceiver
from tests.fixtures.mqtt import Mosquitto

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

TIMEOUT = 15
TASK = "e3b27f50-b1c0-4879-88fc-c7cdd9c1cf3e"
APP = demo_apps()[0].id


@dataclass
class Stack:
    url: str
    workdir: Path
    process: subprocess.Popen[bytes]
    output: Path
    secrets: dict[str, str]
    headers: dict[str, str]
    config_file: Path

    def call(self, method: str, path: str, body: Any = None) -> requests.Response:
        return requests.request(
            method, f"{self.url}{path}", json=body, headers=self.headers, timeout=TIMEOUT
        )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("audit-routes")
    certs = generate_certificates(workdir / "certs")
    key = new_key()
    secrets = {
        "api key": key,
        "key hash": hash_key(key),
        "slack webhook path": "T0SECRET/B0SECRET/" + new_key()[-24:],
        "new relic key": "NRII-" + new_key()[-30:],
        "mqtt password": "mqtt-" + new_key()[-20:],
    }
    broker = Mosquitto(workdir / "broker", passwords={"butler": secrets["mqtt password"]})
    broker.start()
    receiver = HttpReceiver()
    receiver.start()
    port = free_port()
    with QrsSimulator(certs) as qrs, EngineSimulator(certs) as engine:
        settings = demo_config(workdir, port, qrs.port, engine.port, receiver.url, True)
        settings["mqttConfig"].update(
            brokerPort=broker.port, username="butler", password=secrets["mqtt password"]
        )
        settings["slackNotification"]["restMessage"]["webhookURL"] = (
            f"{receiver.url}/services/{secrets['slack webhook path']}"
        )
        settings["thirdPartyToolsCredentials"]["newRelic"][0]["insertApiKey"] = secrets[
            "new relic key"
        ]
        settings["restServerConfig"]["auth"] = {
            "enable": True,
            "anonymous": ["butlerping"],
            "apiKeys": [{"name": "auditor", "keyHash": secrets["key hash"], "scopes": ["*"]}],
        }
        settings["audit"] = {"enable": True, "jsonLinesFile": "audit.jsonl"}
        config_file = workdir / "butler.yaml"
        with config_file.open("w", encoding="utf-8") as handle:
            YAML().dump({"Butler": settings}, handle)
        output = workdir / "butler-output.txt"
        with output.open("wb") as sink:
            process = subprocess.Popen(
                [str(BUTLER), "-c", str(config_file)],
                cwd=workdir,
                stdout=sink,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_until_answering(f"{url}/v4/butlerping", process)
            yield Stack(url, workdir, process, output, secrets, {"X-Api-Key": key}, config_file)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
            receiver.stop()
            broker.stop()


def http_records(stack: Stack, since: float) -> list[dict[str, Any]]:
    answer = requests.get(
        f"{stack.url}/v4/audit",
        params={"since": iso(since), "limit": "1000"},
        headers=stack.headers,
        timeout=TIMEOUT,
    )
    assert answer.status_code == 200, answer.text
    return [r for r in answer.json()["records"] if r["trigger"] is None]


def a_file(stack: Stack, name: str) -> None:
    path = stack.workdir / "data" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("data", encoding="utf-8")


def a_schedule(stack: Stack) -> str:
    body = {
        "name": "audited",
        "cronSchedule": "0 0 1 1 *",
        "timezone": "UTC",
        "qlikSenseTaskId": TASK,
        "startupState": "stopped",
        "tags": ["audit"],
    }
    created = stack.call("POST", "/v4/schedules", body)
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


@dataclass(frozen=True)
class Case:
    method: str
    route: str
    path: str | Callable[[Stack, dict[str, str]], str]
    body: Any = None
    prepare: Callable[[Stack, dict[str, str]], None] | None = None
    resources: dict[str, Any] = field(default_factory=dict)
    """Expected resources; a callable value checks the recorded value."""


def by_id(path: str) -> Callable[[Stack, dict[str, str]], str]:
    return lambda stack, ctx: path.format(**ctx)


def with_schedule(stack: Stack, ctx: dict[str, str]) -> None:
    ctx["id"] = a_schedule(stack)


def data(name: str) -> Callable[[Stack], str]:
    return lambda stack: str(stack.workdir / "data" / name)


TAG_BODY = [{"type": "starttasktag", "payload": {"tag": "startTask1"}}]
started = lambda value: isinstance(value, list) and len(value) >= 1  # noqa: E731

CASES = [
    Case("PUT", "/v4/reloadtask/{taskId}/start", f"/v4/reloadtask/{TASK}/start", [],
         resources={"tasksStarted": [TASK]}),
    Case("POST", "/v4/reloadtask/{taskId}/start", f"/v4/reloadtask/{TASK}/start", [],
         resources={"tasksStarted": [TASK]}),
    Case("PUT", "/v4/reloadtask/start", "/v4/reloadtask/start", {"tag": ["startTask1"]},
         resources={"tasksStarted": started}),
    Case("POST", "/v4/reloadtask/start", "/v4/reloadtask/start", {"tag": ["startTask1"]},
         resources={"tasksStarted": started}),
    Case("POST", "/v4/keyvalues/{namespace}", "/v4/keyvalues/audited",
         {"key": "k1", "value": "v1"}, resources={"namespace": "audited", "key": "k1"}),
    Case("DELETE", "/v4/keyvalues/{namespace}/{key}", "/v4/keyvalues/audited/k1",
         resources={"namespace": "audited", "key": "k1"}),
    Case("DELETE", "/v4/keyvalues/{namespace}", "/v4/keyvalues/audited",
         resources={"namespace": "audited"}),
    Case("PUT", "/v4/filecopy", "/v4/filecopy", "copy",
         prepare=lambda stack, ctx: a_file(stack, "from/copied.qvd"),
         resources={"paths": lambda paths: paths["fromFile"].endswith("from/copied.qvd")}),
    Case("PUT", "/v4/filemove", "/v4/filemove", "move",
         prepare=lambda stack, ctx: a_file(stack, "from/moved.qvd"),
         resources={"paths": lambda paths: paths["toFile"].endswith("to/moved.qvd")}),
    Case("DELETE", "/v4/filedelete", "/v4/filedelete", "delete",
         prepare=lambda stack, ctx: a_file(stack, "delete/gone.qvd"),
         resources={"paths": lambda paths: paths["deleteFile"].endswith("delete/gone.qvd")}),
    Case("POST", "/v4/createdirqvd", "/v4/createdirqvd", {"directory": "audited/sub"},
         resources={"paths": {"directory": "audited/sub"}}),
    Case("POST", "/v4/createdir", "/v4/createdir", "mkdir",
         resources={"paths": lambda paths: paths["directory"].endswith("data/made")}),
    Case("POST", "/v4/schedules", "/v4/schedules", "schedule",
         resources={"scheduleId": lambda value: bool(value)}),
    Case("PUT", "/v4/schedules/{scheduleId}", by_id("/v4/schedules/{id}"), {"name": "renamed"},
         prepare=with_schedule, resources={"scheduleId": "{id}"}),
    Case("DELETE", "/v4/schedules/{scheduleId}", by_id("/v4/schedules/{id}"),
         prepare=with_schedule, resources={"scheduleId": "{id}"}),
    Case("PUT", "/v4/schedules/{scheduleId}/start", by_id("/v4/schedules/{id}/start"),
         prepare=with_schedule, resources={"scheduleId": "{id}"}),
    Case("PUT", "/v4/schedules/{scheduleId}/stop", by_id("/v4/schedules/{id}/stop"),
         prepare=with_schedule, resources={"scheduleId": "{id}"}),
    Case("POST", "/v4/schedules/{scheduleId}/run", by_id("/v4/schedules/{id}/run"),
         prepare=with_schedule, resources={"scheduleId": "{id}", "runIds": started}),
    Case("PUT", "/v4/schedules/startall", "/v4/schedules/startall"),
    Case("PUT", "/v4/schedules/stopall", "/v4/schedules/stopall"),
    Case("PUT", "/v4/mqttpublishmessage", "/v4/mqttpublishmessage",
         {"topic": "butler/audited", "message": "hello"}, resources={"topic": "butler/audited"}),
    Case("PUT", "/v4/slackpostmessage", "/v4/slackpostmessage",
         {"channel": "#ops", "from_user": "butler", "msg": "hello"},
         resources={"channel": "#ops"}),
    Case("POST", "/v4/newrelic/event", "/v4/newrelic/event",
         {"eventType": "AuditedEvent", "attributes": [{"name": "a", "value": "b"}]},
         resources={"eventType": "AuditedEvent"}),
    Case("POST", "/v4/newrelic/metric", "/v4/newrelic/metric",
         {"name": "audited.metric", "value": 1, "type": "gauge"},
         resources={"metric": "audited.metric"}),
    Case("PUT", "/v4/app/{appId}/reload", f"/v4/app/{APP}/reload", {},
         resources={"appId": APP}),
]  # fmt: skip


def body_of(case: Case, stack: Stack) -> Any:
    """Bodies that name files of this stack's work folder."""
    folder = stack.workdir / "data"
    return (
        {
            "copy": {
                "fromFile": str(folder / "from/copied.qvd"),
                "toFile": str(folder / "to/c.qvd"),
            },
            "move": {
                "fromFile": str(folder / "from/moved.qvd"),
                "toFile": str(folder / "to/moved.qvd"),
            },
            "delete": {"deleteFile": str(folder / "delete/gone.qvd")},
            "mkdir": {"directory": str(folder / "made")},
            "schedule": {
                "name": "created",
                "cronSchedule": "0 0 1 1 *",
                "timezone": "UTC",
                "qlikSenseTaskId": TASK,
                "startupState": "stopped",
            },
        }.get(case.body, case.body)
        if isinstance(case.body, str)
        else case.body
    )


@pytest.mark.parametrize("case", CASES, ids=[f"{c.method} {c.route}" for c in CASES])
def test_each_mutating_route_writes_one_record(stack: Stack, case: Case) -> None:
    context: dict[str, str] = {}
    if case.prepare is not None:
        case.prepare(stack, context)
    path = case.path(stack, context) if callable(case.path) else case.path
    since = time.time()
    answer = stack.call(case.method, path, body_of(case, stack))
    assert answer.status_code < 400, answer.text
    records = [r for r in http_records(stack, since) if r["route"] == case.route]
    assert len(records) == 1, records
    record = records[0]
    assert record["caller"] == "auditor"
    assert record["method"] == case.method
    assert record["status"] == answer.status_code
    for name, expected in case.resources.items():
        value = record["resources"].get(name)
        if callable(expected):
            assert expected(value), (name, value)
        elif isinstance(expected, str):
            assert value == expected.format(**context), (name, value)
        else:
            assert value == expected, (name, value)
    if "tasksStarted" in case.resources:
        assert record["requestId"] == answer.json()["requestId"]


COMPUTE_ONLY = {("POST", "/v4/schedules/preview")}
"""Non-GET routes that change nothing (``Endpoint.audited=False``): no record."""


def test_every_mutating_route_has_a_case(stack: Stack) -> None:
    document = requests.get(f"{stack.url}/documentation/json", timeout=TIMEOUT).json()
    mutating = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
        if method != "get"
    }
    assert mutating - COMPUTE_ONLY == {(case.method, case.route) for case in CASES}
    assert mutating >= COMPUTE_ONLY


def test_a_preview_of_an_unsaved_schedule_writes_no_record(stack: Stack) -> None:
    since = time.time()
    body = body_of(Case("POST", "", "", "schedule"), stack)
    answer = stack.call("POST", "/v4/schedules/preview?count=1", body)
    assert answer.status_code == 200, answer.text
    assert [r for r in http_records(stack, since) if r["route"] == "/v4/schedules/preview"] == []


def test_a_refused_call_is_recorded_with_its_status(stack: Stack) -> None:
    since = time.time()
    answer = stack.call("POST", "/v4/keyvalues/audited", {"key": "", "value": "v"})
    assert answer.status_code == 400
    records = [r for r in http_records(stack, since) if r["route"] == "/v4/keyvalues/{namespace}"]
    assert [r["status"] for r in records] == [400]


def test_no_secret_reaches_anything_the_service_wrote(stack: Stack) -> None:
    wrong = stack.secrets["api key"][:-6] + "xxxxxx"
    requests.get(f"{stack.url}/v4/keyvaluesnamespaces", headers={"X-Api-Key": wrong}, timeout=5)
    requests.get(
        f"{stack.url}/v4/keyvaluesnamespaces",
        headers={"Authorization": f"Bearer {stack.secrets['api key']}x"},
        timeout=5,
    )
    for body in (
        {"channel": "#ops", "from_user": "butler", "msg": "secret check"},
        {"channel": 3},
    ):
        stack.call("PUT", "/v4/slackpostmessage", body)
    stack.call("POST", "/v4/newrelic/metric", {"name": "m", "value": 1, "type": "gauge"})
    stack.call("PUT", "/v4/mqttpublishmessage", {"topic": "butler/secret", "message": "x"})
    answers = [
        requests.get(f"{stack.url}/documentation/json", timeout=TIMEOUT).text,
        stack.call("GET", "/v4/audit?limit=1000").text,
        stack.call("PUT", "/v4/slackpostmessage", {"channel": ""}).text,
    ]
    stack.process.send_signal(signal.SIGTERM)
    stack.process.wait(timeout=20)
    written = [stack.output.read_bytes(), *(a.encode() for a in answers)]
    for path in stack.workdir.rglob("*"):
        if path.is_file() and path != stack.config_file and "broker" not in path.parts:
            written.append(path.read_bytes())
    assert (stack.workdir / "audit.jsonl").stat().st_size > 0
    assert b"Authentication failed" in stack.output.read_bytes()
    for name, secret in stack.secrets.items():
        leaks = [i for i, blob in enumerate(written) if secret.encode() in blob]
        assert not leaks, f"the {name} was written by the service"


def test_an_answered_call_keeps_its_record_through_kill_9(stack: Stack) -> None:
    """Runs last: the service is started again on the same files, answers, and is killed."""
    if stack.process.poll() is None:
        stack.process.terminate()
        stack.process.wait(timeout=20)
    with (stack.workdir / "second-run.txt").open("wb") as sink:
        process = subprocess.Popen(
            [str(BUTLER), "-c", str(stack.config_file)], cwd=stack.workdir, stdout=sink,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_until_answering(f"{stack.url}/v4/butlerping", process)
        answer = stack.call("POST", "/v4/keyvalues/durable", {"key": "k9", "value": "v"})
        assert answer.status_code == 201
    finally:
        process.kill()
        process.wait(timeout=10)
    store = AuditStore(stack.workdir / "butler-audit.sqlite")
    try:
        records, _ = store.query(AuditFilter(route="/v4/keyvalues/{namespace}"), 1000)
    finally:
        store.close()
    assert [r.resources for r in records if r.resources.get("namespace") == "durable"] == [
        {"namespace": "durable", "key": "k9"}
    ]
