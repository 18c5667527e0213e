"""Runs and idempotency keys survive ``kill -9`` of a real ``butler`` process.

What is acknowledged is on disk: an open run is tracked on to its final status by the
next Butler, and a retried start under the same ``Idempotency-Key`` is answered again
without starting anything.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import threading
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from butler.runs.model import FINAL_STATUSES
from butler.testing.certs import CertPaths
from butler.testing.processes import free_port, wait_until_answering
from butler.testing.qrs_simulator import QrsSimulator
from tests.fixtures.butler_process import butler_process, stop
from tests.fixtures.qrs import butler_qrs_config
from tests.runs.conftest import poll_until

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")

APP1_TASK = "e3b27f50-b1c0-4879-88fc-c7cdd9c1cf3e"
KEY_HEADER = "Idempotency-Key"
TIMEOUT = 10.0


class Site:
    """One Butler config in tmp_path (runs in ``runs.sqlite`` there), run as a process."""

    def __init__(self, tmp_path: Path, simulator: QrsSimulator, certs: CertPaths):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db = tmp_path / "runs.sqlite"
        self.config = tmp_path / "butler.yaml"
        butler = {
            "logLevel": "info",
            "restServerConfig": {
                "enable": True,
                "serverHost": "127.0.0.1",
                "serverPort": self.port,
            },
            "restServerEndpointsEnable": {"senseStartTask": True, "runs": True},
            "keyValueStore": {"persistence": "memory"},
            "runs": {"dbFile": str(self.db), "pollIntervalSeconds": 0.2},
            **butler_qrs_config(simulator, certs),
        }
        self.config.write_text(yaml.safe_dump({"Butler": butler}), encoding="utf-8")

    def run(self) -> AbstractContextManager[subprocess.Popen[str]]:
        """``with site.run() as process:`` a Butler that answers; killed at the end."""
        return butler_process("-c", str(self.config))

    def wait_answering(self, process: subprocess.Popen[str]) -> None:
        wait_until_answering(f"{self.url}/v4/runs?limit=1", process)

    def start(self, key: str, body: Any) -> requests.Response:
        return requests.put(
            f"{self.url}/v4/reloadtask/{APP1_TASK}/start",
            json=body,
            headers={KEY_HEADER: key},
            timeout=TIMEOUT,
        )

    def run_record(self, run_id: str) -> dict[str, Any]:
        response = requests.get(f"{self.url}/v4/runs/{run_id}", timeout=TIMEOUT)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


def kill_9(process: subprocess.Popen[str]) -> str:
    """SIGKILL: no shutdown code runs. Everything the process wrote, for failure messages."""
    process.send_signal(signal.SIGKILL)
    output, _ = process.communicate(timeout=TIMEOUT)
    assert process.returncode == -signal.SIGKILL
    return output


def stored(db: Path, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    """Rows straight from the SQLite file (with its WAL, as the dead process left it)."""
    connection = sqlite3.connect(db)
    try:
        return connection.execute(sql, params).fetchall()
    finally:
        connection.close()


@pytest.fixture
def site(tmp_path: Path, qrs_simulator: QrsSimulator, qrs_certs: CertPaths) -> Site:
    return Site(tmp_path, qrs_simulator, qrs_certs)


def test_an_open_run_is_tracked_to_its_end_after_kill_9(
    site: Site, qrs_simulator: QrsSimulator
) -> None:
    qrs_simulator.set_execution(APP1_TASK, duration=3)
    with site.run() as first:
        site.wait_answering(first)
        response = site.start("slow-start", [])
        assert response.status_code == 200, response.text
        answer = response.json()
        (run,) = answer["runs"]
        assert run["status"] == "Triggered" and run["taskId"] == APP1_TASK
        assert run["executionId"] is None
        output = kill_9(first)
    run_id = run["runId"]

    rows = stored(
        site.db, "SELECT status, final, request_id, task_id FROM runs WHERE run_id = ?", (run_id,)
    )
    assert len(rows) == 1, output[-2000:]
    status, final, request_id, task_id = rows[0]
    assert final == 0 and status not in FINAL_STATUSES, rows
    assert request_id == answer["requestId"] and task_id == APP1_TASK
    assert len(qrs_simulator.starts()) == 1

    with site.run() as second:
        site.wait_answering(second)

        def final() -> dict[str, Any] | None:
            record = site.run_record(run_id)
            return record if record["status"] in FINAL_STATUSES else None

        done = poll_until(final, timeout=15)
        assert done, f"run not final: {site.run_record(run_id)}"
        assert done["status"] == "FinishedSuccess", done
        assert done["executionId"]
        assert done["requestId"] == answer["requestId"]
        assert done["startedAt"] and done["finishedAt"] and done["durationMs"] >= 2500
        assert len(qrs_simulator.starts()) == 1, "the restart started the task again"
        rows = stored(site.db, "SELECT status, final FROM runs WHERE run_id = ?", (run_id,))
        assert rows == [("FinishedSuccess", 1)]
        output = stop(second)
    assert second.returncode == 0, output[-2000:]
    assert "Runs: tracking 1 open run(s) left from before the restart" in output


def test_an_idempotent_replay_survives_kill_9(site: Site, qrs_simulator: QrsSimulator) -> None:
    body = [{"type": "starttaskid", "payload": {"taskId": APP1_TASK}}]
    with site.run() as first:
        site.wait_answering(first)
        original = site.start("nightly-2026-12-01", body)
        assert original.status_code == 200, original.text
        assert "Idempotent-Replayed" not in original.headers
        kill_9(first)
    request_id = original.json()["requestId"]
    starts = len(qrs_simulator.starts())
    assert starts == 1
    keys = stored(
        site.db, "SELECT request_id, status FROM idempotency WHERE key = ?", ("nightly-2026-12-01",)
    )
    assert keys == [(request_id, 200)]

    with site.run() as second:
        site.wait_answering(second)
        replay = site.start("nightly-2026-12-01", body)
        assert replay.status_code == 200, replay.text
        assert replay.headers.get("Idempotent-Replayed") == "true"
        again = replay.json()
        assert again["requestId"] == request_id
        assert [run["runId"] for run in again["runs"]] == [
            run["runId"] for run in original.json()["runs"]
        ]

        other = site.start("nightly-2026-12-01", [*body, *body])
        assert other.status_code == 422, other.text
        assert other.json()["code"] == "IDEMPOTENCY_KEY_REUSED"
        assert "Idempotent-Replayed" not in other.headers
        assert len(qrs_simulator.starts()) == starts, "a replay or a refused reuse started a task"
        output = stop(second)
    assert second.returncode == 0, output[-2000:]


def test_a_key_whose_request_died_with_butler_does_not_stay_in_progress(
    site: Site, qrs_simulator: QrsSimulator
) -> None:
    """Killed while QRS held the start: after the restart the key answers "outcome
    unknown" (504), not "still being processed" for a request nobody processes any more, and
    the run recorded before the QRS call is tracked to what QRS really did."""
    qrs_simulator.add_fault(APP1_TASK, method="POST", delay=1.0, times=1)
    with site.run() as first:
        site.wait_answering(first)
        failures: list[BaseException] = []

        def call() -> None:
            try:
                site.start("killed-mid-start", [])
            except requests.ConnectionError as exc:
                failures.append(exc)

        caller = threading.Thread(target=call)
        caller.start()
        assert qrs_simulator.wait_for_delayed(1, TIMEOUT) == 1, "the start never reached QRS"
        kill_9(first)
        caller.join(TIMEOUT)
    assert len(failures) == 1, "the killed Butler still answered"
    keys = stored(site.db, "SELECT status FROM idempotency WHERE key = ?", ("killed-mid-start",))
    assert keys == [(None,)], "the key is claimed and was never completed"

    with site.run() as second:
        site.wait_answering(second)
        retry = site.start("killed-mid-start", [])
        starts = qrs_simulator.wait_for_starts(1, TIMEOUT)
        output = stop(second)
    assert second.returncode == 0, output[-2000:]
    assert len(starts) == 1, "the retry started the task a second time"
    assert retry.status_code == 504, retry.text
    assert retry.json()["code"] == "START_OUTCOME_UNKNOWN"
    assert stored(site.db, "SELECT task_id FROM runs", ()) == [(APP1_TASK,)]
