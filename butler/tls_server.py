"""HTTPS with cheroot, guarded against slow and greedy clients like the plain server.

cheroot reads requests in its worker threads, and the stock adapter even runs the TLS
handshake in the one thread that accepts connections: a client that connects and trickles
its handshake a byte at a time stopped every new connection, and 16 clients trickling
header lines stopped the server. Here:

* the handshake is deferred to the worker that first serves the connection, so accepting
  never waits on a client;
* from the moment a worker starts on a connection until the request's headers and body are
  read, a watchdog gives it ``read_timeout`` seconds, then shuts the socket (the worker's
  read returns and the worker is free) and logs the client;
* one client address may hold ``max_per_client`` connections, as with waitress;
* what cheroot refuses before the app (a malformed request line, a bad header, plain HTTP
  on the TLS port) is answered in the JSON error shape;
* cheroot's own messages (it writes them to stderr) go through Butler's logging, so they
  have the formatter, the level filter and the file like every other line;
* a caller's verified client certificate is in every request's environ as a
  :class:`butler.client_cert.ClientSubject` (``environ["butler.client_subject"]``).
"""

from __future__ import annotations

import io
import json
import logging
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask

from butler.client_cert import CLIENT_SUBJECT_KEY, subject_from_peercert
from butler.client_limits import ClientCounts, log_cut

log = logging.getLogger("butler.server")

_PLAIN_HTTP = "The client sent a plain HTTP request, but this port speaks HTTPS only"


@dataclass(frozen=True)
class TlsFiles:
    """The server's certificate and key; with ``ca``, callers' certificates are requested.

    A presented certificate must chain to ``ca`` or the handshake fails; without one the
    caller is served unless ``require_client_cert``.
    """

    cert: Path
    key: Path
    ca: Path | None = None
    require_client_cert: bool = False


class ReadDeadlines:
    """Connections being read, each with a deadline; a thread cuts the late ones."""

    def __init__(self, read_timeout: float):
        self._timeout = read_timeout
        self._reading: dict[int, tuple[float, socket.socket, str]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="butler-tls-deadlines")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def reading(self, key: int, sock: socket.socket, client: str) -> None:
        with self._lock:
            self._reading[key] = (time.monotonic() + self._timeout, sock, client)

    def read(self, key: int) -> None:
        with self._lock:
            self._reading.pop(key, None)

    def _watch(self) -> None:
        while not self._stop.wait(min(0.25, self._timeout / 4)):
            now = time.monotonic()
            with self._lock:
                late = [key for key, (deadline, _, _) in self._reading.items() if deadline < now]
                cut = [self._reading.pop(key) for key in late]
            for _, sock, client in cut:
                log_cut(client, self._timeout)
                try:
                    # The plain socket's shutdown: the TLS layer would try to send an alert
                    # from this thread while the worker is inside a read.
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)
                except OSError:
                    log.debug("Connection from %s was already gone", client)


def _deferred_handshake_adapter(tls: TlsFiles) -> Any:
    """cheroot's built-in adapter, but wrapping does no I/O: the worker does the handshake."""
    from cheroot.ssl.builtin import BuiltinSSLAdapter

    class DeferredHandshakeAdapter(BuiltinSSLAdapter):
        def wrap(self, sock: socket.socket) -> tuple[ssl.SSLSocket, dict[str, Any]]:
            wrapped = self.context.wrap_socket(
                sock, server_side=True, do_handshake_on_connect=False
            )
            return wrapped, {}

    adapter = DeferredHandshakeAdapter(str(tls.cert), str(tls.key), str(tls.ca) if tls.ca else None)
    adapter.context.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.ca:
        adapter.context.verify_mode = (
            ssl.CERT_REQUIRED if tls.require_client_cert else ssl.CERT_OPTIONAL
        )
    return adapter


def _json_error(status: str, message: str, protocol: str) -> bytes:
    code = int(status[:3])
    body = json.dumps(
        {"statusCode": code, "error": status[4:], "message": message or status[4:]}
    ).encode("utf-8")
    lines = [
        f"{protocol} {status}",
        f"Content-Length: {len(body)}",
        "Content-Type: application/json",
    ]
    if code >= 400:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ISO-8859-1") + body


