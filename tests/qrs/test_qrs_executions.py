"""The simulator's execution model over real sockets: queue, states, shapes, logs, faults."""

from __future__ import annotations

import threading

import pytest
import requests

from butler.testing.qrs_simulator import ManualClock, QrsSimulator
from tests.qrs.conftest import Qrs

APP1 = "e3b27f50-b1c0-4879-88fc-c7cdd9c1cf3e"
FAILING = "2d4e6f80-1a2b-4c3d-8e9f-a0b1c2d3e4f5"
EXTERNAL = "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d"


@pytest.fixture
def clock(qrs_simulator: QrsSimulator) -> ManualClock:
    """A clock the test moves by hand; the fixture's reset restores the real one."""
    manual = ManualClock(1_700_000_000.0)
    qrs_simulator.set_clock(manual)
    return manual


def _slow_tasks(sim: QrsSimulator, count: int, seconds: float) -> list[str]:
    return [
        sim.add_task(
            {
                "id": f"00000000-0000-4000-8000-{index:012d}",
                "name": f"Slow {index}",
                "durationSeconds": seconds,
            }
        )
        for index in range(count)
    ]


def _start(qrs: Qrs, task_id: str) -> str:
    response = qrs.call("POST", f"/qrs/task/{task_id}/start/synchronous")
    assert response.status_code == 201
    return str(response.json()["value"])


def _results(qrs: Qrs, session_ids: list[str]) -> dict[str, dict]:
    expr = " or ".join(f"executionID eq {sid}" for sid in session_ids)
    response = qrs.call("GET", "/qrs/executionresult/full", params={"filter": expr})
    assert response.status_code == 200
    return {item["executionID"]: item for item in response.json()}


def test_queue_limits_concurrent_reloads(
    qrs: Qrs, qrs_simulator: QrsSimulator, clock: ManualClock
) -> None:
    qrs_simulator.set_max_concurrent_reloads(2)
    tasks = _slow_tasks(qrs_simulator, 3, 10.0)
    sessions = [_start(qrs, task) for task in tasks]
    statuses = {sid: r["status"] for sid, r in _results(qrs, sessions).items()}
    assert [statuses[sid] for sid in sessions] == [2, 2, 3]  # Started, Started, Queued
    clock.advance(10.0)  # the first two finish at once; the third starts in their slot
    results = _results(qrs, sessions)
    assert [results[sid]["status"] for sid in sessions] == [7, 7, 2]
    assert results[sessions[2]]["startTime"] == results[sessions[0]]["stopTime"]
    clock.advance(10.0)
    third = _results(qrs, sessions)[sessions[2]]
    assert third["status"] == 7
    assert third["duration"] == 10_000
    messages = [d["message"] for d in third["details"]]
    assert messages[1:3] == [
        "Changing task state from Triggered to Queued",
        "Changing task state from Queued to Started",
    ]


def test_default_limit_is_four(qrs: Qrs, qrs_simulator: QrsSimulator, clock: ManualClock) -> None:
    sessions = [_start(qrs, task) for task in _slow_tasks(qrs_simulator, 5, 1.0)]
    results = _results(qrs, sessions)
    assert [results[sid]["status"] for sid in sessions] == [2, 2, 2, 2, 3]


def test_start_delay_shows_triggered(
    qrs: Qrs, qrs_simulator: QrsSimulator, clock: ManualClock
) -> None:
    qrs_simulator.set_start_delay(1.0)
    (task,) = _slow_tasks(qrs_simulator, 1, 5.0)
    session = _start(qrs, task)
    assert _results(qrs, [session])[session]["status"] == 1
    assert (
        qrs.call("GET", f"/qrs/executionsession/{session}").json()["executionResult"]["status"] == 1
    )
    clock.advance(1.0)
    assert _results(qrs, [session])[session]["status"] == 2


