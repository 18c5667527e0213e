"""The scheduler: cron timelines in each schedule's own time zone, and the thread that fires them.

Why it is built this way:

* One thread keeps a heap of distinct fire instants, each with the set of schedules due
  then, and sleeps on a condition until the earliest one (at most ``MAX_WAIT`` at a time,
  and woken by every change). Schedules due at the same instant are handed to the task
  starter in one call, from a small worker pool, so a slow QRS delays nobody else and
  1,000 every-second schedules cost one start call a second.
* Fire times are computed in the schedule's IANA zone from croniter's *naive* wall-clock
  matches; DST is handled here rather than by croniter, following Vixie cron: a wall time
  skipped by a spring-forward change fires once, right at the change, for fixed-time
  schedules; a wall time shown twice by a fall-back change fires once for fixed-time
  schedules. "Wildcard" schedules (minute or hour field starting with ``*``) simply follow
  the wall clock as it is shown, so an every-5-minutes schedule keeps its real cadence.
* The wall clock may jump (NTP steps, manual changes). Each wake compares wall-clock
  progress with monotonic progress: after a backward jump every schedule is re-planned
  from the new time, holding back only as far as needed not to fire a slot it already
  fired (up to 3 hours for fixed-time schedules, 5 minutes for wildcard ones); a forward
  jump fires each overdue schedule once (no catch-up burst), or nothing when it exceeds
  3 hours. The same hold rule keeps a restart from firing a slot that already fired.
"""

from __future__ import annotations

import functools
import heapq
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from croniter import croniter

from butler.errors import ApiError, NotFound, ValidationFailed
from butler.schedule_store import (
    READ_ONLY_FIELDS,
    RUNNING_STARTUP_STATES,
    ScheduleStore,
    ScheduleValidationError,
    cron_fields,
    iso_utc,
    validate_schedule,
)

log = logging.getLogger(__name__)

StartTasks = Callable[[Sequence[str]], Mapping[str, str]]
"""Starts the given task ids in one call; returns the outcome per lower-case task id."""

ScheduleDicts = list[dict[str, Any]]
_Batch = list[tuple[str, str, str]]
"""(schedule id, name, lower-case task id) of each schedule fired together."""

MAX_WAIT = 1.0
"""Longest single sleep, so a wall-clock jump is noticed within about a second."""
JUMP_TOLERANCE = 1.0
"""Wall-clock progress that differs from monotonic progress by more than this is a jump."""
RESET_JUMP = 3 * 3600.0
"""Jumps larger than this reset every schedule to the new time (Vixie cron's limit)."""
FIXED_HOLD = 3 * 3600.0
WILDCARD_HOLD = 300.0
STATE_FLUSH_INTERVAL = 1.0
"""Run-time state (last run, result, fired slot) is written at most this often."""
HANDOFF_WAIT = 0.005
_TICK = timedelta(microseconds=1)
_WEEK = timedelta(days=7)
_MAX_SEGMENTS = 16


class Clock(Protocol):
    """Time source of the scheduler; tests substitute one they can advance by hand."""

    def now(self) -> datetime:
        """Current wall-clock time, timezone-aware (UTC)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps."""
        ...

    def wait(self, condition: threading.Condition, timeout: float) -> None:
        """Block on ``condition`` (held by the caller) for up to ``timeout`` seconds."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def wait(self, condition: threading.Condition, timeout: float) -> None:
        condition.wait(timeout)


class CronTimeline:
    """The fire instants of one cron expression in one time zone."""

    def __init__(self, expression: str, zone: str):
        fields = cron_fields(expression)
        self.expression = " ".join(fields)
        self.zone = ZoneInfo(zone)
        minute, hour = fields[-5], fields[-4]
        self.fixed = not (minute.startswith("*") or hour.startswith("*"))
        """Vixie cron's "fixed-time" job: neither minute nor hour starts with ``*``."""
        self._cron = croniter(
            self.expression, datetime(2000, 1, 1), second_at_beginning=len(fields) == 6
        )
        self._lock = threading.Lock()

    def next_fire(self, after: datetime) -> datetime:
        """The first fire instant strictly after ``after`` (aware), as an aware UTC time."""
        local = after.astimezone(self.zone)
        offset = _offset_of(local)
        low, inclusive = local.replace(tzinfo=None), False
        if self.fixed and local.fold == 1:
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
            if self.fixed and new_offset > offset:
                gap_start, gap_end = naive_change + offset, naive_change + new_offset
                if self._next_wall(gap_start, inclusive=True) < gap_end:
                    return change
            low, inclusive = naive_change + new_offset, True
            if self.fixed and new_offset < offset:
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


