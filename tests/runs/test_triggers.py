"""Runs from every trigger (REST, MQTT, a schedule, an app-reload chain) in ``GET /v4/runs``,
the MQTT run topic, and the filters, paging and errors of the run routes."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
import requests

from butler.runs.model import iso, parse_iso
from butler.services import Services
from butler.testing.certs import CertPaths
from butler.testing.engine_simulator import EngineSimulator
from butler.testing.qrs_simulator import QrsSimulator
from tests.fixtures.engine import engine_config
from tests.fixtures.mqtt import Mosquitto, Subscriber, mosquitto, mosquitto_factory
from tests.runs.conftest import add_tasks, poll_until, start, tag_body

__all__ = ["mosquitto", "mosquitto_factory"]

APP1_TASK = "e3b27f50-b1c0-4879-88fc-c7cdd9c1cf3e"
SALES_APP = "0b1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"  # the Engine simulator's "Sales Dashboard"
START_TOPIC = "qliksense/start_task"
RUN_TOPIC = "butler/runs"
SCHEDULE_ID = "every-second"
TIMEOUT = 10.0

RunsButler = Callable[..., tuple[str, Services]]


def list_runs(url: str, **params: Any) -> list[dict[str, Any]]:
    response = requests.get(f"{url}/v4/runs", params=params, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    runs: list[dict[str, Any]] = response.json()["runs"]
    return runs


def run_ids(runs: list[dict[str, Any]]) -> set[str]:
    return {run["runId"] for run in runs}


def first_run(url: str, **params: Any) -> dict[str, Any] | None:
    """The newest run matching ``params`` once there is one and it is final (or ``None``)."""

    def final() -> dict[str, Any] | None:
        runs = list_runs(url, **params)
        return runs[0] if runs and runs[0]["status"] == "FinishedSuccess" else None

    found: dict[str, Any] | None = poll_until(final)
    return found


def mqtt_section(broker: Mosquitto, **extra: Any) -> dict[str, Any]:
    return {
        "mqttConfig": {
            "enable": True,
            "brokerHost": "127.0.0.1",
            "brokerPort": broker.port,
            "subscriptionRootTopic": "qliksense/#",
            "taskStartTopic": START_TOPIC,
            **extra,
        }
    }


def publish(broker: Mosquitto, topic: str, payload: str) -> None:
    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1).wait_for_publish(TIMEOUT)
    finally:
        client.loop_stop()
        client.disconnect()


def schedule_section(tmp_path: Path, task_id: str) -> dict[str, Any]:
    """A scheduler with one started every-second schedule of ``task_id``."""
    path = tmp_path / "schedules.yaml"
    path.write_text(
        "butlerSchedule:\n"
        f"  - id: {SCHEDULE_ID}\n"
        "    name: Every second\n"
        "    cronSchedule: '* * * * * *'\n"
        "    timezone: Europe/Stockholm\n"
        f"    qlikSenseTaskId: {task_id}\n"
        "    startupState: started\n"
        "    tags: []\n"
        "    lastKnownState: started\n",
        encoding="utf-8",
    )
    return {"scheduler": {"enable": True, "configfile": str(path)}}


@pytest.fixture
def engine(qrs_certs: CertPaths) -> Iterator[EngineSimulator]:
    """An Engine simulator with the QRS simulator's certificates (one Butler.cert for both).

    Request it before ``runs_butler`` so Butler stops before the simulator does.
    """
    with EngineSimulator(qrs_certs) as simulator:
        yield simulator


def engine_section(engine: EngineSimulator, certs: CertPaths) -> dict[str, Any]:
    return {
        "configEngine": engine_config(engine.port, certs)["configEngine"],
        "restServerEndpointsEnable": {"senseAppReload": True},
    }


@pytest.fixture
def subscriber(mosquitto: Mosquitto) -> Iterator[Subscriber]:
    sub = Subscriber(mosquitto, RUN_TOPIC)
    yield sub
    sub.stop()


# ----------------------------------------------------------------- one trigger each


def test_a_rest_run_names_the_client_address(runs_butler: RunsButler) -> None:
    url, _ = runs_butler()
    answer = start(url, task=APP1_TASK, wait="true").json()
    (listed,) = list_runs(url)
    assert listed == answer["runs"][0]
    assert listed["trigger"] == "rest"
    assert listed["caller"] == "127.0.0.1"
    assert listed["taskId"] == APP1_TASK and listed["status"] == "FinishedSuccess"


def test_an_mqtt_run_names_the_topic(
    runs_butler: RunsButler, mosquitto: Mosquitto, qrs_simulator: QrsSimulator
) -> None:
    url, services = runs_butler(mqtt_section(mosquitto))
    assert services.mqtt is not None and services.mqtt.wait_subscribed(TIMEOUT)
    publish(mosquitto, START_TOPIC, APP1_TASK)
    run = first_run(url, trigger="mqtt")
    assert run, f"no finished MQTT run; all runs: {list_runs(url)}"
    assert run["caller"] == START_TOPIC
    assert run["taskId"] == APP1_TASK and run["kind"] == "task"
    assert run["executionId"]
    assert list_runs(url, trigger="rest") == []


def test_a_schedule_run_names_the_schedule(
    runs_butler: RunsButler, qrs_simulator: QrsSimulator, tmp_path: Path
) -> None:
    (task_id,) = add_tasks(qrs_simulator, 1, "scheduled")
    url, services = runs_butler(schedule_section(tmp_path, task_id))
    run = first_run(url, trigger="schedule")
    assert services.scheduler is not None
    services.scheduler.stop_schedule(SCHEDULE_ID)
    assert run, f"no finished schedule run; all runs: {list_runs(url)}"
    assert run["caller"] == SCHEDULE_ID
    assert run["taskId"] == task_id and run["taskName"] == "scheduled task 00"
    assert {r["trigger"] for r in list_runs(url)} == {"schedule"}


def test_an_app_reload_is_a_run_and_its_chained_task_names_it(
    engine: EngineSimulator,
    runs_butler: RunsButler,
    qrs_simulator: QrsSimulator,
    qrs_certs: CertPaths,
) -> None:
    (task_id,) = add_tasks(qrs_simulator, 1, "chained")
    url, _ = runs_butler(engine_section(engine, qrs_certs))
    response = requests.put(
        f"{url}/v4/app/{SALES_APP}/reload",
        params={"wait": "true"},
        json={"startQSEoWTaskOnSuccess": [task_id]},
        timeout=TIMEOUT,
    )
    assert response.status_code == 201, response.text
    answer = response.json()
    assert answer["reloadResult"] == "success"
    assert answer["tasksStarted"] == {task_id: "started"}
    run_id = answer["runId"]

    reload_run = requests.get(f"{url}/v4/runs/{run_id}", timeout=TIMEOUT).json()
    assert reload_run["kind"] == "appReload"
    assert reload_run["appId"] == SALES_APP
    assert reload_run["status"] == "FinishedSuccess"
    assert reload_run["taskId"] is None
    assert reload_run["trigger"] == "rest" and reload_run["caller"] == "127.0.0.1"
    assert reload_run["finishedAt"] and reload_run["durationMs"] is not None

    chained = first_run(url, trigger="chain")
    assert chained, f"no finished chain run; all runs: {list_runs(url)}"
    assert chained["caller"] == run_id
    assert chained["taskId"] == task_id and chained["kind"] == "task"
    assert chained["requestId"] != reload_run["requestId"]
    listed = {r["runId"]: r for r in list_runs(url)}
    assert set(listed) == {run_id, chained["runId"]}
    assert listed[run_id]["kind"] == "appReload"


def test_the_trigger_filter_separates_runs_of_every_trigger(
    engine: EngineSimulator,
    runs_butler: RunsButler,
    mosquitto: Mosquitto,
    qrs_simulator: QrsSimulator,
    qrs_certs: CertPaths,
    tmp_path: Path,
) -> None:
    """REST, MQTT, a schedule and a chain in one Butler: one list, told apart by trigger."""
    rest_task, mqtt_task, schedule_task, chain_task = add_tasks(qrs_simulator, 4, "every")
    url, services = runs_butler(
        {
            **mqtt_section(mosquitto),
            **schedule_section(tmp_path, schedule_task),
            **engine_section(engine, qrs_certs),
        }
    )
    assert services.mqtt is not None and services.mqtt.wait_subscribed(TIMEOUT)
    start(url, task=rest_task, wait="true")
    publish(mosquitto, START_TOPIC, mqtt_task)
    reload = requests.put(
        f"{url}/v4/app/{SALES_APP}/reload",
        params={"wait": "true"},
        json={"startQSEoWTaskOnSuccess": [chain_task]},
        timeout=TIMEOUT,
    ).json()
    for trigger in ("mqtt", "schedule", "chain"):
        assert first_run(url, trigger=trigger), f"no {trigger} run: {list_runs(url)}"
    assert services.scheduler is not None
    services.scheduler.stop_schedule(SCHEDULE_ID)

    expected = {
        "rest": {(rest_task, "127.0.0.1"), (None, "127.0.0.1")},  # the task and the app reload
        "mqtt": {(mqtt_task, START_TOPIC)},
        "schedule": {(schedule_task, SCHEDULE_ID)},
        "chain": {(chain_task, reload["runId"])},
    }
    everything = list_runs(url, limit=1000)  # first: a schedule start in flight comes later
    by_trigger: set[str] = set()
    for trigger, pairs in expected.items():
        runs = list_runs(url, trigger=trigger, limit=1000)
        assert {(r["taskId"], r["caller"]) for r in runs} == pairs, trigger
        assert all(r["trigger"] == trigger for r in runs)
        by_trigger |= run_ids(runs)
    assert {r["trigger"] for r in everything} == set(expected)
    assert run_ids(everything) <= by_trigger


# ----------------------------------------------------------------- the MQTT run topic


def test_final_runs_are_published_on_the_run_topic(
    runs_butler: RunsButler,
    mosquitto: Mosquitto,
    subscriber: Subscriber,
    qrs_simulator: QrsSimulator,
) -> None:
    good, bad = add_tasks(qrs_simulator, 2, "published")
    qrs_simulator.set_execution(bad, outcome="fail")
    url, services = runs_butler(mqtt_section(mosquitto, taskRunTopic=RUN_TOPIC))
    assert services.mqtt is not None and services.mqtt.wait_connected(TIMEOUT)
    answers = {task: start(url, task=task, wait="true").json()["runs"][0] for task in (good, bad)}
    assert answers[good]["status"] == "FinishedSuccess"
    assert answers[bad]["status"] == "FinishedFail"

    published: dict[str, dict[str, Any]] = {}
    while set(published) != {good, bad}:
        message = subscriber.next_on(RUN_TOPIC)
        run = json.loads(message.payload)
        assert run["taskId"] not in published, f"published twice: {run}"
        published[run["taskId"]] = run
    for task in (good, bad):
        assert published[task] == answers[task]
    assert published[good]["status"] == "FinishedSuccess"
    assert published[bad]["status"] == "FinishedFail"
    assert published[bad]["scriptLogTail"]
    assert message.qos == 1


# ----------------------------------------------------------------- filters and paging


def make_history(url: str, sim: QrsSimulator) -> dict[str, Any]:
    """Four starts, one after the other (so each has its own createdAt): a tag of three
    good tasks, a tag of two failing ones, APP1 succeeding, then APP1 failing."""
    good = add_tasks(sim, 3, "hist-good")
    bad = add_tasks(sim, 2, "hist-bad", outcome="fail")
    history: dict[str, Any] = {"good_ids": good, "bad_ids": bad}
    history["good"] = start(url, tag_body("hist-good"), wait="true").json()
    history["bad"] = start(url, tag_body("hist-bad"), wait="true").json()
    history["app1_ok"] = start(url, task=APP1_TASK, wait="true").json()
    sim.set_execution(APP1_TASK, outcome="fail")
    history["app1_fail"] = start(url, task=APP1_TASK, wait="true").json()
    assert [history[k]["outcome"] for k in ("good", "bad", "app1_ok", "app1_fail")] == [
        "success",
        "failure",
        "success",
        "failure",
    ]
    return history


def created(answer: dict[str, Any]) -> float:
    return parse_iso(answer["runs"][0]["createdAt"])


def test_filters_narrow_the_list(runs_butler: RunsButler, qrs_simulator: QrsSimulator) -> None:
    url, _ = runs_butler()
    h = make_history(url, qrs_simulator)
    good, bad, ok, fail = (h[k]["runs"] for k in ("good", "bad", "app1_ok", "app1_fail"))
    assert len(list_runs(url)) == 7

    assert run_ids(list_runs(url, taskId=APP1_TASK)) == run_ids(ok + fail)
    assert run_ids(list_runs(url, taskId=APP1_TASK.upper())) == run_ids(ok + fail)
    for task_id in h["good_ids"]:
        (of_task,) = [run for run in good if run["taskId"] == task_id]
        assert run_ids(list_runs(url, taskId=task_id)) == {of_task["runId"]}
    assert list_runs(url, taskId="00000000-0000-0000-0000-000000000000") == []

    assert run_ids(list_runs(url, status="FinishedFail")) == run_ids(bad + fail)
    assert run_ids(list_runs(url, status="FinishedSuccess")) == run_ids(good + ok)
    assert list_runs(url, status="Triggered") == []
    assert run_ids(list_runs(url, taskId=APP1_TASK, status="FinishedFail")) == run_ids(fail)

    assert len(list_runs(url, trigger="rest")) == 7
    for other in ("mqtt", "schedule", "chain"):
        assert list_runs(url, trigger=other) == []

    request_id = h["good"]["requestId"]
    assert run_ids(list_runs(url, requestId=request_id)) == run_ids(good)
    assert run_ids(list_runs(url, requestId=request_id.upper())) == run_ids(good)
    assert run_ids(list_runs(url, requestId=h["bad"]["requestId"], status="FinishedFail")) == (
        run_ids(bad)
    )

    # createdAt is shown to the millisecond; a bound 1 ms past it lies before the next start.
    assert run_ids(list_runs(url, since=h["app1_ok"]["runs"][0]["createdAt"])) == run_ids(ok + fail)
    assert run_ids(list_runs(url, until=iso(created(h["good"]) + 0.001))) == run_ids(good)
    between = {
        "since": h["bad"]["runs"][0]["createdAt"],
        "until": iso(created(h["app1_ok"]) + 0.001),
    }
    assert run_ids(list_runs(url, **between)) == run_ids(bad + ok)
    zulu = iso(created(h["app1_fail"]))
    assert zulu is not None
    assert run_ids(list_runs(url, since=zulu.replace("+00:00", "Z"))) == run_ids(fail)
    no_offset = zulu.replace("+00:00", "")
    assert run_ids(list_runs(url, since=no_offset)) == run_ids(fail), "no offset means UTC"
    two_hours_east = iso(created(h["app1_fail"]) + 7200)
    assert two_hours_east is not None
    assert run_ids(list_runs(url, since=two_hours_east.replace("+00:00", "+02:00"))) == run_ids(
        fail
    )
    assert list_runs(url, since=iso(time.time() + 60)) == []


def test_until_a_runs_own_created_at_includes_that_run(
    runs_butler: RunsButler, qrs_simulator: QrsSimulator
) -> None:
    """``until`` is "createdAt at or before": the createdAt a run shows must include it
    (times are kept to the millisecond the API shows)."""
    url, _ = runs_butler()
    (run,) = start(url, task=APP1_TASK, wait="true").json()["runs"]
    assert run_ids(list_runs(url, since=run["createdAt"])) == {run["runId"]}
    assert run_ids(list_runs(url, until=run["createdAt"])) == {run["runId"]}


def walk(url: str, limit: int, **params: Any) -> tuple[list[dict[str, Any]], int]:
    """Every page of ``/v4/runs`` with ``limit``; the runs in page order and the page count."""
    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = {**params, "limit": limit, **({"cursor": cursor} if cursor else {})}
        response = requests.get(f"{url}/v4/runs", params=query, timeout=TIMEOUT)
        assert response.status_code == 200, response.text
        body = response.json()
        pages += 1
        assert len(body["runs"]) <= limit
        seen += body["runs"]
        cursor = body["nextCursor"]
        if cursor is None:
            return seen, pages
        assert body["runs"], "a page with a cursor must not be empty"
        assert pages < 100, "paging does not end"


def test_paging_walks_every_run_once_newest_first(
    runs_butler: RunsButler, qrs_simulator: QrsSimulator
) -> None:
    url, _ = runs_butler()
    make_history(url, qrs_simulator)
    everything = list_runs(url, limit=1000)
    assert len(everything) == 7
    keys = [(parse_iso(r["createdAt"]), r["runId"]) for r in everything]
    assert keys == sorted(keys, reverse=True), "not newest first"
    assert [r["taskId"] for r in everything[:2]] == [APP1_TASK, APP1_TASK]
    assert everything[0]["status"] == "FinishedFail", "the newest run comes first"

    for limit, pages in ((1, 7), (2, 4), (3, 3), (6, 2), (7, 1), (8, 1), (1000, 1)):
        walked, count = walk(url, limit)
        assert [r["runId"] for r in walked] == [r["runId"] for r in everything], limit
        assert count == pages, limit

    failed = list_runs(url, status="FinishedFail")
    walked, count = walk(url, 2, status="FinishedFail")
    assert [r["runId"] for r in walked] == [r["runId"] for r in failed] and count == 2
    assert len(walked) == 3


def test_paging_is_stable_while_new_runs_arrive(
    runs_butler: RunsButler, qrs_simulator: QrsSimulator
) -> None:
    """A cursor points below the page it came from: runs started meanwhile do not shift the
    walk (they are newer, so they would be on page one)."""
    url, _ = runs_butler()
    add_tasks(qrs_simulator, 4, "stable")
    first = start(url, tag_body("stable"), wait="true").json()
    body = requests.get(f"{url}/v4/runs", params={"limit": 2}, timeout=TIMEOUT).json()
    start(url, task=APP1_TASK, wait="true")
    rest = requests.get(
        f"{url}/v4/runs", params={"limit": 10, "cursor": body["nextCursor"]}, timeout=TIMEOUT
    ).json()
    walked = run_ids(body["runs"]) | run_ids(rest["runs"])
    assert walked == run_ids(first["runs"])
    assert len(body["runs"]) + len(rest["runs"]) == 4
    assert rest["nextCursor"] is None


def cursor_of(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


BAD_QUERIES: list[dict[str, str]] = [
    {"cursor": "not-a-cursor"},
    {"cursor": "!!!"},
    {"cursor": cursor_of("x")},
    {"cursor": cursor_of([1, 2])},
    {"cursor": cursor_of(["1", "run"])},
    {"cursor": cursor_of({"a": 1, "b": 2})},
    {"cursor": cursor_of([True, "run"])},
    {"since": "yesterday"},
    {"until": "2026-13-01T00:00:00Z"},
    {"limit": "0"},
    {"limit": "1001"},
    {"limit": "-5"},
    {"limit": "ten"},
    {"status": "Finished"},
    {"trigger": "cron"},
]


def test_bad_queries_answer_400_json(runs_butler: RunsButler) -> None:
    url, _ = runs_butler()
    start(url, task=APP1_TASK)  # a run to page through, so a cursor would be used
    wrong = []
    for params in BAD_QUERIES:
        response = requests.get(f"{url}/v4/runs", params=params, timeout=TIMEOUT)
        json_400 = response.status_code == 400 and response.headers["Content-Type"].startswith(
            "application/json"
        )
        body = response.json() if json_400 else {}
        if not (json_400 and body["statusCode"] == 400 and body["message"]):
            wrong.append((params, response.status_code, response.text[:200]))
    assert wrong == []


def test_a_cursor_with_a_time_that_is_no_number_is_refused(runs_butler: RunsButler) -> None:
    """``NaN`` and ``Infinity`` (which JSON decoding accepts) are no createdAt a page
    could have handed out: 400 like any forged cursor."""
    url, _ = runs_butler()
    start(url, task=APP1_TASK)
    answers = {
        name: requests.get(
            f"{url}/v4/runs", params={"cursor": cursor_of([float(name), "x"])}, timeout=TIMEOUT
        ).status_code
        for name in ("nan", "inf", "-inf")
    }
    assert answers == {"nan": 400, "inf": 400, "-inf": 400}


def test_the_limits_themselves_are_accepted(runs_butler: RunsButler) -> None:
    url, _ = runs_butler()
    for limit in ("1", "1000"):
        response = requests.get(f"{url}/v4/runs", params={"limit": limit}, timeout=TIMEOUT)
        assert response.status_code == 200, response.text
        assert response.json() == {"runs": [], "nextCursor": None}


def test_an_unknown_run_is_404_json(runs_butler: RunsButler) -> None:
    url, _ = runs_butler()
    for run_id in ("9a1f0c1e-0000-4000-8000-000000000000", "nonsense"):
        response = requests.get(f"{url}/v4/runs/{run_id}", timeout=TIMEOUT)
        assert response.status_code == 404, response.text
        assert response.headers["Content-Type"].startswith("application/json")
        assert response.json()["statusCode"] == 404


def test_one_run_is_found_by_its_id_in_any_case(runs_butler: RunsButler) -> None:
    url, _ = runs_butler()
    (run,) = start(url, task=APP1_TASK, wait="true").json()["runs"]
    for run_id in (run["runId"], run["runId"].upper(), f" {run['runId']} "):
        response = requests.get(f"{url}/v4/runs/{run_id}", timeout=TIMEOUT)
        assert response.status_code == 200, run_id
        assert response.json() == run


# ----------------------------------------------------------------- summary


def test_summary_counts_per_status_and_per_task(
    runs_butler: RunsButler, qrs_simulator: QrsSimulator
) -> None:
    url, _ = runs_butler()
    h = make_history(url, qrs_simulator)

    def summary(**params: Any) -> dict[str, Any]:
        response = requests.get(f"{url}/v4/runs/summary", params=params, timeout=TIMEOUT)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    everything = summary()
    assert everything["since"] is None
    assert everything["total"] == 7
    assert everything["byStatus"] == {"FinishedSuccess": 4, "FinishedFail": 3}
    by_task = everything["byTask"]
    assert by_task[0] == {
        "taskId": APP1_TASK,
        "taskName": "Reload task of App1",
        "total": 2,
        "byStatus": {"FinishedSuccess": 1, "FinishedFail": 1},
    }
    rest = {t["taskId"]: t for t in by_task[1:]}
    assert set(rest) == set(h["good_ids"] + h["bad_ids"])
    for task_id in h["good_ids"]:
        assert rest[task_id]["total"] == 1
        assert rest[task_id]["byStatus"] == {"FinishedSuccess": 1}
    for task_id in h["bad_ids"]:
        assert rest[task_id]["byStatus"] == {"FinishedFail": 1}
        assert rest[task_id]["taskName"].startswith("hist-bad task")
    assert [t["taskId"] for t in by_task[1:]] == sorted(rest), "ties ordered by task id"

    since = h["app1_ok"]["runs"][0]["createdAt"]
    recent = summary(since=since)
    assert recent["since"] == since
    assert recent["total"] == 2
    assert recent["byStatus"] == {"FinishedSuccess": 1, "FinishedFail": 1}
    assert [t["taskId"] for t in recent["byTask"]] == [APP1_TASK]

    later = summary(since=iso(time.time() + 60))
    assert later["total"] == 0 and later["byStatus"] == {} and later["byTask"] == []

    bad = requests.get(f"{url}/v4/runs/summary", params={"since": "soon"}, timeout=TIMEOUT)
    assert bad.status_code == 400 and bad.json()["statusCode"] == 400
