"""`butler demo` as a newcomer runs it: a real process, the seed transcripts against it."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from butler.testing.processes import free_port, wait_until_answering

APP1 = "e3b27f50-b1c0-4879-88fc-c7cdd9c1cf3e"
APP2 = "7552d9fc-d1bb-4975-9a38-18357de531ea"
APP3 = "fb0f317d-da91-4b86-aafa-0174ae1e8c8f"
SEED_KEYS = ("tasksId", "tasksTag", "tasksTagDenied", "tasksCP", "tasksCPDenied")
BUTLER = str(Path(sys.executable).parent / "butler")


def test_demo_smoke_mode_starts_a_task_and_exits_cleanly():
    result = subprocess.run(
        [BUTLER, "demo", "--port", "0", "--exit-after-ready"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Self-check: HTTP 200, task started and finished: True" in result.stdout
    assert "curl -X PUT http://127.0.0.1:" in result.stdout


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    port = free_port()
    workdir = tmp_path_factory.mktemp("demo")
    log = workdir / "demo.log"
    with log.open("w", encoding="utf-8") as output:
        process = subprocess.Popen(
            [BUTLER, "demo", "--port", str(port), "--workdir", str(workdir)],
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(f"{url}/v4/butlerping", process, timeout=30)
    except RuntimeError as exc:
        process.kill()
        process.wait(10)
        pytest.fail(f"demo did not start ({exc}): {log.read_text()[-2000:]}")
    demo_logs[url] = log
    yield url
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)
    assert process.returncode == 0


demo_logs: dict[str, Path] = {}
"""The output file of each running demo, by its URL."""


def logged(url: str, text: str, timeout: float = 10) -> str:
    """The demo's output once ``text`` appears in it (poll with a deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        output = demo_logs[url].read_text(encoding="utf-8")
        if text in output or time.monotonic() > deadline:
            return output
        time.sleep(0.05)


def seed_part(response):
    assert response.status_code == 200
    body = response.json()
    return {key: body[key] for key in SEED_KEYS}


def ids_body(*ids):
    return [{"type": "starttaskid", "payload": {"taskId": task_id}} for task_id in ids]


def test_seed_000_transcripts_against_the_demo(demo):
    empty = {"tasksTag": [], "tasksTagDenied": [], "tasksCP": [], "tasksCPDenied": []}
    one = requests.put(f"{demo}/v4/reloadtask/{APP1}/start", json=[], timeout=10)
    assert seed_part(one) == {
        "tasksId": {
            "started": [{"taskId": APP1, "taskName": "Reload task of App1"}],
            "invalid": [],
            "denied": [],
        },
        **empty,
    }
    invalid = requests.put(f"{demo}/v4/reloadtask/abc123/start", json=[], timeout=10)
    assert seed_part(invalid) == {
        "tasksId": {"started": [], "invalid": [{"taskId": "abc123"}], "denied": []},
        **empty,
    }
    two = requests.put(f"{demo}/v4/reloadtask/-/start", json=ids_body(APP2, APP3), timeout=10)
    assert seed_part(two) == {
        "tasksId": {
            "started": [
                {"taskId": APP2, "taskName": "Reload task of App2"},
                {"taskId": APP3, "taskName": "Reload task of App3"},
            ],
            "invalid": [],
            "denied": [],
        },
        **empty,
    }
    short = "fb0f317d-da91-4b86-aafa-0174ae1e8c8"
    must_exist = requests.put(
        f"{demo}/v4/reloadtask/{APP1}/start?allTaskIdsMustExist=true",
        json=ids_body(APP2, short),
        timeout=10,
    )
    assert seed_part(must_exist) == {
        "tasksId": {
            "started": [],
            "invalid": [{"taskId": short}],
            "denied": [{"taskId": APP1}, {"taskId": APP2}],
        },
        **empty,
    }


def test_seed_004_transcript_against_the_demo(demo):
    listed = requests.get(f"{demo}/v4/schedules", timeout=10).json()
    assert [s["id"] for s in listed] == ["task-1", "task-2", "Manually-added-schedule-1"]
    single = requests.get(
        f"{demo}/v4/schedules", params={"id": "Manually-added-schedule-1"}, timeout=10
    ).json()
    assert single["cronSchedule"] == "0-30/5 6-18 * * 1-5"
    assert single["timezone"] == "Europe/Paris"
    created = requests.post(
        f"{demo}/v4/schedules",
        json={
            "timezone": "Europe/Stockholm",
            "tags": ["tag 1", "abc 123 åäö"],
            "qlikSenseTaskId": "0fe447a9-ba1f-44a9-ac23-68c3a1d88d8b",
            "name": "Every 5 sec",
            "cronSchedule": "*/5 * * * * *",
            "startupState": "started",
        },
        timeout=10,
    )
    assert created.status_code == 201
    new = created.json()
    assert new["lastKnownState"] == "started" and new["id"] and new["created"]
    stopped = requests.put(f"{demo}/v4/schedules/{new['id']}/stop", timeout=10).json()
    assert [s["lastKnownState"] for s in stopped] == ["stopped"]
    again = requests.get(f"{demo}/v4/schedules", params={"id": new["id"]}, timeout=10).json()
    assert again["lastKnownState"] == "stopped"
    started = requests.put(f"{demo}/v4/schedules/{new['id']}/start", timeout=10).json()
    assert [s["lastKnownState"] for s in started] == ["started"]
    assert requests.delete(f"{demo}/v4/schedules/{new['id']}", timeout=10).status_code == 204


def test_slack_and_new_relic_reach_the_demo_receiver_and_are_logged(demo):
    slack = requests.put(
        f"{demo}/v4/slackpostmessage",
        json={"channel": "#reload", "from_user": "Butler", "msg": "Reload done in the demo"},
        timeout=10,
    )
    event = requests.post(
        f"{demo}/v4/newrelic/event",
        json={"eventType": "demo-event", "attributes": [{"name": "env", "value": "demo"}]},
        timeout=10,
    )
    assert slack.status_code == 201, slack.text
    assert event.status_code == 202, event.text
    output = logged(demo, "demo-event")
    assert "Demo receiver got POST /slack/" in output
    assert "Reload done in the demo" in output
    assert "Demo receiver got POST /newrelic/" in output and "demo-event" in output
    assert "demo-key" not in output


def test_mqtt_is_on_in_the_demo_only_when_a_broker_answers(tmp_path):
    from butler.testing.demo import broker_answers, demo_config

    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        assert broker_answers(port) is True
    assert broker_answers(free_port()) is False
    assert demo_config(tmp_path, 0, 1, 2, mqtt_broker=True)["mqttConfig"]["enable"] is True
    assert demo_config(tmp_path, 0, 1, 2)["mqttConfig"]["enable"] is False