def test_session_lives_while_unfinished_and_lists_filter(
    qrs: Qrs, qrs_simulator: QrsSimulator, clock: ManualClock
) -> None:
    qrs_simulator.set_max_concurrent_reloads(1)
    first, second = _slow_tasks(qrs_simulator, 2, 3.0)
    sessions = [_start(qrs, first), _start(qrs, second)]
    listed = qrs.call("GET", "/qrs/executionsession").json()
    assert sorted(item["id"] for item in listed) == sorted(sessions)
    assert "schemaPath" not in listed[0]  # condensed
    full = qrs.call(
        "GET", "/qrs/executionsession/full", params={"filter": f"reloadTask.id eq {second}"}
    ).json()
    assert [(s["id"], s["executionResult"]["status"]) for s in full] == [(sessions[1], 3)]
    assert full[0]["schemaPath"] == "ExecutionSession"
    clock.advance(3.0)
    assert qrs.call("GET", f"/qrs/executionsession/{sessions[0]}").status_code == 404
    assert [s["id"] for s in qrs.call("GET", "/qrs/executionsession").json()] == [sessions[1]]


def test_result_shapes_condensed_full_and_by_id(
    qrs: Qrs, qrs_simulator: QrsSimulator, clock: ManualClock
) -> None:
    session = _start(qrs, APP1)
    (condensed,) = qrs.call(
        "GET", "/qrs/executionresult", params={"filter": f"executionID eq {session}"}
    ).json()
    assert "executionID" not in condensed and "taskID" not in condensed
    by_id = qrs.call("GET", f"/qrs/executionresult/{condensed['id']}")
    assert by_id.status_code == 200
    full = by_id.json()
    assert full["executionID"] == session and full["taskID"] == APP1
    assert full["status"] == 7 and full["schemaPath"] == "ExecutionResult"
    assert full["startTime"] == full["stopTime"] == "2023-11-14T22:13:20.000Z"
    assert qrs.call("GET", f"/qrs/executionresult/{session}").status_code == 404


def test_set_execution_changes_later_starts_only(
    qrs: Qrs, qrs_simulator: QrsSimulator, clock: ManualClock
) -> None:
    (task,) = _slow_tasks(qrs_simulator, 1, 2.0)
    before = _start(qrs, task)
    qrs_simulator.set_execution(task, duration=5.0, outcome="fail")
    clock.advance(1.0)
    after = _start(qrs, task)
    clock.advance(4.0)
    results = _results(qrs, [before, after])
    assert (results[before]["status"], results[before]["duration"]) == (7, 2000)
    assert (results[after]["status"], results[after]["duration"]) == (2, 4000)
    clock.advance(1.0)
    assert _results(qrs, [after])[after]["status"] == 8
    with pytest.raises(ValueError):
        qrs_simulator.set_execution(task, outcome="maybe")


def test_failed_reload_script_log_through_both_qrs_apis(
    qrs: Qrs, qrs_simulator: QrsSimulator
) -> None:
    session = _start(qrs, FAILING)
    result = _results(qrs, [session])[session]
    assert result["status"] == 8 and result["scriptLogAvailable"] is True
    assert result["details"][-1]["detailsType"] == 0  # Error
    old = qrs.call(
        "GET",
        f"/qrs/reloadtask/{FAILING}/scriptlog",
        params={"fileReferenceId": result["fileReferenceID"]},
    )
    new = qrs.call(
        "GET",
        f"/qrs/ReloadTask/{FAILING}/scriptlogfile",
        params={"executionResultId": result["id"]},
    )
    assert old.status_code == new.status_code == 200
    text_old = qrs.call("GET", f"/qrs/download/reloadtask/{old.json()['value']}/scriptlog.txt")
    text_new = qrs.call(
        "GET", f"/qrs/download/reloadtask/{new.json()['value']}/Reload%20task%20of%20failing.log"
    )
    assert text_old.text == text_new.text
    lines = text_old.text.splitlines()
    assert len(lines) > 50 and lines[-2].endswith("Execution Failed")
    assert len(text_old.content) == result["scriptLogSize"]
    # a reference serves one download, as QRS's do
    again = qrs.call("GET", f"/qrs/download/reloadtask/{old.json()['value']}/scriptlog.txt")
    assert again.status_code == 404


