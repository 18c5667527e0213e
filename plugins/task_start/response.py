"""The REST answer of a task start, in the original's layout (field names of seed 001)."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from butler.runs.schema import RUN_EXAMPLE, RunSchema
from butler.tasks import StartResult


def start_response(result: StartResult, dry_run: bool = False) -> dict[str, Any]:
    """Per-kind lists of what was started, denied, invalid, not found or failed.

    A dry run adds ``tasksWouldStart``; its started lists are empty, as nothing started.
    """
    answer: dict[str, Any] = {
        "tasksId": {
            "started": result.started_by_id,
            "invalid": result.invalid_ids,
            "denied": result.denied_ids,
        },
        "tasksTag": result.started_by_tag,
        "tasksTagDenied": result.denied_tags,
        "tasksCP": result.started_by_cp,
        "tasksCPDenied": result.denied_cps,
        "tasksStarted": result.started,
        "tasksNotFound": result.not_found,
        "tasksFailed": result.failed,
        "totalTasksStarted": len(result.started),
    }
    if dry_run:
        answer["tasksWouldStart"] = result.would_start
    return answer


class TaskRef(Schema):
    taskId = fields.String(required=True)
    taskName = fields.String(required=True)


class TaskId(Schema):
    taskId = fields.String(required=True)


class InvalidTaskId(Schema):
    taskId = fields.Raw(
        required=True,
        allow_none=True,
        metadata={"description": "As sent: not a GUID, so not necessarily text either"},
    )


class TasksById(Schema):
    started = fields.List(fields.Nested(TaskRef), required=True)
    invalid = fields.List(fields.Nested(InvalidTaskId), required=True)
    denied = fields.List(fields.Nested(TaskId), required=True)


class DeniedTag(Schema):
    tag = fields.String(required=True)


class DeniedCustomProperty(Schema):
    name = fields.String(required=True)
    value = fields.String(required=True)


class StartedTask(TaskRef):
    status = fields.String(required=True, validate=validate.OneOf(("started",)))


class FailedTask(TaskRef):
    status = fields.Raw(
        required=True,
        metadata={
            "description": "The HTTP status QRS refused with, or unknown (no answer in time) "
            "or error",
            "oneOf": [{"type": "integer"}, {"type": "string", "enum": ["unknown", "error"]}],
        },
    )
    message = fields.String(required=True)


class StartAnswer(Schema):
    """What :func:`start_response` answers."""

    tasksId = fields.Nested(TasksById, required=True)
    tasksTag = fields.List(fields.Nested(TaskRef), required=True)
    tasksTagDenied = fields.List(fields.Nested(DeniedTag), required=True)
    tasksCP = fields.List(fields.Nested(TaskRef), required=True)
    tasksCPDenied = fields.List(fields.Nested(DeniedCustomProperty), required=True)
    tasksStarted = fields.List(fields.Nested(StartedTask), required=True)
    tasksNotFound = fields.List(fields.Nested(TaskId), required=True)
    tasksFailed = fields.List(fields.Nested(FailedTask), required=True)
    totalTasksStarted = fields.Integer(required=True)
    tasksWouldStart = fields.List(
        fields.Nested(TaskRef),
        metadata={"description": "Only with ?dryRun=true: what a start would have started"},
    )
    requestId = fields.String(
        required=True, metadata={"description": "Shared by the runs of this request"}
    )
    runs = fields.List(
        fields.Nested(RunSchema),
        required=True,
        metadata={"description": "One per task handed to QRS or refused by it"},
    )
    outcome = fields.String(
        validate=validate.OneOf(("success", "failure", "timeout")),
        metadata={
            "description": "Only with ?wait=true: success (all FinishedSuccess), failure "
            "(any other final status, or nothing started) or timeout (some still running)"
        },
    )


_SALES = {"taskId": "7552d9fc-d1bb-4975-9a38-18357de531ea", "taskName": "Reload Sales"}
_BUDGET = {"taskId": "c8a1f0d3-5b2e-4e69-a1c4-3f9d2b7e6a58", "taskName": "Reload Budget"}

ANSWER_EXAMPLE = {
    "tasksId": {"started": [_SALES], "invalid": [{"taskId": "abc123"}], "denied": []},
    "tasksTag": [_BUDGET],
    "tasksTagDenied": [{"tag": "Nightly"}],
    "tasksCP": [],
    "tasksCPDenied": [{"name": "taskGroup", "value": "tasks9"}],
    "tasksStarted": [{**_SALES, "status": "started"}, {**_BUDGET, "status": "started"}],
    "tasksNotFound": [],
    "tasksFailed": [],
    "totalTasksStarted": 2,
    "requestId": RUN_EXAMPLE["requestId"],
    "runs": [
        RUN_EXAMPLE,
        {
            **RUN_EXAMPLE,
            "runId": "9d8e7f60-1a2b-4c3d-8e4f-5a6b7c8d9e0f",
            **_BUDGET,
            "executionId": "f0e1d2c3-b4a5-4697-8879-6a5b4c3d2e1f",
            "status": "FinishedFail",
            "finishedAt": "2026-12-02T03:01:40.210+00:00",
            "durationMs": 99206,
            "message": "Changing task state from Started to FinishedFail",
            "scriptLogTail": "Error: Field 'Budget' not found\nExecution Failed",
        },
    ],
    "outcome": "failure",
}
