"""The QRS simulator over real sockets: TLS client certificates, Xrfkey, routes, faults."""

from __future__ import annotations

import json
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from butler.testing.certs import CertPaths, generate_certificates
from butler.testing.qrs_simulator import QrsSimulator, load_catalogue, main
from tests.qrs.conftest import KEY, Qrs

APP1 = "e3b27f50-b1c0-4879-88fc-c7cdd9c1cf3e"
APP2 = "7552d9fc-d1bb-4975-9a38-18357de531ea"
APP3 = "fb0f317d-da91-4b86-aafa-0174ae1e8c8f"
TEMPLATE = "0fe447a9-ba1f-44a9-ac23-68c3a1d88d8b"
FAILING = "2d4e6f80-1a2b-4c3d-8e9f-a0b1c2d3e4f5"
UNKNOWN = "a1a11a11-b1c0-4879-88fc-c7cdd9c1cf3e"


def ids(response: requests.Response) -> list[str]:
    return [item["id"] for item in response.json()]


# ------------------------------------------------------------------------- TLS and Xrfkey


def test_request_without_client_certificate_is_rejected(
    qrs_simulator: QrsSimulator, qrs_certs: CertPaths
) -> None:
    anonymous = Qrs(qrs_simulator, qrs_certs, cert=False)
    with pytest.raises(requests.exceptions.ConnectionError):
        anonymous.call("GET", "/qrs/about")
    anonymous.close()
    assert qrs_simulator.wait_for_rejected_connections(1) >= 1
    assert qrs_simulator.requests() == []


def test_client_certificate_from_another_ca_is_rejected(
    qrs_simulator: QrsSimulator, qrs_certs: CertPaths, tmp_path: Path
) -> None:
    foreign = generate_certificates(tmp_path / "foreign")
    session = requests.Session()
    session.trust_env = False
    session.verify = str(qrs_certs.ca)
    session.cert = (str(foreign.client_cert), str(foreign.client_key))
    with pytest.raises(requests.exceptions.ConnectionError):
        session.get(f"{qrs_simulator.url}/qrs/about", params={"xrfkey": KEY}, timeout=5)
    session.close()
    assert qrs_simulator.wait_for_rejected_connections(1) >= 1
    assert qrs_simulator.requests() == []


@pytest.mark.parametrize(
    ("xrfkey", "header_key"),
    [
        (None, KEY),
        (KEY, None),
        (None, None),
        (KEY, "fedcba9876543210"),
        ("short", "short"),
        ("0123456789abcdefX", "0123456789abcdefX"),
    ],
)
def test_xrfkey_must_be_in_query_and_header_equal_and_16_chars(
    qrs: Qrs, xrfkey: str | None, header_key: str | None
) -> None:
    response = qrs.call("GET", "/qrs/about", xrfkey=xrfkey, header_key=header_key)
    assert response.status_code == 400
    assert "XSRF" in response.text


def test_about_with_valid_xrfkey(qrs: Qrs) -> None:
    response = qrs.call("GET", "/qrs/about")
    assert response.status_code == 200
    assert response.json()["schemaPath"] == "About"
    assert response.headers["Content-Type"].startswith("application/json")


# ------------------------------------------------------------------------- catalogue and reads


def test_builtin_catalogue_has_the_seed_examples(qrs: Qrs) -> None:
    response = qrs.call("GET", "/qrs/task/full")
    by_id = {task["id"]: task for task in response.json()}
    assert by_id[APP1]["name"] == "Reload task of App1"
    assert by_id[APP2]["name"] == "Reload task of App2"
    assert by_id[APP3]["name"] == "Reload task of App3"
    assert TEMPLATE in by_id

    def tagged(tag: str) -> list[str]:
        return ids(qrs.call("GET", "/qrs/task/full", params={"filter": f"tags.name eq '{tag}'"}))

    assert sorted(tagged("startTask1")) == sorted([APP1, APP2, APP3])
    assert sorted(tagged("Butler 5.0 demo")) == sorted([APP1, APP2, APP3, TEMPLATE])
    cp = "customProperties.definition.name eq 'taskGroup' and customProperties.value eq '{}'"
    tasks1 = ids(qrs.call("GET", "/qrs/task/full", params={"filter": cp.format("tasks1")}))
    tasks2 = ids(qrs.call("GET", "/qrs/task/full", params={"filter": cp.format("tasks2")}))
    assert sorted(tasks1) == sorted([APP1, APP2])
    assert sorted(tasks2) == sorted([APP3, TEMPLATE])


