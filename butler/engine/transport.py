"""The WebSocket transport to the Engine, and the TLS context it connects with.

The WebSocket protocol comes from the ``websockets`` package, the same library the test
simulator serves with, so both ends share one well-kept implementation. The client drives
its sans-I/O protocol object in the calling thread instead of using ``websockets.sync``:
that client reads in a background thread while the caller writes, and OpenSSL forbids two
threads in one TLS session. With TLS 1.3 the server's post-handshake session tickets make
the race real (about one connection in 200 hung until the handshake timed out). One thread
per session also fits QIX, which is request/answer, and waitress's thread-per-request model.
"""

from __future__ import annotations

import collections
import contextlib
import socket
import ssl
import time
from collections.abc import Mapping
from pathlib import Path

from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import enable_client_permessage_deflate
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from butler import __version__

# Largest single Engine message accepted; property trees and field lists of big apps run to
# many megabytes, far beyond the websockets default of 1 MiB.
MAX_MESSAGE_BYTES = 256 * 1024 * 1024


class Closed(Exception):
    """The WebSocket closed: the peer closed it, a protocol error, or :meth:`abort`."""


class WebSocket:
    """A client WebSocket whose ``websockets`` protocol object is driven by its one user.

    Only :meth:`abort` may be called from another thread: shutting the socket down wakes a
    read that is blocked in the owning thread. While waiting for an answer, a ping goes out
    after every ``ping_interval`` of silence, so firewalls and the Engine keep an idle
    session (an hour-long reload) open; a missing pong is not treated as a failure.
    """

    def __init__(
        self,
        url: str,
        ssl_context: ssl.SSLContext | None,
        headers: Mapping[str, str],
        connect_timeout: float,
        io_timeout: float,
        ping_interval: float = 20,
    ):
        uri = parse_uri(url)
        deadline = time.monotonic() + connect_timeout
        sock = socket.create_connection((uri.host, uri.port), timeout=connect_timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if uri.secure:
                sock.settimeout(max(0.001, deadline - time.monotonic()))
                context = ssl_context or ssl.create_default_context()
                sock = context.wrap_socket(sock, server_hostname=uri.host)
            self._sock = sock
            self._io_timeout = io_timeout
            self._ping_interval = ping_interval
            self._messages: collections.deque[bytes] = collections.deque()
            self._fragments: list[bytes] = []
            self._protocol = ClientProtocol(
                uri,
                extensions=enable_client_permessage_deflate(None),
                max_size=MAX_MESSAGE_BYTES,
            )
            request = self._protocol.connect()
            request.headers["User-Agent"] = f"butler-py/{__version__}"
            for name, value in headers.items():
                request.headers[name] = value
            self._protocol.send_request(request)
            self._flush()
            while self._protocol.state is State.CONNECTING:
                if self._protocol.handshake_exc is not None:
                    break
                self._pump(deadline)
            if self._protocol.handshake_exc is not None:
                raise self._protocol.handshake_exc
        except BaseException:
            sock.close()
            raise

    def send(self, text: str) -> None:
        if self._protocol.state is not State.OPEN:
            raise Closed
        self._protocol.send_text(text.encode())
        self._flush()

    def recv(self, deadline: float | None) -> bytes:
        """The next complete message; ``TimeoutError`` once ``deadline`` has passed."""
        while not self._messages:
            if self._protocol.state is not State.OPEN:
                raise Closed
            self._pump(deadline)
        return self._messages.popleft()

    def close(self) -> None:
        try:
            if self._protocol.state is State.OPEN:
                self._protocol.send_close(1000)
                self._flush()
        except (OSError, ValueError):
            pass
        finally:
            self._sock.close()

    def abort(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._sock.shutdown(socket.SHUT_RDWR)

    def _pump(self, deadline: float | None) -> None:
        """Read once and process what arrived; ping when the line has been quiet."""
        wait = self._ping_interval
        if deadline is not None:
            wait = min(wait, deadline - time.monotonic())
            if wait <= 0:
                raise TimeoutError
        self._sock.settimeout(wait)
        try:
            data = self._sock.recv(65536)
        except TimeoutError:
            if deadline is not None and time.monotonic() >= deadline:
                raise
            self._protocol.send_ping(b"butler")
            self._flush()
            return
        if data:
            self._protocol.receive_data(data)
        else:
            self._protocol.receive_eof()
        for event in self._protocol.events_received():
            if not isinstance(event, Frame):
                continue
            if event.opcode is Opcode.TEXT or event.opcode is Opcode.BINARY:
                self._fragments = [bytes(event.data)]
            elif event.opcode is Opcode.CONT:
                self._fragments.append(bytes(event.data))
            else:
                continue
            if event.fin:
                self._messages.append(b"".join(self._fragments))
                self._fragments = []
        self._flush()

    def _flush(self) -> None:
        for chunk in self._protocol.data_to_send():
            if chunk:
                self._sock.settimeout(self._io_timeout)
                self._sock.sendall(chunk)


def ssl_context(
    client_cert: Path | None,
    client_key: Path | None,
    ca_cert: Path | None,
    reject_unauthorized: bool,
) -> ssl.SSLContext:
    """Load the certificate files once, at start-up, so a bad path fails early and clearly."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        if reject_unauthorized:
            if ca_cert is not None:
                context.load_verify_locations(cafile=str(ca_cert))
            else:
                context.load_default_certs()
        else:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if client_cert is not None:
            context.load_cert_chain(
                certfile=str(client_cert), keyfile=str(client_key) if client_key else None
            )
    except OSError as exc:
        files = f"certificate {client_cert}, key {client_key}, CA {ca_cert}"
        reason = exc.strerror or getattr(exc, "reason", None) or str(exc)
        raise ValueError(f"Engine TLS files could not be loaded ({files}): {reason}") from None
    return context
