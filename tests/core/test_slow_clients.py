"""Slow and greedy clients over real sockets: they are cut, and ping keeps answering.

A bounded slowloris: a few dozen sockets, each trickling a header line or saying nothing,
for a couple of seconds. The pings come from another loopback address (127.0.0.2), as a
second machine would.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter

from butler.app import create_app
from butler.server import TlsFiles
from butler.testing.certs import CertPaths, generate_certificates


class SourceAddressAdapter(HTTPAdapter):
    """Connections from a given local address."""

    def __init__(self, address: str):
        self._address = address
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self._address, 0)
        super().init_poolmanager(*args, **kwargs)


@pytest.fixture
def other_host() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.mount("http://", SourceAddressAdapter("127.0.0.2"))
        yield session


@pytest.fixture
def server(make_config: Callable[..., Any], live_server: Callable[..., str]) -> str:
    config = make_config(
        {
            "restServerConfig": {"requestReadTimeout": 1, "maxConnectionsPerClient": 20},
            "restServerEndpointsEnable": {"butlerping": True},
        }
    )
    return live_server(create_app(config))


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=5)


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """Whether the server closes ``sock`` within ``within`` seconds (poll by recv)."""
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def ping(session: requests.Session, url: str) -> int:
    """One ping on a connection of its own: with a 1 s read timeout the server closes idle
    keep-alive connections, and a ping reusing one just as it is closed would fail for a
    reason that is not the one under test (seen on granian in CI)."""
    return session.get(
        f"{url}/v4/butlerping", headers={"Connection": "close"}, timeout=2
    ).status_code


@contextlib.contextmanager
def trickling(socks: Sequence[socket.socket]) -> Iterator[threading.Lock]:
    """Each socket sends a request line, then a header line every 0.2 s, until the block ends.

    Hold the yielded lock while reading the sockets: a TLS socket must not be read by one
    thread while another writes to it.
    """
    stop = threading.Event()
    lock = threading.Lock()

    def trickle() -> None:
        with lock:
            for sock in socks:
                sock.sendall(b"GET /v4/butlerping HTTP/1.1\r\nHost: x\r\n")
        while not stop.wait(0.2):
            with lock:
                for sock in socks:
                    with contextlib.suppress(OSError):
                        sock.sendall(b"X-Slow: 1\r\n")

    writer = threading.Thread(target=trickle)
    writer.start()
    try:
        yield lock
    finally:
        stop.set()
        writer.join(5)


def test_trickling_headers_are_cut_and_ping_keeps_answering(
    server: str, other_host: requests.Session, caplog: pytest.LogCaptureFixture, server_kind: str
) -> None:
    caplog.set_level(logging.WARNING, logger="butler.server")
    socks = [connect(server) for _ in range(16)]
    try:
        with trickling(socks) as lock:
            for _ in range(10):
                assert ping(other_host, server) == 200
            with lock:
                cut = [closed_by_server(sock, within=5) for sock in socks]
    finally:
        for sock in socks:
            sock.close()
    assert all(cut)
    if server_kind == "waitress":  # granian cuts them itself (header_read_timeout), unlogged
        assert "no complete request within 1 s" in caplog.text
    assert ping(other_host, server) == 200


def test_silent_connections_are_cut_after_the_read_timeout(server: str) -> None:
    sock = connect(server)
    started = time.monotonic()
    try:
        assert closed_by_server(sock, within=5)
    finally:
        sock.close()
    assert time.monotonic() - started >= 0.9


@pytest.mark.servers("waitress")  # granian has no per-address cap (maxConnectionsPerClient)
def test_one_address_cannot_hold_more_than_its_share(
    server: str, other_host: requests.Session, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="butler.server")
    socks = [connect(server) for _ in range(25)]
    try:
        refused = [sock for sock in socks[20:] if closed_by_server(sock, within=0.5)]
        assert len(refused) == 5
        assert ping(other_host, server) == 200
    finally:
        for sock in socks:
            sock.close()
    assert "already holds 20 connections" in caplog.text


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertPaths:
    return generate_certificates(tmp_path_factory.mktemp("slow-tls"))


def serve_tls(
    make_config: Callable[..., Any], live_server: Callable[..., str], certs: CertPaths, read: float
) -> str:
    config = make_config(
        {
            "restServerConfig": {"requestReadTimeout": read, "maxConnectionsPerClient": 20},
            "restServerEndpointsEnable": {"butlerping": True},
        }
    )
    return live_server(create_app(config), tls=TlsFiles(certs.server_cert, certs.server_key))


@pytest.fixture
def tls_server(
    make_config: Callable[..., Any], live_server: Callable[..., str], certs: CertPaths
) -> str:
    return serve_tls(make_config, live_server, certs, read=1)


@pytest.fixture
def other_tls_host(certs: CertPaths) -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.mount("https://", SourceAddressAdapter("127.0.0.2"))
        session.trust_env = False  # REQUESTS_CA_BUNDLE would replace session.verify
        session.verify = str(certs.ca)
        yield session


def tls_connect(url: str, certs: CertPaths) -> ssl.SSLSocket:
    host, port = url.removeprefix("https://").split(":")
    context = ssl.create_default_context(cafile=str(certs.ca))
    raw = socket.create_connection((host, int(port)), timeout=5)
    return context.wrap_socket(raw, server_hostname=host)


def test_tls_trickling_headers_are_cut_and_ping_keeps_answering(
    tls_server: str,
    other_tls_host: requests.Session,
    certs: CertPaths,
    caplog: pytest.LogCaptureFixture,
    server_kind: str,
) -> None:
    caplog.set_level(logging.WARNING, logger="butler.server")
    socks: list[socket.socket] = [tls_connect(tls_server, certs) for _ in range(16)]
    try:
        with trickling(socks) as lock:
            for _ in range(10):
                assert ping(other_tls_host, tls_server) == 200
            with lock:
                cut = [closed_by_server(sock, within=5) for sock in socks]
    finally:
        for sock in socks:
            sock.close()
    assert all(cut)
    if server_kind == "waitress":  # cheroot's watchdog logs; granian cuts them unlogged
        assert "no complete request within 1 s" in caplog.text
    assert ping(other_tls_host, tls_server) == 200


def test_silent_connections_never_stop_tls_accepting(
    tls_server: str, other_tls_host: requests.Session, server_kind: str
) -> None:
    silent = [connect(tls_server.replace("https://", "http://")) for _ in range(16)]
    try:
        pings = [ping(other_tls_host, tls_server) for _ in range(5)]
        cut = [closed_by_server(sock, within=5) for sock in silent]
    finally:
        for sock in silent:
            sock.close()
    assert pings == [200] * 5
    if server_kind == "waitress":
        # cheroot's read deadline covers the handshake; granian's handshake timeout is its
        # own (longer than the 1 s here), so silent TLS connections stay a while, harmlessly.
        assert all(cut)


@pytest.mark.servers("waitress")  # granian has no per-address cap (maxConnectionsPerClient)
def test_one_address_cannot_hold_more_than_its_share_of_tls_connections(
    make_config: Callable[..., Any],
    live_server: Callable[..., str],
    certs: CertPaths,
    other_tls_host: requests.Session,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="butler.server")
    # A long read deadline, so that only the connections over the limit are closed here.
    tls_server = serve_tls(make_config, live_server, certs, read=30)
    plain = tls_server.replace("https://", "http://")
    socks = [connect(plain) for _ in range(25)]
    try:
        assert ping(other_tls_host, tls_server) == 200
        refused = [sock for sock in socks[20:] if closed_by_server(sock, within=0.5)]
    finally:
        for sock in socks:
            sock.close()
    assert len(refused) == 5
    assert "already holds 20 connections" in caplog.text
