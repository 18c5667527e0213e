"""Task start over real HTTP, through Butler's own wiring, against the QRS simulator."""

import logging
import threading
import time

import pytest
import requests

from butler.app import create_app
from butler.lifecycle import build_services
from tests.fixtures.qrs import butler_qrs_config

APP1 = "e3b27f50-b1c0-4879-88fc-c7cdd9c1cf3e"
APP2 = "7552d9fc-d1bb-4975-9a38-18357de531ea"
APP3 = "fb0f317d-da91-4b86-aafa-0174ae1e8c8f"
SCHED = "0fe447a9-ba1f-44a9-ac23-68c3a1d88d8b"
UNKNOWN = "11111111-2222-4333-8444-555555555555"
SEED_FILTER = {
    "enable": True,
    "allowTask": {
        "taskId": [APP1, APP2, APP3],
        "tag": ["startTask1"],
        "customProperty": [{"name": "taskGroup", "value": "tasks1"}],
    },
}
ORIGINAL_KEYS = ("tasksId", "tasksTag", "tasksTagDenied", "tasksCP", "tasksCPDenied")


@pytest.fixture
def butler(make_config, live_server, qrs_simulator, qrs_certs):
    started = []

    def start(extra=None, kv=False):
        config = make_config(
            {
                **butler_qrs_config(qrs_simulator, qrs_certs),
                "restServerEndpointsEnable": {"senseStartTask": True, "keyValueStore": kv},
                "keyValueStore": {"persistence": "memory"},
                **(extra or {}),
            }
        )
        services = build_services(config)
        services.start()
        started.append(services)
        return live_server(create_app(config, services)), services

    yield start
    for services in started:
        services.stop()


def original_part(body):
    return {key: body[key] for key in ORIGINAL_KEYS}


def empty_original(**changes):
    base = {
        "tasksId": {"started": [], "invalid": [], "denied": []},
        "tasksTag": [],
        "tasksTagDenied": [],
        "tasksCP": [],
        "tasksCPDenied": [],
    }
    base.update(changes)
    return base


def start_ids_body(*ids):
    return [{"type": "starttaskid", "payload": {"taskId": task_id}} for task_id in ids]


# --- seed 000 transcripts --------------------------------------------------------------


