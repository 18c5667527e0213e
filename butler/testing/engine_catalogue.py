"""The apps the Engine simulator serves: a data model and a small demo catalogue.

Test and demo infrastructure only. The shapes follow what a real Qlik Sense Engine returns
for the calls Butler makes (property trees, list items, variable flags), trimmed to the
fields a reader of an app dump would look for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

ReloadBehaviour = Literal["success", "failure", "slow", "error"]


@dataclass
class SimApp:
    """One app in the simulator.

    ``reload`` decides what DoReload does: ``success`` returns true, ``failure`` returns
    false, ``error`` answers with an Engine error, ``slow`` blocks until the test calls
    ``EngineSimulator.release_reload`` and then succeeds. ``objects`` are full property
    trees (``{"qProperty": {...}, "qChildren": [...]}``) of sheets, stories, master
    objects and appprops, told apart by ``qProperty.qInfo.qType``. ``lineage`` ``None``
    makes GetLineage fail, as on Engines that predate it.
    """

    id: str
    name: str
    script: str = ""
    reload: ReloadBehaviour = "success"
    properties: dict[str, Any] = field(default_factory=dict)
    objects: list[dict[str, Any]] = field(default_factory=list)
    dimensions: list[dict[str, Any]] = field(default_factory=list)
    measures: list[dict[str, Any]] = field(default_factory=list)
    bookmarks: list[dict[str, Any]] = field(default_factory=list)
    bookmark_states: dict[str, dict[str, Any]] = field(default_factory=dict)
    snapshots: list[dict[str, Any]] = field(default_factory=list)
    media: list[dict[str, Any]] = field(default_factory=list)
    fields: list[dict[str, Any]] = field(default_factory=list)
    connections: list[dict[str, Any]] = field(default_factory=list)
    variables: list[dict[str, Any]] = field(default_factory=list)
    lineage: list[dict[str, Any]] | None = field(default_factory=list)
    last_reload_time: str = "2024-01-01T00:00:00.000Z"


def _sheet(q_id: str, title: str, cells: list[str]) -> dict[str, Any]:
    return {
        "qProperty": {
            "qInfo": {"qId": q_id, "qType": "sheet"},
            "qMetaDef": {"title": title, "description": ""},
            "rank": 0,
            "columns": 24,
            "rows": 12,
            "cells": [{"name": cell, "type": "barchart"} for cell in cells],
        },
        "qChildren": [
            {
                "qProperty": {
                    "qInfo": {"qId": cell, "qType": "barchart"},
                    "visualization": "barchart",
                },
                "qChildren": [],
            }
            for cell in cells
        ],
        "qEmbeddedSnapshotRef": None,
    }


def _object(q_id: str, q_type: str, title: str) -> dict[str, Any]:
    return {
        "qProperty": {"qInfo": {"qId": q_id, "qType": q_type}, "qMetaDef": {"title": title}},
        "qChildren": [],
    }


def _variable(q_id: str, name: str, definition: str, **flags: bool) -> dict[str, Any]:
    return {
        "qInfo": {"qId": q_id, "qType": "variable"},
        "qName": name,
        "qDefinition": definition,
        "qComment": "",
        "qIncludeInBookmark": False,
        **flags,
    }


_SALES_SCRIPT = """///$tab Main
SET ThousandSep=',';
SET DecimalSep='.';
LET vReloadStart = Now();

