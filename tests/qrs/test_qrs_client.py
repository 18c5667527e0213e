"""QrsClient against the simulator: batching, quoting, typed errors, connection reuse."""

from __future__ import annotations

import re
import socket
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from urllib3.exceptions import InsecureRequestWarning

from butler.errors import UpstreamError, UpstreamTimeout
from butler.qrs import (
    QrsClient,
    QrsError,
    QrsHttpError,
    QrsTimeout,
    QrsUnavailable,
    quote_filter_value,
)
from butler.testing.certs import CertPaths, generate_certificates
from butler.testing.qrs_filter import parse_filter
from butler.testing.qrs_simulator import QrsSimulator

APP1 = "e3b27f50-b1c0-4879-88fc-c7cdd9c1cf3e"
APP2 = "7552d9fc-d1bb-4975-9a38-18357de531ea"
APP3 = "fb0f317d-da91-4b86-aafa-0174ae1e8c8f"
TEMPLATE = "0fe447a9-ba1f-44a9-ac23-68c3a1d88d8b"
UNKNOWN = "a1a11a11-b1c0-4879-88fc-c7cdd9c1cf3e"
SPECIAL_TAG = "Q&A #1: 100% it's done"


def client_for(sim: QrsSimulator, certs: CertPaths | None, **overrides: Any) -> QrsClient:
    host = overrides.pop("host", "127.0.0.1")
    options: dict[str, Any] = {
        "use_ssl": certs is not None,
        "client_cert": certs.client_cert if certs else None,
        "client_key": certs.client_key if certs else None,
        "ca_cert": certs.ca if certs else None,
        "reject_unauthorized": certs is not None,
        "connect_timeout": 2.0,
        "read_timeout": 5.0,
    }
    options.update(overrides)
    return QrsClient(host, sim.port, **options)


def names(tasks: list[dict[str, Any]]) -> list[str]:
    return sorted(task["name"] for task in tasks)


# ------------------------------------------------------------------------- request shape


def test_quote_filter_value_doubles_quotes() -> None:
    assert quote_filter_value("It's") == "'It''s'"
    assert quote_filter_value("''") == "''''''"
    assert quote_filter_value("a&b #c 100%") == "'a&b #c 100%'"
    assert parse_filter(f"name eq {quote_filter_value(SPECIAL_TAG)}").matches({"name": SPECIAL_TAG})


def test_every_request_has_fresh_xrfkey_and_default_headers(
    qrs_client: QrsClient, qrs_simulator: QrsSimulator
) -> None:
    assert qrs_client.about()["schemaPath"] == "About"
    qrs_client.about()
    first, second = qrs_simulator.requests()
    for record in (first, second):
        key = record.headers["x-qlik-xrfkey"]
        assert re.fullmatch(r"[A-Za-z0-9]{16}", key)
        assert record.query["xrfkey"] == key
        assert record.headers["x-qlik-user"] == "UserDirectory=Internal;UserId=sa_repository"
        assert record.headers["content-type"] == "application/json"
    assert first.headers["x-qlik-xrfkey"] != second.headers["x-qlik-xrfkey"]


def test_static_headers_replace_the_default_user(
    qrs_simulator: QrsSimulator, qrs_certs: CertPaths
) -> None:
    user = "UserDirectory=LAB;UserId=butler"
    with client_for(qrs_simulator, qrs_certs, static_headers=[("X-Qlik-User", user)]) as client:
        client.about()
    (record,) = qrs_simulator.requests()
    assert record.headers["x-qlik-user"] == user


# ------------------------------------------------------------------------- lookups


def test_get_tasks_with_and_without_filter(qrs_client: QrsClient) -> None:
    everything = qrs_client.get_tasks()
    assert {APP1, APP2, APP3, TEMPLATE} <= {task["id"] for task in everything}
    assert names(qrs_client.get_tasks("name sw 'Reload task of App'")) == [
        "Reload task of App1",
        "Reload task of App2",
        "Reload task of App3",
    ]


