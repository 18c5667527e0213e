"""``butler demo``: Butler against the bundled QRS (and Engine) simulators, ready to curl.

A newcomer gets a working service in one command: certificates are generated, the
simulators start on localhost, a config with every endpoint enabled is written next to
them, and the curl lines printed at start-up give the responses of the documentation's
examples. Nothing here is used by ``butler run``.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import socket
import tempfile
import threading
from pathlib import Path
from typing import Any

import pluggy
import requests
from ruamel.yaml import YAML

from butler.config import ConfigError, endpoint_enable_map, load_config
from butler.plugins import config_contract
from butler.runner import serve
from butler.testing.webhook_receiver import NEW_RELIC_PATH, SLACK_PATH, WebhookReceiver

log = logging.getLogger(__name__)

MQTT_PORT = 1883


def broker_answers(port: int = MQTT_PORT) -> bool:
    """Whether something listens on the local MQTT port (the demo then turns MQTT on)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


SCHEDULES = """\
# Demo schedules in the original Butler's schedule file format.
butlerSchedule:
  - id: task-1
    name: Every 30 sec
    cronSchedule: '*/30 * * * * *'
    timezone: Europe/Stockholm
    qlikSenseTaskId: 0fe447a9-ba1f-44a9-ac23-68c3a1d88d8b
    startupState: started
    tags:
      - Sales
      - abc 123 åäö
      - Transform
  - id: task-2
    name: Every 2 hours
    cronSchedule: 0 */2 * * *
    timezone: Europe/London
    qlikSenseTaskId: 0fe447a9-ba1f-44a9-ac23-68c3a1d88d8b
    startupState: started
    tags:
      - Finance
      - Extract
  - id: Manually-added-schedule-1
    name: >-
      Every 5th minute from 0 through 30 past every hour from 6 through 18 on every
      day-of-week from Monday through Friday
    cronSchedule: 0-30/5 6-18 * * 1-5
    timezone: Europe/Paris
    qlikSenseTaskId: 0fe447a9-ba1f-44a9-ac23-68c3a1d88d8b
    startupState: started
    tags:
      - finance ETL
      - weekdays
"""

RUNS_DEMO_TAG = "Runs demo"
ALLOWED_TASK_IDS = [
    "e3b27f50-b1c0-4879-88fc-c7cdd9c1cf3e",
    "7552d9fc-d1bb-4975-9a38-18357de531ea",
    "fb0f317d-da91-4b86-aafa-0174ae1e8c8f",
    "0fe447a9-ba1f-44a9-ac23-68c3a1d88d8b",
]


