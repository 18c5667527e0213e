"""The app endpoints over HTTP: Butler served by waitress, talking to the Engine simulator."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest
import requests

from butler.app import create_app
from butler.engine import DUMP_KEYS, EngineClient
from butler.errors import UpstreamError
from butler.guid import is_guid
from butler.runs import Runs, RunStore
from butler.services import Services
from butler.tasks import Trigger
from butler.testing.certs import CertPaths
from butler.testing.engine_catalogue import demo_apps
from butler.testing.engine_simulator import EngineSimulator
from butler.testing.processes import free_port
from tests.fixtures.engine import engine_config, make_engine_client

SALES, FINANCE, BIG, BROKEN = (app.id for app in demo_apps())
TASK_OK = "09b3c78f-04dd-45e3-a4bf-1b074d6572fa"
TASK_FAIL = "eaf1da4f-fd44-4cea-b2de-7b67a6496ee3"
ENABLED = {"senseAppReload": True, "senseAppDump": True, "senseListApps": True}


class FakeStarter:
    """Stands in for the core's task starter; records every call."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self._calls: list[list[str]] = []
        self._changed = threading.Condition()

    def start_ids(self, task_ids: Sequence[str], trigger: Trigger) -> Mapping[str, str]:
        with self._changed:
            self._calls.append(list(task_ids))
            self._changed.notify_all()
        if self.fail:
            raise UpstreamError("QRS unreachable")
        return {task_id: "started" for task_id in task_ids}

    def wait_for_calls(self, count: int) -> list[list[str]]:
        with self._changed:
            assert self._changed.wait_for(lambda: len(self._calls) >= count, timeout=10)
            return list(self._calls)

    @property
    def calls(self) -> list[list[str]]:
        with self._changed:
            return list(self._calls)


@pytest.fixture
def starter() -> FakeStarter:
    return FakeStarter()


@pytest.fixture
def serve(
    make_config: Callable[..., Any],
    live_server: Callable[..., str],
    engine_simulator: EngineSimulator,
    engine_certs: CertPaths,
    starter: FakeStarter,
) -> Callable[..., str]:
    """Factory: Butler's base URL, with the given Engine client (default: the simulator's)."""
    clients: list[EngineClient] = []

    def factory(engine: EngineClient | str | None = "simulator", start_tasks: Any = starter) -> str:
        config = make_config(
            {
                "restServerEndpointsEnable": ENABLED,
                "configQRS": {"host": "127.0.0.1"},
                **engine_config(engine_simulator.port, engine_certs),
            }
        )
        if engine == "simulator":
            engine = make_engine_client(engine_simulator.port, engine_certs)
        if isinstance(engine, EngineClient):
            clients.append(engine)
        runs = Runs(RunStore(None), None)
        services = Services(config=config, engine=engine, task_starter=start_tasks, runs=runs)
        return live_server(create_app(config, services))

    yield factory  # type: ignore[misc]
    for client in clients:
        client.stop()


def put_reload(base: str, app_id: str, body: Any = None, **params: str) -> requests.Response:
    return requests.put(
        f"{base}/v4/app/{app_id}/reload", json=body or {}, params=params, timeout=10
    )


@pytest.mark.parametrize("path", ["/v4/apps/list", "/v4/senselistapps"])
def test_list_apps(serve: Callable[..., str], path: str) -> None:
    response = requests.get(serve() + path, timeout=10)

    assert response.status_code == 200
    assert response.json() == [{"id": app.id, "name": app.name} for app in demo_apps()]


@pytest.mark.parametrize("path", ["/v4/app/{}/dump", "/v4/senseappdump/{}"])
def test_dump_app_has_all_keys_in_order(serve: Callable[..., str], path: str) -> None:
    response = requests.get(serve() + path.format(SALES), timeout=10)

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert tuple(response.json()) == DUMP_KEYS
    assert response.json()["appId"] == SALES
    assert len(response.json()["sheets"]) == 2


