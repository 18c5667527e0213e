"""Start-and-wait over real sockets: one id, a 20-task tag, failures, queues, timeouts."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import requests

from butler.runs.model import parse_iso
from tests.runs.conftest import add_tasks, poll_until, start, tag_body

APP1 = "e3b27f50-b1c0-4879-88fc-c7cdd9c1cf3e"


def test_wait_on_one_task_id_answers_with_its_final_run(runs_butler, qrs_simulator):
    qrs_simulator.set_execution(APP1, duration=0.3)
    url, _ = runs_butler()
    answer = start(url, task=APP1, wait="true").json()
    assert answer["outcome"] == "success"
    assert answer["totalTasksStarted"] == 1
    (run,) = answer["runs"]
    assert run["taskId"] == APP1
    assert run["taskName"] == "Reload task of App1"
    assert run["kind"] == "task"
    assert run["trigger"] == "rest"
    assert run["caller"] == "127.0.0.1"
    assert run["requestId"] == answer["requestId"]
    assert run["status"] == "FinishedSuccess"
    assert run["executionId"]
    started, finished = parse_iso(run["startedAt"]), parse_iso(run["finishedAt"])
    assert 0.25 <= finished - started <= 1.0
    assert run["durationMs"] >= 250
    assert run["createdAt"].endswith("+00:00")
    assert parse_iso(run["createdAt"]) <= started + 0.05


def test_wait_on_a_20_task_tag_follows_every_run(runs_butler, qrs_simulator):
    ids = add_tasks(qrs_simulator, 20, "twenty", duration=0.2)
    qrs_simulator.set_max_concurrent_reloads(20)
    url, _ = runs_butler()
    answer = start(url, tag_body("twenty"), wait="TRUE").json()
    assert answer["outcome"] == "success"
    assert sorted(run["taskId"] for run in answer["runs"]) == sorted(ids)
    assert {run["status"] for run in answer["runs"]} == {"FinishedSuccess"}
    executions = {run["executionId"] for run in answer["runs"]}
    assert len(executions) == 20 and None not in executions
    assert len({run["requestId"] for run in answer["runs"]}) == 1


def test_a_mix_of_queued_and_failing_tasks_gives_failure_and_script_log_tails(
    runs_butler, qrs_simulator
):
    good = add_tasks(qrs_simulator, 4, "mix", duration=0.3)
    bad = add_tasks(qrs_simulator, 2, "mix", duration=0.3, outcome="fail")
    qrs_simulator.set_max_concurrent_reloads(2)
    url, _ = runs_butler()
    first = start(url, tag_body("mix")).json()
    assert {run["status"] for run in first["runs"]} == {"Triggered"}

    def seen_queued():
        runs = requests.get(f"{url}/v4/runs", params={"requestId": first["requestId"]}).json()
        return "Queued" in {run["status"] for run in runs["runs"]}

    assert poll_until(seen_queued), "no run was ever reported Queued"
    replay = start(url, tag_body("mix"), wait="true").json()
    assert replay["outcome"] == "failure"
    by_task = {run["taskId"]: run for run in replay["runs"]}
    assert {by_task[t]["status"] for t in good} == {"FinishedSuccess"}
    for task_id in bad:
        run = by_task[task_id]
        assert run["status"] == "FinishedFail"
        tail = run["scriptLogTail"].splitlines()
        assert len(tail) == 50, "the simulated log is longer: the tail is cut to 50 lines"
        assert tail[-1].endswith("Execution finished.")
        assert tail[-2].endswith("Execution Failed")
    assert all(by_task[t]["scriptLogTail"] is None for t in good)


def test_a_wait_that_times_out_says_so_and_the_run_keeps_being_tracked(runs_butler, qrs_simulator):
    add_tasks(qrs_simulator, 1, "slow", duration=1.5)
    url, _ = runs_butler()
    began = time.monotonic()
    answer = start(url, tag_body("slow"), wait="true", timeout="0.3").json()
    assert time.monotonic() - began < 1.4
    assert answer["outcome"] == "timeout"
    (run,) = answer["runs"]
    assert run["status"] in ("Triggered", "Queued", "Started")

    def final():
        body = requests.get(f"{url}/v4/runs/{run['runId']}", timeout=5).json()
        return body if body["status"] == "FinishedSuccess" else None

    assert poll_until(final, timeout=10)


def test_timeout_beyond_the_configured_maximum_is_refused(runs_butler, qrs_simulator):
    url, _ = runs_butler({"runs": {"maxWaitSeconds": 60}})
    for timeout in ("61", "-1", "soon", "NaN", "inf"):
        response = start(url, task=APP1, wait="true", timeout=timeout)
        assert response.status_code == 400, timeout
        assert "timeout" in response.json()["message"]
    assert qrs_simulator.starts() == []


def test_dry_run_starts_nothing_and_records_no_run(runs_butler, qrs_simulator):
    add_tasks(qrs_simulator, 3, "dry")
    url, _ = runs_butler()
    qrs_simulator.reset_log()
    answer = start(url, tag_body("dry"), dryRun="true", wait="true").json()
    assert len(answer["tasksWouldStart"]) == 3
    assert answer["runs"] == [] and "outcome" not in answer
    assert qrs_simulator.starts() == []
    assert all(record.method == "GET" for record in qrs_simulator.requests())
    assert requests.get(f"{url}/v4/runs", timeout=5).json() == {"runs": [], "nextCursor": None}


def test_a_start_without_wait_answers_at_once_and_its_run_finishes_later(
    runs_butler, qrs_simulator
):
    qrs_simulator.set_execution(APP1, duration=0.2)
    url, _ = runs_butler()
    answer = start(url, task=APP1).json()
    assert "outcome" not in answer
    (run,) = answer["runs"]
    assert run["status"] == "Triggered" and run["executionId"] is None

    def finished():
        body = requests.get(f"{url}/v4/runs/{run['runId']}", timeout=5).json()
        return body if body["status"] == "FinishedSuccess" else None

    done = poll_until(finished)
    assert done and done["executionId"] and done["requestId"] == answer["requestId"]


def test_nothing_started_is_a_failure_not_a_success(runs_butler, qrs_simulator):
    url, _ = runs_butler()
    answer = start(url, tag_body("no such tag"), wait="true").json()
    assert answer["runs"] == [] and answer["outcome"] == "failure"


def test_fifty_waiting_callers_do_not_starve_ping(runs_butler, qrs_simulator):
    add_tasks(qrs_simulator, 50, "held", duration=60)
    qrs_simulator.set_max_concurrent_reloads(50)
    url, _ = runs_butler({"restServerEndpointsEnable": {"butlerping": True}})
    with ThreadPoolExecutor(50) as pool:
        waits = [
            pool.submit(
                requests.put,
                f"{url}/v4/reloadtask/-/start",
                json=[{"type": "starttasktag", "payload": {"tag": "held"}}],
                params={"wait": "true", "timeout": "3"},
                timeout=30,
            )
            for _ in range(50)
        ]
        assert poll_until(lambda: len(qrs_simulator.starts()) >= 50 * 50, timeout=20)
        pings = [requests.get(f"{url}/v4/butlerping", timeout=5) for _ in range(10)]
        assert all(not w.done() for w in waits), "the waits ended before the pings"
        assert [p.status_code for p in pings] == [200] * 10
    outcomes = {w.result().json()["outcome"] for w in waits}
    assert outcomes == {"timeout"}