def test_full_task_has_the_qrs_shape(qrs: Qrs) -> None:
    response = qrs.call("GET", "/qrs/task/full", params={"filter": f"id eq {APP1}"})
    (task,) = response.json()
    assert task["taskType"] == 0
    assert task["enabled"] is True
    assert task["app"]["name"] == "App1"
    assert {tag["name"] for tag in task["tags"]} == {"startTask1", "Butler 5.0 demo"}
    assert all(set(tag) >= {"id", "name"} for tag in task["tags"])
    (cp,) = task["customProperties"]
    assert cp["definition"]["name"] == "taskGroup"
    assert cp["value"] == "tasks1"
    assert task["operational"]["lastExecutionResult"]["status"] == 0


def test_condensed_list_and_reloadtask_full(qrs: Qrs) -> None:
    condensed = qrs.call("GET", "/qrs/task", params={"filter": f"id eq {APP2}"}).json()
    assert condensed == [
        {
            "id": APP2,
            "operational": condensed[0]["operational"],
            "name": "Reload task of App2",
            "taskType": 0,
            "privileges": None,
        }
    ]
    every = qrs.call("GET", "/qrs/task/full").json()
    reload_only = qrs.call("GET", "/qrs/reloadtask/full").json()
    assert any(task["taskType"] == 1 for task in every)
    assert reload_only == [task for task in every if task["taskType"] == 0]


def test_tag_with_special_characters_is_found_through_percent_encoding(qrs: Qrs) -> None:
    response = qrs.call(
        "GET", "/qrs/task", params={"filter": "tags.name eq 'Q&A #1: 100% it''s done'"}
    )
    assert ids(response) == [APP2]


def test_bad_filter_is_400_with_the_reason(qrs: Qrs) -> None:
    response = qrs.call("GET", "/qrs/task/full", params={"filter": "name eq unquoted"})
    assert response.status_code == 400
    assert "single quotes" in response.text
    response = qrs.call("GET", "/qrs/task/full", params={"filter": "nmae eq 'x'"})
    assert response.status_code == 400
    assert "unknown property" in response.text


def test_unknown_route_and_wrong_method(qrs: Qrs) -> None:
    assert qrs.call("GET", "/qrs/nothing").status_code == 404
    response = qrs.call("POST", "/qrs/about", body={})
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET"


# ------------------------------------------------------------------------- starts


def test_start_by_id(qrs: Qrs, qrs_simulator: QrsSimulator) -> None:
    response = qrs.call("POST", f"/qrs/task/{APP1}/start", body={})
    assert response.status_code == 204
    (start,) = qrs_simulator.starts()
    assert (start.task_id, start.task_name, start.route) == (
        APP1,
        "Reload task of App1",
        "/qrs/task/{id}/start",
    )


def test_start_unknown_id_is_404_and_starts_nothing(qrs: Qrs, qrs_simulator: QrsSimulator) -> None:
    assert qrs.call("POST", f"/qrs/task/{UNKNOWN}/start", body={}).status_code == 404
    assert qrs.call("POST", "/qrs/task/not-a-guid/start", body={}).status_code == 404
    assert qrs_simulator.starts() == []


def test_start_synchronous_returns_session_and_result(
    qrs: Qrs, qrs_simulator: QrsSimulator
) -> None:
    response = qrs.call("POST", f"/qrs/task/{FAILING}/start/synchronous", body={})
    assert response.status_code == 201
    session_id = response.json()["value"]
    assert qrs_simulator.starts()[0].session_id == session_id
    results = qrs.call(
        "GET", "/qrs/executionresult/full", params={"filter": f"executionID eq {session_id}"}
    ).json()
    assert [(r["taskID"], r["status"]) for r in results] == [(FAILING, 8)]
    # A finished execution no longer has a session, as in QRS.
    assert qrs.call("GET", f"/qrs/executionsession/{session_id}").status_code == 404