def test_seed_single_task_by_id(butler, qrs_simulator):
    url, _ = butler({"startTaskFilter": SEED_FILTER})
    response = requests.put(f"{url}/v4/reloadtask/{APP1}/start", json=[], timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert original_part(body) == empty_original(
        tasksId={
            "started": [{"taskId": APP1, "taskName": "Reload task of App1"}],
            "invalid": [],
            "denied": [],
        }
    )
    assert body["totalTasksStarted"] == 1
    assert body["tasksStarted"] == [
        {"taskId": APP1, "taskName": "Reload task of App1", "status": "started"}
    ]
    assert [s.task_id for s in qrs_simulator.starts()] == [APP1]


def test_seed_invalid_task_id(butler, qrs_simulator):
    url, _ = butler({"startTaskFilter": SEED_FILTER})
    body = requests.put(f"{url}/v4/reloadtask/abc123/start", json=[], timeout=10).json()
    assert original_part(body) == empty_original(
        tasksId={"started": [], "invalid": [{"taskId": "abc123"}], "denied": []}
    )
    assert qrs_simulator.starts() == []


def test_seed_two_ids_in_body(butler, qrs_simulator):
    url, _ = butler({"startTaskFilter": SEED_FILTER})
    body = requests.put(
        f"{url}/v4/reloadtask/-/start", json=start_ids_body(APP2, APP3), timeout=10
    ).json()
    assert original_part(body) == empty_original(
        tasksId={
            "started": [
                {"taskId": APP2, "taskName": "Reload task of App2"},
                {"taskId": APP3, "taskName": "Reload task of App3"},
            ],
            "invalid": [],
            "denied": [],
        }
    )
    assert sorted(s.task_id for s in qrs_simulator.starts()) == sorted([APP2, APP3])


def test_seed_all_task_ids_must_exist(butler, qrs_simulator):
    url, _ = butler({"startTaskFilter": SEED_FILTER})
    short = "fb0f317d-da91-4b86-aafa-0174ae1e8c8"
    body = requests.put(
        f"{url}/v4/reloadtask/{APP1}/start?allTaskIdsMustExist=true",
        json=start_ids_body(APP2, short),
        timeout=10,
    ).json()
    assert original_part(body) == empty_original(
        tasksId={
            "started": [],
            "invalid": [{"taskId": short}],
            "denied": [{"taskId": APP1}, {"taskId": APP2}],
        }
    )
    assert qrs_simulator.starts() == []


# --- batching, de-duplication, truthfulness --------------------------------------------


def test_lookups_are_batched_and_start_is_one_call(butler, qrs_simulator):
    url, _ = butler()
    qrs_simulator.reset_log()
    body = [
        *start_ids_body(APP1, APP2, APP3),
        {"type": "starttasktag", "payload": {"tag": "Butler 5.0 demo"}},
        {
            "type": "starttaskcustomproperty",
            "payload": {"customPropertyName": "taskGroup", "customPropertyValue": "tasks2"},
        },
    ]
    result = requests.put(f"{url}/v4/reloadtask/-/start", json=body, timeout=10).json()
    requests_made = [(r.method, r.path) for r in qrs_simulator.requests()]
    id_lookups = [r for r in qrs_simulator.requests() if "id eq" in r.query.get("filter", "")]
    assert len(id_lookups) == 1
    assert requests_made.count(("POST", "/qrs/task/start/many")) == 1
    assert len(requests_made) == 4  # ids, tag, custom property, start/many
    # 4 distinct tasks, each started exactly once although reached up to three ways
    assert sorted(s.task_id for s in qrs_simulator.starts()) == sorted([APP1, APP2, APP3, SCHED])
    assert result["totalTasksStarted"] == 4
    assert {t["taskId"] for t in result["tasksTag"]} == {APP1, APP2, APP3, SCHED}
    assert {t["taskId"] for t in result["tasksCP"]} == {APP3, SCHED}


def test_duplicate_and_mixed_case_ids_start_once(butler, qrs_simulator):
    url, _ = butler()
    result = requests.put(
        f"{url}/v4/reloadtask/{APP1.upper()}/start", json=start_ids_body(APP1), timeout=10
    ).json()
    assert [s.task_id for s in qrs_simulator.starts()] == [APP1]
    assert result["tasksId"]["started"] == [{"taskId": APP1, "taskName": "Reload task of App1"}]


def test_unknown_guid_is_invalid_and_not_found(butler, qrs_simulator):
    url, _ = butler()
    result = requests.put(f"{url}/v4/reloadtask/{UNKNOWN}/start", json=[], timeout=10).json()
    assert result["tasksId"]["invalid"] == [{"taskId": UNKNOWN}]
    assert result["tasksNotFound"] == [{"taskId": UNKNOWN}]
    assert qrs_simulator.starts() == []


def test_refused_start_is_reported_failed(butler, qrs_simulator):
    url, _ = butler()
    qrs_simulator.add_fault(APP2, status=500, method="POST")
    result = requests.put(
        f"{url}/v4/reloadtask/-/start", json=start_ids_body(APP1, APP2), timeout=10
    ).json()
    assert [s.task_id for s in qrs_simulator.starts()] == [APP1]
    assert result["tasksId"]["started"] == [{"taskId": APP1, "taskName": "Reload task of App1"}]
    assert [f["taskId"] for f in result["tasksFailed"]] == [APP2]
    assert result["tasksFailed"][0]["status"] == 500
    assert result["totalTasksStarted"] == 1


def start_lines(caplog):
    return [(r.levelname, r.getMessage()) for r in caplog.records if "Task start via" in r.msg]


def test_a_start_logs_the_trigger_and_names_every_task(butler, qrs_simulator, caplog):
    caplog.set_level(logging.INFO, logger="butler.tasks")
    url, _ = butler()
    body = {"taskId": [APP1, "abc123"], "tag": ["startTask1"]}
    requests.put(f"{url}/v4/reloadtask/-/start", json=body, timeout=10)
    ((level, line),) = start_lines(caplog)
    assert level == "INFO"
    assert line.startswith("Task start via REST from 127.0.0.1: ")
    started = len(qrs_simulator.starts())
    assert f"{started} started [" in line
    for record in qrs_simulator.starts():
        assert f"'{record.task_name}' {record.task_id}" in line
    assert "1 invalid [abc123]" in line


def test_a_failed_start_warns_naming_the_task_and_why(butler, qrs_simulator, caplog):
    caplog.set_level(logging.INFO, logger="butler.tasks")
    url, _ = butler()
    qrs_simulator.add_fault(APP2, status=500, method="POST")
    requests.put(f"{url}/v4/reloadtask/-/start", json=start_ids_body(APP1, APP2), timeout=10)
    lines = start_lines(caplog)
    assert (
        "WARNING",
        f"Task start via REST from 127.0.0.1: task 'Reload task of App2' {APP2} "
        "failed: QRS refused the start (HTTP 500)",
    ) in lines
    assert lines[-1][0] == "WARNING"
    assert (
        f"1 started ['Reload task of App1' {APP1}], 1 failed ['Reload task of App2' {APP2}]"
        in lines[-1][1]
    )


# --- body forms --------------------------------------------------------------------------


def test_seed_001_object_form_and_no_id_path(butler, qrs_simulator):
    url, _ = butler()
    body = {
        "taskId": [APP1],
        "tag": ["startTask1"],
        "customProperty": [{"name": "taskGroup", "value": "tasks2"}],
    }
    result = requests.post(f"{url}/v4/reloadtask/start", json=body, timeout=10).json()
    assert result["totalTasksStarted"] == 4
    assert {t["taskId"] for t in result["tasksStarted"]} == {APP1, APP2, APP3, SCHED}
    assert result["tasksNotFound"] == []


@pytest.mark.parametrize("body", [None, {}, []])
def test_empty_bodies(butler, qrs_simulator, body):
    url, _ = butler()
    kwargs = {"json": body} if body is not None else {}
    response = requests.put(f"{url}/v4/reloadtask/{APP1}/start", timeout=10, **kwargs)
    assert response.status_code == 200
    assert response.json()["totalTasksStarted"] == 1


def test_load_script_form_post_with_override(butler, qrs_simulator):
    url, _ = butler()
    response = requests.post(
        f"{url}/v4/reloadtask/{APP1}/start?allTaskIdsMustExist=true",
        data="[]",
        headers={"X-HTTP-Method-Override": "PUT", "Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 200
    assert response.json()["totalTasksStarted"] == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([{"type": "starttasktag"}], "body/0/payload must be object"),
        ([{"type": "starttasktag", "payload": {}}], "body/0/payload/tag is required"),
        ([{"type": "bogus", "payload": {}}], "body/0/type must be equal to one of the allowed"),
        (
            [{"type": "starttaskcustomproperty", "payload": {"customPropertyName": "x"}}],
            "customPropertyValue is required",
        ),
        ("just text", "body must be array or object"),
    ],
)
def test_malformed_items_are_400(butler, qrs_simulator, body, message):
    url, _ = butler()
    response = requests.put(f"{url}/v4/reloadtask/-/start", json=body, timeout=10)
    assert response.status_code == 400
    assert message in response.json()["message"]
    assert qrs_simulator.starts() == []


def test_bad_all_task_ids_must_exist_value(butler):
    url, _ = butler()
    response = requests.put(
        f"{url}/v4/reloadtask/{APP1}/start?allTaskIdsMustExist=maybe", json=[], timeout=10
    )
    assert response.status_code == 400
    assert "allTaskIdsMustExist" in response.json()["message"]


# --- filter ------------------------------------------------------------------------------


def test_filter_denies_per_kind(butler, qrs_simulator):
    url, _ = butler({"startTaskFilter": SEED_FILTER})
    body = [
        *start_ids_body(SCHED),
        {"type": "starttasktag", "payload": {"tag": "Butler 5.0 demo"}},
        {
            "type": "starttaskcustomproperty",
            "payload": {"customPropertyName": "taskGroup", "customPropertyValue": "tasks2"},
        },
    ]
    result = requests.put(f"{url}/v4/reloadtask/-/start", json=body, timeout=10).json()
    assert result["tasksId"]["denied"] == [{"taskId": SCHED}]
    assert result["tasksTagDenied"] == [{"tag": "Butler 5.0 demo"}]
    assert result["tasksCPDenied"] == [{"name": "taskGroup", "value": "tasks2"}]
    assert qrs_simulator.starts() == []


# --- upstream failures -------------------------------------------------------------------


def test_qrs_500_during_lookup_is_502_nothing_started(butler, qrs_simulator):
    url, _ = butler()
    qrs_simulator.add_fault("/qrs/task", status=500)
    response = requests.put(
        f"{url}/v4/reloadtask/{APP1}/start",
        json=[{"type": "starttasktag", "payload": {"tag": "startTask1"}}],
        timeout=10,
    )
    assert response.status_code == 502
    assert response.json()["statusCode"] == 502
    assert qrs_simulator.starts() == []


def test_qrs_slow_is_504_and_service_keeps_serving(butler, qrs_simulator, qrs_certs):
    qrs_config = butler_qrs_config(qrs_simulator, qrs_certs)["configQRS"]
    url, _ = butler({"configQRS": {**qrs_config, "timeout": 0.5}})
    qrs_simulator.add_fault("/qrs/task", delay=1.5, times=1)
    response = requests.put(f"{url}/v4/reloadtask/{APP1}/start", json=[], timeout=10)
    assert response.status_code == 504
    assert qrs_simulator.starts() == []
    again = requests.put(f"{url}/v4/reloadtask/{APP1}/start", json=[], timeout=10)
    assert again.status_code == 200
    assert again.json()["totalTasksStarted"] == 1


def test_a_start_qrs_answers_too_late_is_reported_as_outcome_unknown(
    butler, qrs_simulator, qrs_certs
):
    qrs_config = butler_qrs_config(qrs_simulator, qrs_certs)["configQRS"]
    url, _ = butler({"configQRS": {**qrs_config, "timeout": 0.5}})
    qrs_simulator.add_fault("/qrs/task/start/many", delay=1.0, times=1)
    response = requests.put(f"{url}/v4/reloadtask/{APP1}/start", json=[], timeout=10)
    assert response.status_code == 504
    body = response.json()
    assert body["code"] == "START_OUTCOME_UNKNOWN"
    assert "may have started" in body["message"]
    assert [start.task_id for start in qrs_simulator.wait_for_starts(1)] == [APP1]


def test_qrs_down_is_502(make_config, live_server, qrs_certs, qrs_simulator):
    config_data = butler_qrs_config(qrs_simulator, qrs_certs)
    config_data["configQRS"]["port"] = 1  # nothing listens there
    config = make_config({**config_data, "restServerEndpointsEnable": {"senseStartTask": True}})
    services = build_services(config)
    url = live_server(create_app(config, services))
    response = requests.put(f"{url}/v4/reloadtask/{APP1}/start", json=[], timeout=10)
    services.stop()
    assert response.status_code == 502
    assert "QRS" in response.json()["message"] or "repository" in response.json()["message"]


def test_no_qrs_config_is_503(make_config, live_server):
    config = make_config(
        {
            "restServerEndpointsEnable": {"senseStartTask": True},
            "cert": {"clientCert": "c", "clientCertKey": "k"},
            "configQRS": {"host": "127.0.0.1"},
        }
    )
    url = live_server(create_app(config))
    response = requests.put(f"{url}/v4/reloadtask/{APP1}/start", json=[], timeout=10)
    assert response.status_code == 503


# --- key-value items ---------------------------------------------------------------------


def test_keyvalue_items_are_stored_before_start(butler, qrs_simulator):
    url, _ = butler(kv=True)
    body = [
        {
            "type": "keyvaluestore",
            "payload": {"namespace": "ns", "key": "k", "value": 42, "ttl": "60000"},
        },
        {
            "type": "keyvaluestore",
            "payload": {"namespace": "ns", "key": "s", "value": "text", "ttl": ""},
        },
    ]
    response = requests.put(f"{url}/v4/reloadtask/{APP1}/start", json=body, timeout=10)
    assert response.status_code == 200
    assert requests.get(f"{url}/v4/keyvalues/ns?key=k", timeout=5).json()["value"] == "42"
    permanent = requests.get(f"{url}/v4/keyvalues/ns?key=s", timeout=5).json()
    assert (permanent["value"], permanent["ttl"]) == ("text", 0)


def test_stuck_qrs_calls_leave_workers_for_quick_routes(butler, qrs_simulator):
    enabled = {"senseStartTask": True, "keyValueStore": True, "butlerping": True}
    url, _ = butler(
        {
            "restServerConfig": {"threads": 8, "maxWaiting": 2},
            "restServerEndpointsEnable": enabled,
        }
    )
    requests.post(f"{url}/v4/keyvalues/ns", json={"key": "k", "value": "v"}, timeout=10)
    qrs_simulator.reset_log()
    qrs_simulator.add_fault("/qrs/task", delay=60)
    results: list[requests.Response] = []

    def start() -> None:
        results.append(requests.put(f"{url}/v4/reloadtask/{APP1}/start", json=[], timeout=90))

    starters = [threading.Thread(target=start) for _ in range(10)]
    for thread in starters:
        thread.start()
    deadline = time.monotonic() + 10
    while len(results) < 8 and time.monotonic() < deadline:
        time.sleep(0.02)
    busy = list(results)
    assert len(busy) == 8
    assert {r.status_code for r in busy} == {429}
    assert busy[0].headers["retry-after"] == "1"
    assert "maxWaiting" in busy[0].json()["message"]
    for _ in range(20):
        assert requests.get(f"{url}/v4/butlerping", timeout=2).status_code == 200
        kv = requests.get(f"{url}/v4/keyvalues/ns", params={"key": "k"}, timeout=2)
        assert kv.json()["value"] == "v"
    qrs_simulator.reset()
    for thread in starters:
        thread.join(30)
    assert len(results) == 10


# --- dry run -----------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "flag"), [("PUT", "true"), ("POST", "TRUE")])
def test_a_dry_run_resolves_and_filters_but_starts_nothing(butler, qrs_simulator, method, flag):
    url, _ = butler({"startTaskFilter": SEED_FILTER}, kv=True)
    qrs_simulator.reset_log()
    body = [
        *start_ids_body(APP1, SCHED, "abc123"),
        {"type": "starttasktag", "payload": {"tag": "startTask1"}},
        {"type": "keyvaluestore", "payload": {"namespace": "dry", "key": "k", "value": "v"}},
    ]
    response = requests.request(
        method, f"{url}/v4/reloadtask/-/start", params={"dryRun": flag}, json=body, timeout=10
    )
    assert response.status_code == 200
    answer = response.json()
    tagged = sorted(qrs_simulator.task_ids("startTask1"))
    would = answer["tasksWouldStart"]
    assert sorted(t["taskId"] for t in would) == sorted({APP1, *tagged})
    assert all(t["taskName"] for t in would)
    assert answer["tasksId"] == {
        "started": [],
        "invalid": [{"taskId": "abc123"}],
        "denied": [{"taskId": SCHED}],
    }
    assert answer["tasksTag"] == [] and answer["tasksCP"] == [] and answer["tasksStarted"] == []
    assert answer["totalTasksStarted"] == 0
    assert [r.method for r in qrs_simulator.requests() if r.method != "GET"] == []
    assert qrs_simulator.starts() == []
    assert requests.get(f"{url}/v4/keyvaluesnamespaces", timeout=5).json() == []


def test_a_dry_run_applies_all_task_ids_must_exist(butler, qrs_simulator):
    url, _ = butler()
    response = requests.put(
        f"{url}/v4/reloadtask/-/start",
        params={"dryRun": "true", "allTaskIdsMustExist": "true"},
        json=start_ids_body(APP1, UNKNOWN),
        timeout=10,
    )
    answer = response.json()
    assert answer["tasksWouldStart"] == []
    assert answer["tasksId"]["denied"] == [{"taskId": APP1}]
    assert answer["tasksNotFound"] == [{"taskId": UNKNOWN}]
    assert qrs_simulator.starts() == []


def test_without_dry_run_the_answer_has_no_would_start_list(butler, qrs_simulator):
    url, _ = butler()
    answer = requests.put(f"{url}/v4/reloadtask/{APP1}/start", json=[], timeout=10).json()
    assert "tasksWouldStart" not in answer
    assert answer["totalTasksStarted"] == 1
