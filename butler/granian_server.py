"""Serving the WSGI app with granian (``restServerConfig.server: granian``), in this process.

granian's own ``Server`` runs a WSGI app only in worker *processes* that import it by name
(its thread-based server is for free-threaded Python builds only). Butler's app is built
here, with the scheduler, the run tracker and the stores it owns, so a second process would
mean two owners. This module therefore drives granian's Rust worker directly, the way
granian's own worker code does (``granian/server/mt.py``), in this process:

* the listening socket is bound at construction, by Python's ``socket`` (granian's own
  listener sets ``SO_REUSEPORT``, so it would share a taken port instead of failing), so
  port 0 resolves and a taken port fails before serving, as with waitress;
* ``serve_forever`` starts one ``WSGIWorker`` on granian's multi-threaded Rust runtime;
  the app runs on granian's blocking threads (``restServerConfig.threads`` plus
  ``maxWaiting``, the same count waitress gets), and the call returns once the worker
  has stopped;
* ``shutdown`` sets the worker's signal: granian stops accepting, answers what is in
  flight, then reports done; after ``_DRAIN_SECONDS`` Butler stops waiting (as waitress's
  5 s), so a hung upstream call cannot hold the stop for ever.

TLS is terminated by granian itself (rustls), so with granian there is no cheroot: one
port, TLS 1.2 minimum, and with ``tls.ca`` a presented client certificate must chain to it
(``requireClientCertificate`` makes one mandatory), as with cheroot.

These are granian internals (``granian._granian``), not its documented API, which is why
setup.cfg pins granian to the minor version this was written against.

What granian does not have, and waitress/cheroot have here: the per-client connection cap
(``maxConnectionsPerClient``) and a deadline on the request *body* (granian's
``header_read_timeout`` covers the request line and headers: ``requestReadTimeout``; a body
trickled slowly holds one app thread while the app reads it); what granian refuses before
the app (bad framing) it answers itself with an empty body, not in Butler's JSON error
shape; and who a client certificate names: granian verifies it in rustls but gives its
WSGI callback no TLS details, so ``environ["butler.client_subject"]`` is never set here
(:func:`butler.client_cert.client_subjects_supported`).
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask

from butler.tls_server import TlsFiles

log = logging.getLogger("butler.server")

_DRAIN_SECONDS = 5.0
_BACKLOG = 2048
_CONNECTION_LIMIT = 1000

GRANIAN_MISSING = (
    "restServerConfig.server is granian, but granian is not installed "
    "(pip install 'butler-py[granian]', or pip install .[granian] from a checkout)"
)


class _Response:
    """WSGI ``start_response``: keeps the status code and headers for granian."""

    __slots__ = ("headers", "status")

    def __init__(self) -> None:
        self.status = 200
        self.headers: list[tuple[str, str]] = []

    def __call__(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None, /
    ) -> Callable[[bytes], object]:
        self.status = int(status.split(" ", 1)[0])
        self.headers = headers
        return _no_write


def _no_write(data: bytes) -> object:
    raise NotImplementedError("the WSGI write() callable is not supported; return the body")


class _IterWrap:
    """The app's body iterable, with ``close`` passed on (granian calls it when done)."""

    __slots__ = ("__next__", "inner")

    def __init__(self, inner: Iterable[bytes]):
        self.inner = inner
        self.__next__ = iter(inner).__next__

    def __iter__(self) -> _IterWrap:
        return self

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()


def _wsgi_callback(app: Flask) -> Callable[[Any, dict[str, Any]], int]:
    """granian's WSGI glue, without its copy of ``os.environ`` in every environ."""
    base: dict[str, Any] = {
        "GATEWAY_INTERFACE": "CGI/1.1",
        "SCRIPT_NAME": "",
        "SERVER_SOFTWARE": "Butler",
        "wsgi.errors": sys.stderr,
        "wsgi.input_terminated": True,
        "wsgi.multiprocess": False,
        "wsgi.multithread": True,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }

    def run(proto: Any, scope: dict[str, Any]) -> int:
        response = _Response()
        body = app(base | scope, response)
        if isinstance(body, list):
            proto.response_bytes(response.status, response.headers, b"".join(body))
        else:
            proto.response_iter(response.status, response.headers, _IterWrap(body))
        return response.status

    return run


