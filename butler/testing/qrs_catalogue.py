"""The QRS simulator's task catalogue: loading, the task model, and the JSON QRS returns.

Kept apart from the server so the shapes Butler parses (task, execution result, execution
session) can be read in one place and compared with real QRS answers. Field names follow
the QRS API; only the fields Butler or its tests look at carry meaningful values.
"""

from __future__ import annotations

import datetime as dt
import importlib.resources
import json
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

__all__ = [
    "STATUS_NAMES",
    "UNFINISHED",
    "Execution",
    "Task",
    "build_task",
    "condensed_task",
    "load_catalogue",
    "rendered_task",
    "result_json",
    "script_log",
    "session_json",
    "synthetic_task",
]

_ID_NAMESPACE = uuid.UUID("6f1c1a8e-5b0e-4c51-9d38-7d3c2b1f0a42")
_ZERO_GUID = "00000000-0000-0000-0000-000000000000"
_NEVER = "1753-01-01T00:00:00.000Z"
_CREATED = "2024-01-15T08:00:00.000Z"
_MODIFIED_BY = "INTERNAL\\sa_repository"
_NODE = "central"
_GUID_RE = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")

# QRS's TaskExecutionStatus enum (QRS API reference, "TaskExecutionStatus"); 13 and 14 are
# distribution states this simulator never enters.
STATUS_NAMES = {
    0: "NeverStarted",
    1: "Triggered",
    2: "Started",
    3: "Queued",
    4: "AbortInitiated",
    5: "Aborting",
    6: "Aborted",
    7: "FinishedSuccess",
    8: "FinishedFail",
    9: "Skipped",
    10: "Retry",
    11: "Error",
    12: "Reset",
    13: "DistributionQueue",
    14: "DistributionRunning",
}
STATUS_TRIGGERED = 1
STATUS_STARTED = 2
STATUS_QUEUED = 3
STATUS_SUCCESS = 7
STATUS_FAILED = 8
UNFINISHED = frozenset({STATUS_TRIGGERED, STATUS_STARTED, STATUS_QUEUED})

# ExecutionResultDetail.detailsType
_DETAIL_ERROR = 0
_DETAIL_INFORMATION = 2


@dataclass
class Task:
    """One catalogue task; ``rendered`` caches its JSON (see :func:`rendered_task`)."""

    id: str
    name: str
    task_type: int
    enabled: bool
    app: dict[str, str] | None
    tags: list[dict[str, str]]
    custom_properties: list[tuple[str, str, str]]
    duration: float
    outcome: str
    last_execution: Execution | None = None
    rendered: tuple[Any, dict[str, Any], bytes] | None = field(default=None, repr=False)


@dataclass
class Execution:
    """One start: one execution session and its execution result.

    Duration and outcome are the task's when it was triggered. ``started`` is set by the
    scheduler queue (``qrs_simulator.executions``) once a slot is free; before that the
    execution is Triggered (until ``ready``) and then Queued.
    """

    session_id: str
    result_id: str
    task: Task
    triggered: float
    ready: float
    duration: float
    outcome: str
    file_reference_id: str
    started: float | None = None

    @property
    def finished(self) -> float:
        """When it ends (infinity while not started)."""
        return float("inf") if self.started is None else self.started + self.duration

    def status(self, now: float) -> int:
        if self.started is None:
            return STATUS_TRIGGERED if now < self.ready else STATUS_QUEUED
        if now < self.finished:
            return STATUS_STARTED
        return STATUS_SUCCESS if self.outcome == "success" else STATUS_FAILED


