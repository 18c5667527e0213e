"""Client for the Qlik Sense Engine API (QIX): JSON-RPC 2.0 over a TLS WebSocket.

Butler needs three things from the Engine: the list of apps, a JSON dump of one app, and a
reload that keeps running after the HTTP caller got its answer. Each operation opens its own
session (the Engine ties open documents to a session) and closes it when done.

The WebSocket protocol comes from the ``websockets`` package, the same library the test
simulator serves with, so both ends share one well-kept implementation. The client drives
its sans-I/O protocol object in the calling thread instead of using ``websockets.sync``:
that client reads in a background thread while the caller writes, and OpenSSL forbids two
threads in one TLS session. With TLS 1.3 the server's post-handshake session tickets make
the race real (about one connection in 200 hung until the handshake timed out). One thread
per session also fits QIX, which is request/answer, and waitress's thread-per-request model.

Engine calls of one dump are pipelined: every independent request is sent before the answers
are read, so an app with hundreds of objects costs a handful of round trips, not hundreds.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from websockets.client import ClientProtocol
from websockets.exceptions import InvalidStatus, WebSocketException
from websockets.extensions.permessage_deflate import enable_client_permessage_deflate
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from butler import __version__
from butler.errors import (
    ApiError,
    FeatureUnavailable,
    NotFound,
    UpstreamError,
    UpstreamTimeout,
)

log = logging.getLogger(__name__)

GLOBAL_HANDLE = -1
GLOBAL_PATH = "/app/engineData"

# NxLocalizedErrorCode values the client reacts to.
LOCERR_APP_NOT_FOUND = 1003

# Largest single Engine message accepted; property trees and field lists of big apps run to
# many megabytes, far beyond the websockets default of 1 MiB.
MAX_MESSAGE_BYTES = 256 * 1024 * 1024

# Keys of an app dump, in the order they are returned.
DUMP_KEYS = (
    "properties",
    "loadScript",
    "lineage",
    "sheets",
    "stories",
    "masterobjects",
    "appprops",
    "dimensions",
    "measures",
    "bookmarks",
    "embeddedmedia",
    "snapshots",
    "fields",
    "dataconnections",
    "variables",
    "appId",
)

ReloadResult = Literal["success", "failure", "aborted"]


class EngineError(UpstreamError):
    """The Engine answered a call with a JSON-RPC error object."""

    def __init__(self, method: str, engine_code: int | None, engine_message: str, parameter: str):
        detail = f"{engine_message} ({parameter})" if parameter else engine_message
        super().__init__(f"Qlik Sense Engine refused {method}: {detail}")
        self.method = method
        self.engine_code = engine_code
        self.engine_message = engine_message
        self.parameter = parameter


@dataclass(frozen=True)
class ReloadOutcome:
    """How a background reload ended.

    ``success``: DoReload returned true and the app was saved. ``failure``: the Engine said
    the reload failed, or the reload or save could not be completed (``message`` says which).
    ``aborted``: Butler stopped before the reload finished; no task chain should run.
    """

    app_id: str
    result: ReloadResult
    message: str

    @property
    def success(self) -> bool:
        return self.result == "success"


ReloadCallback = Callable[[ReloadOutcome], None]


class _Closed(Exception):
    """The WebSocket closed: the peer closed it, a protocol error, or :meth:`abort`."""


class _WebSocket:
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
            raise _Closed
        self._protocol.send_text(text.encode())
        self._flush()

    def recv(self, deadline: float | None) -> bytes:
        """The next complete message; ``TimeoutError`` once ``deadline`` has passed."""
        while not self._messages:
            if self._protocol.state is not State.OPEN:
                raise _Closed
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


class _Session:
    """One Engine WebSocket session with its request-id bookkeeping.

    Used by one thread at a time. Answers are matched to requests by id, and unsolicited
    notifications (``OnConnected``, ``OnAuthenticationInformation``...) are skipped.
    """

    def __init__(self, ws: _WebSocket, label: str, call_timeout: float | None):
        self._ws = ws
        self._label = label
        self._call_timeout = call_timeout
        self._next_id = 0

    def call(
        self,
        handle: int,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        timeout: float | Literal["default"] | None = "default",
    ) -> dict[str, Any]:
        """One request and its answer; an Engine error is raised as :class:`EngineError`."""
        (result,) = self.call_many([(handle, method, params)], timeout=timeout)
        if isinstance(result, EngineError):
            raise result
        return result

    def call_many(
        self,
        calls: Sequence[tuple[int, str, Mapping[str, Any] | None]],
        *,
        timeout: float | Literal["default"] | None = "default",
    ) -> list[dict[str, Any] | EngineError]:
        """Send every request, then collect every answer (in request order).

        Engine errors are returned in place so the caller decides which ones matter;
        transport failures and timeouts raise.
        """
        limit = self._call_timeout if timeout == "default" else timeout
        pending: dict[int, str] = {}
        order: list[int] = []
        try:
            for handle, method, params in calls:
                self._next_id += 1
                request_id = self._next_id
                message = {
                    "jsonrpc": "2.0",
                    "id": request_id,
                    "handle": handle,
                    "method": method,
                    "params": dict(params or {}),
                }
                pending[request_id] = method
                order.append(request_id)
                self._ws.send(json.dumps(message))
            answers = self._collect(pending, limit)
        except TimeoutError:
            within = "in time" if limit is None else f"within {limit:g} s"
            raise UpstreamTimeout(
                f"{self._label} did not answer {_names(pending)} {within}"
            ) from None
        except (_Closed, OSError, ValueError, WebSocketException):
            raise UpstreamError(
                f"{self._label} closed the connection during {_names(pending)}"
            ) from None
        return [answers[request_id] for request_id in order]

    def _collect(
        self, pending: dict[int, str], limit: float | None
    ) -> dict[int, dict[str, Any] | EngineError]:
        deadline = None if limit is None else time.monotonic() + limit
        answers: dict[int, dict[str, Any] | EngineError] = {}
        while pending:
            raw = self._ws.recv(deadline)
            try:
                message = json.loads(raw)
            except ValueError:
                raise UpstreamError(f"{self._label} sent a message that is not JSON") from None
            if not isinstance(message, dict):
                continue
            request_id = message.get("id")
            if not isinstance(request_id, int) or request_id not in pending:
                continue
            method = pending.pop(request_id)
            error = message.get("error")
            if error is not None:
                answers[request_id] = _engine_error(method, error)
            else:
                result = message.get("result")
                answers[request_id] = result if isinstance(result, dict) else {}
        return answers

    def close(self) -> None:
        self._ws.close()

    def abort(self) -> None:
        self._ws.abort()


def _names(pending: Mapping[int, str]) -> str:
    return ", ".join(sorted(set(pending.values()))) or "the call"


def _engine_error(method: str, error: Any) -> EngineError:
    if not isinstance(error, dict):
        return EngineError(method, None, str(error), "")
    code = error.get("code")
    return EngineError(
        method,
        code if isinstance(code, int) else None,
        str(error.get("message") or "unknown error"),
        str(error.get("parameter") or ""),
    )


def _field(result: Mapping[str, Any] | EngineError, key: str, method: str) -> Any:
    if isinstance(result, EngineError):
        raise result
    if key not in result:
        raise UpstreamError(f"Qlik Sense Engine answered {method} without {key}")
    return result[key]


def _handle_of(result: Mapping[str, Any] | EngineError, method: str, what: str) -> int:
    handle = _field(result, "qReturn", method)
    value = handle.get("qHandle") if isinstance(handle, dict) else None
    if not isinstance(value, int):
        raise UpstreamError(f"Qlik Sense Engine found no {what}")
    return value


def _list_items(layout: Mapping[str, Any], list_key: str) -> list[dict[str, Any]]:
    container = layout.get(list_key) or {}
    items = container.get("qItems") if isinstance(container, dict) else None
    return [item for item in items or [] if isinstance(item, dict)]


def _item_id(item: Mapping[str, Any]) -> str:
    info = item.get("qInfo")
    return str(info.get("qId")) if isinstance(info, dict) else ""


# The lists an app dump is built from: dump key, session-object definition, and the key of
# the list in the object's layout. Snapshots get their own object id (the original reused
# "BookmarkList" for both, so one of the two concurrent creations could fail).
_APP_OBJECT_TYPES = (
    ("sheets", "sheet"),
    ("stories", "story"),
    ("masterobjects", "masterobject"),
    ("appprops", "appprops"),
)


def _dump_lists() -> dict[str, tuple[dict[str, Any], str]]:
    lists: dict[str, tuple[dict[str, Any], str]] = {}
    for key, q_type in _APP_OBJECT_TYPES:
        prop = {
            "qInfo": {"qId": f"{q_type}List", "qType": f"{q_type}List"},
            "qAppObjectListDef": {"qType": q_type, "qData": {"id": "/qInfo/qId"}},
            "qMetaDef": {},
            "qExtendsId": "",
        }
        lists[key] = (prop, "qAppObjectList")
    meta_list = {"qData": {"info": "/qDimInfos"}, "qMeta": {}}
    lists["dimensions"] = (
        {
            "qInfo": {"qId": "DimensionList", "qType": "DimensionList"},
            "qDimensionListDef": {"qType": "dimension", **meta_list},
        },
        "qDimensionList",
    )
    lists["measures"] = (
        {
            "qInfo": {"qId": "MeasureList", "qType": "MeasureList"},
            "qMeasureListDef": {"qType": "measure", **meta_list},
        },
        "qMeasureList",
    )
    lists["bookmarks"] = (
        {
            "qInfo": {"qId": "BookmarkList", "qType": "BookmarkList"},
            "qBookmarkListDef": {"qType": "bookmark", **meta_list},
        },
        "qBookmarkList",
    )
    lists["embeddedmedia"] = (
        {"qInfo": {"qId": "MediaList", "qType": "MediaList"}, "qMediaListDef": {}},
        "qMediaList",
    )
    lists["snapshots"] = (
        {
            "qInfo": {"qId": "SnapshotList", "qType": "BookmarkList"},
            "qBookmarkListDef": {"qType": "snapshot", **meta_list},
        },
        "qBookmarkList",
    )
    lists["fields"] = (
        {
            "qInfo": {"qId": "FieldList", "qType": "FieldList"},
            "qFieldListDef": {
                "qShowSystem": True,
                "qShowHidden": True,
                "qShowSrcTables": True,
                "qShowSemantic": True,
            },
        },
        "qFieldList",
    )
    lists["variables"] = (
        {
            "qInfo": {"qId": "VariableList", "qType": "VariableList"},
            "qVariableListDef": {
                "qType": "variable",
                "qShowReserved": True,
                "qShowConfig": True,
                **meta_list,
            },
        },
        "qVariableList",
    )
    return lists


# For each dump key built from per-item objects: the Doc method that opens an item, and the
# methods then called on the item's handle.
_ITEM_CALLS: dict[str, tuple[str, tuple[str, ...]]] = {
    "sheets": ("GetObject", ("GetFullPropertyTree",)),
    "stories": ("GetObject", ("GetFullPropertyTree",)),
    "masterobjects": ("GetObject", ("GetFullPropertyTree",)),
    "appprops": ("GetObject", ("GetFullPropertyTree",)),
    "dimensions": ("GetDimension", ("GetProperties",)),
    "measures": ("GetMeasure", ("GetProperties",)),
    "bookmarks": ("GetBookmark", ("GetProperties", "GetLayout")),
    "snapshots": ("GetBookmark", ("GetProperties",)),
    "variables": ("GetVariableById", ("GetProperties",)),
}

_VARIABLE_FLAGS = ("qIsScriptCreated", "qIsReserved", "qIsConfig")


def _ssl_context(
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


class EngineClient:
    """Talks to one Qlik Sense Engine (``Butler.configEngine``) with Butler's certificate.

    The constructor raises ``ValueError`` when a certificate file cannot be loaded. Every
    operation raises :class:`~butler.errors.ApiError` subclasses: ``UpstreamError``
    (502) when the Engine is unreachable or refuses, ``UpstreamTimeout`` (504) when it does
    not answer in time, ``NotFound`` (404) for an unknown app. Reloads run in background
    threads owned by the client; :meth:`stop` aborts them.
    """

    def __init__(
        self,
        host: str,
        port: int,
        use_ssl: bool = True,
        client_cert: Path | None = None,
        client_key: Path | None = None,
        ca_cert: Path | None = None,
        reject_unauthorized: bool = True,
        static_headers: Mapping[str, str] | None = None,
        connect_timeout: float = 10,
        call_timeout: float = 60,
        reload_timeout: float | None = 6 * 3600,
        keepalive_interval: float = 20,
    ):
        self._host = host
        self._port = port
        self._scheme = "wss" if use_ssl else "ws"
        self._ssl = (
            _ssl_context(client_cert, client_key, ca_cert, reject_unauthorized) if use_ssl else None
        )
        self._headers = dict(static_headers or {})
        self._connect_timeout = connect_timeout
        self._call_timeout = call_timeout
        self._reload_timeout = reload_timeout
        self._keepalive_interval = keepalive_interval
        self._label = f"Qlik Sense Engine at {host}:{port}"
        self._lock = threading.Lock()
        self._reloads: dict[threading.Thread, _Session] = {}
        self._stopping = False

    @property
    def url(self) -> str:
        """Base WebSocket URL, without a path."""
        return f"{self._scheme}://{self._host}:{self._port}"

    def start(self) -> None:
        """Accept reloads (again, after :meth:`stop`)."""
        with self._lock:
            self._stopping = False

    def stop(self, timeout: float = 10) -> None:
        """Abort running reloads (closing their sessions) and wait for their threads."""
        with self._lock:
            self._stopping = True
            running = dict(self._reloads)
        for session in running.values():
            session.abort()
        deadline = time.monotonic() + timeout
        for thread in running:
            thread.join(max(0.0, deadline - time.monotonic()))

    def engine_version(self) -> str:
        """The Engine's component version, e.g. ``12.612.0``."""
        session = self._open(GLOBAL_PATH)
        try:
            result = session.call(GLOBAL_HANDLE, "EngineVersion")
        finally:
            session.close()
        version = _field(result, "qVersion", "EngineVersion")
        return str(version.get("qComponentVersion", "")) if isinstance(version, dict) else ""

    def list_apps(self) -> list[dict[str, str]]:
        """Every app the Engine user may see, as ``[{"id", "name"}]`` in Engine order."""
        session = self._open(GLOBAL_PATH)
        try:
            result = session.call(GLOBAL_HANDLE, "GetDocList")
        finally:
            session.close()
        docs = _field(result, "qDocList", "GetDocList")
        return [
            {"id": str(doc.get("qDocId", "")), "name": str(doc.get("qDocName", ""))}
            for doc in docs or []
            if isinstance(doc, dict)
        ]

    def dump_app(self, app_id: str) -> dict[str, Any]:
        """The app's properties, script, objects and metadata (keys in :data:`DUMP_KEYS`)."""
        session = self._open(GLOBAL_PATH)
        try:
            doc = self._open_doc(session, app_id, no_data=True)
            return self._dump(session, doc, app_id)
        finally:
            session.close()

    def reload_app(
        self,
        app_id: str,
        reload_mode: int = 0,
        partial: bool = False,
        on_done: ReloadCallback | None = None,
    ) -> None:
        """Open the app, then reload and save it in a background thread.

        Returns once the app is open, so an unknown app or an unreachable Engine raises
        here; how the reload ended is passed to ``on_done`` (always called exactly once).
        """
        self._refuse_when_stopping()
        session = self._open(f"/app/{quote(app_id, safe='')}")
        try:
            version = session.call(GLOBAL_HANDLE, "EngineVersion")
            log.debug("Engine version for reload of %s: %s", app_id, version.get("qVersion"))
            doc = self._open_doc(session, app_id, no_data=False)
            thread = threading.Thread(
                target=self._run_reload,
                args=(session, doc, app_id, reload_mode, partial, on_done),
                name=f"engine-reload-{app_id}",
                daemon=True,
            )
            with self._lock:
                self._refuse_when_stopping()
                self._reloads[thread] = session
        except BaseException:
            session.close()
            raise
        thread.start()

    def _refuse_when_stopping(self) -> None:
        if self._stopping:
            raise FeatureUnavailable("Butler is shutting down; no new reloads")

    def _run_reload(
        self,
        session: _Session,
        doc: int,
        app_id: str,
        reload_mode: int,
        partial: bool,
        on_done: ReloadCallback | None,
    ) -> None:
        stage = "reload"
        try:
            result = session.call(
                doc,
                "DoReload",
                {"qMode": reload_mode, "qPartial": partial, "qDebug": False},
                timeout=self._reload_timeout,
            )
            if result.get("qReturn") is True:
                stage = "save"
                session.call(doc, "DoSave", {})
                outcome = ReloadOutcome(app_id, "success", "App reloaded and saved")
            else:
                outcome = ReloadOutcome(app_id, "failure", "The Engine reported the reload failed")
        except ApiError as exc:
            outcome = self._interrupted(app_id, stage, exc.message)
        except Exception as exc:
            log.exception("Unexpected error while reloading app %s", app_id)
            outcome = self._interrupted(app_id, stage, type(exc).__name__)
        finally:
            session.close()
            with self._lock:
                self._reloads.pop(threading.current_thread(), None)
        log.info("Reload of app %s: %s (%s)", app_id, outcome.result, outcome.message)
        if on_done is not None:
            try:
                on_done(outcome)
            except Exception:
                log.exception("Reload completion handler failed for app %s", app_id)

    def _interrupted(self, app_id: str, stage: str, message: str) -> ReloadOutcome:
        with self._lock:
            stopping = self._stopping
        if stopping:
            return ReloadOutcome(app_id, "aborted", "Butler stopped before the reload finished")
        if stage == "save":
            return ReloadOutcome(app_id, "failure", f"App reloaded but not saved: {message}")
        return ReloadOutcome(app_id, "failure", f"Reload did not complete: {message}")

    def _open(self, path: str) -> _Session:
        try:
            ws = _WebSocket(
                f"{self.url}{path}",
                self._ssl,
                self._headers,
                self._connect_timeout,
                io_timeout=self._call_timeout,
                ping_interval=self._keepalive_interval,
            )
        except TimeoutError:
            raise UpstreamTimeout(
                f"{self._label} did not accept a connection within {self._connect_timeout:g} s"
            ) from None
        except ssl.SSLError as exc:
            raise UpstreamError(f"TLS handshake with {self._label} failed: {exc.reason}") from None
        except InvalidStatus as exc:
            raise UpstreamError(
                f"{self._label} refused the WebSocket with HTTP {exc.response.status_code}"
            ) from None
        except (OSError, WebSocketException) as exc:
            raise UpstreamError(f"{self._label} is unreachable: {exc}") from None
        return _Session(ws, self._label, self._call_timeout)

    @staticmethod
    def _open_doc(session: _Session, app_id: str, *, no_data: bool) -> int:
        try:
            result = session.call(
                GLOBAL_HANDLE,
                "OpenDoc",
                {
                    "qDocName": app_id,
                    "qUserName": "",
                    "qPassword": "",
                    "qSerial": "",
                    "qNoData": no_data,
                },
            )
        except EngineError as exc:
            if exc.engine_code == LOCERR_APP_NOT_FOUND:
                raise NotFound(f"App {app_id} not found") from None
            raise
        return _handle_of(result, "OpenDoc", f"app {app_id}")

    def _dump(self, session: _Session, doc: int, app_id: str) -> dict[str, Any]:
        lists = _dump_lists()
        list_keys = list(lists)
        first = session.call_many(
            [
                (doc, "GetAppProperties", None),
                (doc, "GetScript", None),
                (doc, "GetLineage", None),
                (doc, "GetConnections", None),
                *((doc, "CreateSessionObject", {"qProp": lists[key][0]}) for key in list_keys),
            ]
        )
        properties, script, lineage, connections = first[:4]
        list_handles = [_handle_of(r, "CreateSessionObject", "session list") for r in first[4:]]
        connection_ids = [
            str(item.get("qId"))
            for item in _field(connections, "qConnections", "GetConnections") or []
            if isinstance(item, dict)
        ]

        second = session.call_many(
            [
                *((handle, "GetLayout", None) for handle in list_handles),
                *((doc, "GetConnection", {"qConnectionId": cid}) for cid in connection_ids),
            ]
        )
        items: dict[str, list[dict[str, Any]]] = {}
        for key, answer in zip(list_keys, second[: len(list_keys)], strict=True):
            layout = _field(answer, "qLayout", "GetLayout")
            items[key] = _list_items(layout, lists[key][1])
        data_connections = [
            _field(answer, "qConnection", "GetConnection") for answer in second[len(list_keys) :]
        ]

        collected = self._collect_items(session, doc, items)

        dump: dict[str, Any] = {
            "properties": _field(properties, "qProp", "GetAppProperties"),
            "loadScript": _field(script, "qScript", "GetScript"),
        }
        if isinstance(lineage, EngineError):
            log.info("Engine gave no lineage for app %s: %s", app_id, lineage.message)
        else:
            dump["lineage"] = lineage
        for key, _ in _APP_OBJECT_TYPES:
            dump[key] = collected[key]
        dump["dimensions"] = collected["dimensions"]
        dump["measures"] = collected["measures"]
        dump["bookmarks"] = collected["bookmarks"]
        dump["embeddedmedia"] = [
            item
            for item in items["embeddedmedia"]
            if str(item.get("qUrlDef", "")).startswith("/media/")
        ]
        dump["snapshots"] = collected["snapshots"]
        dump["fields"] = items["fields"]
        dump["dataconnections"] = data_connections
        dump["variables"] = collected["variables"]
        dump["appId"] = app_id
        return dump

    @staticmethod
    def _collect_items(
        session: _Session, doc: int, items: Mapping[str, list[dict[str, Any]]]
    ) -> dict[str, list[Any]]:
        """Open every listed item, then read each one's properties, in two round trips."""
        opened: list[tuple[str, dict[str, Any]]] = [
            (key, item) for key in _ITEM_CALLS for item in items[key]
        ]
        handles = session.call_many(
            [(doc, _ITEM_CALLS[key][0], {"qId": _item_id(item)}) for key, item in opened]
        )
        reads: list[tuple[int, str, Mapping[str, Any] | None]] = []
        for (key, item), answer in zip(opened, handles, strict=True):
            method = _ITEM_CALLS[key][0]
            handle = _handle_of(answer, method, f"object {_item_id(item)}")
            reads.extend((handle, read, None) for read in _ITEM_CALLS[key][1])
        answers = iter(session.call_many(reads))

        collected: dict[str, list[Any]] = {key: [] for key in _ITEM_CALLS}
        for key, item in opened:
            reads_for_item = _ITEM_CALLS[key][1]
            if reads_for_item == ("GetFullPropertyTree",):
                collected[key].append(_field(next(answers), "qPropEntry", "GetFullPropertyTree"))
                continue
            prop = _field(next(answers), "qProp", "GetProperties")
            if key == "bookmarks":
                layout = _field(next(answers), "qLayout", "GetLayout")
                data = prop.get("qData") if isinstance(prop.get("qData"), dict) else {}
                prop["qData"] = {**data, "qBookMark": layout.get("qBookmark")}
            if key == "variables":
                for flag in _VARIABLE_FLAGS:
                    if item.get(flag):
                        prop[flag] = item[flag]
            collected[key].append(prop)
        return collected