def test_find_tasks_by_ids_is_one_request(
    qrs_client: QrsClient, qrs_simulator: QrsSimulator
) -> None:
    found = qrs_client.find_tasks_by_ids([APP1, APP2.upper(), UNKNOWN, APP1, APP3])
    assert sorted(task["id"] for task in found) == sorted([APP1, APP2, APP3])
    (record,) = qrs_simulator.requests()
    assert record.path == "/qrs/task"
    assert record.query["filter"] == (
        f"id eq {APP1} or id eq {APP2} or id eq {UNKNOWN} or id eq {APP3}"
    )


def test_find_tasks_by_ids_without_ids_or_with_a_bad_id_sends_nothing(
    qrs_client: QrsClient, qrs_simulator: QrsSimulator
) -> None:
    assert qrs_client.find_tasks_by_ids([]) == []
    with pytest.raises(ValueError, match="not a task id"):
        qrs_client.find_tasks_by_ids([APP1, "x' or name ne '"])
    assert qrs_simulator.requests() == []


def test_find_tasks_by_ids_chunks_long_filters(qrs_certs: CertPaths) -> None:
    with QrsSimulator(qrs_certs, synthetic_tasks=300) as sim:
        wanted = sim.task_ids(tag="bench")
        with client_for(sim, qrs_certs) as client:
            found = client.find_tasks_by_ids(wanted)
        records = sim.requests()
    assert sorted(task["id"] for task in found) == sorted(wanted)
    assert 2 <= len(records) <= 4
    assert all(len(quote(record.query["filter"], safe="")) <= 7000 for record in records)


def test_find_tasks_by_tag(qrs_client: QrsClient) -> None:
    assert names(qrs_client.find_tasks_by_tag("startTask1")) == [
        "Reload task of App1",
        "Reload task of App2",
        "Reload task of App3",
    ]
    assert len(qrs_client.find_tasks_by_tag("Butler 5.0 demo")) == 4
    assert qrs_client.find_tasks_by_tag("no such tag") == []


def test_tag_with_ampersand_hash_percent_and_quote_is_found(
    qrs_client: QrsClient, qrs_simulator: QrsSimulator
) -> None:
    assert [task["id"] for task in qrs_client.find_tasks_by_tag(SPECIAL_TAG)] == [APP2]
    (record,) = qrs_simulator.requests()
    assert record.query["filter"] == "tags.name eq 'Q&A #1: 100% it''s done'"


def test_find_tasks_by_custom_property(qrs_client: QrsClient) -> None:
    assert names(qrs_client.find_tasks_by_custom_property("taskGroup", "tasks1")) == [
        "Reload task of App1",
        "Reload task of App2",
    ]
    assert qrs_client.find_tasks_by_custom_property("taskGroup", "nope") == []


def test_custom_property_name_and_value_must_be_on_the_same_property(
    qrs_client: QrsClient, qrs_simulator: QrsSimulator
) -> None:
    mixed = qrs_simulator.add_task(
        {
            "id": "11111111-2222-4333-8444-555555555555",
            "name": "Mixed",
            "customProperties": {"taskGroup": "other", "owner": "tasks1"},
        }
    )
    raw = qrs_client.get_tasks(
        "(customProperties.definition.name eq 'taskGroup') and (customProperties.value eq 'tasks1')"
    )
    assert mixed in {task["id"] for task in raw}  # what QRS itself answers
    found = qrs_client.find_tasks_by_custom_property("taskGroup", "tasks1")
    assert mixed not in {task["id"] for task in found}


# ------------------------------------------------------------------------- starts


def test_start_tasks_is_one_call(qrs_client: QrsClient, qrs_simulator: QrsSimulator) -> None:
    qrs_client.start_tasks([APP1, APP2, APP1.upper()])
    (record,) = qrs_simulator.requests()
    assert (record.method, record.path, record.body) == (
        "POST",
        "/qrs/task/start/many",
        [APP1, APP2],
    )
    assert [start.task_id for start in qrs_simulator.starts()] == [APP1, APP2]
    qrs_client.start_tasks([])
    assert len(qrs_simulator.requests()) == 1


