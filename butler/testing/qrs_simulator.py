"""A stand-in for the Qlik Sense Repository Service (QRS), for tests, the demo and benchmarks.

Qlik Sense cannot run on a build machine, yet Butler must be proven against a real network
peer: TLS with a client certificate, the Xrfkey check, keep-alive connections, QRS filter
expressions, and the failures a real site produces (errors, slowness, dropped connections).
This module is that peer. It is test/demo infrastructure and is never imported by the
production path.

Everything observable is recorded (requests, task starts, new TLS connections) so tests can
assert what Butler actually sent instead of trusting what it says it sent. See
``docs/qrs-simulator.md`` for the catalogue format and fault injection.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import re
import socket
import ssl
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

from butler.testing.certs import CertPaths, generate_certificates
from butler.testing.qrs_catalogue import (
    STATUS_STARTED,
    Execution,
    Task,
    build_task,
    condensed_task,
    load_catalogue,
    rendered_task,
    result_json,
    session_json,
    synthetic_task,
)
from butler.testing.qrs_filter import FilterError, filter_items, parse_filter

__all__ = [
    "Fault",
    "QrsSimulator",
    "RequestRecord",
    "StartRecord",
    "load_catalogue",
    "main",
]

_log = logging.getLogger(__name__)

_GUID_RE = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_RECORDED_HEADERS = ("x-qlik-xrfkey", "x-qlik-user", "content-type", "user-agent", "connection")
_HANDSHAKE_TIMEOUT = 10.0
_MAX_BODY = 10 * 1024 * 1024


@dataclass(frozen=True)
class RequestRecord:
    """One request as the simulator saw it (``status`` is ``None`` for a dropped connection)."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: Any
    time: float
    connection_id: int
    new_connection: bool
    tls_session_reused: bool
    status: int | None


@dataclass(frozen=True)
class StartRecord:
    """One task start the simulator accepted; ``route`` is the QRS route template used."""

    task_id: str
    task_name: str
    time: float
    route: str
    session_id: str


@dataclass
class Fault:
    """An injected failure.

    ``target`` is a path prefix (starts with ``/``, case-insensitive) or a task id (matches any
    request addressing that task: by id in the path, in a ``start/many`` body, or by name).
    The fault waits ``delay`` seconds, then drops the connection (``drop``), answers
    ``status`` with ``body``, or, with neither, lets the request proceed normally. ``times``
    limits how often it applies (``None`` = until removed).
    """

    target: str
    status: int | None = None
    delay: float = 0.0
    drop: bool = False
    method: str | None = None
    times: int | None = None
    body: str = ""


@dataclass
class _Connection:
    sim: QrsSimulator
    connection_id: int
    tls_session_reused: bool
    requests_seen: int = 0


@dataclass
class _Reply:
    status: int
    payload: Any = None
    content_type: str = "application/json; charset=utf-8"
    extra: dict[str, Any] = field(default_factory=dict)


