"""The run tracker against the QRS simulator, driven poll by poll (no tracker thread)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from butler.runs import RunFilter, Runs, RunStore
from butler.runs.service import RunSettings
from butler.runs.tracker import MATCH_WINDOW
from butler.tasks import StartOutcomeUnknown, StartRequest, TaskStarter, Trigger
from tests.fixtures.qrs import simulator_client
from tests.runs.conftest import add_tasks


@pytest.fixture
def tracked(qrs_client, tmp_path) -> Iterator[tuple[Runs, TaskStarter]]:
    runs = Runs(RunStore(tmp_path / "runs.sqlite"), qrs_client, RunSettings(clock_skew_seconds=0.5))
    starter = TaskStarter(qrs_client, runs=runs)
    yield runs, starter
    starter.close()
    runs.close()


def start_tag(starter: TaskStarter, tag: str):
    return starter.start(StartRequest(tags=[tag]), Trigger.rest("127.0.0.1"))


def test_100_open_runs_cost_one_qrs_request_per_poll(tracked, qrs_simulator):
    runs, starter = tracked
    add_tasks(qrs_simulator, 100, "hundred", duration=600)
    qrs_simulator.set_max_concurrent_reloads(100)
    result = start_tag(starter, "hundred")
    assert len(result.runs) == 100
    qrs_simulator.reset_log()
    assert runs.poll_once() == 100  # learns every execution id from one createdDate clause
    assert qrs_simulator.request_count == 1
    for _ in range(3):
        qrs_simulator.reset_log()
        runs.poll_once()
        assert qrs_simulator.request_count == 1
    (poll,) = qrs_simulator.requests()
    assert poll.path == "/qrs/executionresult/full"
    assert poll.query["filter"].count("executionID eq") == 100
    assert {run.status for run in runs.store.by_request(result.request_id)} == {"Started"}
    assert len({run.execution_id for run in runs.store.by_request(result.request_id)}) == 100


def test_starts_of_one_task_claim_its_executions_in_start_order(tracked, qrs_simulator):
    runs, starter = tracked
    (task,) = add_tasks(qrs_simulator, 1, "twice", duration=600)
    first = start_tag(starter, "twice").runs[0]
    second = start_tag(starter, "twice").runs[0]
    runs.poll_once()
    executions = [e.session_id for e in qrs_simulator.executions_of(task)]
    assert [runs.get(first.run_id).execution_id, runs.get(second.run_id).execution_id] == (
        executions
    )


def test_an_execution_qrs_forgot_makes_the_run_unknown(tracked, qrs_simulator):
    runs, starter = tracked
    add_tasks(qrs_simulator, 1, "forget", duration=600)
    (run,) = start_tag(starter, "forget").runs
    runs.poll_once()
    assert runs.get(run.run_id).execution_id
    qrs_simulator.clear_executions()
    runs.poll_once()
    gone = runs.get(run.run_id)
    assert gone.status == "Unknown" and "no longer knows" in gone.message


def test_a_start_qrs_never_shows_becomes_unknown_not_a_guess(tracked, qrs_simulator):
    runs, _ = tracked
    (task,) = add_tasks(qrs_simulator, 1, "ghost", duration=0)
    old = time.time() - MATCH_WINDOW - 5
    (run,) = runs.record_task_starts(
        "req", Trigger.rest("x"), [{"taskId": task, "taskName": "ghost"}], old
    )
    runs.poll_once()
    assert runs.get(run.run_id).status == "Unknown"


def test_qrs_down_leaves_runs_as_they_are_until_it_answers(tracked, qrs_simulator):
    runs, starter = tracked
    add_tasks(qrs_simulator, 1, "outage", duration=0.2)
    (run,) = start_tag(starter, "outage").runs
    fault = qrs_simulator.add_fault("/qrs/executionresult", status=503)
    assert runs.poll_once() == 0
    assert runs.tracking_state() is False
    assert runs.get(run.run_id).status == "Triggered"
    qrs_simulator.remove_fault(fault)
    deadline = time.monotonic() + 5
    while runs.get(run.run_id).status != "FinishedSuccess" and time.monotonic() < deadline:
        runs.poll_once()
        time.sleep(0.05)
    assert runs.get(run.run_id).status == "FinishedSuccess"
    assert runs.tracking_state() is True


def test_refused_starts_are_start_failed_runs(tracked, qrs_simulator):
    _, starter = tracked
    ok, refused = add_tasks(qrs_simulator, 2, "refuse")
    qrs_simulator.add_fault(refused, status=500, method="POST")
    result = start_tag(starter, "refuse")
    by_task = {run.task_id: run for run in result.runs}
    assert by_task[refused].status == "StartFailed"
    assert "HTTP 500" in by_task[refused].message
    assert by_task[ok].status == "Triggered"


def test_retention_drops_old_final_runs_and_keeps_open_ones(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    runs = Runs(store, None)
    now = time.time()

    def refused(request_id, tasks, created_at):
        started = runs.record_task_starts(request_id, Trigger.rest("x"), tasks, created_at)
        return runs.refused(started, {task["taskId"]: "refused" for task in tasks})

    old = refused("a", [{"taskId": "t1", "taskName": "n"}], now - 40 * 86400)
    still_open = runs.record_task_starts(
        "b", Trigger.rest("x"), [{"taskId": "t2"}], now - 40 * 86400
    )
    recent = refused("c", [{"taskId": f"t{i}"} for i in range(5)], now)
    assert store.prune(now - 30 * 86400, max_runs=100) == 1
    assert store.get(old[0].run_id) is None and store.get(still_open[0].run_id) is not None
    assert store.prune(0, max_runs=3) == 3
    left = {run.run_id for run in store.query(RunFilter(), 100)[0]}
    assert still_open[0].run_id in left and len(left) == 3
    assert len(left & {r.run_id for r in recent}) == 2
    store.close()


def test_statuses_come_from_memory_for_open_runs_and_one_query_for_the_rest(tmp_path):
    runs = Runs(RunStore(tmp_path / "runs.sqlite"), None)
    open_run, refused = runs.record_task_starts(
        "r", Trigger.schedule("s"), [{"taskId": "t1"}, {"taskId": "t2"}], time.time()
    )
    runs.refused([refused], {"t2": "refused"})
    assert runs.statuses([open_run.run_id, refused.run_id, "gone"]) == {
        open_run.run_id: "Triggered",
        refused.run_id: "StartFailed",
    }
    runs.store.close()
    assert runs.statuses([open_run.run_id]) == {open_run.run_id: "Triggered"}


def test_start_ids_with_runs_names_each_tasks_run(tracked, qrs_simulator):
    runs, starter = tracked
    ok, refused = add_tasks(qrs_simulator, 2, "with runs")
    qrs_simulator.add_fault(refused, status=500, method="POST")
    started = starter.start_ids_with_runs([ok, refused], Trigger.schedule("s", {ok: "s"}))
    assert started.outcomes[ok] == "started"
    assert started.outcomes[refused].startswith("failed: ")
    statuses = runs.statuses(started.run_ids.values())
    assert statuses == {started.run_ids[ok]: "Triggered", started.run_ids[refused]: "StartFailed"}
    assert runs.get(started.run_ids[ok]).caller == "s"


def test_a_start_qrs_answers_too_late_carries_its_runs(qrs_simulator, qrs_certs, tmp_path):
    client = simulator_client(qrs_simulator, qrs_certs, read_timeout=0.5)
    runs = Runs(RunStore(tmp_path / "runs.sqlite"), client)
    starter = TaskStarter(client, runs=runs)
    (task,) = add_tasks(qrs_simulator, 1, "too late")
    qrs_simulator.add_fault("/qrs/task/start/many", delay=1.0, times=1)
    try:
        with pytest.raises(StartOutcomeUnknown) as info:
            starter.start_ids_with_runs([task], Trigger.schedule("s"))
        (run,) = info.value.runs
        assert run.task_id == task and runs.statuses([run.run_id]) == {run.run_id: "Triggered"}
    finally:
        starter.close()
        runs.close()
        client.close()
