"""The HTTP layer over real sockets: errors, override, coercion, limits, rate limit."""

import http.client
import json
import re
import socket
import time
from urllib.parse import urlsplit

import pytest
import requests
from marshmallow import Schema

from butler.app import create_app
from butler.endpoints import Endpoint
from butler.fields import LoadScriptBoolean, LoadScriptInteger, LoadScriptString
from butler.hookspecs import hookimpl
from butler.plugins import get_plugin_manager


class EchoBody(Schema):
    flag = LoadScriptBoolean()
    count = LoadScriptInteger()
    text = LoadScriptString()


class EchoPlugin:
    """A test plugin with routes on every method, to observe what reaches a view."""

    @hookimpl
    def butler_endpoints(self, config, services):
        def echo(call):
            return {"body": call.body, "query": dict(call.query), "path": dict(call.path)}

        return [
            Endpoint(
                "butlerping",
                method,
                "/test/echo/<item>",
                echo,
                "echo",
                "Test",
                body_schema=EchoBody,
            )
            for method in ("PUT", "DELETE", "PATCH")
        ] + [
            Endpoint("butlerping", "GET", "/test/echo/<item>", echo, "echo", "Test"),
            Endpoint("butlerping", "POST", "/test/echo/<item>", echo, "echo any body", "Test"),
        ]


@pytest.fixture
def server(make_config, live_server):
    def start(extra=None):
        config = make_config(
            {
                "restServerEndpointsEnable": {"butlerping": True, "base62ToBase16": True},
                **(extra or {}),
            }
        )
        pm = get_plugin_manager(load_entry_points=False)
        pm.register(EchoPlugin(), "echo")
        return live_server(create_app(config, plugin_manager=pm))

    return start


def assert_error(response, status, message_part=""):
    assert response.status_code == status
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["statusCode"] == status
    assert isinstance(body["error"], str) and body["error"]
    assert message_part in body["message"]
    return body


def test_unknown_and_disabled_routes_are_json_404(server):
    url = server()
    assert_error(
        requests.get(f"{url}/v4/nothing", timeout=5), 404, "Route GET:/v4/nothing not found"
    )
    assert_error(requests.get(f"{url}/v4/base16tobase62?base16=ff", timeout=5), 404)
    assert_error(requests.post(f"{url}/v4/butlerping", timeout=5), 404)


@pytest.mark.parametrize("method", ["PUT", "put", "Delete", "PATCH"])
def test_method_override_on_post(server, method):
    url = server()
    response = requests.post(
        f"{url}/test/echo/a",
        json={"text": "x"},
        headers={"X-HTTP-Method-Override": method},
        timeout=5,
    )
    assert response.status_code == 200
    assert response.json()["body"] == {"text": "x"}


def test_override_to_get_and_unknown_value(server):
    url = server()
    got = requests.post(
        f"{url}/v4/butlerping", headers={"X-HTTP-Method-Override": "GET"}, timeout=5
    )
    assert got.status_code == 200
    assert_error(
        requests.post(f"{url}/v4/butlerping", headers={"X-HTTP-Method-Override": "FOO"}, timeout=5),
        400,
        "X-HTTP-Method-Override",
    )


def test_override_ignored_on_other_methods(server):
    url = server()
    response = requests.put(
        f"{url}/test/echo/a", json={}, headers={"X-HTTP-Method-Override": "DELETE"}, timeout=5
    )
    assert response.status_code == 200


def test_bodyless_overridden_delete_with_json_content_type(server):
    url = server()
    response = requests.post(
        f"{url}/test/echo/a",
        headers={"X-HTTP-Method-Override": "DELETE", "Content-Type": "application/json"},
        timeout=5,
    )
    assert response.status_code == 200
    assert response.json()["body"] == {}


def test_load_script_coercion(server):
    url = server()
    response = requests.put(
        f"{url}/test/echo/a", json={"flag": "TRUE", "count": "3000", "text": 12}, timeout=5
    )
    assert response.json()["body"] == {"flag": True, "count": 3000, "text": "12"}
    response = requests.put(f"{url}/test/echo/a", json={"flag": "False", "count": 1}, timeout=5)
    assert response.json()["body"] == {"flag": False, "count": 1}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"flag": "yes"}, "body/flag must be boolean"),
        ({"count": "abc"}, "body/count must be number"),
        ({"count": "1.5"}, "body/count must be integer"),
        ({"text": {"a": 1}}, "body/text must be string"),
    ],
)
def test_validation_errors(server, body, message):
    url = server()
    error = assert_error(requests.put(f"{url}/test/echo/a", json=body, timeout=5), 400, message)
    assert error["code"] == "FST_ERR_VALIDATION"


