"""Start Qlik Sense reload tasks by id, tag or custom property (``senseStartTask``).

Two triggers live here, both handing their parsed request to the core's task starter: the
REST routes, and the MQTT task-start topic (``Butler.mqttConfig.taskStartTopic``), whose
messages arrive on the MQTT service's worker thread.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Response
from marshmallow import Schema, validate

from butler.config import Config, CoreService, EnableKey
from butler.endpoints import ApiRequest, Endpoint, Reply, View
from butler.errors import BadRequest, FeatureUnavailable
from butler.fields import LoadScriptBoolean, LoadScriptNumber
from butler.hookspecs import hookimpl
from butler.jsontext import dumps_indented
from butler.runs import Run, Runs, outcome_of
from butler.services import Services
from butler.tasks import StartResult, TaskStarter, Trigger
from butler_plugins.task_start.idempotency import (
    HEADER,
    REPLAYED_HEADER,
    answer_once,
    fingerprint,
    idempotency_key,
)
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
    400: "Malformed body or parameter, timeout above Butler.runs.maxWaitSeconds, or an "
    f"{HEADER} longer than 255 characters",
    409: f"The first request with this {HEADER} is still being processed",
    422: f"This {HEADER} was used for a different request",
    502: "QRS unreachable or failing (nothing started)",
    504: "QRS did not answer in time (the start's outcome is unknown; its runs say more)",
}


class StartQuery(Schema):
    allTaskIdsMustExist = LoadScriptBoolean(load_default=False)
    dryRun = LoadScriptBoolean(
        load_default=False,
        metadata={
            "description": "Resolve ids, tags and custom properties and apply the filter, "
            "then start nothing: the answer lists tasksWouldStart (no QRS start, no "
            "key-value item written, no runs)"
        },
    )
    wait = LoadScriptBoolean(
        load_default=False,
        metadata={
            "description": "Answer when every started run is final or the timeout has "
            "passed, with outcome success, failure or timeout"
        },
    )
    timeout = LoadScriptNumber(
        load_default=3600.0,
        validate=validate.Range(min=0, error="must be 0 or more"),
        metadata={"description": "Seconds to wait with wait=true (at most maxWaitSeconds)"},
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


def _start_view(services: Services, rule: str) -> View:
    def start(call: ApiRequest) -> Any:
        starter, runs = services.task_starter, services.runs
        if starter is None or runs is None:
            raise FeatureUnavailable("Task start needs Butler.configQRS and Butler.cert")
        task_id = call.path.get("taskId", "-")
        if not task_id.strip():
            raise BadRequest(
                'Required parameter (task ID) missing. Should be a task ID or "-" if task '
                "info is passed in body"
            )
        timeout = call.query["timeout"]
        if timeout > runs.settings.max_wait_seconds:
            raise BadRequest(
                f"timeout must be at most {runs.settings.max_wait_seconds} seconds "
                "(Butler.runs.maxWaitSeconds)"
            )
        key = idempotency_key(call)
        if key is not None and call.caller.kind in ("apiKey", "certificate"):
            key = f"{call.caller.name}\x00{key}"  # one caller cannot replay another's start
        fresh: list[StartResult] = []

        def process() -> tuple[str, dict[str, Any]]:
            result, answer = _start(starter, call, task_id)
            fresh.append(result)
            return result.request_id, answer

        if key is None:
            (request_id, answer), replayed = process(), False
        else:
            request_id, answer, replayed = answer_once(runs, key, fingerprint(rule, call), process)
        started = fresh[0].runs if fresh else runs.store.by_request(request_id)
        call.audit.request_id = request_id
        call.audit.resources["tasksStarted"] = (
            [item["taskId"] for item in fresh[0].started] if fresh else []
        )
        response = Response(
            dumps_indented(_with_runs(runs, started, answer, call.query["wait"], timeout)),
            mimetype="application/json",
        )
        if replayed:
            response.headers[REPLAYED_HEADER] = "true"
        return response

    return start


def _start(
    starter: TaskStarter, call: ApiRequest, task_id: str
) -> tuple[StartResult, dict[str, Any]]:
    """Start what the call names; the result and the answer without its runs (what an
    idempotent replay answers again)."""
    request = parse_start_body(call.body, task_id)
    request.all_task_ids_must_exist = call.query["allTaskIdsMustExist"]
    request.dry_run = call.query["dryRun"]
    request.scope = call.caller.tasks
    result = starter.start(request, Trigger.rest(call.caller.name))
    return result, {**start_response(result, request.dry_run), "requestId": result.request_id}


def _with_runs(
    runs: Runs, started: list[Run], answer: dict[str, Any], wait: bool, timeout: float
) -> dict[str, Any]:
    """The answer with the request's runs as they are now, or once final with ``wait``."""
    if "tasksWouldStart" in answer:
        return {**answer, "runs": []}
    if not wait:
        return {**answer, "runs": [run.to_json() for run in started]}
    finished = runs.wait(started, timeout)
    return {
        **answer,
        "runs": [run.to_json() for run in finished],
        "outcome": outcome_of(finished),
    }


@hookimpl
def butler_endpoints(config: Config, services: Services) -> list[Endpoint]:
    endpoints = []
    for method in ("PUT", "POST"):
        for rule in ("/v4/reloadtask/<taskId>/start", "/v4/reloadtask/start"):
            endpoints.append(
                Endpoint(
                    enable_key=ENABLE_KEY,
                    method=method,
                    rule=rule,
                    view=_start_view(services, rule),
                    query_schema=StartQuery,
                    body_example=EXAMPLE,
                    path_examples={"taskId": "e3b27f50-b1c0-4879-88fc-c7cdd9c1cf3e"},
                    headers={
                        HEADER: "At most 255 characters. A repeat of the same request "
                        "(route, task id, query, body) within Butler.runs.idempotencyHours "
                        f"answers the first answer again with {REPLAYED_HEADER}: true and "
                        "starts nothing; the same key with another request is a 422"
                    },
                    summary="Start reload tasks by id, tag or custom property",
                    description=(
                        'Use "-" as task id (or omit the segment) when the body names the '
                        "tasks. The body is the typed-item array of Butler 16, the object form "
                        '{"taskId": [...], "tag": [...], "customProperty": [{"name", "value"}]}, '
                        "{} or empty. The answer adds requestId and runs (one per task handed "
                        "to QRS, status at answer time); with ?wait=true it comes when every "
                        "run is final or the timeout passed, with outcome. An "
                        f"{HEADER} header makes a repeat of the same request answer again "
                        f"(header {REPLAYED_HEADER}: true) without starting anything."
                    ),
                    tag=TAG,
                    responses=RESPONSES,
                    waits=True,
                )
            )
    return endpoints