def test_start_tasks_refused_raises_and_starts_nothing(
    qrs_client: QrsClient, qrs_simulator: QrsSimulator
) -> None:
    with pytest.raises(QrsHttpError) as caught:
        qrs_client.start_tasks([APP1, UNKNOWN])
    assert caught.value.qrs_status == 404
    assert caught.value.status == 502
    assert qrs_simulator.starts() == []


def test_start_task(qrs_client: QrsClient, qrs_simulator: QrsSimulator) -> None:
    qrs_client.start_task(APP3.upper())
    (start,) = qrs_simulator.starts()
    assert (start.task_id, start.route) == (APP3, "/qrs/task/{id}/start")
    with pytest.raises(QrsHttpError) as caught:
        qrs_client.start_task(UNKNOWN)
    assert caught.value.qrs_status == 404


# ------------------------------------------------------------------------- failures


def test_http_500_is_a_502_without_qrs_body_in_the_message(
    qrs_client: QrsClient, qrs_simulator: QrsSimulator
) -> None:
    qrs_simulator.add_fault("/qrs/task", status=500, body="stack trace with internals")
    with pytest.raises(QrsHttpError) as caught:
        qrs_client.find_tasks_by_tag("startTask1")
    error = caught.value
    assert isinstance(error, UpstreamError)
    assert isinstance(error, QrsError)
    assert (error.status, error.qrs_status) == (502, 500)
    assert error.body == "stack trace with internals"
    assert "internals" not in error.message
    assert "HTTP 500" in error.message


def test_non_json_answer_is_a_502(qrs_client: QrsClient, qrs_simulator: QrsSimulator) -> None:
    qrs_simulator.add_fault("/qrs/task/full", status=200, body="<html>login</html>")
    with pytest.raises(QrsHttpError, match="not JSON"):
        qrs_client.get_tasks()


def test_slow_qrs_is_a_504(qrs_simulator: QrsSimulator, qrs_certs: CertPaths) -> None:
    qrs_simulator.add_fault("/qrs/task/start/many", delay=0.5)
    with (
        client_for(qrs_simulator, qrs_certs, read_timeout=0.05) as client,
        pytest.raises(QrsTimeout) as caught,
    ):
        client.start_tasks([APP1])
    assert isinstance(caught.value, UpstreamTimeout)
    assert caught.value.status == 504
    assert "in time" in caught.value.message


def test_qrs_down_is_a_502(qrs_certs: CertPaths) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = QrsClient(
        "127.0.0.1",
        port,
        client_cert=qrs_certs.client_cert,
        client_key=qrs_certs.client_key,
        connect_timeout=2,
    )
    with pytest.raises(QrsUnavailable) as caught:
        client.about()
    client.close()
    assert caught.value.status == 502
    assert f"127.0.0.1:{port} is unreachable" in caught.value.message


def test_dropped_connection_is_a_502(qrs_client: QrsClient, qrs_simulator: QrsSimulator) -> None:
    qrs_simulator.add_fault(APP1, drop=True, times=1)
    with pytest.raises(QrsUnavailable):
        qrs_client.start_task(APP1)
    qrs_client.start_task(APP1)  # the pool recovers with a new connection
    assert [start.task_id for start in qrs_simulator.starts()] == [APP1]


def test_tls_failures_are_502_naming_certificates(
    qrs_simulator: QrsSimulator, qrs_certs: CertPaths, tmp_path: Path
) -> None:
    foreign = generate_certificates(tmp_path / "foreign")
    with (
        client_for(qrs_simulator, qrs_certs, ca_cert=foreign.ca) as wrong_ca,
        pytest.raises(QrsUnavailable, match="check the certificates"),
    ):
        wrong_ca.about()
    with (
        client_for(qrs_simulator, qrs_certs, client_cert=None, client_key=None) as no_cert,
        pytest.raises(QrsUnavailable),
    ):
        no_cert.about()
    assert qrs_simulator.requests() == []