def test_body_must_be_object(server):
    url = server()
    assert_error(
        requests.put(f"{url}/test/echo/a", json=[1], timeout=5), 400, "body must be object"
    )


def test_invalid_json_and_media_type(server):
    url = server()
    assert_error(
        requests.put(
            f"{url}/test/echo/a",
            data="{nope",
            headers={"Content-Type": "application/json"},
            timeout=5,
        ),
        400,
        "not valid JSON",
    )
    assert_error(requests.put(f"{url}/test/echo/a", data={"a": "b"}, timeout=5), 415)


@pytest.mark.parametrize(
    "content_type", ["text/plain", "text/plain; charset=utf-8", "multipart/form-data", None]
)
def test_bodies_a_browser_may_send_cross_site_are_415(server, content_type):
    url = server()
    headers = {} if content_type is None else {"Content-Type": content_type}
    request = requests.Request("POST", f"{url}/test/echo/a", data=b'{"text": "x"}', headers=headers)
    prepared = request.prepare()
    if content_type is None:
        prepared.headers.pop("Content-Type", None)
    with requests.Session() as session:
        response = session.send(prepared, timeout=5)
    assert_error(response, 415, "send application/json")


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "application/ld+json"])
def test_json_types_are_accepted(server, content_type):
    url = server()
    response = requests.put(
        f"{url}/test/echo/a",
        data='{"text": "x"}',
        headers={"Content-Type": content_type},
        timeout=5,
    )
    assert response.json()["body"] == {"text": "x"}


def test_body_size_limit(server):
    url = server()
    assert_error(
        requests.put(f"{url}/test/echo/a", json={"text": "x" * (1024 * 1024 + 10)}, timeout=10), 413
    )


@pytest.mark.parametrize("depth", [65, 1000, 100_000])
def test_deeply_nested_json_is_400_not_500(server, depth):
    url = server()
    body = '{"text": ' + "[" * depth + "]" * depth + "}"
    response = requests.put(
        f"{url}/test/echo/a", data=body, headers={"Content-Type": "application/json"}, timeout=10
    )
    assert_error(response, 400, "nested more than 64 levels")


def test_moderately_nested_json_is_accepted(server):
    url = server()
    body = '{"text": "x", "extra": ' + "[" * 60 + "]" * 60 + "}"
    response = requests.post(
        f"{url}/test/echo/a", data=body, headers={"Content-Type": "application/json"}, timeout=10
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    "body", ['{"text": "a\\ud800b"}', '{"\\udfff": 1}', '{"text": ["ok", "\\ud83d"]}']
)
def test_unpaired_surrogates_are_400(server, body):
    url = server()
    response = requests.put(
        f"{url}/test/echo/a", data=body, headers={"Content-Type": "application/json"}, timeout=5
    )
    assert_error(response, 400, "unpaired surrogate")
    paired = requests.put(f"{url}/test/echo/a", json={"text": "\U0001f600"}, timeout=5)
    assert paired.json()["body"] == {"text": "\U0001f600"}


def test_base_conversion_is_capped_and_exact_at_the_cap(server):
    url = server()
    value = "Z" * 400
    response = requests.get(f"{url}/v4/base62tobase16", params={"base62": value}, timeout=5)
    assert response.status_code == 200
    assert int(response.json()["base16"], 16) == 62**400 - 1
    too_long = requests.get(f"{url}/v4/base62tobase16", params={"base62": value + "Z"}, timeout=5)
    assert_error(too_long, 400, "querystring/base62 must NOT have more than 400 characters")


def test_missing_query_parameter_message(server):
    url = server()
    assert_error(
        requests.get(f"{url}/v4/base62tobase16", timeout=5),
        400,
        "querystring must have required property 'base62'",
    )


def test_repeated_query_parameter_is_rejected(server):
    url = server()
    assert_error(requests.get(f"{url}/v4/base62tobase16?base62=a&base62=b", timeout=5), 400)


def test_path_parameters_are_url_decoded(server):
    url = server()
    response = requests.get(f"{url}/test/echo/Sales%20ETL", timeout=5)
    assert response.json()["path"] == {"item": "Sales ETL"}


def test_expect_100_continue(server):
    url = urlsplit(server())
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=5)
    body = json.dumps({"text": "hello"}).encode()
    conn.putrequest("PUT", "/test/echo/a")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(len(body)))
    conn.putheader("Expect", "100-continue")
    conn.endheaders()
    conn.send(body)
    response = conn.getresponse()
    data = json.loads(response.read())
    conn.close()
    assert response.status == 200
    assert data["body"] == {"text": "hello"}


