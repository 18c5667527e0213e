"""Wall-clock cron matches without croniter, for previews of up to 1,000 fires.

croniter costs about 40 us per match, so a 1,000-fire preview spent over 40 ms in it
alone; the preview's budget is 50 ms. :class:`WallMatcher` answers the same question as
croniter (the first wall time strictly after a naive one) from croniter's own parsed
fields with set lookups and bisection, for the expressions where that is certain: plain
numbers, names, ranges, lists and steps. Expressions using ``L``, ``W`` or ``#`` keep
croniter (as does any croniter that does not say where it keeps ``W``).
:class:`PreviewTimeline` swaps the matcher in under the unchanged DST logic of
:class:`~butler.schedules.timeline.CronTimeline`; the firing thread keeps croniter, and a
test checks the two agree on random expressions.
"""

from __future__ import annotations

import functools
from bisect import bisect_left
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta

from croniter import croniter

from butler.schedules.timeline import CronTimeline

_SECOND = timedelta(seconds=1)
_DAY = timedelta(days=1)
_TICK = timedelta(microseconds=1)
_MAX_DAYS = 400 * 366
"""Longest search for a matching day: croniter gives up at a comparable horizon."""


class WallMatcher:
    """Matches of one expression's fields, as croniter reads them (``day_or``: when
    both day-of-month and day-of-week are restricted, either matches)."""

    def __init__(self, expanded: Sequence[Sequence[int | str]], six_fields: bool):
        minute, hour, dom, month, dow = expanded[:5]
        self._seconds = _values(expanded[5], 0, 59) if six_fields else [0]
        self._minutes = _values(minute, 0, 59)
        self._hours = _values(hour, 0, 23)
        self._months = frozenset(_values(month, 1, 12))
        self._dom_star, self._dow_star = dom == ["*"], dow == ["*"]
        self._doms = frozenset(_values(dom, 1, 31))
        self._dows = frozenset(value % 7 for value in _values(dow, 0, 7))

    @classmethod
    def of(cls, expression: str) -> WallMatcher | None:
        """The matcher, or None when the expression uses what only croniter knows."""
        six = len(expression.split()) == 6
        parsed = croniter(expression, datetime(2000, 1, 1), second_at_beginning=six)
        if parsed.nth_weekday_of_month or getattr(parsed, "nearest_weekday", True):
            return None
        for field in parsed.expanded:
            if field != ["*"] and not all(isinstance(value, int) for value in field):
                return None
        return cls(parsed.expanded, six)

    def next_wall(self, wall: datetime, inclusive: bool) -> datetime:
        start = (wall - _TICK if inclusive else wall).replace(microsecond=0) + _SECOND
        day, hour, minute, second = start.date(), start.hour, start.minute, start.second
        for _ in range(_MAX_DAYS):
            if self._day_matches(day):
                found = self._time_from(hour, minute, second)
                if found is not None:
                    return datetime.combine(day, found)
            day += _DAY
            hour = minute = second = 0
        raise ValueError(f"no wall-clock match within {_MAX_DAYS} days")

    def _day_matches(self, day: date) -> bool:
        if day.month not in self._months:
            return False
        in_dom = day.day in self._doms
        in_dow = day.isoweekday() % 7 in self._dows
        if self._dom_star or self._dow_star:
            return in_dom and in_dow
        return in_dom or in_dow

    def _time_from(self, hour: int, minute: int, second: int) -> time | None:
        """The first matching time of day at or after ``hour:minute:second``."""
        hours, minutes, seconds = self._hours, self._minutes, self._seconds
        i = bisect_left(hours, hour)
        if i < len(hours) and hours[i] == hour:
            j = bisect_left(minutes, minute)
            if j < len(minutes) and minutes[j] == minute:
                k = bisect_left(seconds, second)
                if k < len(seconds):
                    return time(hour, minute, seconds[k])
                j += 1
            if j < len(minutes):
                return time(hour, minutes[j], seconds[0])
            i += 1
        if i < len(hours):
            return time(hours[i], minutes[0], seconds[0])
        return None


def _values(field: Sequence[int | str], low: int, high: int) -> list[int]:
    if list(field) == ["*"]:
        return list(range(low, high + 1))
    return sorted({int(value) for value in field})


class PreviewTimeline(CronTimeline):
    """A timeline whose wall-clock matches come from :class:`WallMatcher` when it can."""

    def __init__(self, expression: str, zone: str, dst: str):
        super().__init__(expression, zone, dst)
        self._matcher = WallMatcher.of(self.expression)

    def _next_wall(self, wall: datetime, inclusive: bool) -> datetime:
        if self._matcher is None:
            return super()._next_wall(wall, inclusive)
        return self._matcher.next_wall(wall, inclusive)


@functools.lru_cache(maxsize=256)
def preview_timeline_for(expression: str, zone: str, dst: str) -> PreviewTimeline:
    """Shared like :func:`~butler.schedules.timeline.timeline_for`: previews of one schedule
    repeat."""
    return PreviewTimeline(expression, zone, dst)
