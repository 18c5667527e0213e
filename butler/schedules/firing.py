"""The scheduler: schedules from the store, fired by one thread through the task starter.

Why it is built this way:

* One thread keeps the :class:`~butler.schedules.plan.Plan` (a heap of distinct fire
  instants, each with the set of schedules due then) and sleeps on a condition until the
  earliest one (at most ``MAX_WAIT`` at a time, and woken by every change). Schedules due
  at the same instant are handed to the task starter in one ``start_ids`` call, from a
  small worker pool, so a slow QRS delays nobody else and 1,000 every-second schedules
  cost one start call a second. The starter is the same one every other trigger uses
  (:class:`butler.tasks.TaskStarter`), so the start-task filter and truthful outcomes
  apply to schedules too.
* The wall clock may jump (NTP steps, manual changes). Each wake compares wall-clock
  progress with monotonic progress: after a backward jump every schedule is re-planned
  from the new time, holding back only as far as needed not to fire a slot it already
  fired (up to 3 hours for fixed-time schedules, 5 minutes for wildcard ones); a forward
  jump fires each overdue schedule once (no catch-up burst), or nothing when it exceeds
  3 hours. The same hold rule keeps a restart from firing a slot that already fired.
* Every fire goes into the schedule's fire history (the store's sidecar). ``overlap:
  forbid`` needs to know whether the previous fire's runs are final: the job keeps their
  ids, and the worker asks the run service about all of a batch's in one call before the
  start, and not at all while no schedule forbids overlap, so the common fire pays
  nothing for the feature. Run-now (:meth:`Scheduler.run_now`) takes the same path.
* Schedules arrive checked, once, where they came in: a loaded file by the store, an API
  change by the route schema of plugins/schedules.py. The scheduler does not check them
  again and has no HTTP wording of its own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from typing import Any, Protocol

from butler.errors import ApiError, NotFound
from butler.events import Events
from butler.guid import new_guid
from butler.runs.model import is_final
from butler.schedules.calendars import Calendars
from butler.schedules.clock import Clock, SystemClock
from butler.schedules.model import RUNNING_STARTUP_STATES, iso_utc, writable_fields
from butler.schedules.plan import Job, Plan, PlanCache, start_point, utc
from butler.schedules.preview import PreviewFire, preview
from butler.schedules.run_state import Fire
from butler.schedules.store import ScheduleStore
from butler.tasks.starter import StartOutcomeUnknown
from butler.tasks.trigger import IdStarts, StartsScheduledTasks, Trigger

log = logging.getLogger(__name__)

ScheduleDicts = list[dict[str, Any]]
PreviewFires = list[PreviewFire]
FireRecords = list[tuple[str, Fire]]
"""(schedule id, fire) of each schedule of a batch."""
_Batch = list[tuple[str, str, str]]
"""(schedule id, name, lower-case task id) of each schedule fired together."""

MAX_WAIT = 1.0
"""Longest single sleep, so a wall-clock jump is noticed within about a second."""
JUMP_TOLERANCE = 1.0
"""Wall-clock progress that differs from monotonic progress by more than this is a jump."""
RESET_JUMP = 3 * 3600.0
"""Jumps larger than this reset every schedule to the new time (Vixie cron's limit)."""
STATE_FLUSH_INTERVAL = 1.0
"""Run-time state (last run, result, fired slot) is written at most this often."""
HANDOFF_WAIT = 0.005
IN_FLIGHT_NOTE = "the previous fire's start call is still in progress"


class RunStatuses(Protocol):
    """What the overlap check needs of the run service (:class:`butler.runs.Runs`)."""

    def statuses(self, run_ids: Iterable[str]) -> Mapping[str, str]:
        """The status of each known run, in one call."""
        ...

    def tracking_state(self) -> bool | None:
        """Whether the last poll of QRS worked (``None`` before the first)."""
        ...


class Scheduler:
    """Schedules from a :class:`ScheduleStore`, fired through ``starter``.

    ``starter.start_ids_with_runs`` gets the lower-case task ids due at one instant in one
    call, with :meth:`Trigger.schedule`, and returns the outcome per id (``started``,
    ``failed: ...``, ``notFound``, ``denied``, ``invalid``) and the runs it recorded; an
    ``ApiError`` it raises is recorded as ``failed: <message>``. Each fire goes into the
    schedule's fire history. ``runs`` tells ``overlap: forbid`` schedules whether their
    previous fire's runs are final; without it only a start call still in progress stops
    a fire.
    """

    def __init__(
        self,
        store: ScheduleStore,
        starter: StartsScheduledTasks,
        clock: Clock | None = None,
        workers: int = 4,
        events: Events | None = None,
        runs: RunStatuses | None = None,
    ):
        self._runs = runs
        self._events = events or Events()
        self._store = store
        self._starter = starter
        self._clock: Clock = clock or SystemClock()
        self._workers = max(1, workers)
        self._cond = threading.Condition()
        self._api_lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._plan = Plan()
        self._in_flight: set[str] = set()
        self._forbid: set[str] = set()
        """Schedules with ``overlap: forbid``: when empty, fires skip the overlap check."""
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._flusher: threading.Thread | None = None
        self._state_changed = threading.Event()
        self._flusher_stop = threading.Event()
        for entry in store.entries():
            job = Job.from_entry(entry, store.calendars)
            state = store.run_state(job.schedule_id)
            job.last_slot, job.last_run_ids = state.last_slot, state.last_run_ids
            self._jobs[job.schedule_id] = job
            if job.forbid_overlap:
                self._forbid.add(job.schedule_id)
        with self._cond:
            self._plan.replan_all(self._jobs.values(), self._clock.now().timestamp())
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
            self._plan.replan_all(self._jobs.values(), self._clock.now().timestamp())
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

    @property
    def calendars(self) -> Calendars:
        """The configured calendars, for the calendars route and a preview's ``skippedBy``."""
        return self._store.calendars

    def clock_today(self) -> date:
        """Today in UTC by the scheduler's clock (the fake one in tests)."""
        return self._clock.now().astimezone(UTC).date()

    def health(self) -> tuple[str, float]:
        """The firing thread's state (``not started``, ``running``, ``stopped``, ``dead``)
        and how many seconds the earliest due fire is overdue now (0 when none is).

        A live thread can still be stuck; an overdue fire is what shows it.
        """
        with self._cond:
            thread, stopping, due = self._thread, self._stopping, self._plan.next_due()
            now_ts = self._clock.now().timestamp()
        if thread is None:
            state = "stopped" if stopping else "not started"
        else:
            state = "running" if thread.is_alive() else "dead"
        return state, max(0.0, now_ts - due) if due is not None else 0.0

    def list(self) -> ScheduleDicts:
        return self._decorate(self._store.entries())

    def get(self, schedule_id: str) -> dict[str, Any]:
        entry = self._store.get(schedule_id)
        if entry is None:
            raise NotFound(f"Schedule ID {schedule_id} not found.")
        return self._decorate([entry])[0]

    def fires(self, schedule_id: str, limit: int) -> ScheduleDicts:
        """The schedule's newest ``limit`` fires, newest first."""
        if self._store.get(schedule_id) is None:
            raise NotFound(f"Schedule ID {schedule_id} not found.")
        return [fire.to_json() for fire in self._store.fires(schedule_id, limit)]

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

    # previews: what will fire, computed like the plan but changing nothing

    def preview(
        self,
        entry: Mapping[str, Any],
        after: datetime | None,
        count: int,
        include_skipped: bool,
    ) -> PreviewFires:
        """Fires of a checked schedule, saved or not, after ``after`` (default: this
        scheduler's now, so a fake clock drives previews too)."""
        start = after if after is not None else self._clock.now()
        # The calendars that plan the fires say which days a preview skips (skippedBy).
        return preview(entry, start, count, include_skipped, self._store.calendars.excluded_by)

    # changing (fields were checked where they came in, see the module docstring)

    def add(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Create a schedule; ``id``, ``created`` and ``lastKnownState`` are assigned here."""
        body = writable_fields(fields)
        running = body["startupState"] in RUNNING_STARTUP_STATES
        entry = {
            **body,
            "id": new_guid(),
            "created": iso_utc(self._clock.now()),
            "lastKnownState": "started" if running else "stopped",
        }
        with self._api_lock:
            job = Job.from_entry(entry, self._store.calendars)
            stored = self._store.add(entry)
            with self._cond:
                self._jobs[job.schedule_id] = job
                if job.forbid_overlap:
                    self._forbid.add(job.schedule_id)
                if job.running:
                    self._plan.add(job, self._clock.now().timestamp(), {})
                self._cond.notify_all()
        log.info("Scheduler: schedule %s (%s) created", job.schedule_id, job.name)
        return self._decorate([stored])[0]

    def update(self, schedule_id: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Change the given fields; the schedule keeps running or stopped as it was."""
        writable = writable_fields(changes)
        with self._api_lock:
            current = self._store.get(schedule_id)
            if current is None:
                raise NotFound(f"Schedule ID {schedule_id} not found.")
            fresh = Job.from_entry({**current, **writable}, self._store.calendars)
            stored = self._store.update(schedule_id, writable)
            with self._cond:
                job = self._jobs[schedule_id]
                self._plan.remove(job)
                job.name, job.task_id, job.timeline = fresh.name, fresh.task_id, fresh.timeline
                job.calendars = fresh.calendars
                job.forbid_overlap = fresh.forbid_overlap
                if job.forbid_overlap:
                    self._forbid.add(schedule_id)
                else:
                    self._forbid.discard(schedule_id)
                if job.running:
                    self._plan.add(job, self._clock.now().timestamp(), {})
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
                self._forbid.discard(schedule_id)
                self._plan.remove(job)
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

    def run_now(self, schedule_id: str, caller: str) -> dict[str, Any]:
        """Fire a schedule now (QMC's "start now"), running or stopped, on the calling
        thread, by the path a timed fire takes: overlap applies and the fire goes into the
        history. Runs record ``caller``. The fire record; ``outcome`` says what happened.
        """
        now = self._clock.now()
        with self._cond:
            job = self._jobs.get(schedule_id)
            if job is None:
                raise NotFound(f"Schedule ID {schedule_id} not found.")
            busy = schedule_id in self._in_flight
            if not busy:
                self._in_flight.add(schedule_id)
        now_ts = now.timestamp()
        if busy:
            fire = Fire(now_ts, now_ts, "skipped:overlap", note=IN_FLIGHT_NOTE)
            self._store.record_fire_history([(schedule_id, fire)])
            self._state_changed.set()
            return fire.to_json()
        fires = self._start([job], [(now_ts, [schedule_id])], now, caller)
        return fires[0][1].to_json()

    # internals: API side

    def _set_running(self, schedule_ids: Sequence[str] | None, running: bool) -> ScheduleDicts:
        """One file write for any number of schedules (``startall`` of 10,000 included)."""
        with self._api_lock:
            if schedule_ids is None:
                schedule_ids = self._store.ids()
            for sid in schedule_ids:
                if self._store.get(sid) is None:
                    raise NotFound(f"Schedule ID {sid} not found.")
            stored = self._store.set_known_state(schedule_ids, "started" if running else "stopped")
            with self._cond:
                now_ts = self._clock.now().timestamp()
                cache: PlanCache = {}
                for sid in schedule_ids:
                    job = self._jobs[sid]
                    job.running = running
                    if not running:
                        self._plan.remove(job)
                    elif job.next_at is None:
                        self._plan.add(job, start_point(job, now_ts), cache)
                self._cond.notify_all()
        log.info(
            "Scheduler: %d schedule(s) %s", len(schedule_ids), "started" if running else "stopped"
        )
        return self._decorate(stored)

    def _decorate(self, entries: Iterable[dict[str, Any]]) -> ScheduleDicts:
        """Add the read-only run-time fields ``nextRun``, ``lastRun``, ``lastResult`` and
        ``lastFire`` (to the answer only: entries are the store's copies)."""
        result = list(entries)
        with self._cond:
            next_runs = {
                entry["id"]: self._jobs[entry["id"]].next_at
                for entry in result
                if entry["id"] in self._jobs
            }
        store = self._store
        for entry in result:
            next_at = next_runs.get(entry["id"])
            last_run, last_result, last_fire = store.run_summary(entry["id"])
            entry["nextRun"] = iso_utc(utc(next_at)) if next_at is not None else None
            entry["lastRun"] = last_run
            entry["lastResult"] = last_result
            entry["lastFire"] = last_fire.to_json() if last_fire is not None else None
        return result

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
                    self._plan.replan_all(self._jobs.values(), now_ts)
                due = self._plan.next_due()
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
        A schedule whose previous start is still running is skipped, not queued, so a slow
        start never piles up.
        """
        jobs = self._jobs
        fired = self._plan.pop_due(now_ts)
        due_jobs = [jobs[sid] for _, sids in fired for sid in sids]
        in_flight = self._in_flight
        batch = (
            [job for job in due_jobs if job.schedule_id not in in_flight] if in_flight else due_jobs
        )
        if batch and self._pool is not None:
            picked_up = threading.Event()
            self._pool.submit(self._run_batch, batch, fired, now, picked_up)
            # Let the worker take the interpreter lock now: the book-keeping below is pure
            # Python and would otherwise hold it for a switch interval (5 ms) or more. The
            # worker cannot clear its in-flight marks before we set them: that needs _cond.
            picked_up.wait(HANDOFF_WAIT)
            in_flight.update(job.schedule_id for job in batch)
        if len(batch) < len(due_jobs):
            skipped = _skipped(due_jobs, batch)
            self._events.schedule_results(skipped)
            planned = _planned(fired)
            self._store.record_fire_history(
                [
                    (sid, Fire(planned[sid], now_ts, "skipped:overlap", note=IN_FLIGHT_NOTE))
                    for sid, _ in skipped
                ]
            )
            log.warning(
                "Scheduler: %d schedule(s) skipped: their previous start is still running",
                len(due_jobs) - len(batch),
            )
        for instant, sids in fired:
            self._store.record_fires(sids, instant)
            self._events.schedules_fired(now_ts - instant, len(sids))
        self._state_changed.set()
        cache: PlanCache = {}
        for instant, sids in fired:
            for sid in sids:
                job = jobs[sid]
                job.last_slot = instant
                job.next_at = None
                self._plan.add(job, start_point(job, now_ts), cache)

    def _run_batch(
        self,
        batch: Sequence[Job],
        fired: Sequence[tuple[float, Sequence[str]]],
        run_at: datetime,
        picked_up: threading.Event,
    ) -> None:
        picked_up.set()
        self._start(batch, fired, run_at, None)

    def _start(
        self,
        batch: Sequence[Job],
        fired: Sequence[tuple[float, Sequence[str]]],
        run_at: datetime,
        manual: str | None,
    ) -> FireRecords:
        """Start the tasks of ``batch`` (in flight: the marks are cleared here) except those
        the overlap check holds back, and record each schedule's result and fire.

        ``fired`` gives each schedule's slot; ``manual`` is the runs' caller of a run-now
        fire (a timed fire's runs name their schedule). Only what the start call needs
        happens before it: fire lateness is measured there.
        """
        fires: FireRecords = []
        try:
            try:
                held, notes = self._overlap(batch)
            except Exception:
                log.exception("Scheduler: cannot tell whether previous fires still run")
                held, notes = {}, {}
            items = [
                (job.schedule_id, job.name, job.task_id)
                for job in batch
                if not held or job.schedule_id not in held
            ]
            if items:
                fires = self._start_items(items, fired, run_at, manual, notes)
            if held:
                planned, run_ts = _planned(fired), run_at.timestamp()
                fires += [
                    (sid, Fire(planned[sid], run_ts, "skipped:overlap", note=note))
                    for sid, note in held.items()
                ]
            self._store.record_fire_history(fires)
            self._state_changed.set()
            return fires
        finally:
            with self._cond:
                jobs = self._jobs
                for sid, fire in fires:
                    job = jobs.get(sid)
                    if fire.run_ids and job is not None:
                        job.last_run_ids = fire.run_ids
                self._in_flight.difference_update(job.schedule_id for job in batch)
                self._cond.notify_all()

    def _start_items(
        self,
        items: _Batch,
        fired: Sequence[tuple[float, Sequence[str]]],
        run_at: datetime,
        manual: str | None,
        notes: Mapping[str, str],
    ) -> FireRecords:
        task_ids = list(dict.fromkeys(task_id for _, _, task_id in items))
        failure: str | None = None
        started = IdStarts({})
        # Two schedules naming one task start it once; its run names the first of them.
        callers = {task_id: manual or sid for sid, _, task_id in reversed(items)}
        try:
            started = self._starter.start_ids_with_runs(
                task_ids, Trigger.schedule(_named(items), callers)
            )
        except StartOutcomeUnknown as exc:
            failure = f"failed: {exc.message}"
            started = IdStarts({}, {run.task_id: run.run_id for run in exc.runs if run.task_id})
        except ApiError as exc:
            failure = f"failed: {exc.message}"
        except Exception:
            log.exception("Scheduler: the task starter failed")
            failure = "failed: internal error while starting the task"
        outcomes, run_ids = started.outcomes, started.run_ids
        results = [
            (schedule_id, failure or outcomes.get(task_id) or "failed: no result for this task")
            for schedule_id, _, task_id in items
        ]
        self._store.record_results(results, run_at)
        self._events.schedule_results(results)
        _log_batch(items, results)
        planned, run_ts = _planned(fired), run_at.timestamp()
        fires: FireRecords = []
        for (schedule_id, _, task_id), (_, result) in zip(items, results, strict=True):
            ok = result == "started"
            note = notes.get(schedule_id)
            if not ok:
                note = f"{note}; {result}" if note else result
            run_id = run_ids.get(task_id)
            fires.append(
                (
                    schedule_id,
                    Fire(
                        planned[schedule_id],
                        run_ts,
                        "started" if ok else "failed",
                        (run_id,) if run_id else (),
                        note,
                    ),
                )
            )
        return fires

    def _overlap(self, batch: Sequence[Job]) -> tuple[dict[str, str], dict[str, str]]:
        """Schedules held back by ``overlap: forbid`` (id -> why), and those that go ahead
        although a run of their previous fire is not known to be final (id -> why).

        One call to the run service for the whole batch, and only for ``forbid`` schedules
        whose previous fire started runs: the common schedule costs nothing here.
        """
        if not self._forbid or self._runs is None:
            return {}, {}
        forbid = [job for job in batch if job.forbid_overlap and job.last_run_ids]
        if not forbid:
            return {}, {}
        statuses = self._runs.statuses({rid for job in forbid for rid in job.last_run_ids})
        tracking = self._runs.tracking_state()
        held: dict[str, str] = {}
        notes: dict[str, str] = {}
        for job in forbid:
            known = [(rid, statuses[rid]) for rid in job.last_run_ids if rid in statuses]
            going = [(rid, status) for rid, status in known if not is_final(status)]
            if going and tracking is False:
                rid, status = going[0]
                notes[job.schedule_id] = (
                    f"QRS unreachable: run {rid} of the previous fire ({status}) may still "
                    "be going; fired anyway"
                )
            elif going:
                rid, status = going[0]
                held[job.schedule_id] = f"run {rid} of the previous fire is {status}"
            else:
                lost = [rid for rid, status in known if status == "Unknown"]
                if lost:
                    notes[job.schedule_id] = (
                        f"run {lost[0]} of the previous fire is Unknown (QRS no longer knows "
                        "its execution); fired anyway"
                    )
        return held, notes


_NAMED_AT_MOST = 10


def _named(items: _Batch) -> str:
    """``'Nightly' (id), 'Hourly' (id)``: the schedules of a batch, for log lines."""
    shown = ", ".join(
        f"'{name}' ({schedule_id})" for schedule_id, name, _ in items[:_NAMED_AT_MOST]
    )
    more = len(items) - _NAMED_AT_MOST
    return shown + (f" and {more} more" if more > 0 else "")


def _planned(fired: Sequence[tuple[float, Sequence[str]]]) -> dict[str, float]:
    """The slot each schedule of a fire was due at."""
    return {sid: instant for instant, sids in fired for sid in sids}


def _skipped(due: Sequence[Job], batch: Sequence[Job]) -> list[tuple[str, str]]:
    handed = {job.schedule_id for job in batch}
    return [(job.schedule_id, "skipped") for job in due if job.schedule_id not in handed]


def _log_batch(items: _Batch, results: list[tuple[str, str]]) -> None:
    """One line per batch counting tasks as QRS started them, one warning per failed task.

    Two schedules of one task fire one start, so tasks are counted, not schedules.
    """
    outcome_by_task: dict[str, str] = {}
    schedules_by_task: dict[str, list[tuple[str, str, str]]] = {}
    for item, (_, result) in zip(items, results, strict=True):
        outcome_by_task[item[2]] = result
        schedules_by_task.setdefault(item[2], []).append(item)
    started = [task for task, result in outcome_by_task.items() if result == "started"]
    for task_id, result in outcome_by_task.items():
        if result != "started":
            log.warning(
                "Scheduler: task %s %s (fired by %s)",
                task_id,
                result,
                _named(schedules_by_task[task_id]),
            )
    log.info(
        "Scheduler: %d schedule(s) fired (%s): %d task(s) started%s, %d failed",
        len(items),
        _named(items),
        len(started),
        f" ({', '.join(started)})" if started else "",
        len(outcome_by_task) - len(started),
    )
