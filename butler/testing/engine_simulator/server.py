"""The Engine simulator's server: TLS WebSocket lifecycle, test controls and call records.

Test and demo infrastructure, never used on the production path. It demands a client
certificate signed by the test CA (as the real Engine on port 4747 does), sends the
``OnConnected`` notification a real Engine sends, and records every session and call so
tests can assert on what went over the wire. What each QIX call answers lives in
:mod:`~butler.testing.engine_simulator.qix`; this module owns what outlives one session:
the catalogue, the counters, stalled methods and the gates that hold ``slow`` reloads.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.protocol import Event
from websockets.sync.server import Server, ServerConnection, serve

from butler.testing.engine_catalogue import SimApp, demo_apps
from butler.testing.engine_simulator.qix import (
    LOCERR_INTERNAL_ERROR,
    EngineCall,
    QixError,
    QixSession,
)

log = logging.getLogger(__name__)


class ServerCerts(Protocol):
    """The certificate files the simulator needs (``butler.testing.certs.CertPaths``)."""

    @property
    def ca(self) -> Path: ...

    @property
    def server_cert(self) -> Path: ...

    @property
    def server_key(self) -> Path: ...


@dataclass(frozen=True)
class EngineConnection:
    """One accepted WebSocket session."""

    path: str
    headers: dict[str, str]
    client_subject: str


class EngineSimulator:
    """Serves ``apps`` (default: :func:`~butler.testing.engine_catalogue.demo_apps`)."""

    def __init__(
        self,
        certs: ServerCerts | None,
        apps: Iterable[SimApp] | None = None,
        *,
        host: str = "127.0.0.1",
        version: str = "12.612.0",
        require_client_cert: bool = True,
    ):
        self.host = host
        self.version = version
        self.apps: dict[str, SimApp] = {
            app.id: app for app in (apps if apps is not None else demo_apps())
        }
        self._ssl = _server_context(certs, require_client_cert) if certs is not None else None
        self._lock = threading.Condition()
        self._calls: list[EngineCall] = []
        self._connections: list[EngineConnection] = []
        self._stalled: set[str] = set()
        self._gates: dict[str, threading.Event] = {}
        self._stopping = threading.Event()
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self.reloads: Counter[str] = Counter()
        self.saves: Counter[str] = Counter()
        self.pings = 0

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> EngineSimulator:
        self._stopping.clear()
        self._server = serve(
            self._serve_connection,
            self.host,
            0,
            ssl=self._ssl,
            max_size=None,
            logger=log,
            create_connection=_counting_connection(self),
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="engine-simulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Release blocked reloads and stalled calls, close sessions, stop listening."""
        self._stopping.set()
        with self._lock:
            gates = list(self._gates.values())
        for gate in gates:
            gate.set()
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> EngineSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("EngineSimulator is not running")
        return int(self._server.socket.getsockname()[1])

    @property
    def url(self) -> str:
        scheme = "wss" if self._ssl is not None else "ws"
        return f"{scheme}://{self.host}:{self.port}"

    # -- test controls and records -----------------------------------------------

    def stall(self, *methods: str) -> None:
        """Never answer these methods (until :meth:`stop`), to provoke client timeouts."""
        with self._lock:
            self._stalled.update(methods)

    def release_reload(self, app_id: str) -> None:
        """Let a ``slow`` app's pending and future reloads finish."""
        self._gate(app_id).set()

    @property
    def calls(self) -> list[EngineCall]:
        with self._lock:
            return list(self._calls)

    @property
    def connections(self) -> list[EngineConnection]:
        with self._lock:
            return list(self._connections)

    def calls_to(self, method: str, app_id: str | None = None) -> list[EngineCall]:
        return [
            call
            for call in self.calls
            if call.method == method and (app_id is None or call.app_id == app_id)
        ]

    def wait_for_call(
        self, method: str, app_id: str | None = None, timeout: float = 10
    ) -> EngineCall:
        """Block until ``method`` was received (for ``app_id``); raise on timeout."""
        with self._lock:
            found = self._lock.wait_for(lambda: self._find(method, app_id), timeout)
        if not found:
            raise TimeoutError(f"Engine simulator did not receive {method} within {timeout} s")
        return found

    def wait_for_calls(
        self, method: str, count: int, app_id: str | None = None, timeout: float = 10
    ) -> list[EngineCall]:
        """Block until ``count`` calls of ``method`` (for ``app_id``) were received."""
        with self._lock:
            if not self._lock.wait_for(
                lambda: len(self.calls_to(method, app_id)) >= count, timeout
            ):
                raise TimeoutError(
                    f"Engine simulator did not receive {count} x {method} within {timeout} s"
                )
            return self.calls_to(method, app_id)

    def wait_for_pings(self, count: int, timeout: float = 10) -> None:
        """Block until clients have sent ``count`` WebSocket pings in total."""
        with self._lock:
            if not self._lock.wait_for(lambda: self.pings >= count, timeout):
                raise TimeoutError(f"Engine simulator did not receive {count} pings")

    def _record_ping(self) -> None:
        with self._lock:
            self.pings += 1
            self._lock.notify_all()

    def _find(self, method: str, app_id: str | None) -> EngineCall | None:
        for call in self._calls:
            if call.method == method and (app_id is None or call.app_id == app_id):
                return call
        return None

    def _gate(self, app_id: str) -> threading.Event:
        with self._lock:
            return self._gates.setdefault(app_id, threading.Event())

    # -- protocol ----------------------------------------------------------------

    def _serve_connection(self, ws: ServerConnection) -> None:
        request = ws.request
        path = request.path if request is not None else ""
        headers = dict(request.headers.raw_items()) if request is not None else {}
        with self._lock:
            self._connections.append(EngineConnection(path, headers, _peer_subject(ws)))
            self._lock.notify_all()
        session = QixSession(self, path)
        try:
            ws.send(
                json.dumps(
                    {
                        "jsonrpc": "2.0",
                        "method": "OnConnected",
                        "params": {"qSessionState": "SESSION_CREATED"},
                    }
                )
            )
            for raw in ws:
                reply = session.dispatch(raw)
                if reply is not None:
                    ws.send(json.dumps(reply))
        except ConnectionClosed:
            pass

    # -- hooks for the QIX sessions (qix.py) -------------------------------------

    def record_call(self, call: EngineCall) -> bool:
        """Store the call; False when it must stay unanswered."""
        with self._lock:
            self._calls.append(call)
            self._lock.notify_all()
            return call.method not in self._stalled

    def wait_until_stopped(self) -> None:
        """Block a stalled call's session until :meth:`stop`."""
        self._stopping.wait()

    def run_reload(self, app: SimApp, params: dict[str, Any]) -> bool:
        """DoReload: a ``slow`` app waits for :meth:`release_reload` (or :meth:`stop`)."""
        if app.reload == "slow":
            self._gate(app.id).wait()
            if self._stopping.is_set():
                raise QixError(LOCERR_INTERNAL_ERROR, "Engine shutting down")
        if app.reload == "error":
            raise QixError(LOCERR_INTERNAL_ERROR, "Reload failed: script error", app.id)
        with self._lock:
            self.reloads[app.id] += 1
        return app.reload != "failure"

    def record_save(self, app_id: str) -> None:
        """DoSave: counted per app, for tests that assert an app was (not) saved."""
        with self._lock:
            self.saves[app_id] += 1


def _counting_connection(sim: EngineSimulator) -> type[ServerConnection]:
    """A connection class that tells ``sim`` about every ping a client sends."""

    class CountingConnection(ServerConnection):
        def process_event(self, event: Event) -> None:
            if isinstance(event, Frame) and event.opcode is Opcode.PING:
                sim._record_ping()
            super().process_event(event)

    return CountingConnection


def _server_context(certs: ServerCerts, require_client_cert: bool) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certfile=str(certs.server_cert), keyfile=str(certs.server_key))
    if require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=str(certs.ca))
    return context


def _peer_subject(ws: ServerConnection) -> str:
    getpeercert = getattr(ws.socket, "getpeercert", None)
    cert = getpeercert() if getpeercert is not None else None
    for rdn in (cert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return ""
