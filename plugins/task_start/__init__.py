"""Start Qlik Sense reload tasks by id, tag or custom property (``senseStartTask``).

Two triggers live here, both handing their parsed request to the core's task starter: the
REST routes, and the MQTT task-start topic (``Butler.mqttConfig.taskStartTopic``), whose
messages arrive on the MQTT service's worker thread.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Response
from marshmallow import Schema

from butler.config import Config, CoreService, EnableKey
from butler.endpoints import ApiRequest, Endpoint, Reply
from butler.errors import BadRequest, FeatureUnavailable
from butler.fields import LoadScriptBoolean
from butler.hookspecs import hookimpl
from butler.services import Services
from butler.tasks import Trigger
from butler_plugins.task_start.request_body import parse_mqtt_payload, parse_start_body
from butler_plugins.task_start.response import ANSWER_EXAMPLE, StartAnswer, start_response

log = logging.getLogger(__name__)

ENABLE_KEY = "senseStartTask"

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

RESPONSES: dict[int, str | Reply] = {
    200: Reply(
        "Per-task outcome: started, invalid, denied, not found, failed",
        StartAnswer,
        example=ANSWER_EXAMPLE,
    ),
    400: "Malformed body or parameter",
    502: "QRS unreachable or failing (nothing started)",
    504: "QRS did not answer in time",
}


class StartQuery(Schema):
    allTaskIdsMustExist = LoadScriptBoolean(load_default=False)
    dryRun = LoadScriptBoolean(
        load_default=False,
        metadata={
            "description": "Resolve ids, tags and custom properties and apply the filter, "
            "then start nothing: the answer lists tasksWouldStart (no QRS start, no "
            "key-value item written)"
        },
    )


@hookimpl
def butler_enable_keys() -> list[EnableKey]:
    return [EnableKey(ENABLE_KEY, needs=frozenset({CoreService.QRS}))]


@hookimpl
def butler_services(config: Config, services: Services) -> None:
    mqtt = services.mqtt
    if mqtt is None:
        return
    trigger = Trigger.mqtt(mqtt.task_start_topic or "")

    def on_task_start(payload: bytes) -> None:
        starter = services.task_starter
        if starter is None:
            log.warning("MQTT task start ignored: no QRS connection configured")
            return
        starter.start(parse_mqtt_payload(payload), trigger)

    mqtt.set_task_start_handler(on_task_start)


@hookimpl
def butler_endpoints(config: Config, services: Services) -> list[Endpoint]:
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
        request.dry_run = call.query["dryRun"]
        result = starter.start(request, Trigger.rest(call.client))
        return Response(
            json.dumps(start_response(result, request.dry_run), indent=2, ensure_ascii=False),
            mimetype="application/json",
        )

    endpoints = []
    for method in ("PUT", "POST"):
        for rule in ("/v4/reloadtask/<taskId>/start", "/v4/reloadtask/start"):
            endpoints.append(
                Endpoint(
                    enable_key=ENABLE_KEY,
                    method=method,
                    rule=rule,
                    view=start,
                    query_schema=StartQuery,
                    body_example=EXAMPLE,
                    path_examples={"taskId": "e3b27f50-b1c0-4879-88fc-c7cdd9c1cf3e"},
                    summary="Start reload tasks by id, tag or custom property",
                    description=(
                        'Use "-" as task id (or omit the segment) when the body names the '
                        "tasks. The body is the typed-item array of Butler 16, the object form "
                        '{"taskId": [...], "tag": [...], "customProperty": [{"name", "value"}]}, '
                        "{} or empty."
                    ),
                    tag=TAG,
                    responses=RESPONSES,
                    waits=True,
                )
            )
    return endpoints
