"""The QRS simulator's network side: accept loop, TLS, connections, HTTP framing, shutdown.

Butler must be proven against a real network peer, so this is a real server: TLS with a
mandatory client certificate, HTTP/1.1 keep-alive with one thread per connection (hundreds
of concurrent connections), and every accepted and rejected handshake counted so tests can
assert that Butler reuses its connections. Every socket and worker thread is tracked so
``stop`` can cut them all, including handshakes that never complete, and a dropped
connection is cut without a TLS close_notify, as a crashed or rebooted QRS does.

The server knows nothing of QRS: it turns each request into a :class:`Request`, asks its
``answer`` callback, and writes the :class:`Reply` (``None`` drops the connection).
"""

from __future__ import annotations

import itertools
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

from butler.testing.certs import CertPaths
from butler.testing.qrs_simulator.recording import Recorder

__all__ = ["Answer", "Reply", "Request", "Server"]

# One logger name for the whole simulator, so its log lines read (and filter) the same
# whichever part wrote them.
_log = logging.getLogger("butler.testing.qrs_simulator")

_HANDSHAKE_TIMEOUT = 10.0
_MAX_BODY = 10 * 1024 * 1024


@dataclass(frozen=True)
class Request:
    """One parsed HTTP request and the connection it came on."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Message
    raw_body: bytes
    received: float
    connection_id: int
    new_connection: bool
    tls_session_reused: bool


@dataclass
class Reply:
    """An answer to write; ``payload`` is bytes, text, or anything ``json.dumps`` takes."""

    status: int
    payload: Any = None
    content_type: str = "application/json; charset=utf-8"
    extra: dict[str, Any] = field(default_factory=dict)


Answer = Callable[[Request], Reply | None]


@dataclass
class _Connection:
    answer: Answer
    connection_id: int
    tls_session_reused: bool
    requests_seen: int = 0


class Server:
    """Serves ``answer`` over HTTPS (client certificate signed by ``certs.ca``) or plain HTTP.

    ``lock`` is the simulator's lock and ``recorder`` gets the connection counts.
    ``on_stopping`` runs once ``stop`` has flagged the stop, so requests waiting out a delay
    end at once instead of holding up the join.
    """

    def __init__(
        self,
        certs: CertPaths | None,
        *,
        host: str,
        port: int,
        answer: Answer,
        lock: threading.RLock,
        recorder: Recorder,
        on_stopping: Callable[[], None],
    ):
        self.host = host
        self._requested_port = port
        self._answer = answer
        self._lock = lock
        self._recorder = recorder
        self._on_stopping = on_stopping
        self._connection_ids = itertools.count(1)
        self._open_sockets: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._ssl_context = _server_context(certs) if certs is not None else None

    def start(self) -> None:
        """Bind and start serving in background threads."""
        if self._listener is not None:
            raise RuntimeError("simulator already started")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._stopping.clear()
        self._listener = socket.create_server(
            (self.host, self._requested_port), family=family, backlog=1024
        )
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"qrs-sim-accept-{self.port}", daemon=True
        )
        self._accept_thread.start()

    def stop(self) -> None:
        """Stop accepting, close every open connection and wait for all worker threads."""
        listener = self._listener
        if listener is None:
            return
        self._stopping.set()
        self._on_stopping()
        self._wake_accept()
        if self._accept_thread is not None:
            self._accept_thread.join(timeout=10)
        listener.close()
        with self._lock:
            sockets = list(self._open_sockets)
            threads = list(self._threads)
        for sock in sockets:
            _hard_shutdown(sock)
        for thread in threads:
            thread.join(timeout=10)
        self._listener = None
        self._accept_thread = None

    @property
    def port(self) -> int:
        if self._listener is None:
            raise RuntimeError("simulator not started")
        return int(self._listener.getsockname()[1])

    @property
    def url(self) -> str:
        scheme = "https" if self._ssl_context is not None else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    def _wake_accept(self) -> None:
        """Connect once to our own port so a thread blocked in ``accept`` notices the stop."""
        assert self._listener is not None
        address = self._listener.getsockname()
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(address[0], address[0])
        try:
            with socket.create_connection((host, address[1]), timeout=2):
                pass
        except OSError:
            _log.debug("wake-up connection failed; accept loop exits on listener close")

    def _accept_loop(self) -> None:
        assert self._listener is not None
        listener = self._listener
        while not self._stopping.is_set():
            try:
                conn, address = listener.accept()
            except OSError:
                if self._stopping.is_set():
                    return
                _log.exception("accept failed")
                self._stopping.wait(0.05)
                continue
            if self._stopping.is_set():
                conn.close()
                return
            thread = threading.Thread(
                target=self._serve_connection,
                args=(conn, address),
                name=f"qrs-sim-conn-{self.port}",
                daemon=True,
            )
            with self._lock:
                self._threads.add(thread)
                self._open_sockets.add(conn)
            thread.start()

    def _serve_connection(self, conn: socket.socket, address: Any) -> None:
        sock = conn
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._ssl_context is not None:
                conn.settimeout(_HANDSHAKE_TIMEOUT)
                # Wrap without I/O first so stop() can cut a handshake that never completes.
                sock = self._ssl_context.wrap_socket(
                    conn, server_side=True, do_handshake_on_connect=False
                )
                with self._lock:
                    self._open_sockets.discard(conn)
                    self._open_sockets.add(sock)
                try:
                    sock.do_handshake()
                except (ssl.SSLError, OSError) as exc:
                    self._recorder.count_rejected_connection()
                    _log.debug("TLS handshake from %s failed: %s", address, exc)
                    return
                sock.settimeout(None)
            with self._lock:
                self._recorder.count_new_connection()
                connection = _Connection(
                    answer=self._answer,
                    connection_id=next(self._connection_ids),
                    tls_session_reused=bool(getattr(sock, "session_reused", False)),
                )
            if not self._stopping.is_set():
                # The handler's "server" is this connection's context, not a socketserver.
                _Handler(sock, address, cast(Any, connection))
        except OSError as exc:
            _log.debug("connection from %s ended: %s", address, exc)
        finally:
            with self._lock:
                self._open_sockets.discard(conn)
                self._open_sockets.discard(sock)
                self._threads.discard(threading.current_thread())
            sock.close()
            conn.close()


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive parsing from the standard library; answers come from ``answer``."""

    protocol_version = "HTTP/1.1"
    server_version = "QrsSimulator/1.0"
    server: _Connection  # type: ignore[assignment]

    def do_GET(self) -> None:
        _handle(self)

    do_POST = do_GET
    do_PUT = do_GET
    do_DELETE = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("%s %s", self.address_string(), format % args)


