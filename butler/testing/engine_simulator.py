"""A Qlik Sense Engine (QIX) simulator: a real TLS WebSocket server speaking JSON-RPC 2.0.

Test and demo infrastructure, never used on the production path. It demands a client
certificate signed by the test CA (as the real Engine on port 4747 does), sends the
``OnConnected`` notification a real Engine sends, keeps QIX handles per session, answers the
calls Butler makes for listing, dumping and reloading apps, and records every call so tests
can assert on what went over the wire.

Usage::

    with EngineSimulator(certs) as engine:
        client = EngineClient("127.0.0.1", engine.port, ...)
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.protocol import Event
from websockets.sync.server import Server, ServerConnection, serve

from butler.testing.engine_catalogue import SimApp, demo_apps

log = logging.getLogger(__name__)

GLOBAL_HANDLE = -1

# NxLocalizedErrorCode / JSON-RPC codes the simulator answers with.
LOCERR_GENERIC_NOT_FOUND = 2
LOCERR_APP_ALREADY_OPEN = 1002
LOCERR_APP_NOT_FOUND = 1003
LOCERR_INTERNAL_ERROR = -128
JSONRPC_METHOD_NOT_FOUND = -32601
JSONRPC_INVALID_PARAMS = -32602

# Positional parameter names, so clients that send ``params`` as an array work too.
_PARAM_NAMES: dict[str, tuple[str, ...]] = {
    "OpenDoc": ("qDocName", "qUserName", "qPassword", "qSerial", "qNoData"),
    "DoReload": ("qMode", "qPartial", "qDebug"),
    "DoSave": ("qFileName",),
    "CreateSessionObject": ("qProp",),
    "GetObject": ("qId",),
    "GetDimension": ("qId",),
    "GetMeasure": ("qId",),
    "GetBookmark": ("qId",),
    "GetVariableById": ("qId",),
    "GetConnection": ("qConnectionId",),
}

_VARIABLE_FLAGS = ("qIsScriptCreated", "qIsReserved", "qIsConfig")


class ServerCerts(Protocol):
    """The certificate files the simulator needs (``butler.testing.certs.CertPaths``)."""

    @property
    def ca(self) -> Path: ...

    @property
    def server_cert(self) -> Path: ...

    @property
    def server_key(self) -> Path: ...


@dataclass(frozen=True)
class EngineCall:
    """One JSON-RPC request as received; ``app_id`` is the doc open in that session."""

    path: str
    method: str
    handle: int
    params: dict[str, Any]
    app_id: str | None


@dataclass(frozen=True)
class EngineConnection:
    """One accepted WebSocket session."""

    path: str
    headers: dict[str, str]
    client_subject: str


class QixError(Exception):
    """Answered to the client as a JSON-RPC error object."""

    def __init__(self, code: int, message: str, parameter: str = ""):
        super().__init__(message)
        self.code = code
        self.message = message
        self.parameter = parameter


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
        session = _QixSession(self, path)
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

    def _record(self, call: EngineCall) -> bool:
        """Store the call; False when it must stay unanswered."""
        with self._lock:
            self._calls.append(call)
            self._lock.notify_all()
            return call.method not in self._stalled

    def _reload(self, app: SimApp, params: dict[str, Any]) -> bool:
        if app.reload == "slow":
            self._gate(app.id).wait()
            if self._stopping.is_set():
                raise QixError(LOCERR_INTERNAL_ERROR, "Engine shutting down")
        if app.reload == "error":
            raise QixError(LOCERR_INTERNAL_ERROR, "Reload failed: script error", app.id)
        with self._lock:
            self.reloads[app.id] += 1
        return app.reload != "failure"


class _QixSession:
    """The handles of one WebSocket session and the methods callable on each."""

    def __init__(self, sim: EngineSimulator, path: str):
        self._sim = sim
        self._path = path
        self._handles: dict[int, tuple[str, Any]] = {}
        self._next_handle = 0
        self._app: SimApp | None = None

    def dispatch(self, raw: str | bytes) -> dict[str, Any] | None:
        try:
            request = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(request, dict) or "method" not in request:
            return None
        request_id = request.get("id")
        method = str(request["method"])
        handle = request.get("handle", GLOBAL_HANDLE)
        params = _named_params(method, request.get("params"))
        app_id = self._app.id if self._app is not None else None
        answered = self._sim._record(EngineCall(self._path, method, handle, params, app_id))
        if not answered:
            self._sim._stopping.wait()
            return None
        try:
            result = self._call(handle, method, params)
        except QixError as exc:
            error = {"code": exc.code, "parameter": exc.parameter, "message": exc.message}
            return {"jsonrpc": "2.0", "id": request_id, "error": error}
        return {"jsonrpc": "2.0", "id": request_id, "result": result}

    def _call(self, handle: int, method: str, params: dict[str, Any]) -> dict[str, Any]:
        if handle == GLOBAL_HANDLE:
            kind, target = "Global", None
        elif handle in self._handles:
            kind, target = self._handles[handle]
        else:
            raise QixError(JSONRPC_INVALID_PARAMS, "Invalid handle", str(handle))
        implementation = _METHODS.get((kind, method))
        if implementation is None:
            raise QixError(JSONRPC_METHOD_NOT_FOUND, "Method not found", method)
        return implementation(self, target, params)

    def _new_handle(self, kind: str, target: Any, q_type: str, q_id: str) -> dict[str, Any]:
        self._next_handle += 1
        self._handles[self._next_handle] = (kind, target)
        return {
            "qReturn": {
                "qType": q_type,
                "qHandle": self._next_handle,
                "qGenericType": target.get("qInfo", {}).get("qType", "")
                if isinstance(target, dict)
                else "",
                "qGenericId": q_id,
            }
        }

    @staticmethod
    def _missing() -> dict[str, Any]:
        """What the Engine answers for an id that names no object: a null handle."""
        return {"qReturn": {"qType": None, "qHandle": None}}

    def _doc(self) -> SimApp:
        if self._app is None:
            raise QixError(LOCERR_GENERIC_NOT_FOUND, "No app open")
        return self._app

    # Global ------------------------------------------------------------------------

    def _global_engine_version(self, _: None, params: dict[str, Any]) -> dict[str, Any]:
        return {"qVersion": {"qComponentVersion": self._sim.version}}

    def _global_get_doc_list(self, _: None, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "qDocList": [
                {
                    "qDocName": app.name,
                    "qDocId": app.id,
                    "qTitle": app.name,
                    "qConnectedUsers": 0,
                    "qFileTime": 0,
                    "qFileSize": 0,
                    "qLastReloadTime": app.last_reload_time,
                    "qMeta": {"published": False},
                    "qThumbnail": {},
                }
                for app in self._sim.apps.values()
            ]
        }

    def _global_open_doc(self, _: None, params: dict[str, Any]) -> dict[str, Any]:
        doc_name = str(params.get("qDocName", ""))
        app = self._sim.apps.get(doc_name)
        if app is None:
            raise QixError(LOCERR_APP_NOT_FOUND, "App not found", doc_name)
        if self._app is not None:
            raise QixError(LOCERR_APP_ALREADY_OPEN, "App already open", doc_name)
        self._app = app
        return self._new_handle("Doc", app, "Doc", app.id)

    # Doc ---------------------------------------------------------------------------

    def _doc_do_reload(self, app: SimApp, params: dict[str, Any]) -> dict[str, Any]:
        return {"qReturn": self._sim._reload(app, params)}

    def _doc_do_save(self, app: SimApp, params: dict[str, Any]) -> dict[str, Any]:
        with self._sim._lock:
            self._sim.saves[app.id] += 1
        return {}

    def _doc_get_script(self, app: SimApp, params: dict[str, Any]) -> dict[str, Any]:
        return {"qScript": app.script}

    def _doc_get_app_properties(self, app: SimApp, params: dict[str, Any]) -> dict[str, Any]:
        return {"qProp": app.properties}

    def _doc_get_lineage(self, app: SimApp, params: dict[str, Any]) -> dict[str, Any]:
        if app.lineage is None:
            raise QixError(JSONRPC_METHOD_NOT_FOUND, "Method not found", "GetLineage")
        return {"qLineage": app.lineage}

    def _doc_get_connections(self, app: SimApp, params: dict[str, Any]) -> dict[str, Any]:
        return {"qConnections": app.connections}

    def _doc_get_connection(self, app: SimApp, params: dict[str, Any]) -> dict[str, Any]:
        wanted = params.get("qConnectionId")
        for connection in app.connections:
            if connection.get("qId") == wanted:
                return {"qConnection": connection}
        raise QixError(LOCERR_GENERIC_NOT_FOUND, "Connection not found", str(wanted))

    def _doc_create_session_object(self, app: SimApp, params: dict[str, Any]) -> dict[str, Any]:
        prop = params.get("qProp")
        if not isinstance(prop, dict):
            raise QixError(JSONRPC_INVALID_PARAMS, "qProp must be an object")
        q_id = str(prop.get("qInfo", {}).get("qId", f"session-{self._next_handle + 1}"))
        return self._new_handle("List", prop, "GenericObject", q_id)

    def _doc_get_object(self, app: SimApp, params: dict[str, Any]) -> dict[str, Any]:
        q_id = params.get("qId")
        for tree in app.objects:
            if tree["qProperty"]["qInfo"]["qId"] == q_id:
                return self._new_handle("Object", tree, "GenericObject", str(q_id))
        return self._missing()

    def _by_id(self, items: list[dict[str, Any]], q_id: Any) -> dict[str, Any] | None:
        return next((item for item in items if item["qInfo"]["qId"] == q_id), None)

    def _doc_get_dimension(self, app: SimApp, params: dict[str, Any]) -> dict[str, Any]:
        found = self._by_id(app.dimensions, params.get("qId"))
        if found is None:
            return self._missing()
        return self._new_handle("Props", found, "GenericDimension", str(params["qId"]))

    def _doc_get_measure(self, app: SimApp, params: dict[str, Any]) -> dict[str, Any]:
        found = self._by_id(app.measures, params.get("qId"))
        if found is None:
            return self._missing()
        return self._new_handle("Props", found, "GenericMeasure", str(params["qId"]))

    def _doc_get_bookmark(self, app: SimApp, params: dict[str, Any]) -> dict[str, Any]:
        q_id = params.get("qId")
        found = self._by_id(app.bookmarks + app.snapshots, q_id)
        if found is None:
            return self._missing()
        state = app.bookmark_states.get(str(q_id), {})
        return self._new_handle("Bookmark", (found, state), "GenericBookmark", str(q_id))

    def _doc_get_variable_by_id(self, app: SimApp, params: dict[str, Any]) -> dict[str, Any]:
        found = self._by_id(app.variables, params.get("qId"))
        if found is None:
            return self._missing()
        props = {key: value for key, value in found.items() if key not in _VARIABLE_FLAGS}
        return self._new_handle("Props", props, "GenericVariable", str(params["qId"]))

    # Generic objects ---------------------------------------------------------------

    def _object_get_full_property_tree(self, tree: dict[str, Any], _: Any) -> dict[str, Any]:
        return {"qPropEntry": tree}

    def _object_get_properties(self, tree: dict[str, Any], _: Any) -> dict[str, Any]:
        return {"qProp": tree["qProperty"]}

    def _object_get_layout(self, tree: dict[str, Any], _: Any) -> dict[str, Any]:
        return {"qLayout": tree["qProperty"]}

    def _props_get_properties(self, props: dict[str, Any], _: Any) -> dict[str, Any]:
        return {"qProp": props}

    def _props_get_layout(self, props: dict[str, Any], _: Any) -> dict[str, Any]:
        return {"qLayout": {"qInfo": props["qInfo"], "qMeta": props.get("qMetaDef", {})}}

    def _bookmark_get_properties(
        self, target: tuple[dict[str, Any], Any], _: Any
    ) -> dict[str, Any]:
        return {"qProp": target[0]}

    def _bookmark_get_layout(self, target: tuple[dict[str, Any], Any], _: Any) -> dict[str, Any]:
        props, state = target
        return {
            "qLayout": {
                "qInfo": props["qInfo"],
                "qMeta": props.get("qMetaDef", {}),
                "qBookmark": state,
            }
        }

    def _list_get_properties(self, prop: dict[str, Any], _: Any) -> dict[str, Any]:
        return {"qProp": prop}

    def _list_get_layout(self, prop: dict[str, Any], _: Any) -> dict[str, Any]:
        app = self._doc()
        layout: dict[str, Any] = {"qInfo": prop.get("qInfo", {})}
        if "qAppObjectListDef" in prop:
            q_type = prop["qAppObjectListDef"].get("qType")
            layout["qAppObjectList"] = {
                "qItems": [
                    _list_item(tree["qProperty"])
                    for tree in app.objects
                    if tree["qProperty"]["qInfo"]["qType"] == q_type
                ]
            }
        elif "qDimensionListDef" in prop:
            layout["qDimensionList"] = {"qItems": [_list_item(d) for d in app.dimensions]}
        elif "qMeasureListDef" in prop:
            layout["qMeasureList"] = {"qItems": [_list_item(m) for m in app.measures]}
        elif "qBookmarkListDef" in prop:
            q_type = prop["qBookmarkListDef"].get("qType")
            source = app.snapshots if q_type == "snapshot" else app.bookmarks
            layout["qBookmarkList"] = {"qItems": [_list_item(b) for b in source]}
        elif "qMediaListDef" in prop:
            layout["qMediaList"] = {"qItems": app.media}
        elif "qFieldListDef" in prop:
            show_system = bool(prop["qFieldListDef"].get("qShowSystem"))
            layout["qFieldList"] = {
                "qItems": [f for f in app.fields if show_system or not f.get("qIsSystem")]
            }
        elif "qVariableListDef" in prop:
            definition = prop["qVariableListDef"]
            layout["qVariableList"] = {
                "qItems": [
                    _variable_item(v)
                    for v in app.variables
                    if (definition.get("qShowReserved") or not v.get("qIsReserved"))
                    and (definition.get("qShowConfig") or not v.get("qIsConfig"))
                ]
            }
        return {"qLayout": layout}


# (handle kind, QIX method) -> implementation.
_METHODS: dict[tuple[str, str], Callable[[_QixSession, Any, dict[str, Any]], dict[str, Any]]] = {
    ("Global", "EngineVersion"): _QixSession._global_engine_version,
    ("Global", "GetDocList"): _QixSession._global_get_doc_list,
    ("Global", "OpenDoc"): _QixSession._global_open_doc,
    ("Doc", "CreateSessionObject"): _QixSession._doc_create_session_object,
    ("Doc", "DoReload"): _QixSession._doc_do_reload,
    ("Doc", "DoSave"): _QixSession._doc_do_save,
    ("Doc", "GetAppProperties"): _QixSession._doc_get_app_properties,
    ("Doc", "GetBookmark"): _QixSession._doc_get_bookmark,
    ("Doc", "GetConnection"): _QixSession._doc_get_connection,
    ("Doc", "GetConnections"): _QixSession._doc_get_connections,
    ("Doc", "GetDimension"): _QixSession._doc_get_dimension,
    ("Doc", "GetLineage"): _QixSession._doc_get_lineage,
    ("Doc", "GetMeasure"): _QixSession._doc_get_measure,
    ("Doc", "GetObject"): _QixSession._doc_get_object,
    ("Doc", "GetScript"): _QixSession._doc_get_script,
    ("Doc", "GetVariableById"): _QixSession._doc_get_variable_by_id,
    ("Object", "GetFullPropertyTree"): _QixSession._object_get_full_property_tree,
    ("Object", "GetLayout"): _QixSession._object_get_layout,
    ("Object", "GetProperties"): _QixSession._object_get_properties,
    ("Props", "GetLayout"): _QixSession._props_get_layout,
    ("Props", "GetProperties"): _QixSession._props_get_properties,
    ("Bookmark", "GetLayout"): _QixSession._bookmark_get_layout,
    ("Bookmark", "GetProperties"): _QixSession._bookmark_get_properties,
    ("List", "GetLayout"): _QixSession._list_get_layout,
    ("List", "GetProperties"): _QixSession._list_get_properties,
}


def _counting_connection(sim: EngineSimulator) -> type[ServerConnection]:
    """A connection class that tells ``sim`` about every ping a client sends."""

    class CountingConnection(ServerConnection):
        def process_event(self, event: Event) -> None:
            if isinstance(event, Frame) and event.opcode is Opcode.PING:
                sim._record_ping()
            super().process_event(event)

    return CountingConnection


def _list_item(prop: dict[str, Any]) -> dict[str, Any]:
    return {"qInfo": prop["qInfo"], "qMeta": prop.get("qMetaDef", {}), "qData": {}}


def _variable_item(variable: dict[str, Any]) -> dict[str, Any]:
    item = {
        "qInfo": variable["qInfo"],
        "qName": variable["qName"],
        "qDefinition": variable.get("qDefinition", ""),
    }
    item.update({flag: True for flag in _VARIABLE_FLAGS if variable.get(flag)})
    return item


def _named_params(method: str, params: Any) -> dict[str, Any]:
    if isinstance(params, dict):
        return params
    if isinstance(params, list):
        return dict(zip(_PARAM_NAMES.get(method, ()), params, strict=False))
    return {}


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
