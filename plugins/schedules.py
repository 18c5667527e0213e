"""Scheduler endpoints (``scheduler.*`` enable keys): list, create, update, delete, start, stop,
preview, fire history and run-now.

Paths and field names are the original's. Where it misled callers this does better, as
DECISIONS says: invalid cron, zone, task id or state answer 400 naming the field; unknown ids
404; ``GET ?id=`` returns the object itself; every JSON body is ``application/json``; and
``PUT /v4/schedules/<id>`` finally serves the ``updateSchedule`` key. Schedules also carry
the read-only ``nextRun``, ``lastRun``, ``lastResult`` and ``lastFire``.

The route schemas below are the one check of a write: each field is checked once, in field
order, while the body is loaded (type and presence by the marshmallow field, the domain's
rule by its validator), and the scheduler takes the loaded body without checking it again.
The domain's rules raise ``ScheduleValidationError``; here they become the route's 400
(``ValidationFailed``, worded ``body/<field> ...`` or ``body must have required property
'<field>'`` like every other route's). ``startupState`` is checked by ``validate.OneOf``
alone: that validator is also what puts the ``enum`` into the OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from flask import Response
from marshmallow import EXCLUDE, INCLUDE, Schema, ValidationError, fields, validate

from butler.config import Config, EnableKey
from butler.endpoints import ApiRequest, Endpoint, Reply
from butler.errors import FeatureUnavailable, Forbidden, ValidationFailed
from butler.fields import (
    IsoTime,
    LoadScriptBoolean,
    LoadScriptInteger,
    LoadScriptString,
    StringList,
)
from butler.hookspecs import hookimpl
from butler.schedules import (
    MAX_NAME_LENGTH,
    MAX_TAG_LENGTH,
    MAX_TAGS,
    STARTUP_STATES,
    Scheduler,
    ScheduleValidationError,
    check_cron,
    check_name,
    check_tags,
    check_task_id,
    check_timezone,
)
from butler.schedules.calendars import NEXT_DATES
from butler.schedules.model import DST_ERROR, OVERLAP_ERROR, OVERLAP_MODES
from butler.schedules.preview import DEFAULT_COUNT, MAX_COUNT, max_jitter_seconds
from butler.schedules.run_state import FIRE_HISTORY, FIRE_OUTCOMES
from butler.schedules.timeline import DST_MODES
from butler.services import Services

TAG = "Scheduler"
SCHEDULE_EXAMPLE = {"scheduleId": "Manually-added-schedule-1"}  # one of the demo's
NOT_AN_ID = "except(startall,stopall,status,preview)"
"""Words under /v4/schedules/ that are routes of their own, never a schedule id."""
DISABLED = "The scheduler is disabled: set Butler.scheduler.enable to true to use this endpoint"

EXAMPLE = {
    "name": "Reload sales metrics",
    "cronSchedule": "0,30 6 * * 1-5",
    "timezone": "Europe/Stockholm",
    "qlikSenseTaskId": "210832b5-6174-4572-bd19-3e61eda675ef",
    "startupState": "started",
    "tags": ["tag 1", "tag 2"],
}


def _check(check: Callable[[Any], Any]) -> Callable[[Any], None]:
    """A domain rule as a marshmallow validator: the same rules for the file and the API."""

    def validator(value: Any) -> None:
        try:
            check(value)
        except ScheduleValidationError as exc:
            raise ValidationError(exc.message) from None

    return validator


_STATE_ERROR = "must be equal to one of the allowed values: " + ", ".join(STARTUP_STATES)


class ScheduleBody(Schema):
    """A new schedule; other properties are kept and stored as the original did."""

    class Meta:
        unknown = INCLUDE

    name = LoadScriptString(
        required=True,
        validate=_check(check_name),
        metadata={"description": f"Descriptive name (at most {MAX_NAME_LENGTH} characters)"},
    )
    cronSchedule = LoadScriptString(
        required=True,
        validate=_check(check_cron),
        metadata={"description": "5 fields (minute first) or 6 fields (second first)"},
    )
    timezone = LoadScriptString(
        required=True,
        validate=_check(check_timezone),
        metadata={"description": "IANA time zone the cron fields are read in"},
    )
    qlikSenseTaskId = LoadScriptString(
        required=True,
        validate=_check(check_task_id),
        metadata={"description": "GUID of the Qlik Sense task started on every fire"},
    )
    startupState = LoadScriptString(
        required=True,
        validate=validate.OneOf(STARTUP_STATES, error=_STATE_ERROR),
        metadata={"description": "start/started: runs after creation and after every start"},
    )
    tags = StringList(
        validate=_check(check_tags),
        metadata={
            "description": (
                f"Free-text labels (at most {MAX_TAGS}, each at most {MAX_TAG_LENGTH} characters)"
            )
        },
    )
    dst = LoadScriptString(
        validate=validate.OneOf(DST_MODES, error=DST_ERROR),
        metadata={
            "description": (
                "Daylight saving time policy, default vixie (see docs/scheduler.md): skip "
                "drops gap times and fires repeated times once; both fires repeated times "
                "in both passes"
            )
        },
    )
    excludeCalendars = StringList(
        metadata={
            "description": "Names of Butler.scheduler.calendars on whose days (in the "
            "schedule's time zone) it does not fire"
        }
    )
    onlyCalendars = StringList(
        metadata={"description": "Names of calendars: it fires only on their days"}
    )
    overlap = LoadScriptString(
        validate=validate.OneOf(OVERLAP_MODES, error=OVERLAP_ERROR),
        metadata={
            "description": (
                "allow (default): fire whatever the previous fire's runs do; forbid: skip a "
                "fire (recorded as skipped:overlap) while a run of the previous fire is not "
                "final"
            )
        },
    )


class CalendarAnswer(Schema):
    """One configured calendar and its next dates."""

    name = fields.String(required=True)
    nextDates = fields.List(
        fields.Date(),
        required=True,
        metadata={"description": f"The next (at most {NEXT_DATES}) days in it, after today"},
    )


class Fire(Schema):
    """One fire of a schedule, as the fire history and run-now answer it."""

    plannedAt = fields.String(
        required=True, metadata={"description": "The slot (ISO UTC); run-now: the call's time"}
    )
    firedAt = fields.String(
        required=True,
        metadata={"description": "When it was handed to the task starter, or skipped"},
    )
    latenessMs = fields.Integer(required=True)
    outcome = fields.String(required=True, validate=validate.OneOf(FIRE_OUTCOMES))
    runIds = fields.List(
        fields.String(),
        required=True,
        metadata={"description": "Runs the fire started (GET /v4/runs/{runId})"},
    )
    note = fields.String(
        required=True,
        allow_none=True,
        metadata={
            "description": (
                "Why it was skipped, why it went ahead despite overlap: forbid, or why the "
                "start failed"
            )
        },
    )


FIRE_EXAMPLE = {
    "plannedAt": "2026-03-03T05:00:00.000Z",
    "firedAt": "2026-03-03T05:00:00.002Z",
    "latenessMs": 2,
    "outcome": "started",
    "runIds": ["0b7e7e9e-3f0c-4c55-9a57-5d0c6a1c2f10"],
    "note": None,
}
SKIPPED_EXAMPLE = {
    **FIRE_EXAMPLE,
    "outcome": "skipped:overlap",
    "runIds": [],
    "note": "run 0b7e7e9e-3f0c-4c55-9a57-5d0c6a1c2f10 of the previous fire is Started",
}


class Schedule(Schema):
    """A schedule as answered; other properties it was created with are kept."""

    class Meta:
        unknown = INCLUDE

    id = fields.String(required=True)
    name = fields.String(required=True)
    cronSchedule = fields.String(required=True)
    timezone = fields.String(required=True)
    qlikSenseTaskId = fields.String(required=True)
    startupState = fields.String(required=True, validate=validate.OneOf(STARTUP_STATES))
    tags = fields.List(
        fields.Raw(metadata={"oneOf": [{"type": "string"}, {"type": "number"}]}),
        allow_none=True,
        metadata={"description": "Numbers written by hand in the schedule file stay numbers"},
    )
    dst = fields.String(
        validate=validate.OneOf(DST_MODES), metadata={"description": "Absent: vixie"}
    )
    overlap = fields.String(
        validate=validate.OneOf(OVERLAP_MODES), metadata={"description": "Absent: allow"}
    )
    created = fields.String(metadata={"description": "Absent on schedules written by hand"})
    excludeCalendars = fields.List(fields.String())
    onlyCalendars = fields.List(fields.String())
    lastKnownState = fields.String(required=True, validate=validate.OneOf(("started", "stopped")))
    nextRun = fields.String(required=True, allow_none=True)
    lastRun = fields.String(required=True, allow_none=True)
    lastResult = fields.String(required=True, allow_none=True)
    lastFire = fields.Nested(
        Fire,
        required=True,
        allow_none=True,
        metadata={"description": "The newest record of the fire history; null before any"},
    )


ANSWER_EXAMPLE = {
    **EXAMPLE,
    "id": "5e6f2f1c-8d3b-4a47-9a0e-2c1d7b6a9f10",
    "created": "2026-03-02T08:15:04.118Z",
    "lastKnownState": "started",
    "nextRun": "2026-03-03T05:00:00.000Z",
    "lastRun": None,
    "lastResult": None,
    "lastFire": None,
}
STOPPED_EXAMPLE = {**ANSWER_EXAMPLE, "lastKnownState": "stopped", "nextRun": None}


class ScheduleQuery(Schema):
    class Meta:
        unknown = EXCLUDE

    id = LoadScriptString(metadata={"description": "Schedule id; omit to list all schedules"})


class PreviewQuery(Schema):
    class Meta:
        unknown = EXCLUDE

    count = LoadScriptInteger(
        load_default=DEFAULT_COUNT,
        validate=validate.Range(1, MAX_COUNT, error=f"must be 1-{MAX_COUNT}"),
        metadata={"description": f"Fires to list (default {DEFAULT_COUNT})"},
    )
    after = IsoTime(
        data_key="from",
        metadata={"description": "List fires strictly after this time (ISO 8601); default now"},
    )
    includeSkipped = LoadScriptBoolean(
        load_default=False,
        metadata={"description": "Also list fires a calendar removes, naming it in skippedBy"},
    )


class FiresQuery(Schema):
    class Meta:
        unknown = EXCLUDE

    limit = LoadScriptInteger(
        load_default=FIRE_HISTORY,
        validate=validate.Range(1, FIRE_HISTORY, error=f"must be 1-{FIRE_HISTORY}"),
        metadata={"description": f"Fires to list, newest first (default {FIRE_HISTORY})"},
    )


class PreviewItem(Schema):
    time = fields.String(
        required=True,
        metadata={"description": "ISO 8601 in the schedule's time zone, with its offset"},
    )
    dstAdjacent = fields.Boolean(
        required=True,
        metadata={"description": "The fire is on a local day whose UTC offset changes"},
    )
    skippedBy = fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "Calendar that removes this fire; null when it fires"},
    )
    maxJitterSeconds = fields.Integer(
        metadata={"description": "Present with jitterSeconds: the fire may come this late"}
    )


PREVIEW_EXAMPLE = [
    {"time": "2026-03-03T06:00:00+01:00", "dstAdjacent": False, "skippedBy": None},
    {"time": "2026-03-03T06:30:00+01:00", "dstAdjacent": False, "skippedBy": None},
]


PREVIEW_DESCRIPTION = (
    "The next `count` fires strictly after `from` (default now), in the schedule's time "
    "zone and dst policy; jitter is not applied."
)

ENABLE_KEYS = (
    "scheduler.createNewSchedule",
    "scheduler.getSchedule",
    "scheduler.getScheduleStatusAll",
    "scheduler.updateSchedule",
    "scheduler.deleteSchedule",
    "scheduler.startSchedule",
    "scheduler.stopSchedule",
)


@hookimpl
def butler_enable_keys() -> list[EnableKey]:
    return [EnableKey(key) for key in ENABLE_KEYS]


@hookimpl
def butler_endpoints(config: Config, services: Services) -> list[Endpoint]:
    def scheduler() -> Scheduler:
        found: Scheduler | None = services.scheduler
        if found is None:
            raise FeatureUnavailable(DISABLED)
        return found

    def allowed(call: ApiRequest, schedule_id: str) -> str:
        """The id, once the caller's ``schedules`` scope covers the schedule."""
        call.audit.resources["scheduleId"] = schedule_id
        if call.caller.schedules is not None:
            schedule = scheduler().get(schedule_id)
            call.caller.require_schedule(schedule_id, schedule.get("tags") or [])
        return schedule_id

    def require_tagged(call: ApiRequest, body: Mapping[str, Any], doing: str) -> None:
        """A schedule without an id yet is in a ``schedules`` scope by its tags alone."""
        caller = call.caller
        if caller.schedules is not None and caller.schedules.isdisjoint(body.get("tags") or []):
            raise Forbidden(
                f"Caller '{caller.name}' may only {doing} schedules tagged "
                f"{sorted(caller.schedules)} (schedules scope)",
                code="MISSING_SCOPE",
            )

    def check_new_content(call: ApiRequest, changes: Mapping[str, Any], creating: bool) -> None:
        """What a scoped caller writes must stay in its scopes: a schedule it could not
        see afterwards, or one that starts a task it may not start, is refused."""
        caller = call.caller
        if creating or "tags" in changes:
            require_tagged(call, changes, "write")
        task_id = changes.get("qlikSenseTaskId")
        if caller.tasks is not None and task_id is not None and not caller.tasks.allows_id(task_id):
            raise Forbidden(
                f"Caller '{caller.name}' may not schedule task {task_id} (tasks scope)",
                code="MISSING_SCOPE",
            )

    def unscoped(call: ApiRequest) -> None:
        if call.caller.schedules is not None:
            raise Forbidden(
                f"Caller '{call.caller.name}' has a schedules scope: this route acts on "
                "every schedule",
                code="MISSING_SCOPE",
            )

    def get_schedules(call: ApiRequest) -> Any:
        schedule_id = call.query.get("id")
        if schedule_id is not None:
            return scheduler().get(allowed(call, schedule_id))
        return [
            item
            for item in scheduler().list()
            if call.caller.allows_schedule(item["id"], item.get("tags") or [])
        ]

    def known_calendars(changes: Mapping[str, Any]) -> None:
        """Calendar names are checked here, not in the route schema: the calendars are
        the config's, known only once the scheduler is built."""
        try:
            scheduler().calendars.check_entry(changes)
        except ScheduleValidationError as exc:
            raise ValidationFailed(f"body/{exc.field} {exc.message}") from None

    def create(call: ApiRequest) -> Any:
        check_new_content(call, call.body, creating=True)
        known_calendars(call.body)
        created = scheduler().add(call.body)
        call.audit.resources["scheduleId"] = created["id"]
        return created, 201

    def update(call: ApiRequest) -> Any:
        schedule_id = allowed(call, call.path["scheduleId"])
        check_new_content(call, call.body, creating=False)
        known_calendars(call.body)
        return scheduler().update(schedule_id, call.body)

    def delete(call: ApiRequest) -> Any:
        scheduler().delete(allowed(call, call.path["scheduleId"]))
        return Response(status=204)

    def start_one(call: ApiRequest) -> Any:
        return [scheduler().start_schedule(allowed(call, call.path["scheduleId"]))]

    def stop_one(call: ApiRequest) -> Any:
        return [scheduler().stop_schedule(allowed(call, call.path["scheduleId"]))]

    def preview_of(call: ApiRequest, entry: Mapping[str, Any]) -> list[dict[str, Any]]:
        after = call.query.get("after")
        fires = scheduler().preview(
            entry,
            datetime.fromtimestamp(after, UTC) if after is not None else None,
            call.query["count"],
            call.query["includeSkipped"],
        )
        jitter = max_jitter_seconds(entry)
        return [fire.to_json(jitter) for fire in fires]

    def preview_saved(call: ApiRequest) -> Any:
        return preview_of(call, scheduler().get(allowed(call, call.path["scheduleId"])))

    def preview_unsaved(call: ApiRequest) -> Any:
        require_tagged(call, call.body, "preview")
        return preview_of(call, call.body)

    def fires(call: ApiRequest) -> Any:
        schedule_id = allowed(call, call.path["scheduleId"])
        return scheduler().fires(schedule_id, call.query["limit"])

    def run_now(call: ApiRequest) -> Any:
        schedule_id = allowed(call, call.path["scheduleId"])
        fire = scheduler().run_now(schedule_id, f"manual:{schedule_id}")
        call.audit.resources["runIds"] = fire["runIds"]
        return fire, 409 if fire["outcome"] == "skipped:overlap" else 200

    def start_all(call: ApiRequest) -> Any:
        unscoped(call)
        return scheduler().start_all()

    def stop_all(call: ApiRequest) -> Any:
        unscoped(call)
        return scheduler().stop_all()

    def status(call: ApiRequest) -> Any:
        unscoped(call)
        return Response(scheduler().status_text(), mimetype="text/plain")

    def calendars(call: ApiRequest) -> Any:
        today = scheduler().clock_today()
        return [
            {
                "name": calendar.name,
                "nextDates": [day.isoformat() for day in calendar.next_dates(today, NEXT_DATES)],
            }
            for calendar in scheduler().calendars
        ]

    unavailable = {503: "Scheduler disabled (Butler.scheduler.enable)"}
    return [
        Endpoint(
            enable_key="scheduler.getSchedule",
            method="GET",
            rule="/v4/scheduler/calendars",
            view=calendars,
            summary="List the calendars with their next dates",
            description=(
                "Butler.scheduler.calendars, each with its next "
                f"{NEXT_DATES} days after today (UTC), searched at most about 3 years ahead."
            ),
            tag=TAG,
            responses={
                200: Reply(
                    "Array of calendars",
                    CalendarAnswer(many=True),
                    example=[{"name": "holidays", "nextDates": ["2026-12-24", "2026-12-25"]}],
                ),
                **unavailable,
            },
        ),
        Endpoint(
            enable_key="scheduler.getSchedule",
            method="GET",
            rule="/v4/schedules",
            view=get_schedules,
            summary="Get all schedules, or the one with the given id",
            tag=TAG,
            query_schema=ScheduleQuery,
            responses={
                200: Reply(
                    "Array of schedules, or the one schedule with ?id=",
                    (Schedule(many=True), Schedule),
                    example=[ANSWER_EXAMPLE],
                ),
                404: "Unknown id",
                **unavailable,
            },
        ),
        Endpoint(
            enable_key="scheduler.createNewSchedule",
            method="POST",
            rule="/v4/schedules",
            view=create,
            summary="Create a new schedule",
            tag=TAG,
            body_schema=ScheduleBody,
            body_example=EXAMPLE,
            responses={
                201: Reply("The created schedule", Schedule, example=ANSWER_EXAMPLE),
                400: "Invalid field",
                **unavailable,
            },
        ),
        Endpoint(
            enable_key="scheduler.updateSchedule",
            method="PUT",
            rule=f"/v4/schedules/<{NOT_AN_ID}:scheduleId>",
            path_examples=SCHEDULE_EXAMPLE,
            view=update,
            summary="Change fields of a schedule",
            description="Absent fields keep their value; running or stopped stays as it was.",
            tag=TAG,
            body_schema=ScheduleBody(partial=True),
            body_example={"cronSchedule": "0 7 * * 1-5"},
            responses={
                200: Reply(
                    "The changed schedule",
                    Schedule,
                    example={**ANSWER_EXAMPLE, "cronSchedule": "0 7 * * 1-5"},
                ),
                400: "Invalid field",
                404: "Unknown id",
                **unavailable,
            },
        ),
        Endpoint(
            enable_key="scheduler.deleteSchedule",
            method="DELETE",
            rule=f"/v4/schedules/<{NOT_AN_ID}:scheduleId>",
            path_examples=SCHEDULE_EXAMPLE,
            view=delete,
            summary="Delete a schedule",
            tag=TAG,
            responses={204: "Deleted", 404: "Unknown id", **unavailable},
        ),
        Endpoint(
            enable_key="scheduler.startSchedule",
            method="PUT",
            rule="/v4/schedules/<scheduleId>/start",
            path_examples=SCHEDULE_EXAMPLE,
            view=start_one,
            summary="Start a schedule",
            tag=TAG,
            responses={
                200: Reply(
                    "Array with the started schedule", Schedule(many=True), example=[ANSWER_EXAMPLE]
                ),
                404: "Unknown id",
                **unavailable,
            },
        ),
        Endpoint(
            enable_key="scheduler.startSchedule",
            method="PUT",
            rule="/v4/schedules/startall",
            view=start_all,
            summary="Start all schedules",
            tag=TAG,
            responses={
                200: Reply("Array of all schedules", Schedule(many=True), example=[ANSWER_EXAMPLE]),
                **unavailable,
            },
        ),
        Endpoint(
            enable_key="scheduler.stopSchedule",
            method="PUT",
            rule="/v4/schedules/<scheduleId>/stop",
            path_examples=SCHEDULE_EXAMPLE,
            view=stop_one,
            summary="Stop a schedule",
            tag=TAG,
            responses={
                200: Reply(
                    "Array with the stopped schedule",
                    Schedule(many=True),
                    example=[STOPPED_EXAMPLE],
                ),
                404: "Unknown id",
                **unavailable,
            },
        ),
        Endpoint(
            enable_key="scheduler.stopSchedule",
            method="PUT",
            rule="/v4/schedules/stopall",
            view=stop_all,
            summary="Stop all schedules",
            tag=TAG,
            responses={
                200: Reply(
                    "Array of all schedules",
                    Schedule(many=True),
                    example=[STOPPED_EXAMPLE],
                ),
                **unavailable,
            },
        ),
        Endpoint(
            enable_key="scheduler.getSchedule",
            method="GET",
            rule="/v4/schedules/<scheduleId>/preview",
            path_examples=SCHEDULE_EXAMPLE,
            view=preview_saved,
            summary="Preview the next fires of a schedule",
            description=PREVIEW_DESCRIPTION,
            tag=TAG,
            query_schema=PreviewQuery,
            responses={
                200: Reply("The next fires", PreviewItem(many=True), example=PREVIEW_EXAMPLE),
                404: "Unknown id",
                **unavailable,
            },
        ),
        Endpoint(
            enable_key="scheduler.getSchedule",
            method="GET",
            rule="/v4/schedules/<scheduleId>/fires",
            path_examples=SCHEDULE_EXAMPLE,
            view=fires,
            summary="Fire history of a schedule, newest first",
            description=(
                f"The newest fires (at most {FIRE_HISTORY} are kept per schedule, across "
                "restarts): started, failed or skipped:overlap, with the runs each started."
            ),
            tag=TAG,
            query_schema=FiresQuery,
            responses={
                200: Reply("Fires, newest first", Fire(many=True), example=[FIRE_EXAMPLE]),
                404: "Unknown id",
                **unavailable,
            },
        ),
        Endpoint(
            enable_key="scheduler.startSchedule",
            method="POST",
            rule="/v4/schedules/<scheduleId>/run",
            path_examples=SCHEDULE_EXAMPLE,
            view=run_now,
            summary="Fire a schedule now",
            description=(
                "QMC's start now: the schedule fires at once, running or stopped, through the "
                "path of a timed fire (overlap applies, the fire is in its history; runs have "
                "trigger schedule and caller manual:<scheduleId>)."
            ),
            tag=TAG,
            responses={
                200: Reply("The fire: started or failed", Fire, example=FIRE_EXAMPLE),
                404: "Unknown id",
                409: Reply(
                    "Skipped: a run of the previous fire is not final (overlap: forbid), or "
                    "the previous fire's start call is still in progress",
                    Fire,
                    example=SKIPPED_EXAMPLE,
                ),
                **unavailable,
            },
        ),
        Endpoint(
            enable_key="scheduler.createNewSchedule",
            method="POST",
            rule="/v4/schedules/preview",
            view=preview_unsaved,
            summary="Preview the next fires of an unsaved schedule",
            description=PREVIEW_DESCRIPTION + " The body is checked as a new schedule's is.",
            tag=TAG,
            query_schema=PreviewQuery,
            body_schema=ScheduleBody,
            body_example=EXAMPLE,
            audited=False,
            responses={
                200: Reply("The next fires", PreviewItem(many=True), example=PREVIEW_EXAMPLE),
                400: "Invalid field",
                **unavailable,
            },
        ),
        Endpoint(
            enable_key="scheduler.getScheduleStatusAll",
            method="GET",
            rule="/v4/schedules/status",
            view=status,
            summary="Get scheduler status",
            description="Plain text, one line per schedule: '<id>': <cron> status: Running",
            tag=TAG,
            responses={
                200: Reply(
                    "Status text",
                    fields.String(),
                    example="{\n'task-1': */30 * * * * * status: Running\n}",
                    media_type="text/plain",
                ),
                **unavailable,
            },
        ),
    ]
