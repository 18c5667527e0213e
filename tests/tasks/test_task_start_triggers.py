"""Non-REST triggers go through the same task starter: app-reload chains use the filter."""

import requests

from butler.app import create_app
from butler.lifecycle import build_services
from butler.testing.engine_simulator import EngineSimulator
from tests.fixtures.qrs import butler_qrs_config

SALES_APP = "0b1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
FAILING_APP = "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"
APP1 = "e3b27f50-b1c0-4879-88fc-c7cdd9c1cf3e"
APP2 = "7552d9fc-d1bb-4975-9a38-18357de531ea"
APP3 = "fb0f317d-da91-4b86-aafa-0174ae1e8c8f"


def start_butler(make_config, live_server, qrs_simulator, qrs_certs, engine_port):
    config = make_config(
        {
            **butler_qrs_config(qrs_simulator, qrs_certs),
            "configEngine": {
                "host": "127.0.0.1",
                "port": engine_port,
                "useSSL": True,
                "rejectUnauthorized": True,
            },
            "restServerEndpointsEnable": {"senseAppReload": True},
            "startTaskFilter": {
                "enable": True,
                "allowTask": {"taskId": [APP1, APP3], "tag": None, "customProperty": None},
            },
        }
    )
    services = build_services(config)
    services.start()
    return live_server(create_app(config, services)), services


def reload(url, app_id):
    return requests.put(
        f"{url}/v4/app/{app_id}/reload?wait=true",
        json={
            "reloadMode": "0",
            "partialReload": "false",
            "startQSEoWTaskOnSuccess": [APP1, APP2],
            "startQSEoWTaskOnFailure": [APP3, APP2],
        },
        timeout=30,
    )


def test_reload_chains_start_through_the_filter(make_config, live_server, qrs_simulator, qrs_certs):
    with EngineSimulator(qrs_certs) as engine:
        url, services = start_butler(
            make_config, live_server, qrs_simulator, qrs_certs, engine.port
        )
        try:
            ok = reload(url, SALES_APP)
            assert ok.status_code == 201, ok.text
            assert ok.json()["reloadResult"] == "success"
            assert [s.task_id for s in qrs_simulator.starts()] == [APP1]
            qrs_simulator.reset_log()
            failed = reload(url, FAILING_APP)
            assert failed.json()["reloadResult"] == "failure"
            assert [s.task_id for s in qrs_simulator.starts()] == [APP3]
            assert failed.json()["tasksStarted"][APP2] == "denied"
        finally:
            services.stop()


def test_schedules_start_through_the_filter(make_config, qrs_simulator, qrs_certs, tmp_path):
    (tmp_path / "schedule.yaml").write_text(
        "butlerSchedule:\n"
        f"  - id: allowed\n    name: allowed\n    cronSchedule: '* * * * * *'\n"
        f"    timezone: UTC\n    qlikSenseTaskId: {APP1}\n    startupState: started\n"
        f"  - id: denied\n    name: denied\n    cronSchedule: '* * * * * *'\n"
        f"    timezone: UTC\n    qlikSenseTaskId: {APP2}\n    startupState: started\n",
        encoding="utf-8",
    )
    config = make_config(
        {
            **butler_qrs_config(qrs_simulator, qrs_certs),
            "scheduler": {"enable": True, "configfile": "schedule.yaml"},
            "startTaskFilter": {
                "enable": True,
                "allowTask": {"taskId": [APP1], "tag": None, "customProperty": None},
            },
        }
    )
    services = build_services(config)
    services.start()
    try:
        starts = qrs_simulator.wait_for_starts(1, timeout=10)
        assert services.scheduler.drain(timeout=10)
    finally:
        services.stop()
    assert {s.task_id for s in starts} == {APP1}
    assert {s.task_id for s in qrs_simulator.starts()} == {APP1}
    assert "denied" in services.scheduler.get("denied")["lastResult"]
