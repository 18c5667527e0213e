"""The next fires of a schedule, saved or not, as an operator checks them before trusting it.

A preview walks the DST logic of the :class:`~butler.schedules.timeline.CronTimeline` the
firing thread plans with (same zone, same ``dst`` mode), with croniter's wall-clock matches
replaced by a faster matcher that agrees with them (:mod:`butler.schedules.walls`), so
what it lists is what will fire; jitter is not applied. Which days the schedule's
calendars rule out comes in as :data:`ExcludedBy` (the scheduler passes
``Calendars.excluded_by``); without one nothing is excluded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from butler.schedules.timeline import DEFAULT_DST
from butler.schedules.walls import preview_timeline_for

MAX_COUNT = 1000
DEFAULT_COUNT = 10
MAX_SCANNED = 100_000
"""Candidate fires looked at per preview: a calendar that excludes every day must end the
walk, not hold a worker; the answer then has fewer items than asked for."""

ExcludedBy = Callable[[Mapping[str, Any], date], str | None]
"""``(schedule entry, local day) -> name of the calendar that removes that day, or None``."""


def nothing_excluded(_entry: Mapping[str, Any], _day: date) -> str | None:
    """No calendars: every fire stays."""
    return None


@dataclass(frozen=True)
class PreviewFire:
    """One listed fire; ``time`` is aware, in the schedule's zone."""

    time: datetime
    dst_adjacent: bool
    skipped_by: str | None = None

    def to_json(self, max_jitter: int | None) -> dict[str, Any]:
        item: dict[str, Any] = {
            "time": self.time.isoformat(),
            "dstAdjacent": self.dst_adjacent,
            "skippedBy": self.skipped_by,
        }
        if max_jitter is not None:
            item["maxJitterSeconds"] = max_jitter
        return item


def preview(
    entry: Mapping[str, Any],
    after: datetime,
    count: int = DEFAULT_COUNT,
    include_skipped: bool = False,
    excluded_by: ExcludedBy = nothing_excluded,
) -> list[PreviewFire]:
    """The next ``count`` fires of a checked ``entry`` strictly after ``after`` (aware).

    Fires a calendar removes are left out, or listed with ``skipped_by`` when
    ``include_skipped``; either way ``count`` counts the items listed. The list ends early
    at the end of representable time or after :data:`MAX_SCANNED` candidates.
    """
    timeline = preview_timeline_for(
        str(entry["cronSchedule"]), str(entry["timezone"]), str(entry.get("dst", DEFAULT_DST))
    )
    zone = timeline.zone
    adjacent = _DstDays(zone)
    fires: list[PreviewFire] = []
    moment = after
    for _ in range(MAX_SCANNED):
        if len(fires) >= count:
            break
        try:
            moment = timeline.next_fire(moment)
        except (OverflowError, ValueError, RuntimeError):
            break
        local = moment.astimezone(zone)
        day = local.date()
        skipped_by = excluded_by(entry, day)
        if skipped_by is not None and not include_skipped:
            continue
        fires.append(PreviewFire(local, adjacent.of(day), skipped_by))
    return fires


def max_jitter_seconds(entry: Mapping[str, Any]) -> int | None:
    """``jitterSeconds`` when the schedule has a usable one: the fire may come that late."""
    value = entry.get("jitterSeconds")
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


class _DstDays:
    """Whether a local day has a UTC-offset change, computed once per day of a preview.

    A day is DST-adjacent when the offset in force as it begins (local midnight, first
    reading) differs from the one in force as it ends (next midnight, last reading): every
    fire in a gap (it fires at the change) or a repeated period lies on such a day.
    """

    def __init__(self, zone: ZoneInfo):
        self._zone = zone
        self._known: dict[date, bool] = {}

    def of(self, day: date) -> bool:
        known = self._known.get(day)
        if known is None and day == date.max:
            return False
        if known is None:
            begins = datetime.combine(day, time(), self._zone).utcoffset()
            next_day = datetime.combine(day + timedelta(days=1), time(), self._zone)
            known = self._known[day] = begins != next_day.replace(fold=1).utcoffset()
        return known
