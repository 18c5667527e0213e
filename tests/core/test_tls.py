import json
import socket
import ssl

import pytest
import requests

from butler.app import create_app
from butler.server import TlsFiles, build_server
from butler.testing.certs import generate_certificates


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return generate_certificates(tmp_path_factory.mktemp("tls"))


def test_https_request_against_test_certificate(make_config, live_server, certs):
    config = make_config({"restServerEndpointsEnable": {"butlerping": True}})
    url = live_server(create_app(config), tls=TlsFiles(certs.server_cert, certs.server_key))
    assert url.startswith("https://")
    response = requests.get(f"{url}/v4/butlerping", verify=str(certs.ca), timeout=5)
    assert response.status_code == 200
    assert response.json()["response"] == "Butler reporting for duty"


@pytest.mark.servers("waitress")  # cheroot's own answer; granian: see the next test
def test_plain_http_to_tls_port_is_refused_in_json(make_config, live_server, certs):
    config = make_config({"restServerEndpointsEnable": {"butlerping": True}})
    url = live_server(create_app(config), tls=TlsFiles(certs.server_cert, certs.server_key))
    response = requests.get(url.replace("https://", "http://") + "/v4/butlerping", timeout=5)
    assert response.status_code == 400
    assert "HTTPS only" in response.json()["message"]


@pytest.mark.servers("granian")
def test_plain_http_to_granian_tls_port_is_refused(make_config, live_server, certs):
    """granian answers plain HTTP with a TLS alert, not an HTTP answer: refused all the same."""
    config = make_config({"restServerEndpointsEnable": {"butlerping": True}})
    url = live_server(create_app(config), tls=TlsFiles(certs.server_cert, certs.server_key))
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(url.replace("https://", "http://") + "/v4/butlerping", timeout=5)


def test_untrusted_certificate_is_rejected_by_client(make_config, live_server, certs):
    config = make_config({"restServerEndpointsEnable": {"butlerping": True}})
    url = live_server(create_app(config), tls=TlsFiles(certs.server_cert, certs.server_key))
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{url}/v4/butlerping", timeout=5)
    assert ssl.OPENSSL_VERSION


@pytest.mark.parametrize("server", ["waitress", "granian"])
def test_missing_tls_file_fails_before_serving(make_config, tmp_path, server):
    app = create_app(make_config())
    with pytest.raises(OSError, match="TLS cert file could not be loaded"):
        build_server(
            app,
            "127.0.0.1",
            0,
            tls=TlsFiles(tmp_path / "no.pem", tmp_path / "no.key"),
            server=server,
        )


def test_unreadable_tls_key_fails_granian_before_serving(make_config, tmp_path, certs):
    app = create_app(make_config())
    bad = tmp_path / "bad.key"
    bad.write_text("not a key", encoding="utf-8")
    with pytest.raises(OSError):
        build_server(app, "127.0.0.1", 0, tls=TlsFiles(certs.server_cert, bad), server="granian")


@pytest.fixture(scope="module")
def strangers(tmp_path_factory):
    """A second, unrelated CA with its own client certificate."""
    return generate_certificates(tmp_path_factory.mktemp("stranger"))


def serve_with_client_ca(make_config, live_server, certs, require=False):
    config = make_config({"restServerEndpointsEnable": {"butlerping": True}})
    tls = TlsFiles(certs.server_cert, certs.server_key, certs.ca, require_client_cert=require)
    return live_server(create_app(config), tls=tls) + "/v4/butlerping"


def test_with_a_client_ca_a_trusted_client_certificate_is_accepted(make_config, live_server, certs):
    url = serve_with_client_ca(make_config, live_server, certs)
    client = (str(certs.client_cert), str(certs.client_key))
    response = requests.get(url, verify=str(certs.ca), cert=client, timeout=5)
    assert response.status_code == 200


def test_with_a_client_ca_an_untrusted_client_certificate_is_refused(
    make_config, live_server, certs, strangers
):
    url = serve_with_client_ca(make_config, live_server, certs)
    stranger = (str(strangers.client_cert), str(strangers.client_key))
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(url, verify=str(certs.ca), cert=stranger, timeout=5)
    assert requests.get(url, verify=str(certs.ca), timeout=5).status_code == 200


def test_a_required_client_certificate_must_be_presented(make_config, live_server, certs):
    url = serve_with_client_ca(make_config, live_server, certs, require=True)
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(url, verify=str(certs.ca), timeout=5)
    client = (str(certs.client_cert), str(certs.client_key))
    assert requests.get(url, verify=str(certs.ca), cert=client, timeout=5).status_code == 200


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"NONSENSE\r\n\r\n", 400),
        (b"GET /v4/butlerping HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n", 400),
        (b"GET /v4/butlerping HTTP/2.7\r\nHost: x\r\n\r\n", 505),
    ],
    ids=["malformed-request-line", "malformed-header", "unsupported-protocol"],
)
@pytest.mark.servers("waitress")  # granian answers these itself (see test_http_layer)
def test_what_cheroot_refuses_is_answered_in_json(
    make_config, live_server, certs, request_bytes, status
):
    config = make_config({"restServerEndpointsEnable": {"butlerping": True}})
    url = live_server(create_app(config), tls=TlsFiles(certs.server_cert, certs.server_key))
    host, port = url.removeprefix("https://").split(":")
    context = ssl.create_default_context(cafile=str(certs.ca))
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        tls.sendall(request_bytes)
        chunks = []
        while chunk := tls.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == str(status).encode()
    assert b"Content-Type: application/json" in head
    answer = json.loads(body)
    assert answer["statusCode"] == status
    assert answer["message"]