class _ClientError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class QrsSimulator:
    """An HTTPS server answering the QRS routes Butler uses, with recording and faults.

    ``certs`` enables TLS with a mandatory client certificate signed by ``certs.ca``; ``None``
    serves plain HTTP (for Butler's ``useSSL: false``). ``synthetic_tasks`` adds that many
    generated tasks sharing the tag ``synthetic_tag`` (for benchmarks). The request, start
    and execution logs keep the newest ``max_log`` entries, so a long demo run stays small.
    """

    def __init__(
        self,
        certs: CertPaths | None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        catalogue: Path | str | Mapping[str, Any] | None = None,
        synthetic_tasks: int = 0,
        synthetic_tag: str = "bench",
        latency: float = 0.0,
        max_log: int = 100_000,
    ):
        self.host = host
        self._requested_port = port
        self._catalogue_data = load_catalogue(catalogue)
        from_file = self._catalogue_data.get("synthetic") or {}
        if synthetic_tasks:
            self._synthetic = (synthetic_tasks, synthetic_tag)
        else:
            self._synthetic = (
                int(from_file.get("count", 0)),
                str(from_file.get("tag", synthetic_tag)),
            )
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._max_log = max_log
        self._tasks: dict[str, Task] = {}
        self._executions: OrderedDict[str, Execution] = OrderedDict()
        self._requests: deque[RequestRecord] = deque(maxlen=max_log)
        self._starts: deque[StartRecord] = deque(maxlen=max_log)
        self._faults: list[Fault] = []
        self._latency = float(latency)
        self._new_connections = 0
        self._rejected_connections = 0
        self._connection_ids = itertools.count(1)
        self._open_sockets: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._stopping = threading.Event()
        self._interrupt = threading.Event()
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._ssl_context = _server_context(certs) if certs is not None else None
        self.reset_catalogue()

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> QrsSimulator:
        """Bind and start serving in background threads; returns ``self`` for chaining."""
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
        _log.info("QRS simulator listening on %s (%d tasks)", self.url, len(self._tasks))
        return self

    def stop(self) -> None:
        """Stop accepting, close every open connection and wait for all worker threads."""
        listener = self._listener
        if listener is None:
            return
        self._stopping.set()
        self._interrupt_delays()
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

    def __enter__(self) -> QrsSimulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

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

    # ----------------------------------------------------------------- observation

    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._requests)

    def starts(self) -> list[StartRecord]:
        with self._lock:
            return list(self._starts)

    @property
    def new_connections(self) -> int:
        """Connections accepted (TLS handshake completed) since the last ``reset_log``."""
        with self._lock:
            return self._new_connections

    @property
    def rejected_connections(self) -> int:
        """Connections whose TLS handshake failed (no or untrusted client certificate)."""
        with self._lock:
            return self._rejected_connections

    def reset_log(self) -> None:
        with self._lock:
            self._requests.clear()
            self._starts.clear()
            self._new_connections = 0
            self._rejected_connections = 0

    def wait_for_starts(self, count: int, timeout: float = 5.0) -> list[StartRecord]:
        """Block until at least ``count`` starts are recorded; for asynchronous triggers."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._starts) >= count, timeout):
                raise TimeoutError(
                    f"expected {count} task starts within {timeout} s, saw {len(self._starts)}"
                )
            return list(self._starts)

    def wait_for_rejected_connections(self, count: int, timeout: float = 5.0) -> int:
        """Block until ``count`` TLS handshakes have failed.

        With TLS 1.3 the client sees the server's rejection before the server has finished
        counting it, so tests wait here instead of reading the counter at once.
        """
        with self._changed:
            if not self._changed.wait_for(lambda: self._rejected_connections >= count, timeout):
                raise TimeoutError(
                    f"expected {count} rejected connections within {timeout} s, "
                    f"saw {self._rejected_connections}"
                )
            return self._rejected_connections

    # ----------------------------------------------------------------- faults

    def set_latency(self, seconds: float) -> None:
        """Delay every answer by ``seconds`` (on top of fault delays)."""
        with self._lock:
            self._latency = max(0.0, float(seconds))

    def add_fault(
        self,
        target: str,
        *,
        status: int | None = None,
        delay: float = 0.0,
        drop: bool = False,
        method: str | None = None,
        times: int | None = None,
        body: str = "",
    ) -> Fault:
        """Inject a failure for a path prefix or a task id; see :class:`Fault`."""
        if not target.startswith("/") and not _GUID_RE.fullmatch(target):
            raise ValueError("fault target must be a path prefix ('/qrs/...') or a task id")
        fault = Fault(
            target=target.lower(),
            status=status,
            delay=max(0.0, float(delay)),
            drop=drop,
            method=method.upper() if method else None,
            times=times,
            body=body,
        )
        with self._lock:
            self._faults.append(fault)
        return fault

    def remove_fault(self, fault: Fault) -> None:
        with self._lock:
            if fault in self._faults:
                self._faults.remove(fault)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def reset(self) -> None:
        """Back to the state after construction: catalogue, no faults, no latency, empty log.

        Requests still waiting out a delay are cut off, so a request a test gave up on cannot
        start a task or appear in the log of the next test.
        """
        with self._lock:
            self._interrupt_delays()
            self.clear_faults()
            self._latency = 0.0
            self.reset_catalogue()
            self.reset_log()

    def _interrupt_delays(self) -> None:
        with self._lock:
            self._interrupt.set()
            self._interrupt = threading.Event()

    # ----------------------------------------------------------------- catalogue

    def reset_catalogue(self) -> None:
        """Reload the catalogue given at construction; forgets added tasks and executions."""
        tasks = [build_task(spec) for spec in self._catalogue_data.get("tasks") or []]
        count, tag = self._synthetic
        tasks.extend(synthetic_task(index, tag) for index in range(1, count + 1))
        with self._lock:
            self._tasks = {task.id: task for task in tasks}
            self._executions.clear()

    def add_task(self, spec: Mapping[str, Any]) -> str:
        """Add (or replace) one task given in catalogue format; returns its id."""
        task = build_task(spec)
        with self._lock:
            self._tasks[task.id] = task
        return task.id

    def remove_task(self, task_id: str) -> None:
        with self._lock:
            self._tasks.pop(task_id.lower(), None)

    def task_ids(self, tag: str | None = None) -> list[str]:
        """Ids of all tasks, or of the tasks carrying ``tag`` (exact name), in catalogue order."""
        with self._lock:
            return [
                task.id
                for task in self._tasks.values()
                if tag is None or any(t["name"] == tag for t in task.tags)
            ]

    # ----------------------------------------------------------------- server internals

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
                    with self._lock:
                        self._rejected_connections += 1
                        self._changed.notify_all()
                    _log.debug("TLS handshake from %s failed: %s", address, exc)
                    return
                sock.settimeout(None)
            with self._lock:
                self._new_connections += 1
                connection = _Connection(
                    sim=self,
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

    def _handle(self, handler: _Handler) -> None:
        """Answer one parsed HTTP request: latency, faults, Xrfkey check, routing."""
        connection = handler.server
        connection.requests_seen += 1
        received = time.time()
        split = urlsplit(handler.path)
        path = unquote(split.path)
        query = {
            key: values[-1] for key, values in parse_qs(split.query, keep_blank_values=True).items()
        }
        raw_body = _read_body(handler)
        body = _parse_body(raw_body)
        method = handler.command.upper()

        with self._lock:
            latency = self._latency
            fault = self._take_fault(method, path, query, body)
            interrupt = self._interrupt
        delay = latency + (fault.delay if fault else 0.0)
        if delay and interrupt.wait(delay):
            self._drop(handler)
            return

        if fault is not None and fault.drop:
            self._record(handler, method, path, query, body, received, None)
            self._drop(handler)
            return
        if fault is not None and fault.status is not None:
            reply = _Reply(fault.status, fault.body, "text/plain; charset=utf-8")
        else:
            reply = self._route(method, path, query, handler, body, raw_body)
        self._record(handler, method, path, query, body, received, reply.status)
        _send(handler, reply)

    def _drop(self, handler: _Handler) -> None:
        handler.close_connection = True
        _hard_shutdown(handler.connection)

    def _record(
        self,
        handler: _Handler,
        method: str,
        path: str,
        query: Mapping[str, str],
        body: Any,
        received: float,
        status: int | None,
    ) -> None:
        headers = {
            name: value for name in _RECORDED_HEADERS if (value := handler.headers.get(name))
        }
        connection = handler.server
        record = RequestRecord(
            method=method,
            path=path,
            query=dict(query),
            headers=headers,
            body=body,
            time=received,
            connection_id=connection.connection_id,
            new_connection=connection.requests_seen == 1,
            tls_session_reused=connection.tls_session_reused,
            status=status,
        )
        with self._lock:
            self._requests.append(record)

    def _take_fault(
        self, method: str, path: str, query: Mapping[str, str], body: Any
    ) -> Fault | None:
        """The first fault matching this request, consuming one of its ``times``."""
        if not self._faults:
            return None
        lowered = path.lower()
        targets: set[str] | None = None
        for fault in self._faults:
            if fault.method and fault.method != method:
                continue
            if fault.target.startswith("/"):
                if not lowered.startswith(fault.target):
                    continue
            else:
                if targets is None:
                    targets = self._request_task_ids(lowered, query, body)
                if fault.target not in targets:
                    continue
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
            return fault
        return None

    def _request_task_ids(self, path: str, query: Mapping[str, str], body: Any) -> set[str]:
        ids = {match.lower() for match in _GUID_RE.findall(path)}
        if path.startswith("/qrs/task/start/many") and isinstance(body, list):
            ids.update(str(item).lower() for item in body)
        if "name" in query:
            task = self._task_by_name(query["name"])
            if task is not None:
                ids.add(task.id)
        return ids

    # ----------------------------------------------------------------- routes

    def _route(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        handler: _Handler,
        body: Any,
        raw_body: bytes,
    ) -> _Reply:
        key = handler.headers.get("X-Qlik-Xrfkey")
        param = next((value for name, value in query.items() if name.lower() == "xrfkey"), None)
        if key is None or param is None or key != param or len(key) != 16:
            return _Reply(
                400,
                "XSRF prevention check failed. Possible XSRF discovered.",
                "text/plain; charset=utf-8",
            )
        route = path.lower().rstrip("/")
        try:
            for pattern, allowed, action in _ROUTES:
                match = pattern.fullmatch(route)
                if match is None:
                    continue
                if method not in allowed:
                    return _Reply(405, None, extra={"Allow": ", ".join(allowed)})
                if raw_body and body is _INVALID_JSON:
                    raise _ClientError(400, "request body is not valid JSON")
                return action(self, match, query, body)
        except _ClientError as exc:
            return _Reply(exc.status, exc.message, "text/plain; charset=utf-8")
        return _Reply(404, None)

    def _about(self, match: re.Match[str], query: Mapping[str, str], body: Any) -> _Reply:
        return _Reply(
            200,
            {
                "buildVersion": "30.9.1.0",
                "buildDate": "9/20/2013 10:09:00 AM",
                "databaseProvider": "Devart.Data.PostgreSql",
                "nodeType": 1,
                "sharedPersistence": True,
                "requiresBootstrap": False,
                "singleNodeOnly": False,
                "schemaPath": "About",
            },
        )

    def _list_tasks(
        self, query: Mapping[str, str], *, full: bool, reload_only: bool = False
    ) -> _Reply:
        now = time.time()
        with self._lock:
            tasks = [t for t in self._tasks.values() if not reload_only or t.task_type == 0]
        entries = [rendered_task(task, now) for task in tasks]
        text = query.get("filter")
        try:
            if text is not None and text.strip():
                expr = parse_filter(text)
                entries = [entry for entry in entries if expr.matches(entry[0])]
        except FilterError as exc:
            raise _ClientError(400, f"Invalid filter: {exc}") from exc
        if not full:
            return _Reply(200, [condensed_task(item) for item, _ in entries])
        return _Reply(200, b"[" + b",".join(data for _, data in entries) + b"]")

    def _task_condensed(self, match: re.Match[str], query: Mapping[str, str], body: Any) -> _Reply:
        return self._list_tasks(query, full=False)

    def _task_full(self, match: re.Match[str], query: Mapping[str, str], body: Any) -> _Reply:
        return self._list_tasks(query, full=True)

    def _reloadtask_full(self, match: re.Match[str], query: Mapping[str, str], body: Any) -> _Reply:
        return self._list_tasks(query, full=True, reload_only=True)

    def _start_by_id(self, match: re.Match[str], query: Mapping[str, str], body: Any) -> _Reply:
        synchronous = match.group("sync") is not None
        route = "/qrs/task/{id}/start" + ("/synchronous" if synchronous else "")
        with self._lock:
            task = self._tasks.get(match.group("id"))
            if task is None:
                raise _ClientError(404, "")
            execution = self._start(task, route)
        return _Reply(201, {"value": execution.session_id}) if synchronous else _Reply(204)

    def _start_by_name(self, match: re.Match[str], query: Mapping[str, str], body: Any) -> _Reply:
        synchronous = match.group("sync") is not None
        route = "/qrs/task/start" + ("/synchronous" if synchronous else "") + "?name="
        name = query.get("name")
        if not name:
            raise _ClientError(400, "query parameter 'name' is required")
        with self._lock:
            task = self._task_by_name(name)
            if task is None:
                raise _ClientError(404, "")
            execution = self._start(task, route)
        return _Reply(201, {"value": execution.session_id}) if synchronous else _Reply(204)

    def _start_many(self, match: re.Match[str], query: Mapping[str, str], body: Any) -> _Reply:
        if not isinstance(body, list) or not all(isinstance(item, str) for item in body):
            raise _ClientError(400, "body must be a JSON array of task ids")
        with self._lock:
            tasks = []
            for task_id in dict.fromkeys(item.lower() for item in body):
                task = self._tasks.get(task_id)
                if task is None:
                    raise _ClientError(404, "")
                tasks.append(task)
            for task in tasks:
                self._start(task, "/qrs/task/start/many")
        return _Reply(204)

    def _execution_session(
        self, match: re.Match[str], query: Mapping[str, str], body: Any
    ) -> _Reply:
        now = time.time()
        with self._lock:
            execution = self._executions.get(match.group("id"))
            if execution is None or execution.status(now) != STATUS_STARTED:
                raise _ClientError(404, "")
            return _Reply(200, session_json(execution))

    def _execution_results(
        self, match: re.Match[str], query: Mapping[str, str], body: Any
    ) -> _Reply:
        now = time.time()
        with self._lock:
            objects = [result_json(execution, now) for execution in self._executions.values()]
        try:
            return _Reply(200, filter_items(objects, query.get("filter")))
        except FilterError as exc:
            raise _ClientError(400, f"Invalid filter: {exc}") from exc

    def _task_by_name(self, name: str) -> Task | None:
        wanted = name.casefold()
        with self._lock:
            return next((t for t in self._tasks.values() if t.name.casefold() == wanted), None)

    def _start(self, task: Task, route: str) -> Execution:
        """Record one start; caller holds the lock."""
        now = time.time()
        execution = Execution(
            session_id=str(uuid.uuid4()),
            result_id=str(uuid.uuid4()),
            task=task,
            started=now,
        )
        task.last_execution = execution
        self._executions[execution.session_id] = execution
        while len(self._executions) > self._max_log:
            self._executions.popitem(last=False)
        self._starts.append(StartRecord(task.id, task.name, now, route, execution.session_id))
        self._changed.notify_all()
        _log.info("task started: %s (%s) via %s", task.id, task.name, route)
        return execution


_INVALID_JSON = object()
_GUID = r"[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}"

_ROUTES: list[tuple[re.Pattern[str], tuple[str, ...], Any]] = [
    (re.compile(r"/qrs/about"), ("GET",), QrsSimulator._about),
    (re.compile(r"/qrs/task"), ("GET",), QrsSimulator._task_condensed),
    (re.compile(r"/qrs/task/full"), ("GET",), QrsSimulator._task_full),
    (re.compile(r"/qrs/reloadtask/full"), ("GET",), QrsSimulator._reloadtask_full),
    (re.compile(r"/qrs/task/start/many"), ("POST",), QrsSimulator._start_many),
    (re.compile(r"/qrs/task/start(?P<sync>/synchronous)?"), ("POST",), QrsSimulator._start_by_name),
    (
        re.compile(r"/qrs/task/(?P<id>[^/]+)/start(?P<sync>/synchronous)?"),
        ("POST",),
        QrsSimulator._start_by_id,
    ),
    (
        re.compile(rf"/qrs/executionsession/(?P<id>{_GUID})"),
        ("GET",),
        QrsSimulator._execution_session,
    ),
    (re.compile(r"/qrs/executionresult"), ("GET",), QrsSimulator._execution_results),
]


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive parsing from the standard library; answers come from the simulator."""

    protocol_version = "HTTP/1.1"
    server_version = "QrsSimulator/1.0"
    server: _Connection  # type: ignore[assignment]

    def do_GET(self) -> None:
        self.server.sim._handle(self)

    do_POST = do_GET
    do_PUT = do_GET
    do_DELETE = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("%s %s", self.address_string(), format % args)


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


