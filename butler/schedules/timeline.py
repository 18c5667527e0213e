"""Cron timelines: the fire instants of one expression in one IANA time zone.

Fire times are computed in the schedule's zone from croniter's *naive* wall-clock matches;
DST is handled here rather than by croniter. The default, ``vixie``, follows Vixie cron: a
wall time skipped by a spring-forward change fires once, right at the change, for
fixed-time schedules; a wall time shown twice by a fall-back change fires once for
fixed-time schedules. "Wildcard" schedules (minute or hour field starting with ``*``)
simply follow the wall clock as it is shown, so an every-5-minutes schedule keeps its real
cadence. The other modes (a schedule's ``dst`` field, see :data:`DST_MODES`) only change
the two answers "does a gap time fire at the change?" and "does a repeated time fire in
the second pass?", so all three share one algorithm and ``vixie`` runs exactly as before.

A timeline is built from an expression that already passed
:func:`butler.schedules.model.check_cron` (the store checks files, the API's schema checks
requests), so building one does not check it again; it only sets up the iterator.
"""

from __future__ import annotations

import functools
import math
import threading
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter

_TICK = timedelta(microseconds=1)
_WEEK = timedelta(days=7)
_MAX_SEGMENTS = 16

DST_MODES = ("vixie", "skip", "both")
"""A schedule's ``dst`` field: ``vixie`` (the default), ``skip``, ``both``; docs/scheduler.md
has the table of what each does for fixed-time and wildcard schedules."""
DEFAULT_DST = "vixie"


class CronTimeline:
    """The fire instants of one cron expression in one time zone.

    croniter's iterator is stateful and timelines are shared (:func:`timeline_for`, even
    between schedulers), so it is only used under the timeline's lock.
    """

    def __init__(self, expression: str, zone: str, dst: str = DEFAULT_DST):
        fields = expression.split()
        self.expression = " ".join(fields)
        self.zone = ZoneInfo(zone)
        minute, hour = fields[-5], fields[-4]
        self.fixed = not (minute.startswith("*") or hour.startswith("*"))
        """Vixie cron's "fixed-time" job: neither minute nor hour starts with ``*``."""
        self._gap_fires = self.fixed and dst != "skip"
        """A wall match inside a spring-forward gap fires once, at the change."""
        self._repeat_once = dst == "skip" or (self.fixed and dst == "vixie")
        """Wall times repeated by a fall-back change fire in the first pass only."""
        self._cron = croniter(
            self.expression, datetime(2000, 1, 1), second_at_beginning=len(fields) == 6
        )
        self._lock = threading.Lock()

    def next_fire(self, after: datetime) -> datetime:
        """The first fire instant strictly after ``after`` (aware), as an aware UTC time.

        Works segment by segment between zone changes: within one, a wall-clock match maps
        to exactly one instant; at a change the DST rules above decide.
        """
        local = after.astimezone(self.zone)
        offset = _offset_of(local)
        low, inclusive = local.replace(tzinfo=None), False
        if self._repeat_once and local.fold == 1:
            repeat_end = self._repeat_end(after, local)
            if repeat_end > low:
                low, inclusive = repeat_end, True
        segment_start = after.astimezone(UTC)
        for _ in range(_MAX_SEGMENTS):
            wall = self._next_wall(low, inclusive)
            candidate = (wall - offset).replace(tzinfo=UTC)
            change = self._next_transition(segment_start, candidate, offset)
            if change is None:
                return candidate
            new_offset = _offset_of(change.astimezone(self.zone))
            naive_change = change.replace(tzinfo=None)
            if self._gap_fires and new_offset > offset:
                gap_start, gap_end = naive_change + offset, naive_change + new_offset
                if self._next_wall(gap_start, inclusive=True) < gap_end:
                    return change
            low, inclusive = naive_change + new_offset, True
            if self._repeat_once and new_offset < offset:
                low = naive_change + offset
            offset, segment_start = new_offset, change
        raise RuntimeError(f"no fire time found for {self.expression!r} in {self.zone.key}")

    def _next_wall(self, wall: datetime, inclusive: bool) -> datetime:
        start = wall - _TICK if inclusive else wall
        with self._lock:
            self._cron.set_current(start, force=True)
            result: datetime = self._cron.get_next(datetime)
        return result

    def _offset_at(self, instant: datetime) -> timedelta:
        return _offset_of(instant.astimezone(self.zone))

    def _next_transition(
        self, start: datetime, end: datetime, offset: timedelta
    ) -> datetime | None:
        """First instant in (start, end] whose UTC offset is not ``offset``."""
        low = start
        while low < end:
            high = min(low + _WEEK, end)
            if self._offset_at(high) != offset:
                return self._bisect(low, high, offset)
            low = high
        return None

    def _bisect(self, low: datetime, high: datetime, offset: timedelta) -> datetime:
        """Zone changes happen on whole seconds: find that second to the second."""
        lo, hi = math.floor(low.timestamp()), math.ceil(high.timestamp())
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self._offset_at(datetime.fromtimestamp(mid, UTC)) == offset:
                lo = mid
            else:
                hi = mid
        return datetime.fromtimestamp(hi, UTC)

    def _repeat_end(self, after: datetime, local: datetime) -> datetime:
        """Wall time at which the repeated (fall-back) period containing ``local`` ends."""
        first_offset = _offset_of(local.replace(fold=0))
        second_offset = _offset_of(local)
        change = self._bisect(after - (first_offset - second_offset), after, first_offset)
        return change.replace(tzinfo=None) + first_offset


def _offset_of(local: datetime) -> timedelta:
    offset = local.utcoffset()
    if offset is None:
        raise ValueError("naive datetime has no UTC offset")
    return offset


def timeline_for(expression: str, zone: str, dst: str = DEFAULT_DST) -> CronTimeline:
    """Shared timelines: thousands of schedules usually use a handful of expressions.

    The mode is always part of the cache key, given or not, so a schedule without ``dst``
    and one with ``dst: vixie`` share one timeline (the plan groups fires by timeline).
    """
    return _shared_timeline(expression, zone, dst)


@functools.lru_cache(maxsize=4096)
def _shared_timeline(expression: str, zone: str, dst: str) -> CronTimeline:
    return CronTimeline(expression, zone, dst)