def load_catalogue(source: Path | str | Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Read a catalogue file (YAML or JSON) or return the built-in demo catalogue."""
    yaml = YAML(typ="safe", pure=True)
    if source is None:
        text = importlib.resources.files("butler.testing").joinpath("qrs_catalogue.yaml")
        data = yaml.load(text.read_text(encoding="utf-8"))
    elif isinstance(source, Mapping):
        data = dict(source)
    else:
        data = yaml.load(Path(source).read_text(encoding="utf-8"))
    if not isinstance(data, Mapping) or not isinstance(data.get("tasks", []), list):
        raise ValueError("a QRS catalogue is a mapping with a 'tasks' list")
    return dict(data)


def _stable_id(kind: str, name: str) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, f"{kind}:{name}"))


def build_task(spec: Mapping[str, Any]) -> Task:
    """Normalise one catalogue entry (see docs/qrs-simulator.md for the accepted shapes)."""
    task_id = str(spec.get("id") or "").lower()
    if not _GUID_RE.fullmatch(task_id):
        raise ValueError(f"catalogue task id {task_id!r} is not a GUID")
    name = str(spec.get("name") or task_id)
    kind = str(spec.get("type", "reload")).lower()
    if kind not in ("reload", "external"):
        raise ValueError(f"task {task_id}: type must be 'reload' or 'external'")
    outcome = str(spec.get("outcome", "success")).lower()
    if outcome not in ("success", "fail"):
        raise ValueError(f"task {task_id}: outcome must be 'success' or 'fail'")
    app: dict[str, str] | None = None
    if kind == "reload":
        app_spec = spec.get("app") or {}
        app = {
            "id": str(app_spec.get("id") or _stable_id("app", task_id)).lower(),
            "name": str(app_spec.get("name") or name),
        }
    tags = [{"id": _stable_id("tag", str(tag)), "name": str(tag)} for tag in spec.get("tags") or []]
    return Task(
        id=task_id,
        name=name,
        task_type=0 if kind == "reload" else 1,
        enabled=bool(spec.get("enabled", True)),
        app=app,
        tags=tags,
        custom_properties=list(_custom_properties(spec.get("customProperties"))),
        duration=max(0.0, float(spec.get("durationSeconds", 0.0))),
        outcome=outcome,
    )


def _custom_properties(spec: Any) -> Iterable[tuple[str, str, str]]:
    """Accept ``{name: value | [values]}`` or ``[{name, value}]``; yield (def id, name, value)."""
    pairs: list[tuple[str, Any]] = []
    if isinstance(spec, Mapping):
        for name, values in spec.items():
            for value in values if isinstance(values, list) else [values]:
                pairs.append((str(name), value))
    elif isinstance(spec, list):
        pairs.extend((str(item["name"]), item["value"]) for item in spec)
    elif spec is not None:
        raise ValueError("customProperties must be a mapping or a list of {name, value}")
    for name, value in pairs:
        yield _stable_id("customproperty", name), name, str(value)


def synthetic_task(index: int, tag: str) -> Task:
    return build_task(
        {
            "id": _stable_id("synthetic-task", str(index)),
            "name": f"Synthetic reload task {index:04d}",
            "app": {"name": f"Synthetic app {index:04d}"},
            "tags": [tag],
            "customProperties": {"taskGroup": "synthetic"},
        }
    )


def _iso(timestamp: float) -> str:
    moment = dt.datetime.fromtimestamp(timestamp, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _stamp(object_id: str, created: str = _CREATED) -> dict[str, Any]:
    return {
        "id": object_id,
        "createdDate": created,
        "modifiedDate": created,
        "modifiedByUserName": _MODIFIED_BY,
    }


def rendered_task(task: Task, now: float) -> tuple[dict[str, Any], bytes]:
    """The task's full object and its JSON, reused until its last execution changes state.

    Listing hundreds of tasks per call (benchmarks) must cost the simulator little, or the
    numbers would measure the simulator instead of Butler.
    """
    execution = task.last_execution
    status = execution.status(now) if execution else 0
    key = (execution.session_id if execution else None, status)
    cached = task.rendered
    if cached is not None and cached[0] == key:
        return cached[1], cached[2]
    item = _task_json(task, now)
    data = json.dumps(item, separators=(",", ":")).encode("utf-8")
    if status not in UNFINISHED:  # an unfinished execution's duration changes every call
        task.rendered = (key, item, data)
    return item, data


def _task_json(task: Task, now: float) -> dict[str, Any]:
    """The ``/qrs/task/full`` shape of one task (a subset of real QRS's fields, same names)."""
    execution = task.last_execution
    result = result_json(execution, now) if execution else _never_run(task)
    result.pop("schemaPath", None)
    item: dict[str, Any] = {
        **_stamp(task.id),
        "customProperties": [
            {
                **_stamp(_stable_id("cpvalue", f"{task.id}:{name}:{value}")),
                "value": value,
                "definition": {
                    "id": definition_id,
                    "name": name,
                    "valueType": "Text",
                    "choiceValues": [],
                    "privileges": None,
                },
                "schemaPath": "CustomPropertyValue",
            }
            for definition_id, name, value in task.custom_properties
        ],
        "app": _app_json(task.app),
        "isManuallyTriggered": False,
        "operational": {
            "id": _stable_id("operational", task.id),
            "lastExecutionResult": result,
            "nextExecution": _NEVER,
            "privileges": None,
        },
        "name": task.name,
        "taskType": task.task_type,
        "enabled": task.enabled,
        "taskSessionTimeout": 1440,
        "maxRetries": 0,
        "tags": [{**tag, "privileges": None} for tag in task.tags],
        "privileges": None,
        "schemaPath": "ReloadTask" if task.task_type == 0 else "ExternalProgramTask",
    }
    if task.task_type == 1:
        item["path"] = "C:\\Scripts\\export.cmd"
        item["parameters"] = ""
    return item


def _app_json(app: Mapping[str, str] | None) -> dict[str, Any] | None:
    if app is None:
        return None
    return {
        "id": app["id"],
        "name": app["name"],
        "appId": "",
        "publishTime": _NEVER,
        "published": False,
        "stream": None,
        "savedInProductVersion": "12.1477.0",
        "migrationHash": "",
        "availabilityStatus": 0,
        "privileges": None,
    }


def condensed_task(task: Mapping[str, Any]) -> dict[str, Any]:
    """The ``/qrs/task`` (condensed) shape, derived from the full object."""
    return {
        "id": task["id"],
        "operational": {
            "id": task["operational"]["id"],
            "lastExecutionResult": None,
            "nextExecution": task["operational"]["nextExecution"],
            "privileges": None,
        },
        "name": task["name"],
        "taskType": task["taskType"],
        "privileges": None,
    }


def _never_run(task: Task) -> dict[str, Any]:
    return {
        **_stamp(_stable_id("result", task.id)),
        "executionID": _ZERO_GUID,
        "appID": task.app["id"] if task.app else _ZERO_GUID,
        "taskID": task.id,
        "executingNodeName": "",
        "status": 0,
        "startTime": _NEVER,
        "stopTime": _NEVER,
        "duration": 0,
        "fileReferenceID": _ZERO_GUID,
        "scriptLogAvailable": False,
        "details": [],
        "scriptLogLocation": "",
        "scriptLogSize": 0,
        "privileges": None,
    }


def _detail(execution: Execution, at: float, message: str, kind: int) -> dict[str, Any]:
    return {
        "id": _stable_id("detail", f"{execution.result_id}:{message}"),
        "detailsType": kind,
        "message": message,
        "detailCreatedDate": _iso(at),
        "privileges": None,
    }


def _details(execution: Execution, status: int) -> list[dict[str, Any]]:
    """The state changes so far, oldest first, worded like the scheduler's messages."""
    details = [
        _detail(
            execution, execution.triggered, "Changing task state to Triggered", _DETAIL_INFORMATION
        ),
    ]
    if status == STATUS_TRIGGERED:
        return details
    started = execution.started
    if started is None or started > execution.ready:
        details.append(
            _detail(
                execution,
                execution.ready,
                "Changing task state from Triggered to Queued",
                _DETAIL_INFORMATION,
            )
        )
    if started is None:
        return details
    before = "Queued" if started > execution.ready else "Triggered"
    details.append(
        _detail(
            execution, started, f"Changing task state from {before} to Started", _DETAIL_INFORMATION
        )
    )
    if status == STATUS_SUCCESS:
        details.append(
            _detail(
                execution,
                execution.finished,
                "Changing task state from Started to FinishedSuccess",
                _DETAIL_INFORMATION,
            )
        )
    elif status == STATUS_FAILED:
        details.append(
            _detail(
                execution,
                execution.finished,
                "Task finished with state FinishedFail: the reload script failed (simulated)",
                _DETAIL_ERROR,
            )
        )
    return details


def _result_condensed(execution: Execution, now: float) -> dict[str, Any]:
    """``ExecutionResultCondensed``: what ``/qrs/executionresult`` and an execution session
    embed (no task, app or execution id)."""
    status = execution.status(now)
    started = execution.started
    finished = status not in UNFINISHED
    has_log = finished and execution.task.task_type == 0
    if started is None:
        duration = 0
    else:
        duration = int(((execution.finished if finished else now) - started) * 1000)
    return {
        "id": execution.result_id,
        "privileges": None,
        "executingNodeName": _NODE if started is not None else "",
        "status": status,
        "startTime": _iso(started) if started is not None else _NEVER,
        "stopTime": _iso(execution.finished) if finished else _NEVER,
        "duration": duration,
        "fileReferenceID": execution.file_reference_id if has_log else _ZERO_GUID,
        "scriptLogAvailable": has_log,
        "details": _details(execution, status),
        "scriptLogLocation": _log_location(execution) if has_log else "",
        "scriptLogSize": len(script_log(execution).encode("utf-8")) if has_log else 0,
    }


def result_json(execution: Execution, now: float, *, full: bool = True) -> dict[str, Any]:
    """``ExecutionResult`` (``full``) or ``ExecutionResultCondensed``, as QRS answers them."""
    condensed = _result_condensed(execution, now)
    if not full:
        return condensed
    task = execution.task
    return {
        **_stamp(execution.result_id, _iso(execution.triggered)),
        **condensed,
        "taskID": task.id,
        "executionID": execution.session_id,
        "appID": task.app["id"] if task.app else _ZERO_GUID,
        "executingNodeID": _stable_id("node", _NODE) if execution.started else _ZERO_GUID,
        "schemaPath": "ExecutionResult",
    }


def session_json(execution: Execution, now: float, *, full: bool = True) -> dict[str, Any]:
    """``ExecutionSession`` (``full``) or ``ExecutionSessionCondensed``.

    A session has no status of its own: it is in the embedded ``executionResult``.
    """
    task = execution.task
    condensed_task_json = {
        "id": task.id,
        "name": task.name,
        "taskType": task.task_type,
        "enabled": task.enabled,
        "privileges": None,
    }
    item: dict[str, Any] = {
        "id": execution.session_id,
        "privileges": None,
        "executingNode": {"id": _stable_id("node", _NODE), "privileges": None},
        "executionResult": _result_condensed(execution, now),
        "abortAt": _NEVER,
        "abortReason": 0,
        "reloadTask": condensed_task_json if task.task_type == 0 else None,
        "userSyncTask": None,
        "externalProgramTask": condensed_task_json if task.task_type == 1 else None,
    }
    if not full:
        return item
    return {
        **_stamp(execution.session_id, _iso(execution.triggered)),
        **item,
        "retries": 0,
        "app": _app_json(task.app),
        "user": _MODIFIED_BY,
        "schemaPath": "ExecutionSession",
    }


def _log_location(execution: Execution) -> str:
    app_id = execution.task.app["id"] if execution.task.app else _ZERO_GUID
    return f"\\\\central\\QlikShare\\ArchivedLogs\\central\\{app_id}.{execution.result_id}.log"


def script_log(execution: Execution) -> str:
    """The reload's script log: a short success, or a failure that ends in a script error.

    A failed one is longer than the 50 lines Butler keeps as a tail, so a tail is a real cut.
    """
    task = execution.task
    started = execution.started or execution.triggered
    stamp = dt.datetime.fromtimestamp(started, dt.UTC).strftime("%Y%m%dT%H%M%S.000+0000")
    app = task.app["name"] if task.app else task.name
    lines = [
        f"{stamp} Execution started.",
        f"{stamp} Qlik Sense Server Version 14.187.4 (simulated)",
        f"{stamp} Reloading app {app} for task {task.name}",
    ]
    fetches = 60 if execution.outcome == "fail" else 5
    lines.extend(
        f"{stamp} Table{index:02d} << source{index:02d}.qvd {index * 1000} Lines fetched"
        for index in range(1, fetches + 1)
    )
    if execution.outcome == "fail":
        lines += [
            f"{stamp} Error: Field 'OrderDate' not found (simulated failure)",
            f"{stamp} Execution Failed",
            f"{stamp} Execution finished.",
        ]
    else:
        lines += [f"{stamp} App saved", f"{stamp} Execution finished."]
    return "\r\n".join(lines) + "\r\n"