@functools.lru_cache(maxsize=4096)
def timeline_for(expression: str, zone: str) -> CronTimeline:
    """Shared timelines: thousands of schedules usually use a handful of expressions."""
    return CronTimeline(expression, zone)


@dataclass
class _Job:
    schedule_id: str
    name: str
    task_id: str
    timeline: CronTimeline
    running: bool
    next_at: float | None = None
    last_slot: float | None = None


_Jobs = list[_Job]


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


class Scheduler:
    """Schedules from a :class:`ScheduleStore`, fired through ``start_tasks``.

    ``start_tasks`` gets the lower-case task ids due at one instant in one call and returns
    the outcome per id (``started``, ``failed: ...``, ``notFound``, ``denied``,
    ``invalid``); an ``ApiError`` it raises is recorded as ``failed: <message>``.
    """

    def __init__(
        self,
        store: ScheduleStore,
        start_tasks: StartTasks,
        clock: Clock | None = None,
        workers: int = 4,
    ):
        self._store = store
        self._start_tasks = start_tasks
        self._clock: Clock = clock or SystemClock()
        self._workers = max(1, workers)
        self._cond = threading.Condition()
        self._api_lock = threading.Lock()
        self._jobs: dict[str, _Job] = {}
        self._heap: list[float] = []
        self._buckets: dict[float, dict[str, None]] = {}
        """Schedules due at each instant, in planning order (dicts keep it; sets would not)."""
        self._in_flight: set[str] = set()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._flusher: threading.Thread | None = None
        self._state_changed = threading.Event()
        self._flusher_stop = threading.Event()
        for entry in store.entries():
            job = self._new_job(entry)
            job.last_slot = store.run_state(job.schedule_id).last_slot
            self._jobs[job.schedule_id] = job
        with self._cond:
            self._replan_all(self._clock.now().timestamp())
        running = sum(job.running for job in self._jobs.values())
        log.info(
            "Scheduler: %d schedule(s) loaded from %s, %d running",
            len(self._jobs),
            store.path,
            running,
        )

    # lifecycle

    def start(self) -> None:
        """Start the firing thread (schedules are planned afresh from the current time)."""
        with self._cond:
            if self._thread is not None:
                return
            self._stopping = False
            self._replan_all(self._clock.now().timestamp())
            self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="butler-schedule")
            self._thread = threading.Thread(target=self._run, name="butler-scheduler", daemon=True)
            self._flusher_stop.clear()
            self._flusher = threading.Thread(
                target=self._flush_loop, name="butler-scheduler-state", daemon=True
            )
            self._thread.start()
            self._flusher.start()

    def stop(self) -> None:
        """Stop firing, let running start calls finish, and save the runtime state."""
        with self._cond:
            thread, pool, flusher = self._thread, self._pool, self._flusher
            self._stopping = True
            self._thread = self._pool = self._flusher = None
            self._cond.notify_all()
        if thread is not None:
            thread.join(timeout=10)
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        self._flusher_stop.set()
        self._state_changed.set()
        if flusher is not None:
            flusher.join(timeout=10)
        with self._cond:
            self._in_flight.clear()
            self._cond.notify_all()
        self._store.flush_state()

    def drain(self, timeout: float = 10.0, schedule_ids: Iterable[str] | None = None) -> bool:
        """Wait until no fire (of ``schedule_ids``, default all) is in progress.

        True if that happened within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        wanted = None if schedule_ids is None else set(schedule_ids)
        with self._cond:
            while self._in_flight if wanted is None else self._in_flight & wanted:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    # reading

    def list(self) -> ScheduleDicts:
        return self._decorate(self._store.entries())

    def get(self, schedule_id: str) -> dict[str, Any]:
        entry = self._store.get(schedule_id)
        if entry is None:
            raise NotFound(f"Schedule ID {schedule_id} not found.")
        return self._decorate([entry])[0]

    def status_text(self) -> str:
        """The seed-003 status text: one ``'<id>': <cron> status: Running|Stopped`` line each."""
        entries = self._store.entries()
        with self._cond:
            running = {sid: job.running for sid, job in self._jobs.items()}
        lines = [
            f"'{entry['id']}': {entry.get('cronSchedule')} status: "
            f"{'Running' if running.get(entry['id']) else 'Stopped'}\n"
            for entry in entries
        ]
        return "{\n" + "".join(lines) + "}"

    # changing

    def add(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Create a schedule; ``id``, ``created`` and ``lastKnownState`` are assigned here."""
        body = _writable(data)
        _validate(body)
        running = body["startupState"] in RUNNING_STARTUP_STATES
        entry = {
            **body,
            "id": str(uuid.uuid4()),
            "created": iso_utc(self._clock.now()),
            "lastKnownState": "started" if running else "stopped",
        }
        with self._api_lock:
            job = self._new_job(entry)
            stored = self._store.add(entry)
            with self._cond:
                self._jobs[job.schedule_id] = job
                if job.running:
                    self._plan(job, self._clock.now().timestamp(), {})
                self._cond.notify_all()
        log.info("Scheduler: schedule %s (%s) created", job.schedule_id, job.name)
        return self._decorate([stored])[0]

    def update(self, schedule_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
        """Change the given fields; the schedule keeps running or stopped as it was."""
        changes = _writable(data)
        with self._api_lock:
            current = self._store.get(schedule_id)
            if current is None:
                raise NotFound(f"Schedule ID {schedule_id} not found.")
            merged = {**current, **changes}
            _validate(merged)
            fresh = self._new_job(merged)
            stored = self._store.update(schedule_id, changes)
            with self._cond:
                job = self._jobs[schedule_id]
                self._unplan(job)
                job.name, job.task_id, job.timeline = fresh.name, fresh.task_id, fresh.timeline
                if job.running:
                    self._plan(job, self._clock.now().timestamp(), {})
                self._cond.notify_all()
        log.info("Scheduler: schedule %s updated", schedule_id)
        return self._decorate([stored])[0]

    def delete(self, schedule_id: str) -> None:
        with self._api_lock:
            if self._store.get(schedule_id) is None:
                raise NotFound(f"Schedule ID {schedule_id} not found.")
            self._store.delete(schedule_id)
            with self._cond:
                job = self._jobs.pop(schedule_id)
                self._unplan(job)
                self._cond.notify_all()
        log.info("Scheduler: schedule %s deleted", schedule_id)

    def start_schedule(self, schedule_id: str) -> dict[str, Any]:
        return self._set_running([schedule_id], True)[0]

    def stop_schedule(self, schedule_id: str) -> dict[str, Any]:
        return self._set_running([schedule_id], False)[0]

    def start_all(self) -> ScheduleDicts:
        return self._set_running(None, True)

    def stop_all(self) -> ScheduleDicts:
        return self._set_running(None, False)

    # internals: API side

    def _set_running(self, schedule_ids: Sequence[str] | None, running: bool) -> ScheduleDicts:
        with self._api_lock:
            if schedule_ids is None:
                schedule_ids = self._store.ids()
            for sid in schedule_ids:
                if self._store.get(sid) is None:
                    raise NotFound(f"Schedule ID {sid} not found.")
            stored = self._store.set_known_state(schedule_ids, "started" if running else "stopped")
            with self._cond:
                now_ts = self._clock.now().timestamp()
                cache: dict[tuple[int, float], float] = {}
                for sid in schedule_ids:
                    job = self._jobs[sid]
                    job.running = running
                    if not running:
                        self._unplan(job)
                    elif job.next_at is None:
                        self._plan(job, self._start_point(job, now_ts), cache)
                self._cond.notify_all()
        log.info(
            "Scheduler: %d schedule(s) %s", len(schedule_ids), "started" if running else "stopped"
        )
        return self._decorate(stored)

    def _new_job(self, entry: Mapping[str, Any]) -> _Job:
        return _Job(
            schedule_id=str(entry["id"]),
            name=str(entry.get("name", "")),
            task_id=str(entry["qlikSenseTaskId"]).lower(),
            timeline=timeline_for(str(entry["cronSchedule"]), str(entry["timezone"])),
            running=entry.get("lastKnownState") == "started",
        )

    def _decorate(self, entries: Iterable[dict[str, Any]]) -> ScheduleDicts:
        """Add the read-only run-time fields ``nextRun``, ``lastRun`` and ``lastResult``."""
        result = list(entries)
        with self._cond:
            next_runs = {
                entry["id"]: self._jobs[entry["id"]].next_at
                for entry in result
                if entry["id"] in self._jobs
            }
        for entry in result:
            next_at = next_runs.get(entry["id"])
            state = self._store.run_state(entry["id"])
            entry["nextRun"] = iso_utc(_utc(next_at)) if next_at is not None else None
            entry["lastRun"] = state.last_run
            entry["lastResult"] = state.last_result
        return result

    # internals: planning (caller holds self._cond)

    def _start_point(self, job: _Job, now_ts: float) -> float:
        """Plan from now, but never re-fire a slot already fired, unless that holds too long."""
        last = job.last_slot
        if last is not None and last > now_ts:
            hold = FIXED_HOLD if job.timeline.fixed else WILDCARD_HOLD
            if last - now_ts <= hold:
                return last
        return now_ts

    def _plan(self, job: _Job, after: float, cache: dict[tuple[int, float], float]) -> None:
        key = (id(job.timeline), after)
        instant = cache.get(key)
        if instant is None:
            instant = cache[key] = job.timeline.next_fire(_utc(after)).timestamp()
        job.next_at = instant
        bucket = self._buckets.get(instant)
        if bucket is None:
            bucket = self._buckets[instant] = {}
            heapq.heappush(self._heap, instant)
        bucket[job.schedule_id] = None

    def _unplan(self, job: _Job) -> None:
        if job.next_at is not None:
            bucket = self._buckets.get(job.next_at)
            if bucket is not None:
                bucket.pop(job.schedule_id, None)
            job.next_at = None

    def _replan_all(self, now_ts: float) -> None:
        self._heap.clear()
        self._buckets.clear()
        cache: dict[tuple[int, float], float] = {}
        for job in self._jobs.values():
            job.next_at = None
            if job.running:
                self._plan(job, self._start_point(job, now_ts), cache)

    def _next_due(self) -> float | None:
        """Earliest instant that still has schedules (drops emptied ones)."""
        while self._heap:
            instant = self._heap[0]
            if self._buckets.get(instant):
                return instant
            heapq.heappop(self._heap)
            self._buckets.pop(instant, None)
        return None

    # internals: the firing thread

    def _run(self) -> None:
        clock = self._clock
        last_wall, last_mono = clock.now().timestamp(), clock.monotonic()
        with self._cond:
            while not self._stopping:
                now = clock.now()
                mono = clock.monotonic()
                now_ts = now.timestamp()
                drift = (now_ts - last_wall) - (mono - last_mono)
                last_wall, last_mono = now_ts, mono
                if drift < -JUMP_TOLERANCE or drift > RESET_JUMP:
                    log.warning("Scheduler: wall clock jumped by %.1f s: re-planning", drift)
                    self._replan_all(now_ts)
                due = self._next_due()
                if due is not None and due <= now_ts:
                    self._fire(now, now_ts)
                    continue
                timeout = MAX_WAIT if due is None else min(MAX_WAIT, due - now_ts)
                clock.wait(self._cond, timeout)

    def _flush_loop(self) -> None:
        """Write the run-time state when it changed, at most once per interval.

        A thread of its own, so disk latency (fsync) never delays a fire.
        """
        while True:
            self._state_changed.wait()
            if self._flusher_stop.is_set():
                return
            self._state_changed.clear()
            self._store.flush_state()
            if self._flusher_stop.wait(STATE_FLUSH_INTERVAL):
                return

    def _fire(self, now: datetime, now_ts: float) -> None:
        """Hand every schedule due by ``now`` to the pool in one batch, then plan each anew.

        Only what the worker needs happens before the hand-off; book-keeping follows it.
        """
        due_jobs: list[_Job] = []
        fired: list[tuple[float, list[str]]] = []
        jobs = self._jobs
        while self._heap and self._heap[0] <= now_ts:
            instant = heapq.heappop(self._heap)
            bucket = self._buckets.pop(instant, None)
            if not bucket:
                continue
            due = [jobs[sid] for sid in bucket]
            due_jobs.extend(due)
            fired.append((instant, list(bucket)))
        in_flight = self._in_flight
        batch = (
            [job for job in due_jobs if job.schedule_id not in in_flight] if in_flight else due_jobs
        )
        if batch and self._pool is not None:
            picked_up = threading.Event()
            self._pool.submit(self._run_batch, batch, now, picked_up)
            # Let the worker take the interpreter lock now: the book-keeping below is pure
            # Python and would otherwise hold it for a switch interval (5 ms) or more. The
            # worker cannot clear its in-flight marks before we set them: that needs _cond.
            picked_up.wait(HANDOFF_WAIT)
            in_flight.update(job.schedule_id for job in batch)
        if len(batch) < len(due_jobs):
            log.warning(
                "Scheduler: %d schedule(s) skipped: their previous start is still running",
                len(due_jobs) - len(batch),
            )
        for instant, sids in fired:
            self._store.record_fires(sids, instant)
        self._state_changed.set()
        cache: dict[tuple[int, float], float] = {}
        for instant, sids in fired:
            for sid in sids:
                job = jobs[sid]
                job.last_slot = instant
                job.next_at = None
                self._plan(job, self._start_point(job, now_ts), cache)

    def _run_batch(self, batch: _Jobs, run_at: datetime, picked_up: threading.Event) -> None:
        picked_up.set()
        items = [(job.schedule_id, job.name, job.task_id) for job in batch]
        task_ids = list(dict.fromkeys(task_id for _, _, task_id in items))
        failure: str | None = None
        outcomes: Mapping[str, str] = {}
        try:
            outcomes = self._start_tasks(task_ids)
        except ApiError as exc:
            failure = f"failed: {exc.message}"
        except Exception:
            log.exception("Scheduler: the task starter failed")
            failure = "failed: internal error while starting the task"
        try:
            results = [
                (schedule_id, failure or outcomes.get(task_id) or "failed: no result for this task")
                for schedule_id, _, task_id in items
            ]
            self._store.record_results(results, run_at)
            self._state_changed.set()
            _log_batch(items, results)
        finally:
            with self._cond:
                self._in_flight.difference_update(sid for sid, _, _ in items)
                self._cond.notify_all()


def _log_batch(items: _Batch, results: list[tuple[str, str]]) -> None:
    """One line per batch, and one warning per task that did not start (not per schedule)."""
    failures: dict[tuple[str, str], list[str]] = {}
    for (schedule_id, name, task_id), (_, result) in zip(items, results, strict=True):
        if result == "started":
            log.debug("SCHEDULER: Cron event for schedule ID %s: %s", schedule_id, name)
        else:
            failures.setdefault((task_id, result), []).append(schedule_id)
    for (task_id, result), schedule_ids in failures.items():
        shown = ", ".join(schedule_ids[:5]) + (", ..." if len(schedule_ids) > 5 else "")
        log.warning(
            "SCHEDULER: task %s %s (%d schedule(s): %s)",
            task_id,
            result,
            len(schedule_ids),
            shown,
        )
    started = len(items) - sum(len(ids) for ids in failures.values())
    log.info("Scheduler: %d schedule(s) fired, %d started", len(items), started)


def _writable(data: Mapping[str, Any]) -> dict[str, Any]:
    """The caller-settable part of a schedule body (read-only fields are ignored)."""
    return {key: value for key, value in data.items() if key not in READ_ONLY_FIELDS}


def _validate(data: Mapping[str, Any]) -> None:
    try:
        validate_schedule(data)
    except ScheduleValidationError as exc:
        if exc.message == "is required":
            raise ValidationFailed(f"body must have required property '{exc.field}'") from None
        raise ValidationFailed(f"body/{exc.field} {exc.message}") from None