def test_running_execution_has_a_session(qrs: Qrs, qrs_simulator: QrsSimulator) -> None:
    slow = qrs_simulator.add_task(
        {"id": "11111111-2222-4333-8444-555555555555", "name": "Slow", "durationSeconds": 3600}
    )
    session_id = qrs.call("POST", f"/qrs/task/{slow}/start/synchronous").json()["value"]
    session = qrs.call("GET", f"/qrs/executionsession/{session_id}")
    assert session.status_code == 200
    assert session.json()["reloadTask"]["id"] == slow
    assert session.json()["executionResult"]["status"] == 2
    (result,) = qrs.call(
        "GET", "/qrs/executionresult", params={"filter": f"taskID eq {slow}"}
    ).json()
    assert result["status"] == 2
    task = qrs.call("GET", "/qrs/task/full", params={"filter": f"id eq {slow}"}).json()[0]
    assert task["operational"]["lastExecutionResult"]["executionID"] == session_id


def test_start_many_starts_all(qrs: Qrs, qrs_simulator: QrsSimulator) -> None:
    response = qrs.call("POST", "/qrs/task/start/many", body=[APP1, APP2.upper(), APP3])
    assert response.status_code == 204
    starts = qrs_simulator.starts()
    assert [s.task_id for s in starts] == [APP1, APP2, APP3]
    assert {s.route for s in starts} == {"/qrs/task/start/many"}


def test_start_many_with_an_unknown_id_starts_nothing(
    qrs: Qrs, qrs_simulator: QrsSimulator
) -> None:
    response = qrs.call("POST", "/qrs/task/start/many", body=[APP1, UNKNOWN])
    assert response.status_code == 404
    assert qrs_simulator.starts() == []
    assert qrs.call("POST", "/qrs/task/start/many", body={"id": APP1}).status_code == 400


def test_start_by_name(qrs: Qrs, qrs_simulator: QrsSimulator) -> None:
    assert (
        qrs.call("POST", "/qrs/task/start", params={"name": "reload task of app3"}).status_code
        == 204
    )
    response = qrs.call(
        "POST", "/qrs/task/start/synchronous", params={"name": "Reload task of App2"}
    )
    assert response.status_code == 201
    assert [(s.task_id, s.route) for s in qrs_simulator.starts()] == [
        (APP3, "/qrs/task/start?name="),
        (APP2, "/qrs/task/start/synchronous?name="),
    ]
    assert qrs.call("POST", "/qrs/task/start", params={"name": "No such"}).status_code == 404
    assert qrs.call("POST", "/qrs/task/start").status_code == 400


def test_wait_for_starts(qrs: Qrs, qrs_simulator: QrsSimulator) -> None:
    thread = threading.Thread(target=qrs.call, args=("POST", f"/qrs/task/{APP1}/start"))
    thread.start()
    starts = qrs_simulator.wait_for_starts(1, timeout=5)
    thread.join()
    assert starts[0].task_id == APP1
    with pytest.raises(TimeoutError, match="expected 2 task starts"):
        qrs_simulator.wait_for_starts(2, timeout=0.01)
    with pytest.raises(TimeoutError, match="expected 1 rejected connections"):
        qrs_simulator.wait_for_rejected_connections(1, timeout=0.01)


# ------------------------------------------------------------------------- recording


def test_requests_are_recorded_with_connection_reuse(qrs: Qrs, qrs_simulator: QrsSimulator) -> None:
    qrs.call("GET", "/qrs/task", params={"filter": "name sw 'Reload'"})
    qrs.call("POST", "/qrs/task/start/many", body=[APP1])
    first, second = qrs_simulator.requests()
    assert (first.method, first.path, first.status) == ("GET", "/qrs/task", 200)
    assert first.query == {"filter": "name sw 'Reload'", "xrfkey": KEY}
    assert first.headers["x-qlik-xrfkey"] == KEY
    assert second.body == [APP1]
    assert second.status == 204
    assert first.new_connection and not second.new_connection
    assert first.connection_id == second.connection_id
    assert qrs_simulator.new_connections == 1
    qrs_simulator.reset_log()
    assert qrs_simulator.requests() == []
    assert qrs_simulator.new_connections == 0


