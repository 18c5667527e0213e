"""Qlik Sense app endpoints: reload an app, dump it to JSON, list apps (Engine API).

A reload answers as soon as the app is open and the reload has started (the original's
contract, which load scripts rely on); the reload itself runs in a thread owned by the
Engine client, so a long reload never holds up other API calls. When it ends, the task
chain for its outcome is started through the core's task starter
(``services.task_starter``), which applies the start-task filter like every other trigger.
``?wait=true`` is our addition for callers that want the outcome in the answer.

Each reload is a run (``kind: "appReload"``, see docs/runs.md): the answer carries its
``runId``, and the chained tasks' runs name it as their caller.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from marshmallow import EXCLUDE, Schema, fields, post_load, validate

from butler.config import Config, CoreService, EnableKey
from butler.endpoints import ApiRequest, Endpoint, Reply
from butler.engine import EngineClient, ReloadOutcome
from butler.errors import ApiError, FeatureUnavailable, Forbidden
from butler.fields import LoadScriptBoolean, LoadScriptInteger, StringList
from butler.hookspecs import hookimpl
from butler.services import Services
from butler.tasks import StartsTasks, Trigger

log = logging.getLogger(__name__)

TAG = "Qlik Sense apps"
ENGINE_MISSING = "The Qlik Sense Engine is not configured (Butler.configEngine)"
STARTER_MISSING = "Starting tasks after a reload needs the QRS connection (Butler.configQRS)"


class ReloadBody(Schema):
    """Body of ``PUT /v4/app/{appId}/reload``; load scripts send every value as a string."""

    class Meta:
        unknown = EXCLUDE

    reloadMode = LoadScriptInteger(
        allow_none=True,
        load_default=0,
        validate=validate.OneOf([0, 1, 2], error="must be equal to one of the allowed values"),
        metadata={"description": "0 = default, 1 = ABEND on error, 2 = ignore errors"},
    )
    partialReload = LoadScriptBoolean(allow_none=True, load_default=False)
    startQSEoWTaskOnSuccess = StringList(allow_none=True, load_default=list)
    startQSEoWTaskOnFailure = StringList(allow_none=True, load_default=list)

    @post_load
    def _defaults_for_null(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """``null`` means "not given", as in the original (Fastify coerced it)."""
        data["reloadMode"] = data.get("reloadMode") or 0
        data["partialReload"] = bool(data.get("partialReload"))
        for key in ("startQSEoWTaskOnSuccess", "startQSEoWTaskOnFailure"):
            data[key] = [task for task in data.get(key) or [] if task.strip()]
        return data


class ReloadQuery(Schema):
    class Meta:
        unknown = EXCLUDE

    wait = LoadScriptBoolean(
        load_default=False,
        metadata={"description": "Answer only when the reload has finished, with its outcome"},
    )


class ReloadStarted(Schema):
    appId = fields.String(required=True)
    runId = fields.String(
        required=True, metadata={"description": "The reload's run (GET /v4/runs/{runId})"}
    )


class ReloadFinished(ReloadStarted):
    """The answer with ``?wait=true``."""

    reloadResult = fields.String(
        required=True, validate=validate.OneOf(("success", "failure", "aborted"))
    )
    message = fields.String(required=True)
    tasksStarted = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        required=True,
        metadata={"description": "Task id -> started, failed: ..., notFound, denied, invalid"},
    )


class AppDump(Schema):
    """The keys of ``butler.engine.DUMP_KEYS``, each as the Engine gave it."""

    properties = fields.Dict(required=True)
    loadScript = fields.String(required=True)
    lineage = fields.Raw(metadata={"description": "Absent when the Engine cannot give it"})
    sheets = fields.List(fields.Dict(), required=True)
    stories = fields.List(fields.Dict(), required=True)
    masterobjects = fields.List(fields.Dict(), required=True)
    appprops = fields.List(fields.Dict(), required=True)
    dimensions = fields.List(fields.Dict(), required=True)
    measures = fields.List(fields.Dict(), required=True)
    bookmarks = fields.List(fields.Dict(), required=True)
    embeddedmedia = fields.List(fields.Dict(), required=True)
    snapshots = fields.List(fields.Dict(), required=True)
    fields_ = fields.List(fields.Dict(), required=True, data_key="fields")
    dataconnections = fields.List(fields.Dict(), required=True)
    variables = fields.List(fields.Dict(), required=True)
    appId = fields.String(required=True)


class AppEntry(Schema):
    id = fields.String(required=True)
    name = fields.String(required=True)


SALES_APP = "0b1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"  # the demo's "Sales Dashboard"
APP_EXAMPLE = {"appId": SALES_APP}
DUMP_EXAMPLE = {
    "properties": {"qTitle": "Sales", "description": "Sales per region"},
    "loadScript": "LOAD * FROM [lib://Data/sales.qvd] (qvd);",
    "lineage": [{"qDiscriminator": "lib://Data/sales.qvd"}],
    "sheets": [{"qInfo": {"qId": "sheet-1", "qType": "sheet"}}],
    "stories": [],
    "masterobjects": [],
    "appprops": [],
    "dimensions": [{"qInfo": {"qId": "dim-region", "qType": "dimension"}}],
    "measures": [],
    "bookmarks": [],
    "embeddedmedia": [],
    "snapshots": [],
    "fields": [{"qName": "Region"}],
    "dataconnections": [{"qName": "Data", "qType": "folder"}],
    "variables": [],
    "appId": SALES_APP,
}


def _engine(services: Services) -> EngineClient:
    engine: EngineClient | None = services.engine
    if engine is None:
        raise FeatureUnavailable(ENGINE_MISSING)
    return engine


RUN_STATUS = {"success": "FinishedSuccess", "failure": "FinishedFail", "aborted": "Aborted"}


def _start_chain(
    starter: StartsTasks | None, ids: Sequence[str], outcome: ReloadOutcome, parent_run: str
) -> dict[str, str]:
    """Start the task chain for a finished reload; report an outcome per task id."""
    if not ids or outcome.result == "aborted" or starter is None:
        return {}
    try:
        started = dict(starter.start_ids(ids, Trigger.chain(parent_run)))
    except ApiError as exc:
        log.error("Tasks after reload of app %s not started: %s", outcome.app_id, exc.message)
        return {task_id: "failed" for task_id in ids}
    except Exception:
        log.exception("Tasks after reload of app %s not started", outcome.app_id)
        return {task_id: "failed" for task_id in ids}
    log.info("Tasks after %s reload of app %s: %s", outcome.result, outcome.app_id, started)
    return started


def _check_chain_scope(call: ApiRequest, task_ids: Sequence[str]) -> None:
    """A caller with a ``tasks`` scope may chain only the task ids it may start itself.

    Checked before the reload: refusing the chain after the reload would leave the app
    reloaded and its follow-up tasks silently not started.
    """
    scope = call.caller.tasks
    if scope is None:
        return
    for task_id in task_ids:
        if not scope.allows_id(task_id):
            raise Forbidden(
                f"Caller '{call.caller.name}' may not start task {task_id} after the reload "
                "(tasks scope)",
                code="MISSING_SCOPE",
            )


@hookimpl
def butler_enable_keys() -> list[EnableKey]:
    engine = frozenset({CoreService.ENGINE})
    return [
        EnableKey("senseAppReload", needs=engine | {CoreService.QRS}),
        EnableKey("senseAppDump", needs=engine),
        EnableKey("senseListApps", needs=engine),
    ]


@hookimpl
def butler_endpoints(config: Config, services: Services) -> list[Endpoint]:
    def reload_app(call: ApiRequest) -> Any:
        engine = _engine(services)
        app_id = call.path["appId"]
        body = call.body
        on_success: list[str] = body["startQSEoWTaskOnSuccess"]
        on_failure: list[str] = body["startQSEoWTaskOnFailure"]
        starter, runs = services.task_starter, services.runs
        if (on_success or on_failure) and starter is None:
            raise FeatureUnavailable(STARTER_MISSING)
        if runs is None:
            raise FeatureUnavailable(STARTER_MISSING)
        _check_chain_scope(call, [*on_success, *on_failure])

        finished = threading.Event()
        report: dict[str, Any] = {}
        run = runs.record_app_reload(Trigger.rest(call.caller.name), app_id)
        call.audit.request_id = run.request_id
        call.audit.resources.update(appId=app_id, runId=run.run_id)

        def on_done(outcome: ReloadOutcome) -> None:
            runs.finish_app_reload(run.run_id, RUN_STATUS[outcome.result], outcome.message)
            ids = on_success if outcome.success else on_failure
            report["outcome"] = outcome
            report["tasks"] = _start_chain(starter, ids, outcome, run.run_id)
            finished.set()

        try:
            engine.reload_app(app_id, body["reloadMode"], body["partialReload"], on_done)
        except ApiError as exc:
            runs.finish_app_reload(run.run_id, "StartFailed", exc.message)
            raise
        if not call.query.get("wait"):
            return {"appId": app_id, "runId": run.run_id}, 201
        finished.wait()
        outcome: ReloadOutcome = report["outcome"]
        return {
            "appId": app_id,
            "runId": run.run_id,
            "reloadResult": outcome.result,
            "message": outcome.message,
            "tasksStarted": report["tasks"],
        }, 201

    def dump_app(call: ApiRequest) -> Any:
        return _engine(services).dump_app(call.path["appId"]), 200

    def list_apps(call: ApiRequest) -> Any:
        return _engine(services).list_apps(), 200

    dump_doc = (
        "Keys, in this order: properties, loadScript, lineage (absent when the Engine cannot "
        "give it), sheets, stories, masterobjects, appprops, dimensions, measures, bookmarks, "
        "embeddedmedia, snapshots, fields, dataconnections, variables, appId."
    )
    errors = {
        404: "App not found",
        502: "Qlik Sense Engine unreachable or refused the call",
        503: "Butler.configEngine is not configured",
        504: "Qlik Sense Engine did not answer in time",
    }
    endpoints = [
        Endpoint(
            enable_key="senseAppReload",
            method="PUT",
            rule="/v4/app/<appId>/reload",
            view=reload_app,
            path_examples=APP_EXAMPLE,
            summary="Do a stand-alone reload of a Qlik Sense app, without using a task",
            description=(
                "Answers 201 {appId} once the app is open and the reload has started; the "
                "reload continues in the background, then the app is saved and the tasks in "
                "startQSEoWTaskOnSuccess are started (startQSEoWTaskOnFailure when the reload "
                "fails). With ?wait=true the answer comes when the reload has finished and "
                "adds reloadResult (success|failure|aborted), message and tasksStarted "
                "(task id -> outcome)."
            ),
            tag=TAG,
            query_schema=ReloadQuery,
            body_schema=ReloadBody,
            waits=True,
            body_example={
                "reloadMode": 0,
                "partialReload": True,
                "startQSEoWTaskOnSuccess": ["09b3c78f-04dd-45e3-a4bf-1b074d6572fa"],
                "startQSEoWTaskOnFailure": ["eaf1da4f-fd44-4cea-b2de-7b67a6496ee3"],
            },
            responses={
                201: Reply(
                    "Reload started (or finished, with ?wait=true)",
                    (ReloadStarted, ReloadFinished),
                    example={
                        "appId": SALES_APP,
                        "runId": "5b0c7a52-8d0e-4c43-9a8e-0c6f9f1a7e21",
                        "reloadResult": "success",
                        "message": "App reloaded and saved",
                        "tasksStarted": {"09b3c78f-04dd-45e3-a4bf-1b074d6572fa": "started"},
                    },
                ),
                **errors,
            },
        ),
    ]
    for rule in ("/v4/senseappdump/<appId>", "/v4/app/<appId>/dump"):
        endpoints.append(
            Endpoint(
                enable_key="senseAppDump",
                method="GET",
                rule=rule,
                view=dump_app,
                path_examples=APP_EXAMPLE,
                summary="Dump a Sense app to JSON",
                description=dump_doc,
                tag=TAG,
                waits=True,
                responses={200: Reply("The app as JSON", AppDump, example=DUMP_EXAMPLE), **errors},
            )
        )
    for rule in ("/v4/senselistapps", "/v4/apps/list"):
        endpoints.append(
            Endpoint(
                enable_key="senseListApps",
                method="GET",
                rule=rule,
                view=list_apps,
                summary="Get a list of all apps in Sense environment",
                description="Array of {id, name}, as far as the Engine user may see them.",
                tag=TAG,
                waits=True,
                responses={
                    200: Reply(
                        "Array of apps",
                        AppEntry(many=True),
                        example=[{"id": SALES_APP, "name": "Sales"}],
                    ),
                    **{k: v for k, v in errors.items() if k != 404},
                },
            )
        )
    return endpoints
