"""The run object's schema and example, for every OpenAPI answer that carries runs."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from butler.runs.model import STATUSES


class RunSchema(Schema):
    """What :meth:`butler.runs.Run.to_json` gives."""

    runId = fields.String(required=True, metadata={"description": "Butler's id of the run"})
    kind = fields.String(required=True, validate=validate.OneOf(("task", "appReload")))
    taskId = fields.String(required=True, allow_none=True)
    taskName = fields.String(required=True, allow_none=True)
    appId = fields.String(required=True, allow_none=True, metadata={"description": "When known"})
    trigger = fields.String(
        required=True, validate=validate.OneOf(("rest", "mqtt", "schedule", "chain"))
    )
    caller = fields.String(
        required=True,
        metadata={
            "description": "Client address (rest), MQTT topic, schedule id, or the run of "
            "the app reload a chain followed"
        },
    )
    requestId = fields.String(
        required=True, metadata={"description": "Shared by the runs of one start request"}
    )
    executionId = fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "QRS's executionID (execution session); null until known"},
    )
    status = fields.String(required=True, validate=validate.OneOf(STATUSES))
    createdAt = fields.String(
        required=True, metadata={"description": "When Butler accepted the start (ISO 8601)"}
    )
    startedAt = fields.String(required=True, allow_none=True)
    finishedAt = fields.String(required=True, allow_none=True)
    durationMs = fields.Integer(required=True, allow_none=True)
    message = fields.String(
        required=True, metadata={"description": "QRS's last message, or why the run failed"}
    )
    scriptLogTail = fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "Failed reloads: the last 50 lines of the script log"},
    )


RUN_EXAMPLE = {
    "runId": "5b0c7a52-8d0e-4c43-9a8e-0c6f9f1a7e21",
    "kind": "task",
    "taskId": "7552d9fc-d1bb-4975-9a38-18357de531ea",
    "taskName": "Reload Sales",
    "appId": "0b1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
    "trigger": "rest",
    "caller": "10.0.0.17",
    "requestId": "2f1d9c3e-7a4b-4f0e-8b6a-1c2d3e4f5a6b",
    "executionId": "c1f6a8e2-3b4d-4e5f-9a0b-1c2d3e4f5a6b",
    "status": "FinishedSuccess",
    "createdAt": "2026-12-02T03:00:00.120+00:00",
    "startedAt": "2026-12-02T03:00:01.004+00:00",
    "finishedAt": "2026-12-02T03:04:12.530+00:00",
    "durationMs": 251526,
    "message": "Changing task state from Started to FinishedSuccess",
    "scriptLogTail": None,
}
