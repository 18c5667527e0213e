"""What a schedule is: its fields, the rule for each, ids, and the plain values it is made of.

The rules are the domain's and say nothing about HTTP: each ``check_*`` raises
:class:`ScheduleValidationError` naming the field. Two callers apply them, each exactly once
per write: the store runs :func:`validate_schedule` on every entry of a file it loads, and
the REST plugin runs the field checks inside its route schema (which turns the error into
the route's 400). The scheduler itself takes checked fields and does not check them again.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter

from butler.guid import is_guid
from butler.schedules.timeline import DST_MODES

ROOT_KEY = "butlerSchedule"
"""Top-level key of the schedule file (the original's)."""
STARTUP_STATES = ("start", "started", "stop", "stopped")
RUNNING_STARTUP_STATES = frozenset({"start", "started"})
READ_ONLY_FIELDS = (
    "id",
    "created",
    "lastKnownState",
    "nextRun",
    "lastRun",
    "lastResult",
    "lastFire",
)
"""Fields a caller cannot set: Butler assigns or computes them."""
REQUIRED_FIELDS = ("name", "cronSchedule", "timezone", "qlikSenseTaskId", "startupState")

MAX_NAME_LENGTH = 500
MAX_CRON_LENGTH = 200
MAX_ZONE_LENGTH = 64
MAX_TAGS = 100
MAX_TAG_LENGTH = 200
"""Limits on what a schedule stores: far above any real schedule, far below what costs
seconds of CPU at every start-up (a 900 kB cron did). The same limits apply to the API and
to the file."""


class ScheduleValidationError(ValueError):
    """One field of a schedule is invalid; ``field`` names it for the caller."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field} {message}")
        self.field = field
        self.message = message


def check_cron(expression: Any) -> str:
    """The expression with normalised spacing, if croniter accepts it and it ever fires.

    The dialect is the one docs/scheduler.md promises: 5 fields, or 6 with seconds first,
    and none of croniter's hashed/random values (``H``, ``R``). An expression that can never
    fire (``0 0 30 2 *``) is refused too: stored, it would silently never start its task.
    """
    if not isinstance(expression, str):
        raise ScheduleValidationError("cronSchedule", "must be string")
    _check_length("cronSchedule", expression, MAX_CRON_LENGTH)
    return _check_cron_text(expression)


@functools.lru_cache(maxsize=1024)
def _check_cron_text(expression: str) -> str:
    """Cached: thousands of schedules usually share a handful of expressions."""
    fields = expression.split()
    if len(fields) not in (5, 6):
        raise ScheduleValidationError(
            "cronSchedule", f"must have 5 or 6 fields, got {len(fields)}: {expression!r}"
        )
    for field in fields:
        for part in field.split(","):
            if part[:1] in ("H", "h", "R", "r"):
                raise ScheduleValidationError(
                    "cronSchedule", f"hashed/random values (H, R) are not supported: {part!r}"
                )
    normalised = " ".join(fields)
    try:
        it = croniter(normalised, datetime(2000, 1, 1), second_at_beginning=len(fields) == 6)
        it.get_next(datetime)
    except Exception as exc:
        raise ScheduleValidationError(
            "cronSchedule", f"is not a valid cron expression ({normalised!r}): {exc}"
        ) from None
    return normalised


def check_timezone(name: Any) -> str:
    """An IANA zone name the cron fields are read in (``zoneinfo`` must know it)."""
    if not isinstance(name, str) or not name.strip():
        raise ScheduleValidationError("timezone", "must be an IANA time zone name")
    _check_length("timezone", name, MAX_ZONE_LENGTH)
    return _check_zone_name(name)


@functools.lru_cache(maxsize=1024)
def _check_zone_name(name: str) -> str:
    """Cached: loading a zone reads the tz database, and few zones are in use."""
    try:
        ZoneInfo(name)
    except Exception:
        raise ScheduleValidationError(
            "timezone", f"is not a known IANA time zone: {name!r}"
        ) from None
    return name


def check_task_id(value: Any) -> str:
    """A task GUID in any case (it is started in lower case)."""
    if not is_guid(value):
        raise ScheduleValidationError("qlikSenseTaskId", "must be a GUID")
    return str(value)


def check_startup_state(value: Any) -> str:
    """The original's four states: ``start``/``started`` run, ``stop``/``stopped`` do not."""
    if value not in STARTUP_STATES:
        raise ScheduleValidationError(
            "startupState",
            "must be equal to one of the allowed values: " + ", ".join(STARTUP_STATES),
        )
    return str(value)


DST_ERROR = "must be equal to one of the allowed values: " + ", ".join(DST_MODES)


def check_dst(value: Any) -> str:
    """Optional (absent is ``vixie``); present, it must name a mode: ``null`` is refused
    rather than read as the default, so a typo'd file cannot silently mean Vixie cron."""
    if value not in DST_MODES:
        raise ScheduleValidationError("dst", DST_ERROR)
    return str(value)


OVERLAP_MODES = ("allow", "forbid")
OVERLAP_ERROR = "must be equal to one of the allowed values: " + ", ".join(OVERLAP_MODES)


def check_overlap(value: Any) -> str:
    """Optional (absent is ``allow``); present, ``null`` is refused like any other
    non-mode, so a file cannot mean ``forbid`` and silently get ``allow``."""
    if value not in OVERLAP_MODES:
        raise ScheduleValidationError("overlap", OVERLAP_ERROR)
    return str(value)


def check_name(value: Any) -> str:
    if not isinstance(value, str):
        raise ScheduleValidationError("name", "must be string")
    _check_length("name", value, MAX_NAME_LENGTH)
    return value


def check_tags(value: Any) -> Any:
    """Optional; hand-written files may hold numeric tags, which stay as they are."""
    if value is None:
        return value
    if not isinstance(value, list) or not all(
        isinstance(tag, str | int | float) and not isinstance(tag, bool) for tag in value
    ):
        raise ScheduleValidationError("tags", "must be array of strings")
    if len(value) > MAX_TAGS:
        raise ScheduleValidationError("tags", f"must NOT have more than {MAX_TAGS} items")
    for tag in value:
        _check_length("tags", str(tag), MAX_TAG_LENGTH)
    return value


def _check_length(field: str, text: str, limit: int) -> None:
    if len(text) > limit:
        raise ScheduleValidationError(field, f"must NOT have more than {limit} characters")


_CHECKS = {
    "name": check_name,
    "cronSchedule": check_cron,
    "timezone": check_timezone,
    "qlikSenseTaskId": check_task_id,
    "startupState": check_startup_state,
    "tags": check_tags,
    "dst": check_dst,
    "overlap": check_overlap,
}


def validate_schedule(data: Mapping[str, Any]) -> None:
    """Check a complete schedule definition (required fields present, each valid).

    Other fields are the user's and are kept as they are, as the original kept them.
    """
    for field in REQUIRED_FIELDS:
        if field not in data or data[field] is None:
            raise ScheduleValidationError(field, "is required")
    for field, check in _CHECKS.items():
        if field in data:
            check(data[field])
    for field, value in data.items():
        if not _encodable(value):
            raise ScheduleValidationError(str(field), "is not valid Unicode text")


def _encodable(value: Any) -> bool:
    """Whether every text in ``value`` can be written as UTF-8 (no unpaired surrogates).

    A YAML ``"\\ud800"`` escape loads as such a text; kept, it would make every answer that
    lists the schedules fail.
    """
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, Mapping):
        return all(_encodable(k) and _encodable(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_encodable(item) for item in value)
    return True


def writable_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    """The caller-settable part of a schedule body (read-only fields are ignored)."""
    return {key: value for key, value in data.items() if key not in READ_ONLY_FIELDS}


def schedule_id_text(value: Any) -> str | None:
    """The id as callers address it: hand-written numeric ids become their text."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    return None


def iso_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and ``Z``, as JavaScript's ``toISOString``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def to_plain(value: Any) -> Any:
    """ruamel's commented containers and scalar subclasses as plain JSON-ready values."""
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, datetime):
        return iso_utc(value) if value.tzinfo else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value
