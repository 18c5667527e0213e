"""Which schedule fires when: a heap of distinct fire instants, each with its schedules.

Thousands of schedules usually share a few instants (every second, on the minute), so the
heap holds each instant once and a bucket per instant holds the schedules due then: the
firing thread pops one instant and hands its whole bucket to the task starter in one call.
Unplanning only empties a schedule's slot in its bucket; emptied instants are dropped when
they reach the top of the heap, so a change never has to search the heap.

The hold rule (:func:`start_point`) keeps a backward wall-clock jump, or a restart, from
firing a slot that already fired: planning starts at the last fired slot while that is no
further ahead than ``FIXED_HOLD`` (fixed-time schedules, Vixie cron's limit) or
``WILDCARD_HOLD`` (wildcard schedules, so an every-30-seconds schedule resumes its cadence
after a one-hour step back instead of stalling for an hour).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from butler.guid import normalise_guid
from butler.schedules.calendars import NO_CALENDARS, CalendarRule, Calendars
from butler.schedules.timeline import DEFAULT_DST, CronTimeline, timeline_for

FIXED_HOLD = 3 * 3600.0
WILDCARD_HOLD = 300.0

PlanCache = dict[tuple[int, float] | tuple[int, int, float], float | None]
"""Fire instant per (timeline, planned-from time), or per (timeline, calendar rule,
planned-from time) for schedules with calendars: schedules planned together share work."""


@dataclass
class Job:
    """One schedule as the firing thread needs it (the store keeps the rest)."""

    schedule_id: str
    name: str
    task_id: str
    """Lower case, as the task starter reports outcomes."""
    timeline: CronTimeline
    running: bool
    forbid_overlap: bool = False
    """``overlap: forbid``: no fire while a run of the previous one is not final."""
    next_at: float | None = None
    last_slot: float | None = None
    calendars: CalendarRule | None = None
    """None when the schedule names no calendar: planning it then costs nothing extra."""
    last_run_ids: tuple[str, ...] = ()
    """Runs of the newest fire that started any, kept here so the overlap check needs no
    search of the run store."""

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any], calendars: Calendars | None = None) -> Job:
        """The job of a checked schedule entry (the store's or the API's); calendar names
        it uses that ``calendars`` does not know raise ``ScheduleValidationError``."""
        return cls(
            schedule_id=str(entry["id"]),
            name=str(entry.get("name", "")),
            task_id=normalise_guid(str(entry["qlikSenseTaskId"])),
            timeline=timeline_for(
                str(entry["cronSchedule"]),
                str(entry["timezone"]),
                str(entry.get("dst", DEFAULT_DST)),
            ),
            running=entry.get("lastKnownState") == "started",
            calendars=(NO_CALENDARS if calendars is None else calendars).rule_for(entry),
            forbid_overlap=entry.get("overlap") == "forbid",
        )


def utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


def start_point(job: Job, now_ts: float) -> float:
    """Plan from now, but never re-fire a slot already fired, unless that holds too long."""
    last = job.last_slot
    if last is not None and last > now_ts:
        hold = FIXED_HOLD if job.timeline.fixed else WILDCARD_HOLD
        if last - now_ts <= hold:
            return last
    return now_ts


class Plan:
    """The planned fire instants; not thread-safe: the scheduler holds its lock around it."""

    def __init__(self) -> None:
        self._heap: list[float] = []
        self._buckets: dict[float, dict[str, None]] = {}
        """Schedules due at each instant, in planning order (dicts keep it; sets would not)."""

    def add(self, job: Job, after: float, cache: PlanCache) -> None:
        """Plan ``job`` at its first fire instant after ``after`` (on a day its calendars
        allow; a job whose calendars leave no such day stays unplanned)."""
        if job.calendars is not None:
            self._add_with_calendars(job, job.calendars, after, cache)
            return
        key = (id(job.timeline), after)
        instant = cache.get(key)
        if instant is None:
            instant = cache[key] = job.timeline.next_fire(utc(after)).timestamp()
        job.next_at = instant
        bucket = self._buckets.get(instant)
        if bucket is None:
            bucket = self._buckets[instant] = {}
            heapq.heappush(self._heap, instant)
        bucket[job.schedule_id] = None

    def _add_with_calendars(
        self, job: Job, rule: CalendarRule, after: float, cache: PlanCache
    ) -> None:
        key = (id(job.timeline), id(rule), after)
        if key in cache:
            instant = cache[key]
        else:
            instant = cache[key] = rule.next_fire(job.timeline, after)
        job.next_at = instant
        if instant is None:
            return
        bucket = self._buckets.get(instant)
        if bucket is None:
            bucket = self._buckets[instant] = {}
            heapq.heappush(self._heap, instant)
        bucket[job.schedule_id] = None

    def remove(self, job: Job) -> None:
        if job.next_at is not None:
            bucket = self._buckets.get(job.next_at)
            if bucket is not None:
                bucket.pop(job.schedule_id, None)
            job.next_at = None

    def replan_all(self, jobs: Iterable[Job], now_ts: float) -> None:
        """Forget every instant and plan each running job afresh from ``now_ts``."""
        self._heap.clear()
        self._buckets.clear()
        cache: PlanCache = {}
        for job in jobs:
            job.next_at = None
            if job.running:
                self.add(job, start_point(job, now_ts), cache)

    def next_due(self) -> float | None:
        """Earliest instant that still has schedules (drops emptied ones)."""
        heap, buckets = self._heap, self._buckets
        while heap:
            instant = heap[0]
            if buckets.get(instant):
                return instant
            heapq.heappop(heap)
            buckets.pop(instant, None)
        return None

    def pop_due(self, now_ts: float) -> list[tuple[float, list[str]]]:
        """Take every instant due by ``now_ts``, with its schedule ids in planning order."""
        heap, buckets = self._heap, self._buckets
        fired: list[tuple[float, list[str]]] = []
        while heap and heap[0] <= now_ts:
            instant = heapq.heappop(heap)
            bucket = buckets.pop(instant, None)
            if bucket:
                fired.append((instant, list(bucket)))
        return fired