def test_missing_certificate_files_fail_at_construction(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="client certificate file not found"):
        QrsClient("127.0.0.1", 4242, client_cert=tmp_path / "no.pem", client_key=tmp_path / "k")
    with pytest.raises(ValueError, match="together"):
        QrsClient("127.0.0.1", 4242, client_cert=tmp_path / "no.pem")
    with pytest.raises(ValueError, match="CA certificate file not found"):
        QrsClient("127.0.0.1", 4242, ca_cert=tmp_path / "ca.pem", reject_unauthorized=True)


# ------------------------------------------------------------------------- session behaviour


def test_connections_are_reused_in_steady_state(
    qrs_client: QrsClient, qrs_simulator: QrsSimulator
) -> None:
    qrs_client.about()
    qrs_simulator.reset_log()
    for _ in range(5):
        qrs_client.find_tasks_by_ids([APP1, APP2])
        qrs_client.find_tasks_by_tag("startTask1")
        qrs_client.find_tasks_by_custom_property("taskGroup", "tasks2")
        qrs_client.start_tasks([APP3])
        qrs_client.start_task(APP1)
    assert len(qrs_simulator.requests()) == 25
    assert qrs_simulator.new_connections == 0
    assert not any(record.new_connection for record in qrs_simulator.requests())


def test_concurrent_calls_share_a_bounded_pool(
    qrs_simulator: QrsSimulator, qrs_certs: CertPaths
) -> None:
    with (
        client_for(qrs_simulator, qrs_certs, pool_size=4) as client,
        ThreadPoolExecutor(max_workers=16) as pool,
    ):
        results = list(pool.map(lambda _: len(client.find_tasks_by_tag("startTask1")), range(64)))
    assert results == [3] * 64
    assert 1 <= qrs_simulator.new_connections <= 4


def test_environment_proxy_and_ca_bundle_are_ignored(
    qrs_simulator: QrsSimulator, qrs_certs: CertPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(qrs_certs.client_cert))
    with client_for(qrs_simulator, qrs_certs) as client:
        assert client.about()["schemaPath"] == "About"


def test_unverified_mode_silences_the_warning_for_the_qrs_host_only(
    qrs_simulator: QrsSimulator, qrs_certs: CertPaths
) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InsecureRequestWarning)
        with client_for(
            qrs_simulator, qrs_certs, host="localhost", reject_unauthorized=False
        ) as client:
            client.about()
        assert not [w for w in caught if issubclass(w.category, InsecureRequestWarning)]
        other = requests.Session()
        other.trust_env = False
        other.get(
            f"https://127.0.0.1:{qrs_simulator.port}/qrs/about",
            params={"xrfkey": "0123456789abcdef"},
            headers={"X-Qlik-Xrfkey": "0123456789abcdef"},
            cert=(str(qrs_certs.client_cert), str(qrs_certs.client_key)),
            verify=False,
            timeout=5,
        )
        other.close()
        assert [w for w in caught if issubclass(w.category, InsecureRequestWarning)]


def test_plain_http(qrs_certs: CertPaths) -> None:
    with QrsSimulator(None) as sim, client_for(sim, None) as client:
        assert names(client.find_tasks_by_tag("startTask1"))[0] == "Reload task of App1"
        assert sim.url.startswith("http://")


def test_client_is_thread_safe_for_starts(
    qrs_client: QrsClient, qrs_simulator: QrsSimulator
) -> None:
    threads = [
        threading.Thread(target=qrs_client.start_tasks, args=([task_id],))
        for task_id in (APP1, APP2, APP3, TEMPLATE)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(start.task_id for start in qrs_simulator.starts()) == sorted(
        [APP1, APP2, APP3, TEMPLATE]
    )
