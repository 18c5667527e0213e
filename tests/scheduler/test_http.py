"""The scheduler REST API over real sockets: seed 004's flow and every error case."""

from __future__ import annotations

import json
import os
import shutil
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from ruamel.yaml import YAML

from butler.app import create_app
from butler.schedules import ScheduleFileError, Scheduler, ScheduleStore
from butler.services import Services
from tests.conftest import QLIK_PLACEHOLDERS
from tests.scheduler.conftest import START, TASK_A, TEMPLATE, Recorder, step
from tests.scheduler.fake_clock import FakeClock

JSON = "application/json"
ALL_SCHEDULER_KEYS = {
    "createNewSchedule": True,
    "getSchedule": True,
    "getScheduleStatusAll": True,
    "updateSchedule": True,
    "deleteSchedule": True,
    "startSchedule": True,
    "stopSchedule": True,
}
NEW = {
    "timezone": "Europe/Stockholm",
    "tags": ["tag 1", "abc 123 åäö"],
    "qlikSenseTaskId": "0fe447a9-ba1f-44a9-ac23-68c3a1d88d8b",
    "name": "Every 5 sec",
    "cronSchedule": "*/5 * * * * *",
    "startupState": "started",
}
TEMPLATE_IDS = ["task-1", "task-2", "Manually-added-schedule-1"]


@dataclass
class Api:
    url: str
    scheduler: Scheduler
    clock: FakeClock
    recorder: Recorder
    file: Path
    session: requests.Session

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.session.request(method, f"{self.url}{path}", timeout=10, **kwargs)


def serve(
    make_config: Callable[..., Any],
    live_server: Callable[..., str],
    scheduler: Scheduler | None,
    keys: dict[str, bool] | None = None,
) -> str:
    config = make_config(
        {
            **QLIK_PLACEHOLDERS,
            "scheduler": {"enable": scheduler is not None, "configfile": "schedule.yaml"},
            "restServerEndpointsEnable": {"scheduler": keys or ALL_SCHEDULER_KEYS},
        }
    )
    return live_server(create_app(config, Services(config=config, scheduler=scheduler)))


@pytest.fixture
def api(
    tmp_path: Path, make_config: Callable[..., Any], live_server: Callable[..., str]
) -> Iterator[Api]:
    path = tmp_path / "schedule.yaml"
    shutil.copyfile(TEMPLATE, path)
    clock = FakeClock(START)
    recorder = Recorder(clock)
    scheduler = Scheduler(ScheduleStore(path), recorder, clock=clock)
    scheduler.start()
    clock.settle()
    url = serve(make_config, live_server, scheduler)
    with requests.Session() as session:
        yield Api(url, scheduler, clock, recorder, path, session)
    scheduler.stop()