def test_many_concurrent_keep_alive_connections(
    qrs_simulator: QrsSimulator, qrs_certs: CertPaths
) -> None:
    count = 120
    clients = [Qrs(qrs_simulator, qrs_certs) for _ in range(count)]
    barrier = threading.Barrier(count)

    def twice(client: Qrs) -> list[int]:
        first = client.call("GET", "/qrs/about").status_code
        barrier.wait(timeout=30)  # every connection is open at the same time here
        return [first, client.call("GET", f"/qrs/task?filter=id eq {APP1}").status_code]

    with ThreadPoolExecutor(max_workers=count) as pool:
        statuses = list(pool.map(twice, clients))
    for client in clients:
        client.close()
    assert statuses == [[200, 200]] * count
    assert qrs_simulator.new_connections == count
    assert len(qrs_simulator.requests()) == 2 * count


# ------------------------------------------------------------------------- faults and latency


def test_fault_on_path_prefix_with_times(qrs: Qrs, qrs_simulator: QrsSimulator) -> None:
    qrs_simulator.add_fault("/qrs/task/full", status=503, times=2, body="simulated outage")
    first = qrs.call("GET", "/qrs/task/full")
    assert (first.status_code, first.text) == (503, "simulated outage")
    assert qrs.call("GET", "/qrs/task").status_code == 200  # other paths unaffected
    assert qrs.call("GET", "/qrs/task/full").status_code == 503
    assert qrs.call("GET", "/qrs/task/full").status_code == 200  # used up
    assert [r.status for r in qrs_simulator.requests()] == [503, 200, 503, 200]


def test_fault_on_task_id_blocks_start_many(qrs: Qrs, qrs_simulator: QrsSimulator) -> None:
    qrs_simulator.add_fault(APP2, status=500, method="POST")
    assert qrs.call("POST", "/qrs/task/start/many", body=[APP1, APP2]).status_code == 500
    assert qrs.call("POST", f"/qrs/task/{APP2}/start").status_code == 500
    assert (
        qrs.call("POST", "/qrs/task/start", params={"name": "Reload task of App2"}).status_code
        == 500
    )
    assert qrs.call("GET", "/qrs/task/full", params={"filter": f"id eq {APP2}"}).status_code == 200
    assert qrs.call("POST", f"/qrs/task/{APP1}/start").status_code == 204
    assert [s.task_id for s in qrs_simulator.starts()] == [APP1]
    qrs_simulator.clear_faults()
    assert qrs.call("POST", f"/qrs/task/{APP2}/start").status_code == 204


def test_dropped_connection(qrs: Qrs, qrs_simulator: QrsSimulator) -> None:
    fault = qrs_simulator.add_fault("/qrs/about", drop=True)
    with pytest.raises(requests.exceptions.ConnectionError):
        qrs.call("GET", "/qrs/about")
    (record,) = qrs_simulator.requests()
    assert record.status is None
    qrs_simulator.remove_fault(fault)
    assert qrs.call("GET", "/qrs/about").status_code == 200


def test_latency_and_delay_faults_make_clients_time_out(
    qrs: Qrs, qrs_simulator: QrsSimulator
) -> None:
    qrs_simulator.set_latency(0.5)
    with pytest.raises(requests.exceptions.ReadTimeout):
        qrs.call("GET", "/qrs/about", timeout=0.05)
    qrs_simulator.set_latency(0)
    qrs_simulator.add_fault(APP1, delay=0.5)
    with pytest.raises(requests.exceptions.ReadTimeout):
        qrs.call("POST", f"/qrs/task/{APP1}/start", timeout=0.05)
    assert qrs.call("GET", "/qrs/about", timeout=5).status_code == 200


