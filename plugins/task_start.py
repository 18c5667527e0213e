"""Start Qlik Sense reload tasks by id, tag or custom property (``senseStartTask``)."""

from __future__ import annotations

import json
from typing import Any

from flask import Response
from marshmallow import Schema

from butler.endpoints import ApiRequest, Endpoint
from butler.errors import BadRequest, FeatureUnavailable
from butler.fields import LoadScriptBoolean
from butler.hookspecs import hookimpl
from butler.tasks import parse_start_body

TAG = "Reload tasks"

EXAMPLE = [
    {"type": "starttaskid", "payload": {"taskId": "7552d9fc-d1bb-4975-9a38-18357de531ea"}},
    {"type": "starttasktag", "payload": {"tag": "startTask1"}},
    {
        "type": "starttaskcustomproperty",
        "payload": {"customPropertyName": "taskGroup", "customPropertyValue": "tasks2"},
    },
    {
        "type": "keyvaluestore",
        "payload": {
            "namespace": "Sales ETL",
            "key": "Last run",
            "value": "2026-11-22",
            "ttl": 60000,
        },
    },
]

RESPONSES = {
    200: "Per-task outcome: started, invalid, denied, not found, failed",
    400: "Malformed body or parameter",
    502: "QRS unreachable or failing (nothing started)",
    504: "QRS did not answer in time",
}


class StartQuery(Schema):
    allTaskIdsMustExist = LoadScriptBoolean(load_default=False)


@hookimpl
def butler_endpoints(config: Any, services: Any) -> list[Endpoint]:
    def start(call: ApiRequest) -> Any:
        starter = services.task_starter
        if starter is None:
            raise FeatureUnavailable("Task start needs Butler.configQRS and Butler.cert")
        task_id = call.path.get("taskId", "-")
        if not task_id.strip():
            raise BadRequest(
                'Required parameter (task ID) missing. Should be a task ID or "-" if task '
                "info is passed in body"
            )
        request = parse_start_body(call.body, task_id)
        request.all_task_ids_must_exist = call.query["allTaskIdsMustExist"]
        result = starter.start(request, trigger=f"REST from {call.client}")
        return Response(
            json.dumps(result.to_response(), indent=2, ensure_ascii=False),
            mimetype="application/json",
        )

    endpoints = []
    for method in ("PUT", "POST"):
        for rule in ("/v4/reloadtask/<taskId>/start", "/v4/reloadtask/start"):
            endpoints.append(
                Endpoint(
                    enable_key="senseStartTask",
                    method=method,
                    rule=rule,
                    view=start,
                    query_schema=StartQuery,
                    body_example=EXAMPLE,
                    summary="Start reload tasks by id, tag or custom property",
                    description=(
                        'Use "-" as task id (or omit the segment) when the body names the '
                        "tasks. The body is the typed-item array of Butler 16, the object form "
                        '{"taskId": [...], "tag": [...], "customProperty": [{"name", "value"}]}, '
                        "{} or empty."
                    ),
                    tag=TAG,
                    responses=RESPONSES,
                )
            )
    return endpoints