def test_reload_success_starts_the_success_chain(
    serve: Callable[..., str], starter: FakeStarter, engine_simulator: EngineSimulator
) -> None:
    body = {"startQSEoWTaskOnSuccess": [TASK_OK], "startQSEoWTaskOnFailure": [TASK_FAIL]}

    response = put_reload(serve(), SALES, body)

    assert response.status_code == 201
    answer = response.json()
    assert is_guid(answer.pop("runId"))
    assert answer == {"appId": SALES}
    assert starter.wait_for_calls(1) == [[TASK_OK]]
    assert engine_simulator.saves[SALES] == 1


def test_reload_failure_starts_the_failure_chain(
    serve: Callable[..., str], starter: FakeStarter, engine_simulator: EngineSimulator
) -> None:
    body = {"startQSEoWTaskOnSuccess": [TASK_OK], "startQSEoWTaskOnFailure": [TASK_FAIL]}

    response = put_reload(serve(), FINANCE, body)

    assert response.status_code == 201
    assert starter.wait_for_calls(1) == [[TASK_FAIL]]
    assert engine_simulator.saves[FINANCE] == 0


def test_load_script_call_is_coerced(
    serve: Callable[..., str], starter: FakeStarter, engine_simulator: EngineSimulator
) -> None:
    # What ReloadSenseApp in butler_subs.qvs sends: POST + override, strings for everything.
    raw = (
        '{"partialReload":"true","reloadMode":"1",'
        f'"startQSEoWTaskOnSuccess":"{TASK_OK}","startQSEoWTaskOnFailure":[]}}'
    )
    response = requests.post(
        f"{serve()}/v4/app/{SALES}/reload",
        data=raw,
        headers={"Content-Type": "application/json", "X-HTTP-Method-Override": "PUT"},
        timeout=10,
    )

    assert response.status_code == 201
    assert response.json()["appId"] == SALES
    assert starter.wait_for_calls(1) == [[TASK_OK]]
    (reload_call,) = engine_simulator.calls_to("DoReload")
    assert reload_call.params == {"qMode": 1, "qPartial": True, "qDebug": False}


def test_reload_without_body_uses_defaults(
    serve: Callable[..., str], engine_simulator: EngineSimulator
) -> None:
    response = requests.put(f"{serve()}/v4/app/{SALES}/reload", timeout=10)

    assert response.status_code == 201
    call = engine_simulator.wait_for_call("DoReload", app_id=SALES)
    assert call.params == {"qMode": 0, "qPartial": False, "qDebug": False}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"reloadMode": "abc"}, "body/reloadMode must be number"),
        ({"reloadMode": 1.5}, "body/reloadMode must be integer"),
        ({"reloadMode": 3}, "body/reloadMode must be equal to one of the allowed values"),
        ({"partialReload": "yes"}, "body/partialReload must be boolean"),
        ({"startQSEoWTaskOnSuccess": {"id": 1}}, "body/startQSEoWTaskOnSuccess"),
    ],
)
def test_invalid_reload_body_is_rejected(
    serve: Callable[..., str], engine_simulator: EngineSimulator, body: Any, message: str
) -> None:
    response = put_reload(serve(), SALES, body)

    assert response.status_code == 400
    assert response.json()["message"].startswith(message)
    assert engine_simulator.calls == []


def test_reload_wait_true_answers_with_the_outcome(
    serve: Callable[..., str], starter: FakeStarter
) -> None:
    base = serve()
    body = {"startQSEoWTaskOnSuccess": [TASK_OK], "startQSEoWTaskOnFailure": [TASK_FAIL]}

    success = put_reload(base, SALES, body, wait="true")
    failure = put_reload(base, FINANCE, body, wait="true")

    assert success.status_code == 201
    answer = success.json()
    assert is_guid(answer.pop("runId"))
    assert answer == {
        "appId": SALES,
        "reloadResult": "success",
        "message": "App reloaded and saved",
        "tasksStarted": {TASK_OK: "started"},
    }
    assert failure.json()["reloadResult"] == "failure"
    assert failure.json()["tasksStarted"] == {TASK_FAIL: "started"}