def demo_config(
    workdir: Path,
    port: int,
    qrs_port: int,
    engine_port: int | None,
    receiver_url: str = "http://127.0.0.1:9",
    mqtt_broker: bool = False,
) -> dict[str, Any]:
    """The ``Butler:`` mapping the demo runs with (written to ``butler-demo.yaml``).

    Slack and New Relic post to ``receiver_url`` (the demo's logging receiver); MQTT is on
    when a broker answers on 127.0.0.1:1883 (``mqtt_broker``).
    """
    data = workdir / "data"
    for sub in ("from", "to", "qvd", "delete"):
        (data / sub).mkdir(parents=True, exist_ok=True)
    qlik_headers = {
        "static": [{"name": "X-Qlik-User", "value": "UserDirectory=Internal;UserId=sa_repository"}]
    }
    butler: dict[str, Any] = {
        "logLevel": "info",
        "restServerConfig": {"enable": True, "serverHost": "127.0.0.1", "serverPort": port},
        "restServerEndpointsEnable": endpoint_enable_map(True),
        "keyValueStore": {"persistence": "sqlite", "dbFile": "butler-kv.sqlite"},
        "scheduler": {"enable": True, "configfile": "schedule.yaml"},
        "runs": {"dbFile": "butler-runs.sqlite", "pollIntervalSeconds": 1},
        "audit": {"enable": True, "dbFile": "butler-audit.sqlite"},
        "startTaskFilter": {
            "enable": True,
            "allowTask": {
                "taskId": ALLOWED_TASK_IDS,
                "tag": ["startTask1", "Butler 5.0 demo", RUNS_DEMO_TAG],
                "customProperty": [
                    {"name": "taskGroup", "value": "tasks1"},
                    {"name": "taskGroup", "value": "tasks2"},
                ],
            },
        },
        "cert": {
            "clientCert": "certs/client.pem",
            "clientCertKey": "certs/client_key.pem",
            "clientCertCA": "certs/root.pem",
        },
        "configQRS": {
            "host": "127.0.0.1",
            "port": qrs_port,
            "useSSL": True,
            "rejectUnauthorized": True,
            "headers": qlik_headers,
        },
        "configEngine": {
            "host": "127.0.0.1",
            "port": engine_port or 4747,
            "useSSL": True,
            "rejectUnauthorized": True,
            "headers": qlik_headers,
        },
        "fileCopyApprovedDirectories": [
            {"fromDirectory": str(data / "from"), "toDirectory": str(data / "to")}
        ],
        "fileMoveApprovedDirectories": [
            {"fromDirectory": str(data / "from"), "toDirectory": str(data / "to")}
        ],
        "fileDeleteApprovedDirectories": [str(data / "delete")],
        "createDirApprovedDirectories": [str(data)],
        "configDirectories": {"qvdPath": str(data / "qvd")},
        "mqttConfig": {
            "enable": mqtt_broker,
            "brokerHost": "127.0.0.1",
            "brokerPort": MQTT_PORT,
            "taskRunTopic": "qliksense/butler/runs",
        },
        "slackNotification": {"restMessage": {"webhookURL": receiver_url + SLACK_PATH}},
        "thirdPartyToolsCredentials": {
            "newRelic": [{"accountName": "demo", "insertApiKey": "demo-key", "accountId": 1}]
        },
        "restServerEndpointsConfig": {
            "newRelic": {
                "postNewRelicEvent": {
                    "destinationAccount": ["demo"],
                    "url": receiver_url + NEW_RELIC_PATH,
                },
                "postNewRelicMetric": {
                    "destinationAccount": ["demo"],
                    "url": receiver_url + NEW_RELIC_PATH + "/metric/v1",
                },
            }
        },
    }
    if engine_port is None:
        for key in ("senseAppReload", "senseAppDump", "senseListApps"):
            butler["restServerEndpointsEnable"][key] = False
    return butler


def curl_lines(url: str) -> str:
    """Ready-to-paste examples (seed 000, seed 004 and friends) for this demo instance."""
    json_type = "-H 'Content-Type: application/json'"
    body_ids = (
        '[{"type":"starttaskid","payload":{"taskId":"7552d9fc-d1bb-4975-9a38-18357de531ea"}},'
        '{"type":"starttaskid","payload":{"taskId":"fb0f317d-da91-4b86-aafa-0174ae1e8c8f"}}]'
    )
    body_must_exist = (
        '[{"type":"starttaskid","payload":{"taskId":"7552d9fc-d1bb-4975-9a38-18357de531ea"}},'
        '{"type":"starttaskid","payload":{"taskId":"fb0f317d-da91-4b86-aafa-0174ae1e8c8"}}]'
    )
    return "\n".join(
        [
            f"curl {url}/v4/butlerping",
            f"curl -X PUT {url}/v4/reloadtask/e3b27f50-b1c0-4879-88fc-c7cdd9c1cf3e/start "
            f"{json_type} -d '[]'",
            f"curl -X PUT {url}/v4/reloadtask/abc123/start {json_type} -d '[]'",
            f"curl -X PUT {url}/v4/reloadtask/-/start {json_type} -d '{body_ids}'",
            f"curl -X PUT '{url}/v4/reloadtask/e3b27f50-b1c0-4879-88fc-c7cdd9c1cf3e/start"
            f"?allTaskIdsMustExist=true' {json_type} -d '{body_must_exist}'",
            f'curl -X POST {url}/v4/reloadtask/start {json_type} -d \'{{"tag": ["startTask1"]}}\'',
            f"curl -X PUT '{url}/v4/reloadtask/-/start?wait=true&timeout=60' {json_type} "
            f'-d \'{{"tag": ["{RUNS_DEMO_TAG}"]}}\'',
            f"curl '{url}/v4/runs?limit=5'",
            f"curl {url}/v4/runs/summary",
            f"curl {url}/v4/schedules",
            f"curl '{url}/v4/schedules?id=Manually-added-schedule-1'",
            f"curl {url}/v4/schedules/status",
            f"curl -X POST {url}/v4/keyvalues/demo {json_type} "
            '-d \'{"key": "k1", "value": "v1", "ttl": "60000"}\'',
            f"curl '{url}/v4/keyvalues/demo?key=k1'",
            f"curl {url}/v4/apps/list",
            f"open {url}/documentation",
        ]
    )


