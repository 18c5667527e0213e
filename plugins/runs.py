"""Run history (``runs``): what became of every task and app reload Butler started.

The records are written by the core (the task starter, the app-reload route) whatever
triggered them; this plugin only reads them: a filtered, paged list, one run, and the
per-status and per-task counts a morning check or a dashboard needs.
"""

from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, Schema, fields, validate

from butler.config import Config, CoreService, EnableKey
from butler.endpoints import ApiRequest, Endpoint, Reply
from butler.errors import FeatureUnavailable, NotFound
from butler.fields import IsoTime, LoadScriptInteger, LoadScriptString
from butler.hookspecs import hookimpl
from butler.runs import STATUSES, RunFilter, Runs
from butler.runs.model import iso
from butler.runs.schema import RUN_EXAMPLE, RunSchema
from butler.services import Services

ENABLE_KEY = "runs"
TAG = "Runs"
MISSING = "Runs need the QRS connection (Butler.configQRS and Butler.cert)"
TRIGGERS = ("rest", "mqtt", "schedule", "chain")


class RunsQuery(Schema):
    class Meta:
        unknown = EXCLUDE

    taskId = LoadScriptString(metadata={"description": "Runs of this task id"})
    status = LoadScriptString(validate=validate.OneOf(STATUSES))
    trigger = LoadScriptString(validate=validate.OneOf(TRIGGERS))
    requestId = LoadScriptString()
    since = IsoTime(metadata={"description": "createdAt at or after (ISO 8601)"})
    until = IsoTime(metadata={"description": "createdAt at or before (ISO 8601)"})
    limit = LoadScriptInteger(
        load_default=100, validate=validate.Range(1, 1000, error="must be 1-1000")
    )
    cursor = LoadScriptString(metadata={"description": "nextCursor of the previous page"})


class SummaryQuery(Schema):
    class Meta:
        unknown = EXCLUDE

    since = IsoTime(metadata={"description": "Count runs created at or after; default all"})


class RunPage(Schema):
    runs = fields.List(fields.Nested(RunSchema), required=True)
    nextCursor = fields.String(
        required=True, allow_none=True, metadata={"description": "null on the last page"}
    )


class TaskCounts(Schema):
    taskId = fields.String(required=True, allow_none=True, metadata={"description": "null: apps"})
    taskName = fields.String(required=True, allow_none=True)
    total = fields.Integer(required=True)
    byStatus = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)


class Summary(Schema):
    since = fields.String(required=True, allow_none=True)
    total = fields.Integer(required=True)
    byStatus = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    byTask = fields.List(fields.Nested(TaskCounts), required=True)


def _runs(services: Services) -> Runs:
    if services.runs is None:
        raise FeatureUnavailable(MISSING)
    return services.runs


@hookimpl
def butler_enable_keys() -> list[EnableKey]:
    return [EnableKey(ENABLE_KEY, needs=frozenset({CoreService.QRS}))]


@hookimpl
def butler_endpoints(config: Config, services: Services) -> list[Endpoint]:
    def list_runs(call: ApiRequest) -> Any:
        q = call.query
        where = RunFilter(
            task_id=q["taskId"].strip().lower() if q.get("taskId") else None,
            status=q.get("status"),
            trigger=q.get("trigger"),
            request_id=q["requestId"].strip().lower() if q.get("requestId") else None,
            since=q.get("since"),
            until=q.get("until"),
        )
        page, cursor = _runs(services).store.query(where, q["limit"], q.get("cursor"))
        return {"runs": [run.to_json() for run in page], "nextCursor": cursor}, 200

    def one_run(call: ApiRequest) -> Any:
        run_id = call.path["runId"].strip().lower()
        run = _runs(services).get(run_id)
        if run is None:
            raise NotFound(f"Run {run_id} not found")
        return run.to_json(), 200

    def summary(call: ApiRequest) -> Any:
        since = call.query.get("since")
        by_status, by_task = _runs(services).store.summary(since)
        return {
            "since": iso(since),
            "total": sum(by_status.values()),
            "byStatus": by_status,
            "byTask": by_task,
        }, 200

    run_id_example = {"runId": str(RUN_EXAMPLE["runId"])}
    return [
        Endpoint(
            enable_key=ENABLE_KEY,
            method="GET",
            rule="/v4/runs",
            view=list_runs,
            query_schema=RunsQuery,
            summary="List runs, newest first",
            description=(
                "Filters: taskId, status, trigger, requestId, since/until (compared with "
                "createdAt). Pages of at most limit runs (default 100, max 1000); pass "
                "nextCursor as cursor for the next one."
            ),
            tag=TAG,
            responses={
                200: Reply(
                    "A page of runs",
                    RunPage,
                    example={"runs": [RUN_EXAMPLE], "nextCursor": None},
                ),
                400: "Bad filter, limit or cursor",
            },
        ),
        Endpoint(
            enable_key=ENABLE_KEY,
            method="GET",
            rule="/v4/runs/summary",
            view=summary,
            query_schema=SummaryQuery,
            summary="Count runs per status and per task",
            tag=TAG,
            responses={
                200: Reply(
                    "Counts",
                    Summary,
                    example={
                        "since": "2026-12-01T00:00:00.000+00:00",
                        "total": 3,
                        "byStatus": {"FinishedSuccess": 2, "FinishedFail": 1},
                        "byTask": [
                            {
                                "taskId": RUN_EXAMPLE["taskId"],
                                "taskName": RUN_EXAMPLE["taskName"],
                                "total": 3,
                                "byStatus": {"FinishedSuccess": 2, "FinishedFail": 1},
                            }
                        ],
                    },
                ),
            },
        ),
        Endpoint(
            enable_key=ENABLE_KEY,
            method="GET",
            rule="/v4/runs/<except(summary):runId>",
            view=one_run,
            path_examples=run_id_example,
            summary="Get one run",
            tag=TAG,
            responses={200: Reply("The run", RunSchema, example=RUN_EXAMPLE), 404: "Unknown run"},
        ),
    ]