def test_no_script_log_while_running_or_for_external_tasks(
    qrs: Qrs, qrs_simulator: QrsSimulator, clock: ManualClock
) -> None:
    (task,) = _slow_tasks(qrs_simulator, 1, 5.0)
    result = _results(qrs, [_start(qrs, task)]).popitem()[1]
    assert result["scriptLogAvailable"] is False
    response = qrs.call(
        "GET", f"/qrs/reloadtask/{task}/scriptlogfile", params={"executionResultId": result["id"]}
    )
    assert response.status_code == 404
    external = _results(qrs, [_start(qrs, EXTERNAL)]).popitem()[1]
    assert external["status"] == 7 and external["fileReferenceID"].startswith("00000000")


def test_start_many_and_by_id_answer_no_content(qrs: Qrs, qrs_simulator: QrsSimulator) -> None:
    """As QRS: only the synchronous starts return the session id."""
    many = qrs.call("POST", "/qrs/task/start/many", body=[APP1, FAILING])
    single = qrs.call("POST", f"/qrs/task/{APP1}/start")
    assert (many.status_code, many.content, single.status_code) == (204, b"", 204)
    sessions = [start.session_id for start in qrs_simulator.starts()]
    assert len(_results(qrs, sessions)) == 3


def test_reset_forgets_executions_and_queue_settings(
    qrs: Qrs, qrs_simulator: QrsSimulator, clock: ManualClock
) -> None:
    qrs_simulator.set_max_concurrent_reloads(1)
    session = _start(qrs, APP1)
    qrs_simulator.reset()
    assert qrs.call("GET", "/qrs/executionresult").json() == []
    assert qrs.call("GET", f"/qrs/executionsession/{session}").status_code == 404
    sessions = [_start(qrs, task) for task in _slow_tasks(qrs_simulator, 4, 60.0)]
    assert {r["status"] for r in _results(qrs, sessions).values()} == {2}  # limit back to 4


def test_hung_executionresult_query_and_request_count(
    qrs: Qrs, qrs_simulator: QrsSimulator
) -> None:
    qrs_simulator.add_fault("/qrs/executionresult", delay=30.0, times=1)
    outcome: dict[str, BaseException] = {}

    def poll() -> None:
        try:
            qrs.call("GET", "/qrs/executionresult", timeout=10.0)
        except requests.RequestException as exc:
            outcome["error"] = exc

    poller = threading.Thread(target=poll)
    poller.start()
    assert qrs_simulator.wait_for_delayed(1) == 1
    qrs_simulator.reset()  # cuts the hung query off: its connection drops, nothing recorded
    poller.join(timeout=5.0)
    assert not poller.is_alive() and "error" in outcome
    assert qrs_simulator.request_count == 0
    qrs_simulator.add_fault("/qrs/executionsession", status=503, times=1)
    assert qrs.call("GET", "/qrs/executionsession").status_code == 503
    assert qrs.call("GET", "/qrs/executionsession").status_code == 200
    assert qrs_simulator.request_count == 2


def test_demo_catalogue_has_slow_runs_and_one_that_fails(
    qrs: Qrs, qrs_simulator: QrsSimulator, clock: ManualClock
) -> None:
    demo = qrs_simulator.task_ids("Runs demo")
    assert len(demo) == 5
    assert qrs.call("POST", "/qrs/task/start/many", body=demo).status_code == 204
    sessions = [start.session_id for start in qrs_simulator.starts()]
    assert sorted(r["status"] for r in _results(qrs, sessions).values()) == [2, 2, 2, 2, 3]
    clock.advance(60.0)
    assert sorted(r["status"] for r in _results(qrs, sessions).values()) == [7, 7, 7, 7, 8]