def _self_check(url: str) -> bool:
    """Start one task and wait for its run; the smoke mode's proof that everything is wired."""
    response = requests.put(
        f"{url}/v4/reloadtask/e3b27f50-b1c0-4879-88fc-c7cdd9c1cf3e/start",
        params={"wait": "true", "timeout": "30"},
        json=[],
        timeout=40,
    )
    answer = response.json() if response.ok else {}
    started = answer.get("totalTasksStarted") == 1 and answer.get("outcome") == "success"
    print(f"Self-check: HTTP {response.status_code}, task started and finished: {started}")
    return started


def _start_runs_demo(url: str) -> None:
    """Start the demo's slow tasks once, so the log shows runs queue, finish and fail."""
    try:
        response = requests.put(
            f"{url}/v4/reloadtask/start", json={"tag": [RUNS_DEMO_TAG]}, timeout=10
        )
    except requests.RequestException as exc:
        print(f"Could not start the '{RUNS_DEMO_TAG}' tasks: {exc}")
        return
    started = response.json().get("totalTasksStarted") if response.ok else 0
    print(
        f"Started the {started} '{RUNS_DEMO_TAG}' tasks (one fails on purpose); watch their "
        f"runs finish in the log or with: curl '{url}/v4/runs?limit=5'",
        flush=True,
    )


def run_demo(args: argparse.Namespace, plugin_manager: pluggy.PluginManager) -> int:
    from butler.cli import cli_overrides
    from butler.testing.certs import generate_certificates
    from butler.testing.engine_simulator import EngineSimulator
    from butler.testing.qrs_simulator import QrsSimulator

    temporary = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="butler-demo-")) if temporary else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    certs = generate_certificates(workdir / "certs")
    schedule_file = workdir / "schedule.yaml"
    if not schedule_file.exists():
        schedule_file.write_text(SCHEDULES, encoding="utf-8")
    outcome = {"ok": True}
    mqtt = broker_answers()
    with (
        QrsSimulator(certs) as qrs,
        EngineSimulator(certs) as engine,
        WebhookReceiver() as receiver,
    ):
        config_path = workdir / "butler-demo.yaml"
        settings = demo_config(workdir, args.port, qrs.port, engine.port, receiver.url, mqtt)
        with config_path.open("w", encoding="utf-8") as handle:
            YAML().dump({"Butler": settings}, handle)
        try:
            config = load_config(
                config_path,
                cli_overrides(args, plugin_manager),
                config_contract(plugin_manager),
            )
        except ConfigError as exc:
            print(f"Config error: {exc}")
            return 2

        def ready(url: str, stop: Any) -> None:
            print(f"\nButler demo: QRS simulator at {qrs.url}, Engine simulator at {engine.url}")
            print(f"Slack and New Relic post to the demo receiver at {receiver.url} (logged)")
            if not mqtt:
                print(
                    f"MQTT publish is off (503): no broker on 127.0.0.1:{MQTT_PORT}; "
                    "start one (e.g. mosquitto) and restart the demo to try it"
                )
            print(f"Config: {config_path}\nTry:\n{curl_lines(url)}\n", flush=True)
            if not args.exit_after_ready:
                threading.Thread(target=_start_runs_demo, args=(url,), daemon=True).start()
            if args.exit_after_ready:

                def check_then_stop() -> None:
                    outcome["ok"] = _self_check(url)
                    stop()

                threading.Thread(target=check_then_stop, daemon=True).start()

        code = serve(config, on_ready=ready, plugin_manager=plugin_manager)
    if temporary:
        shutil.rmtree(workdir, ignore_errors=True)
    return code if outcome["ok"] else 1
