"""The app-dump recipe: what Butler reads from an open app, and in which order.

A dump is the app's properties, script and lineage, every sheet, story, master item,
dimension, measure, bookmark, snapshot and variable, the embedded media, the field list and
the data connections, under the keys of :data:`DUMP_KEYS` (in that order). The Engine only
hands out items through session objects (lists) and per-item handles, so the recipe is three
pipelined rounds: create the lists and read the app-level answers, read the list layouts,
then open every item and read its properties (:func:`_collect_items`, two round trips). An
app with hundreds of objects thus costs a handful of round trips, not hundreds.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from butler.engine.session import EngineError, Session, field, handle_of

log = logging.getLogger(__name__)

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


def dump_open_app(session: Session, doc: int, app_id: str) -> dict[str, Any]:
    """Dump the app open as ``doc`` in ``session`` (keys in :data:`DUMP_KEYS`)."""
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
    list_handles = [handle_of(r, "CreateSessionObject", "session list") for r in first[4:]]
    connection_ids = [
        str(item.get("qId"))
        for item in field(connections, "qConnections", "GetConnections") or []
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
        layout = field(answer, "qLayout", "GetLayout")
        items[key] = _list_items(layout, lists[key][1])
    data_connections = [
        field(answer, "qConnection", "GetConnection") for answer in second[len(list_keys) :]
    ]

    collected = _collect_items(session, doc, items)

    dump: dict[str, Any] = {
        "properties": field(properties, "qProp", "GetAppProperties"),
        "loadScript": field(script, "qScript", "GetScript"),
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


def _collect_items(
    session: Session, doc: int, items: Mapping[str, list[dict[str, Any]]]
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
        handle = handle_of(answer, method, f"object {_item_id(item)}")
        reads.extend((handle, read, None) for read in _ITEM_CALLS[key][1])
    answers = iter(session.call_many(reads))

    collected: dict[str, list[Any]] = {key: [] for key in _ITEM_CALLS}
    for key, item in opened:
        reads_for_item = _ITEM_CALLS[key][1]
        if reads_for_item == ("GetFullPropertyTree",):
            collected[key].append(field(next(answers), "qPropEntry", "GetFullPropertyTree"))
            continue
        prop = field(next(answers), "qProp", "GetProperties")
        if key == "bookmarks":
            layout = field(next(answers), "qLayout", "GetLayout")
            data = prop.get("qData") if isinstance(prop.get("qData"), dict) else {}
            prop["qData"] = {**data, "qBookMark": layout.get("qBookmark")}
        if key == "variables":
            for flag in _VARIABLE_FLAGS:
                if item.get(flag):
                    prop[flag] = item[flag]
        collected[key].append(prop)
    return collected