def _handle(handler: _Handler) -> None:
    """Parse one request, ask the connection's ``answer``, then send or drop."""
    connection = handler.server
    connection.requests_seen += 1
    received = time.time()
    split = urlsplit(handler.path)
    path = unquote(split.path)
    query = {
        key: values[-1] for key, values in parse_qs(split.query, keep_blank_values=True).items()
    }
    request = Request(
        method=handler.command.upper(),
        path=path,
        query=query,
        headers=handler.headers,
        raw_body=_read_body(handler),
        received=received,
        connection_id=connection.connection_id,
        new_connection=connection.requests_seen == 1,
        tls_session_reused=connection.tls_session_reused,
    )
    reply = connection.answer(request)
    if reply is None:
        handler.close_connection = True
        _hard_shutdown(handler.connection)
        return
    _send(handler, reply)


def _read_body(handler: _Handler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        return _read_chunked(handler)
    length = int(handler.headers.get("Content-Length") or 0)
    if length > _MAX_BODY:
        raise OSError("request body too large")
    return handler.rfile.read(length) if length > 0 else b""


def _read_chunked(handler: _Handler) -> bytes:
    parts: list[bytes] = []
    while True:
        size = int(handler.rfile.readline(1024).split(b";")[0].strip() or b"0", 16)
        if size == 0:
            while handler.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                pass
            return b"".join(parts)
        parts.append(handler.rfile.read(size))
        handler.rfile.readline(1024)


def _send(handler: _Handler, reply: Reply) -> None:
    """Write status line, headers and body in one send: no Nagle/delayed-ACK stalls."""
    if reply.payload is None or reply.status == 204:
        body = b""
    elif isinstance(reply.payload, bytes):
        body = reply.payload
    elif isinstance(reply.payload, str):
        body = reply.payload.encode("utf-8")
    else:
        body = json.dumps(reply.payload, separators=(",", ":")).encode("utf-8")
    reason = handler.responses.get(reply.status, ("",))[0]
    lines = [
        f"HTTP/1.1 {reply.status} {reason}",
        f"Server: {handler.version_string()}",
        f"Date: {handler.date_time_string()}",
        f"Content-Length: {len(body)}",
    ]
    if body:
        lines.append(f"Content-Type: {reply.content_type}")
    lines.extend(f"{name}: {value}" for name, value in reply.extra.items())
    if handler.close_connection:
        lines.append("Connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    handler.wfile.write(head + body)


def _hard_shutdown(sock: socket.socket) -> None:
    """Cut a connection without a TLS close_notify, as a crashed or rebooted server does."""
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        _log.debug("socket already closed")


def _server_context(certs: CertPaths) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certs.server_cert, certs.server_key)
    context.load_verify_locations(cafile=certs.ca)
    context.verify_mode = ssl.CERT_REQUIRED
    return context