def _body_first_gateway(deadlines: ReadDeadlines) -> type:
    """cheroot's WSGI gateway, reading the whole body under the deadline before the app runs.

    The app then runs without one (a reload may wait for minutes). cheroot caps the body
    (``max_request_body_size``), so holding it is bounded.
    """
    from cheroot.wsgi import Gateway_10

    class BodyFirstGateway(Gateway_10):
        def respond(self) -> Any:
            self.env["wsgi.input"] = io.BytesIO(self.req.rfile.read())
            deadlines.read(id(self.req.conn))
            return super().respond()

    return BodyFirstGateway


def _guarded_connection(deadlines: ReadDeadlines, counts: ClientCounts) -> type:
    from cheroot.server import HTTPConnection, HTTPRequest

    class GuardedRequest(HTTPRequest):
        def simple_response(self, status: Any, msg: Any = "") -> None:
            status = str(status)
            message = msg.decode("ISO-8859-1") if isinstance(msg, bytes) else str(msg)
            if int(status[:3]) >= 400:
                self.close_connection = True
            try:
                self.conn.wfile.write(_json_error(status, message, self.server.protocol))
            except OSError:
                log.debug("Client went away before its error answer was written")

    class GuardedConnection(HTTPConnection):
        RequestHandlerClass = GuardedRequest

        def __init__(self, server: Any, sock: ssl.SSLSocket, makefile: Any):
            super().__init__(server, sock, makefile)
            try:
                self._client = str(sock.getpeername()[0])
            except OSError:
                self._client = "-"
            self._counted = counts.admit(self._client)
            self._handshaken = False

        def communicate(self) -> bool:
            if not self._counted:
                return False
            deadlines.reading(id(self), self.socket, self._client)
            try:
                if not self._handshaken and not self._handshake():
                    return False
                return bool(super().communicate())
            finally:
                deadlines.read(id(self))

        def _handshake(self) -> bool:
            sock = self.socket
            try:
                sock.do_handshake()
            except ssl.SSLError as exc:
                if "http request" in str(exc).lower():
                    self._answer_plain_http(sock)
                else:
                    log.info("TLS handshake with %s failed: %s", self._client, exc.reason)
                return False
            except OSError:
                return False
            self.ssl_env = self.server.ssl_adapter.get_environ(sock)
            # Once per connection, from the socket: cheroot merges ssl_env into every
            # request's environ after the headers, so no request can replace it.
            subject = subject_from_peercert(sock.getpeercert())
            if subject is not None:
                self.ssl_env[CLIENT_SUBJECT_KEY] = subject
            self._handshaken = True
            return True

        def _answer_plain_http(self, sock: ssl.SSLSocket) -> None:
            """A plain HTTP caller reads a plain HTTP answer, written past the TLS layer."""
            answer = _json_error("400 Bad Request", _PLAIN_HTTP, self.server.protocol)
            try:
                socket.socket.sendall(sock, answer)
            except OSError:
                log.debug("Plain HTTP client %s went away before its answer", self._client)

        def close(self) -> None:
            if self._counted:
                self._counted = False
                counts.release(self._client)
            super().close()

    return GuardedConnection


def _logging_server() -> type:
    """cheroot's WSGI server, writing its own messages to Butler's log instead of stderr."""
    from cheroot import wsgi

    class LoggingServer(wsgi.Server):
        def error_log(
            self, msg: str = "", level: int = logging.INFO, traceback: bool = False
        ) -> None:
            log.log(level, "cheroot: %s", msg, exc_info=traceback)

    return LoggingServer


class CherootTlsServer:
    """HTTPS with the standard library's ssl module, one port, the same limits as waitress."""

    def __init__(self, app: Flask, host: str, port: int, tls: TlsFiles):
        self._server = _logging_server()(
            (host, port), app, numthreads=app.config["BUTLER_WORKERS"], server_name="Butler"
        )
        self._server.max_request_body_size = app.config["MAX_CONTENT_LENGTH"] * 4
        self._server.ssl_adapter = _deferred_handshake_adapter(tls)
        self._deadlines = ReadDeadlines(app.config["BUTLER_READ_TIMEOUT"])
        self._server.gateway = _body_first_gateway(self._deadlines)
        self._server.ConnectionClass = _guarded_connection(
            self._deadlines, ClientCounts(app.config["BUTLER_MAX_CONNECTIONS_PER_CLIENT"])
        )
        self._server.prepare()
        self.host = host
        self.port = int(self._server.bind_addr[1])

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def serve_forever(self) -> None:
        self._deadlines.start()
        try:
            self._server.serve()
        finally:
            self._deadlines.stop()

    def shutdown(self) -> None:
        self._server.stop()
        self._deadlines.stop()