def _ssl_settings(tls: TlsFiles | None) -> tuple[Any, ...]:
    """The eight TLS arguments of granian's worker; the files are loaded here first."""
    if tls is None:
        return (False, None, None, None, "tls1.2", None, [], False)
    # granian reads the files in its worker thread; load them now so a bad file is an
    # OSError before serving (ssl.SSLError is one), as with cheroot.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(tls.cert), str(tls.key))
    if tls.ca is not None:
        context.load_verify_locations(str(tls.ca))
    ca = str(tls.ca.resolve()) if tls.ca else None
    return (
        True,
        str(tls.cert.resolve()),
        str(tls.key.resolve()),
        None,
        "tls1.2",
        ca,
        [],
        bool(ca) and tls.require_client_cert,
    )


class GranianServer:
    """granian's Rust HTTP server in this process, one worker, bound at construction."""

    def __init__(self, app: Flask, host: str, port: int, tls: TlsFiles | None = None):
        try:
            from granian import _granian
        except ImportError as exc:
            raise OSError(GRANIAN_MISSING) from exc
        self._app = app
        self._ssl = _ssl_settings(tls)
        self._threads = int(app.config["BUTLER_WORKERS"])
        self._read_timeout = float(app.config["BUTLER_READ_TIMEOUT"])
        # Bound here, not by granian: its listener sets SO_REUSEPORT, so a second Butler
        # (or anything else) on the same port would share it instead of failing to listen.
        bound = socket.create_server((host, port), backlog=_BACKLOG)
        # Accepted connections inherit it: without, Nagle and delayed ACKs hold each
        # answer of a lone keep-alive client for tens of milliseconds (granian's own
        # listener sets it too).
        bound.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.port = int(bound.getsockname()[1])
        self.host = host
        self._scheme = "https" if tls is not None else "http"
        # granian's worker owns the descriptor once serving and closes it when it stops.
        self._fd: int | None = bound.detach()
        native: Any = _granian  # its stub (_granian.pyi) lags the real signatures
        self._socket = native.SocketHolder(self._fd, False, _BACKLOG)
        self._lock = threading.Lock()
        self._stop_requested = False
        self._signal: Any = None
        self._serving = threading.Event()
        self._stopped = threading.Event()

    @property
    def url(self) -> str:
        return f"{self._scheme}://{self.host}:{self.port}"

    def serve_forever(self) -> None:
        import asyncio

        from granian import _granian
        from granian._futures import _new_cbscheduler
        from granian.http import HTTP1Settings

        native: Any = _granian

        with self._lock:
            if self._stop_requested:
                self._close_unserved()
                return
            self._fd = None  # from here the worker (or its failure) owns the socket
        loop = asyncio.new_event_loop()
        try:
            self._signal = native.WorkerSignal()
            # granian calls back once it has stopped accepting and answered what was in flight.
            self._signal.add_cb(self._stopped.set)
            worker = native.WSGIWorker(
                1,  # worker id
                (None, self._socket),
                None,  # no IPC: there is no supervising process
                1,  # Rust runtime threads (I/O)
                512,  # Rust runtime blocking threads
                self._threads,  # Python threads running the app
                30,  # idle seconds before an unused Python thread ends
                # backpressure: granian counts connections being served, not app calls
                # (a kept-alive idle connection holds a slot), so it is waitress's
                # connection limit; the app threads above bound the calls in the app.
                _CONNECTION_LIMIT,
                "1",  # HTTP/1.1, as waitress and cheroot
                HTTP1Settings(header_read_timeout=int(self._read_timeout * 1000)),
                None,
                None,  # no static files
                *self._ssl,
                (None, native.MetricsAggregator(1)),
            )
            scheduler = _new_cbscheduler(loop, _wsgi_callback(self._app), impl_asyncio=False)
            worker.serve_mtr(scheduler, loop, self._signal)
            self._serving.set()
            # A timed wait: on Windows an untimed one would hold off CTRL_BREAK's handler,
            # which runs on this (the main) thread.
            while not self._stopped.wait(0.5):
                pass
        finally:
            self._stopped.set()
            self._serving.set()
            loop.close()

    def shutdown(self) -> None:
        """Stop accepting, answer what is in flight (up to 5 s), then let serving return."""
        with self._lock:
            self._stop_requested = True
            if self._fd is not None:  # never served
                self._close_unserved()
                return
        self._serving.wait()
        if self._stopped.is_set():
            return
        self._signal.set()
        if not self._stopped.wait(_DRAIN_SECONDS):
            log.warning("Requests still running after %g s: stopping anyway", _DRAIN_SECONDS)
            self._stopped.set()

    def _close_unserved(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
