"""Idempotency-Key on the start routes: a repeat answers again and starts nothing."""

from __future__ import annotations

import requests

from butler.runs import RunStore
from tests.runs.conftest import add_tasks, tag_body

APP1 = "e3b27f50-b1c0-4879-88fc-c7cdd9c1cf3e"


def keyed(url, key, body=None, method="PUT", task="-", **query):
    return requests.request(
        method,
        f"{url}/v4/reloadtask/{task}/start",
        json=body if body is not None else [],
        params=query,
        headers={"Idempotency-Key": key},
        timeout=30,
    )


def test_a_repeat_replays_the_first_answer_and_starts_nothing(runs_butler, qrs_simulator):
    add_tasks(qrs_simulator, 3, "idem")
    url, _ = runs_butler()
    first = keyed(url, "nightly-2026-12-02", tag_body("idem"))
    assert first.status_code == 200 and "Idempotent-Replayed" not in first.headers
    assert len(qrs_simulator.starts()) == 3
    for method in ("PUT", "POST"):
        again = keyed(url, "nightly-2026-12-02", tag_body("idem"), method=method)
        assert again.status_code == 200
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.json()["requestId"] == first.json()["requestId"]
        assert [r["runId"] for r in again.json()["runs"]] == [
            r["runId"] for r in first.json()["runs"]
        ]
    assert len(qrs_simulator.starts()) == 3


def test_the_same_key_for_another_request_is_422(runs_butler, qrs_simulator):
    url, _ = runs_butler()
    assert keyed(url, "k1", task=APP1).status_code == 200
    for other in (
        {"task": "-", "body": [{"type": "starttaskid", "payload": {"taskId": APP1}}]},
        {"task": APP1, "allTaskIdsMustExist": "true"},
        {"task": APP1, "body": {}},
    ):
        task = other.pop("task")
        body = other.pop("body", None)
        response = keyed(url, "k1", body, task=task, **other)
        assert response.status_code == 422, other
        assert response.json()["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert len(qrs_simulator.starts()) == 1


def test_key_length_is_checked_before_anything_starts(runs_butler, qrs_simulator):
    url, _ = runs_butler()
    assert keyed(url, "x" * 256, task=APP1).status_code == 400
    assert keyed(url, "", task=APP1).status_code == 400
    assert qrs_simulator.starts() == []
    assert keyed(url, "x" * 255, task=APP1).status_code == 200


def test_a_request_that_started_nothing_gives_its_key_back(runs_butler, qrs_simulator):
    url, _ = runs_butler()
    qrs_simulator.add_fault("/qrs/task", status=503, method="GET")
    failed = keyed(url, "retry-me", task=APP1)
    assert failed.status_code == 502
    qrs_simulator.clear_faults()
    retried = keyed(url, "retry-me", task=APP1)
    assert retried.status_code == 200 and "Idempotent-Replayed" not in retried.headers
    assert len(qrs_simulator.starts()) == 1


def test_an_unknown_start_outcome_keeps_the_key_so_a_retry_cannot_start_twice(
    runs_butler, qrs_simulator
):
    url, _ = runs_butler({"configQRS": {"timeout": 0.5}})
    qrs_simulator.add_fault("/qrs/task/start/many", delay=1.5, method="POST")
    first = keyed(url, "maybe", task=APP1)
    assert first.status_code == 504
    qrs_simulator.clear_faults()
    again = keyed(url, "maybe", task=APP1)
    assert again.status_code == 504
    assert again.json()["code"] == "START_OUTCOME_UNKNOWN"
    assert len(qrs_simulator.starts()) <= 1


def test_a_dry_run_under_a_key_replays_as_a_dry_run(runs_butler, qrs_simulator):
    url, _ = runs_butler()
    first = keyed(url, "dry", task=APP1, dryRun="true").json()
    again = keyed(url, "dry", task=APP1, dryRun="true")
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["tasksWouldStart"] == first["tasksWouldStart"]
    assert qrs_simulator.starts() == []


def test_an_expired_key_is_taken_afresh(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    assert store.claim_key("k", "print-a", now=1000.0, expired_before=0.0) is None
    store.complete_key("k", "req-1", 200, {"requestId": "req-1"})
    kept = store.claim_key("k", "print-a", now=2000.0, expired_before=500.0)
    assert kept is not None and kept.request_id == "req-1"
    assert store.claim_key("k", "print-b", now=90000.0, expired_before=1500.0) is None
    fresh = store.claim_key("k", "print-b", now=90001.0, expired_before=1500.0)
    assert fresh is not None and fresh.fingerprint == "print-b" and fresh.status is None
    store.close()
