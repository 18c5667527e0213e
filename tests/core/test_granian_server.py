"""granian in-process: what its ServerHandle promises beyond the shared HTTP tests."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
from flask import Flask

import butler.granian_server
from butler.server import build_server


def bare_app(**config: Any) -> Flask:
    app = Flask("granian-test")
    app.config.update(BUTLER_WORKERS=4, BUTLER_READ_TIMEOUT=10, MAX_CONTENT_LENGTH=1 << 20)
    app.config.update(config)
    release = threading.Event()
    app.config["release"] = release

    @app.get("/ok")
    def ok() -> str:
        return "ok"

    @app.get("/hang")
    def hang() -> str:
        release.wait(30)
        return "late"

    return app


def serve(app: Flask) -> tuple[Any, threading.Thread]:
    server = build_server(app, "127.0.0.1", 0, server="granian")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


def test_a_taken_port_fails_to_listen_instead_of_being_shared() -> None:
    """granian's own listener sets SO_REUSEPORT; Butler binds the socket itself."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(OSError):
            build_server(bare_app(), "127.0.0.1", port, server="granian")


def test_stop_before_serving_frees_the_port() -> None:
    server = build_server(bare_app(), "127.0.0.1", 0, server="granian")
    server.shutdown()
    server.serve_forever()  # returns at once: it was stopped
    with socket.create_server(("127.0.0.1", server.port)):
        pass


def test_stop_answers_the_request_in_flight_then_refuses_connections() -> None:
    app = bare_app()
    server, thread = serve(app)
    answers: list[requests.Response] = []
    caller = threading.Thread(
        target=lambda: answers.append(requests.get(f"{server.url}/hang", timeout=10))
    )
    caller.start()
    time.sleep(0.3)
    stopper = threading.Thread(target=server.shutdown)
    stopper.start()
    time.sleep(0.3)
    app.config["release"].set()
    stopper.join(10)
    thread.join(10)
    caller.join(10)
    assert not thread.is_alive()
    assert [answer.text for answer in answers] == ["late"]
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{server.url}/ok", timeout=2)


def test_a_hung_request_holds_the_stop_no_longer_than_the_drain_cap(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(butler.granian_server, "_DRAIN_SECONDS", 0.5)
    app = bare_app()
    server, thread = serve(app)
    caller = threading.Thread(target=_swallow(lambda: requests.get(f"{server.url}/hang")))
    caller.start()
    time.sleep(0.3)
    started = time.monotonic()
    server.shutdown()
    thread.join(5)
    stopped_after = time.monotonic() - started
    app.config["release"].set()
    caller.join(10)
    assert not thread.is_alive()
    assert stopped_after < 2
    assert "stopping anyway" in caplog.text


def _swallow(call: Callable[[], Any]) -> Callable[[], None]:
    def run() -> None:
        with contextlib.suppress(requests.RequestException):
            call()

    return run