def test_reload_wait_reports_tasks_that_could_not_be_started(
    serve: Callable[..., str], starter: FakeStarter
) -> None:
    starter.fail = True

    response = put_reload(serve(), SALES, {"startQSEoWTaskOnSuccess": [TASK_OK]}, wait="true")

    assert response.json()["reloadResult"] == "success"
    assert response.json()["tasksStarted"] == {TASK_OK: "failed"}


def test_slow_reload_does_not_block_other_calls(
    serve: Callable[..., str], starter: FakeStarter, engine_simulator: EngineSimulator
) -> None:
    base = serve()

    response = put_reload(base, BIG, {"startQSEoWTaskOnSuccess": [TASK_OK]})
    engine_simulator.wait_for_call("DoReload", app_id=BIG)
    listing = requests.get(f"{base}/v4/apps/list", timeout=10)
    dump = requests.get(f"{base}/v4/app/{SALES}/dump", timeout=10)

    assert response.status_code == 201
    assert listing.status_code == 200
    assert dump.status_code == 200
    assert starter.calls == []
    engine_simulator.release_reload(BIG)
    assert starter.wait_for_calls(1) == [[TASK_OK]]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", f"/v4/app/{SALES}/reload"),
        ("GET", f"/v4/app/{SALES}/dump"),
        ("GET", "/v4/senselistapps"),
    ],
)
def test_engine_down_is_bad_gateway(
    serve: Callable[..., str], engine_certs: CertPaths, method: str, path: str
) -> None:
    base = serve(make_engine_client(free_port(), engine_certs))

    response = requests.request(method, base + path, json={}, timeout=10)

    assert response.status_code == 502
    assert response.json()["error"] == "Bad Gateway"
    assert "unreachable" in response.json()["message"]


@pytest.mark.parametrize(
    ("method", "path"),
    [("PUT", "/v4/app/no-such-app/reload"), ("GET", "/v4/senseappdump/no-such-app")],
)
def test_unknown_app_is_not_found(serve: Callable[..., str], method: str, path: str) -> None:
    response = requests.request(method, serve() + path, json={}, timeout=10)

    assert response.status_code == 404
    assert response.json() == {
        "statusCode": 404,
        "error": "Not Found",
        "message": "App no-such-app not found",
    }


def test_engine_timeout_is_gateway_timeout(
    serve: Callable[..., str], engine_simulator: EngineSimulator, engine_certs: CertPaths
) -> None:
    engine_simulator.stall("GetDocList")
    base = serve(make_engine_client(engine_simulator.port, engine_certs, call_timeout=0.3))

    response = requests.get(f"{base}/v4/apps/list", timeout=10)

    assert response.status_code == 504
    assert "GetDocList" in response.json()["message"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", f"/v4/app/{SALES}/reload"),
        ("GET", f"/v4/app/{SALES}/dump"),
        ("GET", "/v4/apps/list"),
    ],
)
def test_without_engine_the_feature_is_unavailable(
    serve: Callable[..., str], method: str, path: str
) -> None:
    response = requests.request(method, serve(None) + path, json={}, timeout=10)

    assert response.status_code == 503
    assert "Butler.configEngine" in response.json()["message"]


def test_task_chain_without_task_starter_is_refused_up_front(
    serve: Callable[..., str], engine_simulator: EngineSimulator
) -> None:
    response = put_reload(serve(start_tasks=None), SALES, {"startQSEoWTaskOnFailure": [TASK_FAIL]})

    assert response.status_code == 503
    assert "Butler.configQRS" in response.json()["message"]
    assert engine_simulator.calls == []
