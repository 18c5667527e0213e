"""The key-value REST API over real sockets, in every form butler_subs.qvs sends."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests

from butler.app import create_app
from butler.kvstore import KvStore
from butler.services import Services
from tests.kv.test_kvstore import FakeClock

JSON = "application/json"
OVERRIDE_DELETE = {"X-HTTP-Method-Override": "DELETE"}


@dataclass
class Api:
    url: str
    store: KvStore
    clock: FakeClock
    session: requests.Session

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.session.request(method, f"{self.url}{path}", timeout=10, **kwargs)

    def add(self, namespace: str, body: dict[str, Any]) -> requests.Response:
        """AddKeyValue: POST with an explicit JSON content type."""
        return self.call("POST", f"/v4/keyvalues/{namespace}", json=body)


@pytest.fixture(params=["sqlite", "memory"])
def api(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    make_config: Callable[..., Any],
    live_server: Callable[..., str],
) -> Any:
    clock = FakeClock()
    path = tmp_path / "kv.sqlite" if request.param == "sqlite" else None
    store = KvStore(path, max_keys_per_namespace=5, clock=clock)
    config = make_config({"restServerEndpointsEnable": {"keyValueStore": True}})
    url = live_server(create_app(config, Services(config=config, kv_store=store)))
    with requests.Session() as session:
        yield Api(url, store, clock, session)
    store.close()


def assert_error(response: requests.Response, status: int, message: str) -> None:
    assert response.status_code == status
    assert response.headers["Content-Type"].startswith(JSON)
    body = response.json()
    assert body["statusCode"] == status
    assert body["message"] == message


# --------------------------------------------------------------------------- qvs forms


def test_add_key_value_with_string_ttl(api: Api) -> None:
    response = api.add("Sales ETL", {"key": "Last extract", "value": "2020-09-29", "ttl": "3000"})
    assert response.status_code == 201
    assert response.headers["Content-Type"].startswith(JSON)
    assert response.json() == {
        "namespace": "Sales ETL",
        "key": "Last extract",
        "value": "2020-09-29",
        "ttl": 3000,
    }
    api.clock.advance_ms(3000)
    assert_error(
        api.call("GET", "/v4/keyvalues/Sales ETL", params={"key": "Last extract"}),
        404,
        "Key 'Last extract' not found in namespace: Sales ETL",
    )


@pytest.mark.parametrize("ttl", [None, 0, "0", -5])
def test_add_key_value_without_expiry(api: Api, ttl: Any) -> None:
    body = {"key": "k", "value": "v"} if ttl is None else {"key": "k", "value": "v", "ttl": ttl}
    response = api.add("ns", body)
    assert response.status_code == 201
    assert response.json()["ttl"] == (-5 if ttl == -5 else 0)
    api.clock.advance_ms(10**10)
    assert api.call("GET", "/v4/keyvalues/ns", params={"key": "k"}).json()["ttl"] == 0


def test_add_key_value_coerces_numbers_to_text(api: Api) -> None:
    response = api.add("ns", {"key": 42, "value": 12345.789, "ttl": 10000.9, "extra": 1})
    assert response.status_code == 201
    assert response.json() == {"namespace": "ns", "key": "42", "value": "12345.789", "ttl": 10000}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"key": "k", "value": None}, "body/value must not be null"),
        ({"key": True, "value": "v"}, "body/key must be string"),
        ({"key": "k", "value": False}, "body/value must be string"),
    ],
)
def test_null_and_booleans_are_not_taken_as_text(
    api: Api, body: dict[str, Any], message: str
) -> None:
    response = api.add("ns", body)
    assert response.status_code == 400
    assert response.json()["message"] == message
    assert api.call("GET", "/v4/keyvaluesnamespaces").json() == []


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(api: Api, constant: str) -> None:
    response = api.call(
        "POST",
        "/v4/keyvalues/ns",
        data=f'{{"key": {constant}, "value": "v"}}',
        headers={"Content-Type": "application/json"},
    )
    assert_error(response, 400, "Body is not valid JSON")
    assert api.call("GET", "/v4/keyvaluesnamespaces").json() == []


def test_a_huge_negative_ttl_means_no_expiry_and_echoes_the_cap(api: Api) -> None:
    response = api.add("ns", {"key": "k", "value": "v", "ttl": -1e308})
    assert response.status_code == 201
    assert response.json()["ttl"] == -(10**15)
    assert api.call("GET", "/v4/keyvalues/ns", params={"key": "k"}).json()["ttl"] == 0


def test_get_key_value(api: Api) -> None:
    api.add("Sales ETL step 2", {"key": "Last extract timestamp", "value": "2020-09-29 17:14:56"})
    api.add("Sales ETL step 2", {"key": "short", "value": "x", "ttl": 60000})
    api.clock.advance_ms(1000)
    response = api.call(
        "GET", "/v4/keyvalues/Sales ETL step 2", params={"key": "Last extract timestamp"}
    )
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith(JSON)
    assert response.json() == {
        "namespace": "Sales ETL step 2",
        "key": "Last extract timestamp",
        "value": "2020-09-29 17:14:56",
        "ttl": 0,
    }
    short = api.call("GET", "/v4/keyvalues/Sales ETL step 2?key=short").json()
    assert short["ttl"] == 59000


def test_exists_key_value(api: Api) -> None:
    api.add("ns", {"key": "k", "value": "v", "ttl": "5000"})
    response = api.call("GET", "/v4/keyvalues/ns/keyexists", params={"key": "k"})
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith(JSON)
    assert response.json() == {
        "keyExists": True,
        "keyValue": {"namespace": "ns", "key": "k", "value": "v", "ttl": 5000},
    }
    missing = api.call("GET", "/v4/keyvalues/ns/keyexists", params={"key": "other"})
    assert missing.status_code == 200
    assert missing.json() == {"keyExists": False, "keyValue": {}}
    api.clock.advance_ms(5000)
    expired = api.call("GET", "/v4/keyvalues/ns/keyexists", params={"key": "k"})
    assert expired.json() == {"keyExists": False, "keyValue": {}}


@pytest.mark.parametrize(
    "headers",
    [OVERRIDE_DELETE, {**OVERRIDE_DELETE, "Content-Type": JSON}],
    ids=["no-content-type", "json-content-type-empty-body"],
)
def test_delete_key_value_via_post_override_without_body(api: Api, headers: dict) -> None:
    api.add("ns", {"key": "k1", "value": "v"})
    api.add("ns", {"key": "k2", "value": "v"})
    response = api.call("POST", "/v4/keyvalues/ns/k1", headers=headers)
    assert response.status_code == 204
    assert response.content == b""
    assert api.call("GET", "/v4/keylist/ns").json()["keys"] == [{"key": "k2"}]
    assert_error(
        api.call("POST", "/v4/keyvalues/ns/k1", headers=headers),
        404,
        "Key 'k1' not found in namespace: ns",
    )


def test_delete_namespace_via_post_override_without_body(api: Api) -> None:
    api.add("keep", {"key": "k", "value": "v"})
    api.add("drop", {"key": "k", "value": "v"})
    response = api.call("POST", "/v4/keyvalues/drop", headers=OVERRIDE_DELETE)
    assert response.status_code == 204
    assert api.call("GET", "/v4/keyvaluesnamespaces").json() == ["keep"]
    assert_error(
        api.call("POST", "/v4/keyvalues/drop", headers=OVERRIDE_DELETE),
        404,
        "Namespace not found: drop",
    )


def test_plain_delete_methods(api: Api) -> None:
    api.add("ns", {"key": "k", "value": "v"})
    assert api.call("DELETE", "/v4/keyvalues/ns/k").status_code == 204
    assert api.call("DELETE", "/v4/keyvalues/ns").status_code == 204
    assert api.call("GET", "/v4/keyvaluesnamespaces").json() == []


def test_a_key_named_keyexists_can_be_deleted(api: Api) -> None:
    api.add("ns", {"key": "keyexists", "value": "v"})
    assert api.call("DELETE", "/v4/keyvalues/ns/keyexists").status_code == 204
    assert api.call("GET", "/v4/keylist/ns").json() == {"namespace": "ns", "keys": []}


@pytest.mark.parametrize("key", ["a/b", "dir/sub/file.qvd", "trailing/"])
def test_a_key_with_slashes_can_be_deleted(api: Api, key: str) -> None:
    api.add("ns", {"key": key, "value": "v"})
    quoted = requests.utils.quote(key, safe="")
    assert api.call("DELETE", f"/v4/keyvalues/ns/{quoted}").status_code == 204
    assert api.call("GET", "/v4/keylist/ns").json() == {"namespace": "ns", "keys": []}


@pytest.mark.parametrize(
    "path", ["/v4/keyvalues/%FF?key=k", "/v4/keyvalues/%FE?key=k", "/v4/keyvalues/ns?key=%C3"]
)
def test_urls_that_are_not_utf8_are_400(api: Api, path: str) -> None:
    api.add("ns", {"key": "k", "value": "v"})
    assert_error(
        api.call("GET", path), 400, "The URL is not valid UTF-8 (percent-encode UTF-8 bytes)"
    )
    assert api.call("GET", "/v4/keyvalues/ns?key=%C3%A5").status_code == 404


def test_get_key_value_namespaces(api: Api) -> None:
    assert api.call("GET", "/v4/keyvaluesnamespaces").json() == []
    for ns in ("Sales ETL step 1", "Sales ETL step 2", "Another"):
        api.add(ns, {"key": "k", "value": "v"})
    response = api.call("GET", "/v4/keyvaluesnamespaces")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith(JSON)
    assert response.json() == ["Sales ETL step 1", "Sales ETL step 2", "Another"]


def test_get_all_keys_in_namespace(api: Api) -> None:
    for key in ("p_1", "p_2", "p_3"):
        api.add("a:b", {"key": key, "value": "v"})
    api.add("a:b", {"key": "p_2", "value": "overwritten"})
    response = api.call("GET", "/v4/keylist/a:b")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith(JSON)
    assert response.json() == {
        "namespace": "a:b",
        "keys": [{"key": "p_1"}, {"key": "p_2"}, {"key": "p_3"}],
    }


def test_unicode_and_url_encoded_names_round_trip(api: Api) -> None:
    namespace, key, value = "Försäljning #1", "nyckel/ä?&=", 'värde "citat" \\ ✓'
    assert api.add(quote(namespace), {"key": key, "value": value}).status_code == 201
    got = api.call("GET", f"/v4/keyvalues/{quote(namespace)}", params={"key": key}).json()
    assert got["value"] == value
    assert api.call("GET", "/v4/keyvaluesnamespaces").json() == [namespace]


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "path",
    ["/v4/keyvalues/nope?key=k", "/v4/keyvalues/nope/keyexists?key=k", "/v4/keylist/nope"],
)
def test_unknown_namespace_is_404_on_reads(api: Api, path: str) -> None:
    assert_error(api.call("GET", path), 404, "Namespace not found: nope")


def test_unknown_namespace_is_404_on_deletes(api: Api) -> None:
    assert_error(api.call("DELETE", "/v4/keyvalues/nope/k"), 404, "Namespace not found: nope")
    assert_error(api.call("DELETE", "/v4/keyvalues/nope"), 404, "Namespace not found: nope")


@pytest.mark.parametrize("path", ["/v4/keyvalues/ns", "/v4/keyvalues/ns/keyexists"])
def test_missing_key_query_is_400_naming_it(api: Api, path: str) -> None:
    api.add("ns", {"key": "k", "value": "v"})
    response = api.call("GET", path)
    assert response.status_code == 400
    assert "'key'" in response.json()["message"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"key": "k", "value": "v", "ttl": ""}, "body/ttl must be number"),
        ({"key": "k", "value": "v", "ttl": " "}, "body/ttl must be number"),
        ({"key": "k"}, "Required parameter is missing: value"),
        ({"key": "k", "value": "v", "ttl": "abc"}, "body/ttl must be number"),
        ({"key": "k", "value": "v", "ttl": True}, "body/ttl must be number"),
        ({"key": "k", "value": {"a": 1}}, "body/value must be string"),
    ],
)
def test_bad_post_bodies_are_400(api: Api, body: dict, message: str) -> None:
    assert_error(api.add("ns", body), 400, message)
    assert api.call("GET", "/v4/keyvaluesnamespaces").json() == []


@pytest.mark.parametrize("body", [None, {"value": "v"}, {"key": "", "value": "v"}, {"key": None}])
def test_a_missing_key_answers_the_originals_message(api: Api, body: Any) -> None:
    response = api.call("POST", "/v4/keyvalues/ns", json=body)
    assert_error(response, 400, "Required parameter is missing")
    assert response.json()["message"] == "Required parameter is missing"
    assert api.call("GET", "/v4/keyvaluesnamespaces").json() == []


def test_full_namespace_is_409_and_overwrite_still_works(api: Api) -> None:
    for i in range(5):
        assert api.add("ns", {"key": f"k{i}", "value": "v"}).status_code == 201
    response = api.add("ns", {"key": "k5", "value": "v"})
    assert response.status_code == 409
    assert "maxKeysPerNamespace" in response.json()["message"]
    assert api.add("ns", {"key": "k0", "value": "new"}).status_code == 201
    assert len(api.call("GET", "/v4/keylist/ns").json()["keys"]) == 5


def test_missing_store_is_503(
    make_config: Callable[..., Any], live_server: Callable[..., str]
) -> None:
    config = make_config({"restServerEndpointsEnable": {"keyValueStore": True}})
    url = live_server(create_app(config, Services(config=config)))
    response = requests.get(f"{url}/v4/keyvaluesnamespaces", timeout=10)
    assert response.status_code == 503
    assert "Butler.keyValueStore" in response.json()["message"]


def test_routes_absent_when_disabled(
    make_config: Callable[..., Any], live_server: Callable[..., str]
) -> None:
    config = make_config()
    store = KvStore(None)
    url = live_server(create_app(config, Services(config=config, kv_store=store)))
    response = requests.get(f"{url}/v4/keyvaluesnamespaces", timeout=10)
    assert response.status_code == 404
    assert response.json()["message"] == "Route GET:/v4/keyvaluesnamespaces not found"


@pytest.mark.parametrize(
    ("namespace", "key", "message"),
    [
        ("n" * 256, "k", "namespace must NOT have more than 255 characters"),
        ("ns", "k" * 1025, "key must NOT have more than 1024 characters"),
    ],
)
def test_namespace_and_key_lengths_are_limited(
    api: Api, namespace: str, key: str, message: str
) -> None:
    response = api.add(namespace, {"key": key, "value": "v"})
    assert_error(response, 400, message)
    assert api.call("GET", "/v4/keyvaluesnamespaces").json() == []
    assert api.add("n" * 255, {"key": "k" * 1024, "value": "v" * 100_000}).status_code == 201