def _parse_body(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return _INVALID_JSON


def _send(handler: _Handler, reply: _Reply) -> None:
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


# --------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None, *, stop: threading.Event | None = None) -> int:
    """``butler simulate-qrs``: run the simulator in the foreground until Ctrl+C (or ``stop``)."""
    parser = argparse.ArgumentParser(
        prog="butler simulate-qrs",
        description="Run the QRS simulator (test/demo stand-in for Qlik Sense's QRS API).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=4242, help="port to listen on (4242)")
    parser.add_argument(
        "--certs",
        type=Path,
        default=Path("qrs-simulator-certs"),
        help="folder for the CA/server/client certificates; created when missing",
    )
    parser.add_argument("--no-tls", action="store_true", help="serve plain HTTP")
    parser.add_argument("--catalogue", type=Path, help="task catalogue (YAML or JSON)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay for every answer")
    parser.add_argument(
        "--synthetic-tasks", type=int, default=0, help="add N generated tasks sharing one tag"
    )
    parser.add_argument("--synthetic-tag", default="bench", help="tag of the generated tasks")
    args = parser.parse_args(argv)

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    certs = None if args.no_tls else generate_certificates(args.certs)
    simulator = QrsSimulator(
        certs,
        host=args.host,
        port=args.port,
        catalogue=args.catalogue,
        synthetic_tasks=args.synthetic_tasks,
        synthetic_tag=args.synthetic_tag,
        latency=args.latency_ms / 1000.0,
    )
    with simulator:
        print(f"QRS simulator on {simulator.url} with {len(simulator.task_ids())} tasks")
        if certs is not None:
            print(f"  CA certificate:     {certs.ca.resolve()}")
            print(f"  client certificate: {certs.client_cert.resolve()}")
            print(f"  client key:         {certs.client_key.resolve()}")
        print("Press Ctrl+C to stop.")
        stop = stop or threading.Event()
        try:
            # A timed wait keeps Ctrl+C working on Windows, where an untimed wait ignores it.
            while not stop.wait(1.0):
                pass
        except KeyboardInterrupt:
            print("Stopping.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
