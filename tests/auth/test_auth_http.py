"""API keys and scopes over real sockets: who gets 401, 403, 429 and what a scope narrows."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from butler.app import create_app
from butler.auth.keys import hash_key, new_key
from butler.config import ConfigError
from butler.lifecycle import build_scheduler, build_services
from butler.server import TlsFiles
from butler.services import Services
from butler.testing.certs import CertPaths, generate_certificates
from tests.conftest import deep_merge
from tests.fixtures.qrs import butler_qrs_config
from tests.runs.conftest import add_tasks, tag_body

TIMEOUT = 10
KEY_NAMES = ("admin", "reader", "finance", "teams", "starter")


@pytest.fixture(scope="module")
def keys() -> dict[str, str]:
    return {name: new_key() for name in KEY_NAMES}


@pytest.fixture(scope="module")
def hashes(keys: dict[str, str]) -> dict[str, str]:
    return {name: hash_key(key) for name, key in keys.items()}


def auth_section(hashes: dict[str, str], finance_id: str = "", **extra: Any) -> dict[str, Any]:
    return {
        "enable": True,
        "anonymous": ["butlerping"],
        "apiKeys": [
            {"name": "admin", "keyHash": hashes["admin"], "scopes": ["*"]},
            {"name": "reader", "keyHash": hashes["reader"], "scopes": ["read"]},
            {
                "name": "finance",
                "keyHash": hashes["finance"],
                "scopes": ["senseStartTask"],
                "tasks": {
                    "taskId": [finance_id] if finance_id else [],
                    "tag": ["finance"],
                    "customProperty": [{"name": "taskGroup", "value": "tasks1"}],
                },
            },
            {
                "name": "teams",
                "keyHash": hashes["teams"],
                "scopes": ["keyValueStore"],
                "kvNamespaces": ["team_*"],
            },
            {
                "name": "starter",
                "keyHash": hashes["starter"],
                "scopes": ["keyValueStore", "senseStartTask"],
            },
        ],
        **extra,
    }


@pytest.fixture
def butler(
    started_butler, qrs_simulator, qrs_certs, tmp_path
) -> Callable[..., tuple[str, Services]]:
    def serve(auth: dict[str, Any], extra: dict[str, Any] | None = None) -> tuple[str, Services]:
        base = {
            **butler_qrs_config(qrs_simulator, qrs_certs),
            "restServerConfig": {"auth": auth},
            "restServerEndpointsEnable": {
                "butlerping": True,
                "senseStartTask": True,
                "keyValueStore": True,
                "runs": True,
            },
            "keyValueStore": {"persistence": "memory"},
            "runs": {"dbFile": str(tmp_path / "runs.sqlite")},
        }
        return started_butler(deep_merge(base, extra or {}))

    return serve


def with_key(key: str) -> dict[str, str]:
    return {"X-Api-Key": key}


def test_no_or_wrong_credential_is_401_with_a_challenge(butler, hashes, keys, caplog):
    url, _ = butler(auth_section(hashes))
    wrong = keys["admin"][:-4] + "AAAA"
    with caplog.at_level(logging.WARNING, logger="butler.auth"):
        answers = [
            requests.get(f"{url}/v4/keyvaluesnamespaces", timeout=TIMEOUT),
            requests.get(f"{url}/v4/keyvaluesnamespaces", headers=with_key(wrong), timeout=TIMEOUT),
            requests.get(
                f"{url}/v4/keyvaluesnamespaces",
                headers={"Authorization": f"Basic {keys['admin']}"},
                timeout=TIMEOUT,
            ),
            requests.get(
                f"{url}/v4/keyvaluesnamespaces",
                params={"apiKey": keys["admin"], "key": keys["admin"]},
                timeout=TIMEOUT,
            ),
        ]
    for answer in answers:
        assert answer.status_code == 401
        body = answer.json()
        assert body["statusCode"] == 401 and body["error"] == "Unauthorized"
        assert "X-Api-Key" in body["message"]
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert "Authentication failed from 127.0.0.1" in caplog.text
    assert keys["admin"] not in caplog.text and wrong not in caplog.text


def test_a_good_key_by_either_header_is_served(butler, hashes, keys):
    url, _ = butler(auth_section(hashes))
    by_header = requests.get(
        f"{url}/v4/keyvaluesnamespaces", headers=with_key(keys["reader"]), timeout=TIMEOUT
    )
    by_bearer = requests.get(
        f"{url}/v4/keyvaluesnamespaces",
        headers={"Authorization": f"Bearer {keys['reader']}"},
        timeout=TIMEOUT,
    )
    assert by_header.status_code == by_bearer.status_code == 200
    assert by_header.headers["X-Content-Type-Options"] == "nosniff"


def test_anonymous_routes_answer_without_a_key(butler, hashes):
    url, _ = butler(auth_section(hashes))
    assert requests.get(f"{url}/v4/butlerping", timeout=TIMEOUT).status_code == 200


def test_a_known_caller_without_the_scope_gets_403_naming_it(butler, hashes, keys):
    url, _ = butler(auth_section(hashes))
    write = requests.post(
        f"{url}/v4/keyvalues/team_a",
        json={"key": "k", "value": "v"},
        headers=with_key(keys["reader"]),
        timeout=TIMEOUT,
    )
    assert write.status_code == 403
    assert "keyValueStore" in write.json()["message"]
    assert write.json()["code"] == "MISSING_SCOPE"
    start_answer = requests.put(
        f"{url}/v4/reloadtask/-/start", json=[], headers=with_key(keys["teams"]), timeout=TIMEOUT
    )
    assert start_answer.status_code == 403
    assert "senseStartTask" in start_answer.json()["message"]


def test_read_opens_every_get_but_the_audit_trail():
    from butler.auth.callers import Caller

    reader = Caller("r", "apiKey", scopes=frozenset({"read"}))
    assert reader.allows_endpoint("keyValueStore", "GET")
    assert reader.allows_endpoint("scheduler.getSchedule", "GET")
    assert not reader.allows_endpoint("keyValueStore", "POST")
    assert not reader.allows_endpoint("audit", "GET")
    wildcard = Caller("w", "apiKey", scopes=frozenset({"scheduler.*"}))
    assert wildcard.allows_endpoint("scheduler.createNewSchedule", "POST")
    assert not wildcard.allows_endpoint("senseStartTask", "PUT")


def test_kv_namespaces_scope_limits_reads_writes_and_listing(butler, hashes, keys):
    url, services = butler(auth_section(hashes))
    assert services.kv_store is not None
    services.kv_store.set("secret_ns", "k", "v", None)
    team = with_key(keys["teams"])
    written = requests.post(
        f"{url}/v4/keyvalues/team_a", json={"key": "k", "value": "v"}, headers=team, timeout=TIMEOUT
    )
    assert written.status_code == 201
    for method, path in (
        ("POST", "/v4/keyvalues/secret_ns"),
        ("GET", "/v4/keyvalues/secret_ns?key=k"),
        ("DELETE", "/v4/keyvalues/secret_ns/k"),
        ("DELETE", "/v4/keyvalues/secret_ns"),
        ("GET", "/v4/keylist/secret_ns"),
    ):
        answer = requests.request(
            method, f"{url}{path}", json={"key": "k", "value": "x"}, headers=team, timeout=TIMEOUT
        )
        assert answer.status_code == 403, (method, path)
        assert "kvNamespaces" in answer.json()["message"]
    listed = requests.get(f"{url}/v4/keyvaluesnamespaces", headers=team, timeout=TIMEOUT).json()
    assert listed == ["team_a"]
    everything = requests.get(
        f"{url}/v4/keyvaluesnamespaces", headers=with_key(keys["starter"]), timeout=TIMEOUT
    ).json()
    assert set(everything) == {"secret_ns", "team_a"}
    assert services.kv_store.get("secret_ns", "k").value == "v"


def test_tasks_scope_limits_starts_by_id_tag_and_custom_property(
    butler, hashes, keys, qrs_simulator
):
    finance = add_tasks(qrs_simulator, 2, "finance")
    sales = add_tasks(qrs_simulator, 1, "sales")
    url, _ = butler(auth_section(hashes, finance_id=finance[0]))
    key = with_key(keys["finance"])

    def started_by(body: Any) -> dict[str, Any]:
        answer = requests.put(
            f"{url}/v4/reloadtask/-/start", json=body, headers=key, timeout=TIMEOUT
        )
        assert answer.status_code == 200
        return answer.json()

    by_tag = started_by(tag_body("finance") + tag_body("sales"))
    assert {t["taskId"] for t in by_tag["tasksStarted"]} == set(finance)
    assert by_tag["tasksTagDenied"] == [{"tag": "sales"}]
    by_id = started_by(
        [{"type": "starttaskid", "payload": {"taskId": t}} for t in (finance[0], sales[0])]
    )
    assert [t["taskId"] for t in by_id["tasksStarted"]] == [finance[0]]
    assert by_id["tasksId"]["denied"] == [{"taskId": sales[0]}]
    by_cp = started_by(
        [
            {
                "type": "starttaskcustomproperty",
                "payload": {"customPropertyName": n, "customPropertyValue": v},
            }
            for n, v in (("taskGroup", "tasks1"), ("taskGroup", "tasks2"))
        ]
    )
    assert by_cp["tasksCPDenied"] == [{"name": "taskGroup", "value": "tasks2"}]
    assert by_cp["tasksCP"], "the allowed custom property started its tasks"
    assert sales[0] not in {record.task_id for record in qrs_simulator.starts()}


def test_too_many_failures_give_429_but_a_valid_key_is_never_limited(butler, hashes, keys):
    url, _ = butler(auth_section(hashes, failedAttemptsPerMinute=3))
    wrong = with_key("bk_nope_nope")
    statuses = [
        requests.get(f"{url}/v4/keyvaluesnamespaces", headers=wrong, timeout=TIMEOUT).status_code
        for _ in range(5)
    ]
    assert statuses == [401, 401, 401, 429, 429]
    limited = requests.get(f"{url}/v4/keyvaluesnamespaces", timeout=TIMEOUT)
    assert limited.status_code == 429
    good = requests.get(
        f"{url}/v4/keyvaluesnamespaces", headers=with_key(keys["reader"]), timeout=TIMEOUT
    )
    assert good.status_code == 200


def test_auth_off_serves_everyone_as_before(butler, hashes):
    url, _ = butler({"enable": False})
    answer = requests.post(
        f"{url}/v4/keyvalues/any", json={"key": "k", "value": "v"}, timeout=TIMEOUT
    )
    assert answer.status_code == 201


def test_the_document_declares_the_schemes_and_the_open_routes(butler, hashes):
    url, _ = butler(auth_section(hashes))
    document = requests.get(f"{url}/documentation/json", timeout=TIMEOUT).json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["apiKey"] == {"type": "apiKey", "in": "header", "name": "X-Api-Key"}
    assert schemes["bearer"] == {"type": "http", "scheme": "bearer"}
    assert document["security"] == [{"apiKey": []}, {"bearer": []}]
    assert document["paths"]["/v4/butlerping"]["get"]["security"] == []
    start_answers = document["paths"]["/v4/reloadtask/{taskId}/start"]["put"]["responses"]
    assert {"401", "403"} <= set(start_answers)
    page = requests.get(f"{url}/documentation", timeout=TIMEOUT)
    assert (
        "'unsafe-inline'"
        not in page.headers["Content-Security-Policy"].split("script-src")[1].split(";")[0]
    )
    assert page.headers["X-Frame-Options"] == "DENY"
    assert "<script>" not in page.text


def test_without_auth_the_document_declares_no_scheme(butler):
    url, _ = butler({"enable": False})
    document = requests.get(f"{url}/documentation/json", timeout=TIMEOUT).json()
    assert "securitySchemes" not in document.get("components", {})
    assert "security" not in document


def test_cors_is_off_unless_origins_are_listed(butler, hashes):
    url, _ = butler({"enable": False})
    plain = requests.get(
        f"{url}/v4/butlerping", headers={"Origin": "https://evil.example"}, timeout=TIMEOUT
    )
    assert "Access-Control-Allow-Origin" not in plain.headers
    url, _ = butler(
        {"enable": False}, {"restServerConfig": {"cors": {"allowOrigins": ["https://ok.example"]}}}
    )
    allowed = requests.options(
        f"{url}/v4/keyvalues/ns",
        headers={"Origin": "https://ok.example", "Access-Control-Request-Method": "POST"},
        timeout=TIMEOUT,
    )
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://ok.example"
    assert "X-Api-Key" in allowed.headers["Access-Control-Allow-Headers"]
    assert "POST" in allowed.headers["Access-Control-Allow-Methods"]
    other = requests.get(
        f"{url}/v4/butlerping", headers={"Origin": "https://evil.example"}, timeout=TIMEOUT
    )
    assert "Access-Control-Allow-Origin" not in other.headers


def test_auth_settings_that_cannot_work_stop_start_up(make_config, hashes):
    bad_scope = auth_section(hashes)
    bad_scope["apiKeys"][1]["scopes"] = ["keyValueStor"]
    with pytest.raises(ConfigError, match=r"apiKeys\.1\.scopes: 'keyValueStor' matches no"):
        create_app(make_config({"restServerConfig": {"auth": bad_scope}}))
    bad_hash = auth_section(hashes)
    bad_hash["apiKeys"][0]["keyHash"] = "scrypt$nonsense"
    with pytest.raises(ConfigError, match=r"apiKeys\.0\.keyHash") as caught:
        create_app(make_config({"restServerConfig": {"auth": bad_hash}}))
    assert "nonsense" not in str(caught.value)


def test_a_plain_key_works_with_a_warning(make_config, caplog):
    section = {
        "enable": True,
        "apiKeys": [{"name": "legacy", "key": "a-plain-key-of-some-length", "scopes": ["read"]}],
    }
    with caplog.at_level(logging.WARNING):
        app = create_app(
            make_config(
                {
                    "restServerConfig": {"auth": section},
                    "restServerEndpointsEnable": {"butlerping": True},
                }
            )
        )
    assert "holds a plain key" in caplog.text
    assert "a-plain-key-of-some-length" not in caplog.text
    client = app.test_client()
    assert client.get("/v4/butlerping").status_code == 401
    ok = client.get("/v4/butlerping", headers={"X-Api-Key": "a-plain-key-of-some-length"})
    assert ok.status_code == 200


def test_listening_beyond_loopback_without_auth_warns(make_config, caplog):
    with caplog.at_level(logging.WARNING, logger="butler.auth"):
        create_app(make_config({"restServerConfig": {"serverHost": "0.0.0.0"}}))
    assert "authentication off" in caplog.text


@pytest.fixture(scope="module")
def tls_certs(tmp_path_factory: pytest.TempPathFactory) -> CertPaths:
    return generate_certificates(tmp_path_factory.mktemp("auth-tls"))


def serve_tls(make_config, live_server, tls_certs, auth: dict[str, Any]) -> str:
    config = make_config(
        {
            "restServerConfig": {"auth": auth},
            "restServerEndpointsEnable": {"butlerping": True, "keyValueStore": True},
            "keyValueStore": {"persistence": "memory"},
        }
    )
    services = build_services(config)
    app = create_app(config, services)
    tls = TlsFiles(tls_certs.server_cert, tls_certs.server_key, ca=tls_certs.ca)
    return live_server(app, tls=tls)


def test_over_tls_keys_are_checked_the_same(make_config, live_server, tls_certs, hashes, keys):
    url = serve_tls(make_config, live_server, tls_certs, auth_section(hashes))
    ca = str(tls_certs.ca)
    namespaces = f"{url}/v4/keyvaluesnamespaces"
    assert requests.get(namespaces, verify=ca, timeout=TIMEOUT).status_code == 401
    wrong = requests.get(namespaces, verify=ca, headers=with_key("bk_x_y"), timeout=TIMEOUT)
    assert wrong.status_code == 401
    reader = with_key(keys["reader"])
    assert requests.get(namespaces, verify=ca, headers=reader, timeout=TIMEOUT).status_code == 200
    write = requests.post(
        f"{url}/v4/keyvalues/ns", json={"key": "k", "value": "v"}, headers=reader, verify=ca,
        timeout=TIMEOUT,
    )  # fmt: skip
    assert write.status_code == 403


@pytest.mark.servers("waitress")  # granian cannot tell the app who presented a certificate
def test_a_certificate_caller_is_identified_and_scoped(
    make_config, live_server, tls_certs, hashes, keys
):
    auth = auth_section(
        hashes,
        clientCertificates=[
            {
                "subject": "QlikClient",
                "name": "qlik",
                "scopes": ["keyValueStore"],
                "kvNamespaces": ["qlik_*"],
            }
        ],
    )
    url = serve_tls(make_config, live_server, tls_certs, auth)
    ca, cert = str(tls_certs.ca), (str(tls_certs.client_cert), str(tls_certs.client_key))
    ok = requests.post(
        f"{url}/v4/keyvalues/qlik_a", json={"key": "k", "value": "v"}, verify=ca, cert=cert,
        timeout=TIMEOUT,
    )  # fmt: skip
    assert ok.status_code == 201
    outside = requests.post(
        f"{url}/v4/keyvalues/other", json={"key": "k", "value": "v"}, verify=ca, cert=cert,
        timeout=TIMEOUT,
    )  # fmt: skip
    assert outside.status_code == 403
    assert "'qlik'" in outside.json()["message"]
    # A presented key decides, even next to a good certificate; a wrong one is refused.
    wrong = requests.get(
        f"{url}/v4/keyvaluesnamespaces", verify=ca, cert=cert, headers=with_key("bk_a_b"),
        timeout=TIMEOUT,
    )  # fmt: skip
    assert wrong.status_code == 401


def test_granian_with_certificate_callers_stops_start_up(make_config, hashes):
    auth = auth_section(hashes, clientCertificates=[{"subject": "QlikClient", "scopes": ["*"]}])
    config = make_config({"restServerConfig": {"server": "granian", "auth": auth}})
    with pytest.raises(ConfigError, match="clientCertificates"):
        create_app(config)


def test_file_directories_scope_confines_file_operations(
    make_config, live_server, tmp_path, keys, hashes
):
    source, target, other = tmp_path / "from", tmp_path / "to", tmp_path / "to" / "other"
    scoped = tmp_path / "to" / "finance"
    for folder in (source, target, other, scoped):
        folder.mkdir(parents=True, exist_ok=True)
    (source / "a.qvd").write_text("a", encoding="utf-8")
    (scoped / "link").symlink_to(other, target_is_directory=True)
    auth = auth_section(hashes)
    auth["apiKeys"].append(
        {
            "name": "files",
            "keyHash": hashes["starter"],
            "scopes": ["fileCopy"],
            "fileDirectories": [str(source), str(scoped)],
        }
    )
    auth["apiKeys"] = [k for k in auth["apiKeys"] if k["name"] != "starter"]
    config = make_config(
        {
            "restServerConfig": {"auth": auth},
            "restServerEndpointsEnable": {"fileCopy": True},
            "fileCopyApprovedDirectories": [
                {"fromDirectory": str(source), "toDirectory": str(target)}
            ],
        }
    )
    services = build_services(config)
    url = live_server(create_app(config, services))
    key = with_key(keys["starter"])

    def copy(to: Path) -> requests.Response:
        body = {"fromFile": str(source / "a.qvd"), "toFile": str(to)}
        return requests.put(f"{url}/v4/filecopy", json=body, headers=key, timeout=TIMEOUT)

    assert copy(scoped / "a.qvd").status_code == 201
    assert copy(other / "a.qvd").status_code == 403
    assert copy(scoped / "link" / "b.qvd").status_code == 403
    assert not (other / "a.qvd").exists() and not (other / "b.qvd").exists()


def test_file_directories_outside_the_approved_ones_stop_start_up(
    make_app, make_config, tmp_path, hashes
):
    auth = auth_section(hashes)
    auth["apiKeys"][1]["fileDirectories"] = [str(tmp_path / "elsewhere")]
    approved = [{"fromDirectory": str(tmp_path / "a"), "toDirectory": str(tmp_path / "b")}]
    config = make_config(
        {
            "restServerConfig": {"auth": auth},
            "restServerEndpointsEnable": {"fileCopy": True},
            "fileCopyApprovedDirectories": approved,
        }
    )
    with pytest.raises(ConfigError, match=r"apiKeys\.1\.fileDirectories\.0: .* inside no approved"):
        make_app(config)


def test_schedules_scope_limits_what_a_key_sees_and_changes(
    make_config, live_server, tmp_path, hashes, keys
):
    auth = auth_section(hashes)
    auth["apiKeys"].append(
        {
            "name": "ops",
            "keyHash": hashes["starter"],
            "scopes": ["scheduler.*"],
            "schedules": ["ops"],
        }
    )
    auth["apiKeys"] = [k for k in auth["apiKeys"] if k["name"] != "starter"]
    config = make_config(
        {
            "restServerConfig": {"auth": auth},
            "restServerEndpointsEnable": {
                key: True
                for key in (
                    "scheduler.createNewSchedule", "scheduler.getSchedule",
                    "scheduler.updateSchedule", "scheduler.deleteSchedule",
                    "scheduler.startSchedule", "scheduler.stopSchedule",
                )
            },
            "scheduler": {"enable": True, "configfile": str(tmp_path / "schedule.yaml")},
            "configQRS": {"host": "127.0.0.1"},
            "cert": {"clientCert": "c.pem", "clientCertKey": "k.pem", "clientCertCA": "ca.pem"},
        }
    )  # fmt: skip
    services = Services(config=config)
    services.task_starter = object()  # type: ignore[assignment]
    services.scheduler = build_scheduler(config, services)
    url = live_server(create_app(config, services))
    ops, admin = with_key(keys["starter"]), with_key(keys["admin"])

    def schedule(name: str, tags: list[str]) -> dict[str, Any]:
        return {
            "name": name,
            "cronSchedule": "0 0 1 1 *",
            "timezone": "UTC",
            "qlikSenseTaskId": "e3b27f50-b1c0-4879-88fc-c7cdd9c1cf3e",
            "startupState": "stopped",
            "tags": tags,
        }

    mine = requests.post(
        f"{url}/v4/schedules", json=schedule("mine", ["ops"]), headers=ops, timeout=TIMEOUT
    )
    assert mine.status_code == 201
    untagged = requests.post(
        f"{url}/v4/schedules", json=schedule("x", []), headers=ops, timeout=TIMEOUT
    )
    assert untagged.status_code == 403
    theirs = requests.post(
        f"{url}/v4/schedules", json=schedule("theirs", ["finance"]), headers=admin, timeout=TIMEOUT
    ).json()["id"]
    listed = requests.get(f"{url}/v4/schedules", headers=ops, timeout=TIMEOUT).json()
    assert [s["name"] for s in listed] == ["mine"]
    for method, path in (
        ("GET", f"/v4/schedules?id={theirs}"),
        ("GET", f"/v4/schedules/{theirs}/preview"),
        ("GET", f"/v4/schedules/{theirs}/fires"),
        ("POST", f"/v4/schedules/{theirs}/run"),
        ("PUT", f"/v4/schedules/{theirs}/start"),
        ("DELETE", f"/v4/schedules/{theirs}"),
        ("PUT", "/v4/schedules/startall"),
    ):
        answer = requests.request(method, f"{url}{path}", headers=ops, timeout=TIMEOUT)
        assert answer.status_code == 403, (method, path, answer.text)
    retag = requests.put(
        f"{url}/v4/schedules/{mine.json()['id']}", json={"tags": ["finance"]}, headers=ops,
        timeout=TIMEOUT,
    )  # fmt: skip
    assert retag.status_code == 403
    own = requests.get(
        f"{url}/v4/schedules/{mine.json()['id']}/preview", headers=ops, timeout=TIMEOUT
    )
    assert own.status_code == 200 and len(own.json()) == 10
    own_fires = requests.get(
        f"{url}/v4/schedules/{mine.json()['id']}/fires", headers=ops, timeout=TIMEOUT
    )
    assert own_fires.status_code == 200 and own_fires.json() == []
    for tags, status in ((["ops"], 200), (["finance"], 403), ([], 403)):
        unsaved = requests.post(
            f"{url}/v4/schedules/preview", json=schedule("p", tags), headers=ops, timeout=TIMEOUT
        )
        assert unsaved.status_code == status, (tags, unsaved.text)


def test_an_idempotency_key_is_kept_per_caller(butler, hashes, keys, qrs_simulator):
    url, _ = butler(auth_section(hashes))
    body = [{"type": "starttaskid", "payload": {"taskId": "e3b27f50-b1c0-4879-88fc-c7cdd9c1cf3e"}}]

    def start_as(name: str) -> requests.Response:
        headers = {**with_key(keys[name]), "Idempotency-Key": "nightly-1"}
        return requests.put(
            f"{url}/v4/reloadtask/-/start", json=body, headers=headers, timeout=TIMEOUT
        )

    first, again, other = start_as("admin"), start_as("admin"), start_as("starter")
    assert first.json()["requestId"] == again.json()["requestId"]
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert other.json()["requestId"] != first.json()["requestId"]
    assert other.json()["totalTasksStarted"] == 1