def assert_error(response: requests.Response, status: int, message: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith(JSON)
    body = response.json()
    assert body["statusCode"] == status
    assert message in body["message"]


def without_runtime(schedule: dict[str, Any]) -> dict[str, Any]:
    runtime = ("nextRun", "lastRun", "lastResult", "lastFire")
    return {k: v for k, v in schedule.items() if k not in runtime}


def test_seed_004_list_get_add_stop_start(api: Api) -> None:
    listed = api.call("GET", "/v4/schedules")
    assert listed.status_code == 200 and listed.headers["Content-Type"].startswith(JSON)
    schedules = listed.json()
    assert [s["id"] for s in schedules] == TEMPLATE_IDS
    first = schedules[0]
    assert without_runtime(first) == {
        "id": "task-1",
        "name": "Every 30 sec",
        "cronSchedule": "*/30 * * * * *",
        "timezone": "Europe/Stockholm",
        "qlikSenseTaskId": TASK_A,
        "startupState": "started",
        "tags": ["Sales", "abc 123 åäö", "Transform"],
        "lastKnownState": "started",
    }
    assert first["nextRun"] == "2024-01-15T12:00:30.000Z"
    assert first["lastRun"] is None and first["lastResult"] is None

    one = api.call("GET", "/v4/schedules", params={"id": "Manually-added-schedule-1"})
    assert one.status_code == 200
    assert one.json()["cronSchedule"] == "0-30/5 6-18 * * 1-5"
    assert one.json()["timezone"] == "Europe/Paris"

    created = api.call("POST", "/v4/schedules", json=NEW)
    assert created.status_code == 201 and created.headers["Content-Type"].startswith(JSON)
    body = created.json()
    assert {k: body[k] for k in NEW} == NEW
    assert body["created"] == "2024-01-15T12:00:00.000Z"
    assert body["lastKnownState"] == "started"
    new_id = body["id"]
    assert len(new_id) == 36

    stopped = api.call("PUT", f"/v4/schedules/{new_id}/stop")
    assert stopped.status_code == 200
    assert [s["lastKnownState"] for s in stopped.json()] == ["stopped"]
    got = api.call("GET", "/v4/schedules", params={"id": new_id}).json()
    assert got["lastKnownState"] == "stopped" and got["nextRun"] is None

    started = api.call("PUT", f"/v4/schedules/{new_id}/start")
    assert started.status_code == 200
    assert [s["id"] for s in started.json()] == [new_id]
    got = api.call("GET", "/v4/schedules", params={"id": new_id}).json()
    assert got["lastKnownState"] == "started"
    assert got["nextRun"] == "2024-01-15T12:00:05.000Z"

    on_disk = YAML(typ="safe", pure=True).load(api.file.read_text(encoding="utf-8"))
    assert [e["id"] for e in on_disk["butlerSchedule"]] == [*TEMPLATE_IDS, new_id]
    assert "# A six-field expression" in api.file.read_text(encoding="utf-8")


def test_fires_show_up_as_last_run_and_result(api: Api) -> None:
    api.recorder.outcomes[TASK_A] = "notFound"
    step(api.clock, api.scheduler, 30)
    got = api.call("GET", "/v4/schedules", params={"id": "task-1"}).json()
    assert got["lastRun"] == "2024-01-15T12:00:30.000Z"
    assert got["lastResult"] == "notFound"
    assert got["nextRun"] == "2024-01-15T12:01:00.000Z"


def test_fire_history_and_last_fire_over_http(api: Api) -> None:
    step(api.clock, api.scheduler, 60)
    fires = api.call("GET", "/v4/schedules/task-1/fires")
    assert fires.status_code == 200 and fires.headers["Content-Type"].startswith(JSON)
    assert [f["plannedAt"] for f in fires.json()] == [
        "2024-01-15T12:01:00.000Z",
        "2024-01-15T12:00:30.000Z",
    ]
    assert fires.json()[0]["outcome"] == "started" and fires.json()[0]["runIds"]
    limited = api.call("GET", "/v4/schedules/task-1/fires", params={"limit": 1}).json()
    assert limited == fires.json()[:1]
    got = api.call("GET", "/v4/schedules", params={"id": "task-1"}).json()
    assert got["lastFire"] == fires.json()[0]
    assert api.call("GET", "/v4/schedules/task-2/fires").json() == []
    for bad in ("0", "101", "x"):
        response = api.call("GET", "/v4/schedules/task-1/fires", params={"limit": bad})
        assert_error(response, 400, "querystring/limit")


def test_run_now_answers_the_fire_and_409_when_overlap_skips_it(api: Api) -> None:
    ran = api.call("POST", "/v4/schedules/task-2/run")
    assert ran.status_code == 200, ran.text
    fire = ran.json()
    assert fire["outcome"] == "started" and fire["runIds"] == ["run-1-0"]
    assert api.recorder.triggers[0].caller_for(TASK_A) == "manual:task-2"
    assert api.call("GET", "/v4/schedules/task-2/fires").json() == [fire]
    gate = api.recorder.gates[TASK_A] = threading.Event()
    first: list[requests.Response] = []
    worker = threading.Thread(
        target=lambda: first.append(api.call("POST", "/v4/schedules/task-2/run"))
    )
    worker.start()
    try:
        assert api.recorder.entered.wait(10)
        skipped = api.call("POST", "/v4/schedules/task-2/run")
    finally:
        gate.set()
        worker.join(10)
    assert skipped.status_code == 409, skipped.text
    assert skipped.json()["outcome"] == "skipped:overlap"
    assert skipped.json()["note"] == "the previous fire's start call is still in progress"
    assert first[0].status_code == 200


def test_update_changes_fields_and_keeps_the_rest(api: Api) -> None:
    response = api.call(
        "PUT", "/v4/schedules/task-2", json={"cronSchedule": "0 7 * * 1-5", "tags": "One"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["cronSchedule"] == "0 7 * * 1-5" and body["tags"] == ["One"]
    assert body["name"] == "Every 2 hours on top of the hour"
    assert body["nextRun"] == "2024-01-16T07:00:00.000Z"
    assert ScheduleStore(api.file).get("task-2") is not None


def test_delete_answers_204_and_the_schedule_is_gone(api: Api) -> None:
    response = api.call("DELETE", "/v4/schedules/task-2")
    assert response.status_code == 204 and response.content == b""
    assert_error(api.call("GET", "/v4/schedules", params={"id": "task-2"}), 404, "task-2")
    assert ScheduleStore(api.file).ids() == ["task-1", "Manually-added-schedule-1"]


def test_startall_and_stopall_are_not_taken_for_ids(api: Api) -> None:
    stopped = api.call("PUT", "/v4/schedules/stopall")
    assert stopped.status_code == 200
    assert [(s["id"], s["lastKnownState"]) for s in stopped.json()] == [
        (sid, "stopped") for sid in TEMPLATE_IDS
    ]
    started = api.call("PUT", "/v4/schedules/startall")
    assert started.status_code == 200
    assert {s["lastKnownState"] for s in started.json()} == {"started"}


def test_status_is_plain_text(api: Api) -> None:
    api.call("PUT", "/v4/schedules/task-2/stop")
    response = api.call("GET", "/v4/schedules/status")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    assert response.text == (
        "{\n"
        "'task-1': */30 * * * * * status: Running\n"
        "'task-2': 0 */2 * * * status: Stopped\n"
        "'Manually-added-schedule-1': 0-30/5 6-18 * * 1-5 status: Running\n"
        "}"
    )


@pytest.mark.parametrize(
    "method,path",
    [
        ("GET", "/v4/schedules?id=nope"),
        ("PUT", "/v4/schedules/nope"),
        ("DELETE", "/v4/schedules/nope"),
        ("PUT", "/v4/schedules/nope/start"),
        ("PUT", "/v4/schedules/nope/stop"),
        ("GET", "/v4/schedules/nope/fires"),
        ("POST", "/v4/schedules/nope/run"),
    ],
)
def test_unknown_ids_answer_404(api: Api, method: str, path: str) -> None:
    kwargs = {"json": {"name": "x"}} if method == "PUT" and path.count("/") == 3 else {}
    assert_error(api.call(method, path, **kwargs), 404, "Schedule ID nope not found")


@pytest.mark.parametrize(
    "change,message",
    [
        ({"cronSchedule": "61 * * * *"}, "body/cronSchedule is not a valid cron expression"),
        ({"cronSchedule": "* * *"}, "body/cronSchedule must have 5 or 6 fields"),
        ({"cronSchedule": {"x": 1}}, "body/cronSchedule must be string"),
        ({"timezone": "Europe/Atlantis"}, "body/timezone is not a known IANA time zone"),
        ({"qlikSenseTaskId": "abc"}, "body/qlikSenseTaskId must be a GUID"),
        ({"startupState": "running"}, "body/startupState must be equal to one of"),
        ({"tags": {"a": 1}}, "body/tags"),
        ({"name": {"a": 1}}, "body/name must be string"),
        ({"name": None}, "body/name"),
        ({"dst": "summer"}, "body/dst must be equal to one of the allowed values: vixie, skip"),
        ({"overlap": "never"}, "body/overlap must be equal to one of the allowed values: allow"),
        ({"overlap": None}, "body/overlap"),
    ],
)
def test_invalid_fields_answer_400_naming_the_field(
    api: Api, change: dict[str, Any], message: str
) -> None:
    assert_error(api.call("POST", "/v4/schedules", json={**NEW, **change}), 400, message)
    assert_error(api.call("PUT", "/v4/schedules/task-1", json=change), 400, message)
    assert [s["id"] for s in api.call("GET", "/v4/schedules").json()] == TEMPLATE_IDS


@pytest.mark.parametrize("field", ["name", "cronSchedule", "timezone", "qlikSenseTaskId"])
def test_missing_required_fields_answer_400(api: Api, field: str) -> None:
    body = {k: v for k, v in NEW.items() if k != field}
    assert_error(api.call("POST", "/v4/schedules", json=body), 400, f"required property '{field}'")


def test_a_body_that_is_not_an_object_answers_400(api: Api) -> None:
    assert_error(api.call("POST", "/v4/schedules", json=[NEW]), 400, "body must be object")


def test_upper_case_task_ids_are_accepted_and_started_in_lower_case(api: Api) -> None:
    body = {**NEW, "qlikSenseTaskId": TASK_A.upper(), "cronSchedule": "*/1 * * * * *"}
    created = api.call("POST", "/v4/schedules", json=body)
    assert created.status_code == 201
    step(api.clock, api.scheduler, 1)
    assert api.recorder.calls[-1][1] == [TASK_A]


def test_numeric_ids_in_a_hand_written_file_are_addressable(
    tmp_path: Path, make_config: Callable[..., Any], live_server: Callable[..., str]
) -> None:
    path = tmp_path / "schedule.yaml"
    path.write_text(
        "butlerSchedule:\n"
        "  - id: 42\n"
        "    name: Numbered\n"
        "    cronSchedule: 0 7 * * *\n"
        "    timezone: UTC\n"
        f"    qlikSenseTaskId: {TASK_A}\n"
        "    startupState: stopped\n",
        encoding="utf-8",
    )
    clock = FakeClock(START)
    scheduler = Scheduler(ScheduleStore(path), Recorder(clock), clock=clock)
    url = serve(make_config, live_server, scheduler)
    got = requests.get(f"{url}/v4/schedules", params={"id": "42"}, timeout=10)
    assert got.status_code == 200 and got.json()["id"] == "42"
    started = requests.put(f"{url}/v4/schedules/42/start", timeout=10)
    assert started.json()[0]["nextRun"] == "2024-01-16T07:00:00.000Z"


ROUTES = [
    ("GET", "/v4/schedules"),
    ("POST", "/v4/schedules"),
    ("PUT", "/v4/schedules/x"),
    ("DELETE", "/v4/schedules/x"),
    ("PUT", "/v4/schedules/x/start"),
    ("PUT", "/v4/schedules/x/stop"),
    ("PUT", "/v4/schedules/startall"),
    ("PUT", "/v4/schedules/stopall"),
    ("GET", "/v4/schedules/status"),
    ("POST", "/v4/schedules/preview"),
    ("GET", "/v4/schedules/x/fires"),
    ("POST", "/v4/schedules/x/run"),
]


def test_with_the_scheduler_disabled_every_route_answers_503(
    make_config: Callable[..., Any], live_server: Callable[..., str]
) -> None:
    url = serve(make_config, live_server, None)
    for method, path in ROUTES:
        body = NEW if (method, path) in ROUTES[1:3] or method == "POST" else None
        response = requests.request(method, f"{url}{path}", json=body, timeout=10)
        assert_error(response, 503, "Butler.scheduler.enable")


def test_routes_whose_key_is_off_are_absent(
    tmp_path: Path, make_config: Callable[..., Any], live_server: Callable[..., str]
) -> None:
    clock = FakeClock(START)
    scheduler = Scheduler(ScheduleStore(tmp_path / "s.yaml"), Recorder(clock), clock=clock)
    url = serve(make_config, live_server, scheduler, keys={"getSchedule": True})
    assert requests.get(f"{url}/v4/schedules", timeout=10).json() == []
    for method, path in ROUTES[1:]:
        response = requests.request(method, f"{url}{path}", json=NEW, timeout=10)
        assert_error(response, 404, "not found")


def test_concurrent_creates_over_http_are_all_stored(api: Api) -> None:
    ids: list[str] = []
    failures: list[int] = []

    def client() -> None:
        with requests.Session() as session:
            for _ in range(10):
                response = session.post(f"{api.url}/v4/schedules", json=NEW, timeout=30)
                if response.status_code == 201:
                    ids.append(response.json()["id"])
                else:
                    failures.append(response.status_code)

    threads = [threading.Thread(target=client) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == [] and len(set(ids)) == 60
    assert sorted(ScheduleStore(api.file).ids()) == sorted([*TEMPLATE_IDS, *ids])


def test_a_refused_update_leaves_the_schedule_as_it_was(api: Api) -> None:
    before = api.file.read_bytes()
    response = api.call("PUT", "/v4/schedules/task-1", json={"cronSchedule": "nonsense"})
    assert_error(response, 400, "body/cronSchedule")
    got = api.call("GET", "/v4/schedules", params={"id": "task-1"}).json()
    assert got["cronSchedule"] == "*/30 * * * * *"
    assert got["nextRun"] == "2024-01-15T12:00:30.000Z"
    assert api.file.read_bytes() == before


@pytest.mark.parametrize(
    "change,dropped,message",
    [
        ({"cronSchedule": "* * *"}, "timezone", "body/cronSchedule must have 5 or 6 fields"),
        ({"name": 1, "cronSchedule": "61 * * * *"}, "startupState", "body/cronSchedule is not"),
        ({"timezone": "Europe/Atlantis", "startupState": "on"}, "", "body/timezone is not"),
        ({"qlikSenseTaskId": "abc", "tags": {"a": 1}}, "", "body/qlikSenseTaskId must be"),
        ({"cronSchedule": "* * *"}, "name", "body must have required property 'name'"),
    ],
)
def test_of_several_invalid_fields_the_first_in_field_order_is_named(
    api: Api, change: dict[str, Any], dropped: str, message: str
) -> None:
    body = {k: v for k, v in {**NEW, **change}.items() if k != dropped}
    assert_error(api.call("POST", "/v4/schedules", json=body), 400, message)
    assert [s["id"] for s in api.call("GET", "/v4/schedules").json()] == TEMPLATE_IDS


def test_an_unpaired_surrogate_is_refused_and_listing_keeps_working(api: Api) -> None:
    body = json.dumps({**NEW, "name": "x"}).replace('"x"', '"bad \\ud800 name"')
    response = api.call(
        "POST", "/v4/schedules", data=body, headers={"Content-Type": "application/json"}
    )
    assert_error(response, 400, "unpaired surrogate")
    assert api.call("GET", "/v4/schedules").status_code == 200
    assert api.call("PUT", "/v4/schedules/startall").status_code == 200
    assert "\\ud800" not in api.file.read_text(encoding="utf-8")


def test_a_schedule_file_holding_a_surrogate_stops_start_up_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "schedule.yaml"
    path.write_text(
        'butlerSchedule:\n  - id: odd\n    name: "bad \\ud800 name"\n'
        "    cronSchedule: '* * * * *'\n    timezone: Europe/Stockholm\n"
        "    qlikSenseTaskId: 0fe447a9-ba1f-44a9-ac23-68c3a1d88d8b\n    startupState: started\n",
        encoding="utf-8",
    )
    with pytest.raises(ScheduleFileError) as info:
        ScheduleStore(path)
    assert "(id 'odd'): field 'name' is not valid Unicode text" in str(info.value)


@pytest.mark.skipif(not hasattr(os, "fchmod"), reason="POSIX file modes")
def test_writes_keep_the_schedule_files_mode(api: Api) -> None:
    api.file.chmod(0o640)
    assert api.call("POST", "/v4/schedules", json=NEW).status_code == 201
    assert stat.S_IMODE(api.file.stat().st_mode) == 0o640
    api.file.chmod(0o644)
    assert api.call("PUT", "/v4/schedules/stopall").status_code == 200
    assert stat.S_IMODE(api.file.stat().st_mode) == 0o644


def test_boolean_tags_are_refused(api: Api) -> None:
    response = api.call("POST", "/v4/schedules", json={**NEW, "tags": ["ok", False]})
    assert_error(response, 400, "body/tags/1 must be string")
    assert [s["id"] for s in api.call("GET", "/v4/schedules").json()] == TEMPLATE_IDS


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (
            "cronSchedule",
            "* " * 450_000,
            "body/cronSchedule must NOT have more than 200 characters",
        ),
        ("name", "n" * 501, "body/name must NOT have more than 500 characters"),
        ("timezone", "Europe/" + "x" * 60, "body/timezone must NOT have more than 64 characters"),
        ("tags", ["t"] * 101, "body/tags must NOT have more than 100 items"),
        ("tags", ["ok", "t" * 201], "body/tags must NOT have more than 200 characters"),
    ],
)
def test_stored_strings_are_limited(api: Api, field: str, value: Any, message: str) -> None:
    response = api.call("POST", "/v4/schedules", json={**NEW, field: value})
    assert_error(response, 400, message)
    changed = api.call("PUT", "/v4/schedules/task-1", json={field: value})
    assert_error(changed, 400, message)
    assert [s["id"] for s in api.call("GET", "/v4/schedules").json()] == TEMPLATE_IDS


def test_limits_at_the_edge_are_accepted(api: Api) -> None:
    body = {**NEW, "name": "n" * 500, "tags": ["t" * 200] * 100}
    assert api.call("POST", "/v4/schedules", json=body).status_code == 201


def test_a_huge_cron_in_the_file_stops_start_up(tmp_path: Path) -> None:
    path = tmp_path / "schedule.yaml"
    path.write_text(
        "butlerSchedule:\n  - id: big\n    name: x\n    cronSchedule: '" + "* " * 1000 + "'\n"
        "    timezone: Europe/Stockholm\n"
        "    qlikSenseTaskId: 0fe447a9-ba1f-44a9-ac23-68c3a1d88d8b\n    startupState: started\n",
        encoding="utf-8",
    )
    with pytest.raises(ScheduleFileError, match="field 'cronSchedule' must NOT have more than 200"):
        ScheduleStore(path)


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/v4/schedules/startall", {"PUT", "OPTIONS"}),
        ("/v4/schedules/stopall", {"PUT", "OPTIONS"}),
        ("/v4/schedules/status", {"GET", "HEAD", "OPTIONS"}),
        (f"/v4/schedules/{TEMPLATE_IDS[0]}", {"PUT", "DELETE", "OPTIONS"}),
    ],
)
def test_options_lists_only_the_paths_own_methods(api: Api, path: str, allowed: set[str]) -> None:
    response = api.call("OPTIONS", path)
    assert response.status_code == 200
    assert {m.strip() for m in response.headers["Allow"].split(",")} == allowed


@pytest.mark.parametrize("word", ["startall", "stopall", "status", "preview"])
def test_the_fixed_routes_are_not_schedule_ids(api: Api, word: str) -> None:
    before = api.file.read_bytes()
    assert_error(api.call("DELETE", f"/v4/schedules/{word}"), 404, "Route DELETE:")
    assert_error(api.call("PUT", f"/v4/schedules/{word}x", json={"name": "n"}), 404, "not found")
    assert api.file.read_bytes() == before