def test_add_fault_rejects_unknown_target(qrs_simulator: QrsSimulator) -> None:
    with pytest.raises(ValueError, match="path prefix"):
        qrs_simulator.add_fault("qrs/about", status=500)


def test_reset_restores_catalogue(qrs: Qrs, qrs_simulator: QrsSimulator) -> None:
    qrs_simulator.remove_task(APP1)
    qrs_simulator.add_fault("/qrs", status=500)
    assert qrs.call("GET", "/qrs/about").status_code == 500
    qrs_simulator.reset()
    assert ids(qrs.call("GET", "/qrs/task", params={"filter": f"id eq {APP1}"})) == [APP1]


# ------------------------------------------------------------------------- construction


def test_catalogue_file_yaml_and_json(tmp_path: Path) -> None:
    yaml_file = tmp_path / "catalogue.yaml"
    yaml_file.write_text(
        "tasks:\n"
        "  - id: 11111111-2222-4333-8444-555555555555\n"
        "    name: Only task\n"
        "    tags: [a, b]\n"
        "    customProperties: [{name: group, value: g1}, {name: group, value: g2}]\n"
        "synthetic: {count: 3, tag: gen}\n",
        encoding="utf-8",
    )
    json_file = tmp_path / "catalogue.json"
    json_file.write_text(
        json.dumps({"tasks": [{"id": APP1, "name": "From JSON", "type": "external"}]}),
        encoding="utf-8",
    )
    from_yaml = QrsSimulator(None, catalogue=yaml_file)
    assert len(from_yaml.task_ids()) == 4
    assert from_yaml.task_ids(tag="a") == ["11111111-2222-4333-8444-555555555555"]
    assert len(from_yaml.task_ids(tag="gen")) == 3
    assert QrsSimulator(None, catalogue=json_file).task_ids() == [APP1]
    assert load_catalogue({"tasks": []}) == {"tasks": []}


@pytest.mark.parametrize(
    "catalogue",
    [
        {"tasks": "nope"},
        {"tasks": [{"id": "not-a-guid"}]},
        {"tasks": [{"id": APP1, "type": "weird"}]},
        {"tasks": [{"id": APP1, "outcome": "maybe"}]},
        {"tasks": [{"id": APP1, "customProperties": "x"}]},
    ],
)
def test_invalid_catalogue_is_refused(catalogue: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        QrsSimulator(None, catalogue=catalogue)


def test_synthetic_tasks_share_one_tag() -> None:
    sim = QrsSimulator(None, synthetic_tasks=150, synthetic_tag="bench")
    bench = sim.task_ids(tag="bench")
    assert len(bench) == 150
    assert len(set(bench)) == 150
    assert set(sim.task_ids()) >= {APP1, APP2, APP3, TEMPLATE}


def test_plain_http_mode() -> None:
    with QrsSimulator(None) as sim:
        assert sim.url.startswith("http://127.0.0.1:")
        client = Qrs(sim, None)
        assert client.call("GET", "/qrs/about").status_code == 200
        client.close()
    with pytest.raises(RuntimeError):
        _ = sim.port


def test_main_runs_until_stopped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stop = threading.Event()
    stop.set()
    code = main(
        ["--port", "0", "--certs", str(tmp_path / "c"), "--synthetic-tasks", "5"], stop=stop
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "QRS simulator on https://127.0.0.1:" in out
    assert "with 16 tasks" in out  # 11 built-in + 5 synthetic
    assert (tmp_path / "c" / "client.pem").is_file()


def test_stop_closes_connections_that_never_finish_the_handshake(qrs_certs: CertPaths) -> None:
    sim = QrsSimulator(qrs_certs).start()
    suffix = f"-{sim.port}"
    with socket.create_connection(("127.0.0.1", sim.port), timeout=5) as silent:
        sim.stop()
        try:
            closed = silent.recv(1) == b""
        except ConnectionResetError:
            closed = True
    assert closed
    assert not [t for t in threading.enumerate() if t.name.endswith(suffix) and t.is_alive()]
