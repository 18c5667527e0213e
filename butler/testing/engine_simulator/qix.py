"""The QIX side of the Engine simulator: one session's handles and the methods they answer.

A real Engine keeps handles per WebSocket session, so a :class:`QixSession` is created for
every connection; it answers the calls Butler makes for listing, dumping and reloading apps
from the simulator's catalogue, and hands every call to the simulator to be recorded (and,
for a stalled method, left unanswered). Methods are looked up by (handle kind, method) in
``_METHODS``, so an unknown pair gets the JSON-RPC "Method not found" a real Engine sends.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from butler.testing.engine_catalogue import SimApp

if TYPE_CHECKING:
    from butler.testing.engine_simulator.server import EngineSimulator

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


@dataclass(frozen=True)
class EngineCall:
    """One JSON-RPC request as received; ``app_id`` is the doc open in that session."""

    path: str
    method: str
    handle: int
    params: dict[str, Any]
    app_id: str | None


class QixError(Exception):
    """Answered to the client as a JSON-RPC error object."""

    def __init__(self, code: int, message: str, parameter: str = ""):
        super().__init__(message)
        self.code = code
        self.message = message
        self.parameter = parameter


class QixSession:
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
        answered = self._sim.record_call(EngineCall(self._path, method, handle, params, app_id))
        if not answered:
            self._sim.wait_until_stopped()
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
        return {"qReturn": self._sim.run_reload(app, params)}

    def _doc_do_save(self, app: SimApp, params: dict[str, Any]) -> dict[str, Any]:
        self._sim.record_save(app.id)
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
_METHODS: dict[tuple[str, str], Callable[[QixSession, Any, dict[str, Any]], dict[str, Any]]] = {
    ("Global", "EngineVersion"): QixSession._global_engine_version,
    ("Global", "GetDocList"): QixSession._global_get_doc_list,
    ("Global", "OpenDoc"): QixSession._global_open_doc,
    ("Doc", "CreateSessionObject"): QixSession._doc_create_session_object,
    ("Doc", "DoReload"): QixSession._doc_do_reload,
    ("Doc", "DoSave"): QixSession._doc_do_save,
    ("Doc", "GetAppProperties"): QixSession._doc_get_app_properties,
    ("Doc", "GetBookmark"): QixSession._doc_get_bookmark,
    ("Doc", "GetConnection"): QixSession._doc_get_connection,
    ("Doc", "GetConnections"): QixSession._doc_get_connections,
    ("Doc", "GetDimension"): QixSession._doc_get_dimension,
    ("Doc", "GetLineage"): QixSession._doc_get_lineage,
    ("Doc", "GetMeasure"): QixSession._doc_get_measure,
    ("Doc", "GetObject"): QixSession._doc_get_object,
    ("Doc", "GetScript"): QixSession._doc_get_script,
    ("Doc", "GetVariableById"): QixSession._doc_get_variable_by_id,
    ("Object", "GetFullPropertyTree"): QixSession._object_get_full_property_tree,
    ("Object", "GetLayout"): QixSession._object_get_layout,
    ("Object", "GetProperties"): QixSession._object_get_properties,
    ("Props", "GetLayout"): QixSession._props_get_layout,
    ("Props", "GetProperties"): QixSession._props_get_properties,
    ("Bookmark", "GetLayout"): QixSession._bookmark_get_layout,
    ("Bookmark", "GetProperties"): QixSession._bookmark_get_properties,
    ("List", "GetLayout"): QixSession._list_get_layout,
    ("List", "GetProperties"): QixSession._list_get_properties,
}


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