Sales:
LOAD OrderId, Region, Amount, OrderDate
FROM [lib://DataFiles/sales.qvd] (qvd);
"""


def demo_apps() -> list[SimApp]:
    """A fresh copy of the demo catalogue: a full sales app plus reload-behaviour apps."""
    sales = SimApp(
        id="0b1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
        name="Sales Dashboard",
        script=_SALES_SCRIPT,
        properties={
            "qTitle": "Sales Dashboard",
            "qLastReloadTime": "2024-01-01T00:00:00.000Z",
            "qThumbnail": {"qUrl": ""},
            "description": "Demo app served by the Butler Engine simulator",
        },
        objects=[
            _sheet("sheet-overview", "Overview", ["chart-revenue", "chart-regions"]),
            _sheet("sheet-details", "Details", ["chart-orders"]),
            _object("story-q1", "story", "Q1 review"),
            _object("master-kpi", "masterobject", "Revenue KPI"),
            _object("appprops-main", "appprops", "App properties"),
        ],
        dimensions=[
            {
                "qInfo": {"qId": "dim-region", "qType": "dimension"},
                "qDim": {"qFieldDefs": ["Region"], "qFieldLabels": ["Region"], "title": "Region"},
                "qMetaDef": {"title": "Region", "tags": []},
            },
            {
                "qInfo": {"qId": "dim-month", "qType": "dimension"},
                "qDim": {"qFieldDefs": ["=Month(OrderDate)"], "title": "Month"},
                "qMetaDef": {"title": "Month", "tags": ["time"]},
            },
        ],
        measures=[
            {
                "qInfo": {"qId": "measure-revenue", "qType": "measure"},
                "qMeasure": {"qLabel": "Revenue", "qDef": "Sum(Amount)"},
                "qMetaDef": {"title": "Revenue", "tags": []},
            },
            {
                "qInfo": {"qId": "measure-orders", "qType": "measure"},
                "qMeasure": {"qLabel": "Orders", "qDef": "Count(distinct OrderId)"},
                "qMetaDef": {"title": "Orders", "tags": []},
            },
        ],
        bookmarks=[
            {
                "qInfo": {"qId": "bookmark-north", "qType": "bookmark"},
                "qMetaDef": {"title": "North region", "description": ""},
                "creationDate": "2024-01-02T08:00:00.000Z",
            }
        ],
        bookmark_states={
            "bookmark-north": {
                "qStateData": [{"qStateName": "$", "qFieldItems": [{"qDef": {"qName": "Region"}}]}],
                "qUtcModifyTime": 45293.3,
                "qVariableItems": [],
            }
        },
        snapshots=[
            {
                "qInfo": {"qId": "snapshot-revenue", "qType": "snapshot"},
                "qMetaDef": {"title": "Revenue snapshot"},
                "visualizationType": "barchart",
            }
        ],
        media=[
            {"qUrlDef": "/media/Logo.png", "qUrl": "/media/Logo.png"},
            {"qUrlDef": "/content/Default/background.jpg", "qUrl": "/content/Default/bg.jpg"},
        ],
        fields=[
            {"qName": "OrderId", "qCardinal": 1200, "qTags": ["$key", "$numeric"]},
            {"qName": "Region", "qCardinal": 4, "qTags": ["$text"]},
            {"qName": "Amount", "qCardinal": 980, "qTags": ["$numeric"]},
            {"qName": "OrderDate", "qCardinal": 365, "qTags": ["$date", "$timestamp"]},
            {"qName": "$Table", "qCardinal": 1, "qTags": ["$system"], "qIsSystem": True},
        ],
        connections=[
            {
                "qId": "conn-datafiles",
                "qName": "DataFiles",
                "qConnectionString": "C:\\Data\\",
                "qType": "folder",
            },
            {
                "qId": "conn-rest",
                "qName": "Butler_GET",
                "qConnectionString": 'CUSTOM CONNECT TO "provider=QvRestConnector.exe"',
                "qType": "QvRestConnector.exe",
            },
        ],
        variables=[
            _variable("var-reload-start", "vReloadStart", "=Now()", qIsScriptCreated=True),
            _variable("var-target", "vRevenueTarget", "1000000"),
            _variable("var-thousand", "ThousandSep", ",", qIsReserved=True),
            _variable("var-errormode", "ErrorMode", "1", qIsConfig=True),
        ],
        lineage=[
            {"qDiscriminator": "lib://DataFiles/sales.qvd", "qStatement": ""},
        ],
    )
    return [
        sales,
        SimApp(
            id="1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f",
            name="Finance Monthly",
            script="Finance: LOAD * FROM [lib://DataFiles/missing.qvd] (qvd);\n",
            reload="failure",
        ),
        SimApp(
            id="2d3e4f5a-6b7c-4d8e-9f0a-1b2c3d4e5f6a",
            name="Big Reload",
            script="Big: LOAD RecNo() AS Row AUTOGENERATE 1e9;\n",
            reload="slow",
        ),
        SimApp(
            id="3e4f5a6b-7c8d-4e9f-8a1b-2c3d4e5f6a7b",
            name="Broken Engine",
            reload="error",
        ),
    ]
