"""Serving the WSGI app: waitress for plain HTTP, cheroot when TLS is on, or granian for both.

waitress has no TLS support, and terminating TLS in a separate proxy is what the original
did badly (its plain background port bypassed TLS). cheroot speaks TLS itself, so with
``restServerConfig.tls.enable`` there is still exactly one listening port.

``restServerConfig.server: granian`` (the ``granian`` extra) serves plain HTTP and TLS with
granian's Rust server instead, in this process: see :mod:`butler.granian_server`.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, Literal, Protocol

from flask import Flask

from butler.client_limits import ClientCounts, log_cut
from butler.tls_server import CherootTlsServer, TlsFiles

__all__ = ["SERVERS", "ServerHandle", "ServerKind", "TlsFiles", "WaitressServer", "build_server"]

ServerKind = Literal["waitress", "granian"]
SERVERS: tuple[ServerKind, ...] = ("waitress", "granian")


class ServerHandle(Protocol):
    host: str
    port: int

    @property
    def url(self) -> str: ...

    def serve_forever(self) -> None: ...

    def shutdown(self) -> None: ...


def _guarded_channel(read_timeout: float, max_per_client: int) -> type:
    """waitress's channel, guarded against slow and greedy clients, with JSON errors.

    * A request (headers and body) must arrive within ``read_timeout`` seconds of its first
      byte, and a new connection must start its request within that time: a client that
      trickles a header line every few seconds, or connects and says nothing, is cut
      instead of holding a connection for waitress's two-minute idle limit.
    * One client address may hold ``max_per_client`` connections; more are closed at once,
      so one host cannot use up the server's connection limit.
    * Bad framing, oversized headers or bodies and malformed request lines never reach the
      app, so waitress would answer them in plain text; they get the JSON error shape.

    Each server gets its own class, so the per-address counts are per server.
    """
    from waitress.channel import HTTPChannel
    from waitress.task import ErrorTask

    counts = ClientCounts(max_per_client)

    class JsonErrorTask(ErrorTask):
        def execute(self) -> None:
            error = self.request.error
            body = json.dumps(
                {"statusCode": error.code, "error": error.reason, "message": error.body}
            ).encode("utf-8")
            self.status = f"{error.code} {error.reason}"
            self.response_headers.append(("Content-Type", "application/json"))
            self.set_close_on_finish()
            self.content_length = len(body)
            self.write(body)

    class GuardedChannel(HTTPChannel):
        error_task_class = JsonErrorTask
        will_close: bool

        def __init__(self, server: Any, sock: Any, addr: Any, adj: Any, map: Any = None):
            super().__init__(server, sock, addr, adj, map)
            self._client = str(addr[0]) if addr else "-"
            self._counted = False
            self._reading_since: float | None = time.monotonic()
            if not counts.admit(self._client):
                self.close()
                return
            self._counted = True

        def received(self, data: bytes) -> Any:
            result = super().received(data)
            if self.request is None:
                self._reading_since = None
            elif self._reading_since is None:
                self._reading_since = time.monotonic()
            return result

        def readable(self) -> bool:
            """Polled by waitress's loop at least once a second: the read deadline lives here."""
            since = self._reading_since
            late = since is not None and time.monotonic() - since > read_timeout
            if late and not self.will_close and not self.requests:
                log_cut(self._client, read_timeout)
                self.will_close = True
            return bool(super().readable())

        def del_channel(self, map: Any = None) -> None:
            if self._counted:
                self._counted = False
                counts.release(self._client)
            super().del_channel(map)

    return GuardedChannel


class WaitressServer:
    """A waitress server bound at construction, so port 0 resolves before serving."""

    def __init__(self, app: Flask, host: str, port: int):
        from waitress.server import create_server

        max_body = app.config["MAX_CONTENT_LENGTH"]
        self._server = create_server(
            app,
            host=host,
            port=port,
            threads=app.config["BUTLER_WORKERS"],
            # The app answers 413 itself; waitress's own cap only stops the absurd bodies
            # that should not even be buffered.
            max_request_body_size=max_body * 4,
            connection_limit=1000,
            channel_timeout=120,
            backlog=2048,
            ident="Butler",
            clear_untrusted_proxy_headers=True,
        )
        self._server.channel_class = _guarded_channel(
            app.config["BUTLER_READ_TIMEOUT"], app.config["BUTLER_MAX_CONNECTIONS_PER_CLIENT"]
        )
        self.host = host
        self.port = int(self._server.effective_port)
        self._stopped = threading.Event()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def serve_forever(self) -> None:
        self._server.run()

    def shutdown(self) -> None:
        """Stop the workers, then close every channel inside the loop thread.

        waitress's loop runs while its socket map is non-empty. Workers are joined first
        because a finishing worker pulls the trigger, which must still be open then; the
        trigger then runs the closing in the loop thread, so the map is never touched from
        another thread and the loop returns at once. (An earlier version raced here: see
        the comment on the lock below.)
        """
        if self._stopped.is_set():
            return
        self._stopped.set()
        server = self._server
        server.task_dispatcher.shutdown(cancel_pending=True, timeout=5)
        server_map = server._map

        def close_all(*_: Any) -> None:
            for channel in list(server_map.values()):
                channel.close()

        trigger = server.trigger
        # pull_trigger() appends the thunk under the trigger's lock but writes to the pipe
        # outside it, so the loop could run the thunk (closing the pipe) before that write.
        # Holding the lock across both makes the thunk wait for the write.
        with trigger.lock:
            trigger.thunks.append(close_all)
            trigger.pull_trigger()


def build_server(
    app: Flask,
    host: str,
    port: int,
    *,
    tls: TlsFiles | None = None,
    server: ServerKind = "waitress",
) -> ServerHandle:
    """Bind a server for ``app``; TLS files that cannot be read fail here, before serving.

    ``server`` is ``restServerConfig.server``: waitress (cheroot with TLS) or granian.
    Workers, the body cap and the client limits come from the app (``restServerConfig``), so
    the server and the app's own answers (413, 429) cannot disagree.
    """
    if tls is not None:
        for label, path in (("cert", tls.cert), ("key", tls.key), ("CA", tls.ca)):
            if path is not None and not Path(path).is_file():
                raise OSError(f"REST API TLS {label} file could not be loaded ({path})")
    if server == "granian":
        from butler.granian_server import GranianServer

        return GranianServer(app, host, port, tls)
    if tls is None:
        return WaitressServer(app, host, port)
    return CherootTlsServer(app, host, port, tls)