def test_rate_limit_per_client(server):
    url = server({"restServerConfig": {"rateLimit": 3}})
    statuses = [requests.get(f"{url}/v4/butlerping", timeout=5) for _ in range(4)]
    assert [r.status_code for r in statuses] == [200, 200, 200, 429]
    assert statuses[0].headers["x-ratelimit-limit"] == "3"
    assert statuses[2].headers["x-ratelimit-remaining"] == "0"
    body = assert_error(statuses[3], 429, "Rate limit exceeded")
    assert body["error"] == "Too Many Requests"
    assert "retry-after" in statuses[3].headers


def test_unhandled_exception_is_generic_500(make_config, live_server, caplog):
    class Boom:
        @hookimpl
        def butler_endpoints(self, config, services):
            def fail(call):
                raise RuntimeError("secret internal detail")

            return [Endpoint("butlerping", "GET", "/test/boom", fail, "boom", "Test")]

    pm = get_plugin_manager(load_entry_points=False)
    pm.register(Boom(), "boom")
    config = make_config({"restServerEndpointsEnable": {"butlerping": True}})
    url = live_server(create_app(config, plugin_manager=pm))
    response = requests.get(f"{url}/test/boom", timeout=5)
    body = assert_error(response, 500, "Internal server error")
    assert "secret" not in json.dumps(body)
    assert "Traceback" not in response.text
    assert any("secret internal detail" in r.getMessage() or r.exc_info for r in caplog.records)


def test_access_log_line(server, caplog):
    url = server()
    with caplog.at_level("INFO", logger="butler.access"):
        requests.get(f"{url}/v4/butlerping", timeout=5)
    lines = [r.getMessage() for r in caplog.records if r.name == "butler.access"]
    assert any(line.startswith("GET /v4/butlerping from 127.0.0.1 -> 200 in ") for line in lines)


def raw_exchange(url, data):
    """Send raw bytes, read the whole answer (the server closes after an error)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    return head.decode("latin-1"), body


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /v4/butlerping HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400),
        (b"PUT /test/echo/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n", 400),
        (b"PUT /test/echo/a HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n", 413),
        (b"GET /v4/butlerping HTTP/1.1\r\nHost: x\rX: y\r\n\r\n", 400),
    ],
    ids=["bad-content-length", "bad-chunking", "announced-huge-body", "bare-cr"],
)
@pytest.mark.servers("waitress")  # granian answers these itself: see the next test
def test_what_waitress_refuses_is_answered_in_json(server, request_bytes, status):
    head, body = raw_exchange(server(), request_bytes)
    assert re.match(rf"HTTP/1\.[01] {status} ", head), head
    assert "Content-Type: application/json" in head
    answer = json.loads(body)
    assert answer["statusCode"] == status
    assert answer["error"] and isinstance(answer["message"], str)


@pytest.mark.servers("granian")
@pytest.mark.parametrize(
    ("request_bytes", "status", "json_body"),
    [
        (b"GET /v4/butlerping HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400, False),
        (b"PUT /test/echo/a HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n", 413, True),
        (b"GET /v4/butlerping HTTP/1.1\r\nHost: x\rX: y\r\n\r\n", 400, False),
    ],
    ids=["bad-content-length", "announced-huge-body", "bare-cr"],
)
def test_what_granian_refuses_gets_the_right_status(server, request_bytes, status, json_body):
    """granian (hyper) refuses bad framing before the app with an empty body, not our JSON;
    a body announced over the cap reaches the app, which answers 413 in JSON."""
    head, body = raw_exchange(server(), request_bytes)
    assert re.match(rf"HTTP/1\.[01] {status} ", head), head
    if json_body:
        assert "content-type: application/json" in head.lower()
        assert json.loads(body)["statusCode"] == status
    else:
        assert body == b""


def test_a_lone_keep_alive_client_is_not_held_by_nagle(server):
    """60 sequential calls on one connection: with Nagle and delayed ACKs on, each waited
    20-40 ms (granian's first version here: 50 calls a second instead of thousands)."""
    url = server()
    with requests.Session() as session:
        session.get(f"{url}/v4/butlerping", timeout=5)
        started = time.monotonic()
        for _ in range(60):
            assert session.get(f"{url}/v4/butlerping", timeout=5).status_code == 200
        elapsed = time.monotonic() - started
    assert elapsed < 0.9, f"60 pings took {elapsed:.2f} s"
