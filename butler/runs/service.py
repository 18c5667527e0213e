"""The runs service: every trigger records its starts here, and one thread follows them.

The task starter and the app-reload route write runs; the tracker thread polls QRS for the
open task runs every ``pollIntervalSeconds`` and wakes every waiting caller when something
changed, so a waited start holds one worker for the whole request, never one per task, and
costs QRS nothing beyond the shared poll. A run becoming final is reported to observers
(``Events.run_finished``: the MQTT run topic) and logged.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from butler.errors import ApiError
from butler.events import Events
from butler.guid import new_guid
from butler.runs.model import Run, to_millis
from butler.runs.store import RunStore
from butler.runs.tracker import poll

if TYPE_CHECKING:
    from butler.qrs import QrsClient
    from butler.tasks.trigger import Trigger

log = logging.getLogger(__name__)

PRUNE_INTERVAL = 3600.0


@dataclass(frozen=True)
class RunSettings:
    """``Butler.runs``."""

    retention_days: float = 30
    max_runs: int = 100_000
    poll_interval: float = 2.0
    max_wait_seconds: int = 21_600
    idempotency_hours: float = 24
    clock_skew_seconds: float = 2.0

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> RunSettings:
        return cls(
            retention_days=section["retentionDays"],
            max_runs=section["maxRuns"],
            poll_interval=section["pollIntervalSeconds"],
            max_wait_seconds=section["maxWaitSeconds"],
            idempotency_hours=section["idempotencyHours"],
            clock_skew_seconds=section["clockSkewSeconds"],
        )


class Runs:
    """Run records (durable) and the tracker that brings them to a final status."""

    def __init__(
        self,
        store: RunStore,
        qrs: QrsClient | None,
        settings: RunSettings | None = None,
        events: Events | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.store = store
        self.settings = settings or RunSettings()
        self._qrs = qrs
        self._events = events or Events()
        self._clock = clock
        self._changed = threading.Condition()
        self._open: dict[str, Run] = {}
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_poll_ok: bool | None = None

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Resume every open run: task runs are tracked on, app reloads cannot be."""
        with self._changed:
            if self._thread is not None:
                return
            resumed = self.store.open_runs()
            lost = [run for run in resumed if run.kind == "appReload"]
            for run in lost:
                run.status = "Unknown"
                run.message = "Butler stopped while this app reload ran; its outcome is unknown"
            self._open = {run.run_id: run for run in resumed if run.kind == "task"}
        self.store.save(lost)
        for run in lost:
            self._report_final(run)
        unsettled = self.store.settle_unfinished_keys(
            "Butler stopped while the first request with this Idempotency-Key was being "
            "processed: whether QRS started its tasks is unknown. Its runs (GET /v4/runs) "
            "say what QRS did; use a new key to start again"
        )
        if unsettled:
            log.warning(
                "Runs: %d idempotency key(s) of requests cut short by the stop now answer "
                "504 (outcome unknown)",
                unsettled,
            )
        if self._open:
            log.info("Runs: tracking %d open run(s) left from before the restart", len(self._open))
        self._prune()
        self._stop.clear()
        self._thread = threading.Thread(target=self._track, name="butler-runs", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=10)
        with self._changed:
            self._changed.notify_all()

    def close(self) -> None:
        self.store.close()

    # ----------------------------------------------------------------- recording

    def record_task_starts(
        self,
        request_id: str,
        trigger: Trigger,
        tasks: Sequence[Mapping[str, str]],
        created_at: float,
    ) -> list[Run]:
        """``Triggered`` runs for tasks about to be handed to QRS, committed before QRS is
        asked: if Butler dies during the call, the tracker still finds out what QRS did."""
        runs = [self._task_run(request_id, trigger, ref, created_at) for ref in tasks]
        self._record(runs)
        return [copy.copy(run) for run in runs]

    def refused(self, runs: Sequence[Run], reasons: Mapping[str, str]) -> list[Run]:
        """Mark the runs of tasks QRS refused (task id -> why) ``StartFailed``; the runs
        with their status now."""
        failed = []
        for run in runs:
            reason = reasons.get(run.task_id or "")
            if reason is not None:
                run.status = "StartFailed"
                run.message = reason
                run.finished_at = run.created_at
                run.match_after = None
                failed.append(run)
        if failed:
            self.store.save(failed)
            with self._changed:
                for run in failed:
                    self._open.pop(run.run_id, None)
                self._changed.notify_all()
            for run in failed:
                self._report_final(run)
        return [copy.copy(run) for run in runs]

    def record_app_reload(self, trigger: Trigger, app_id: str) -> Run:
        """The run of one app reload: a request of its own, ``Started`` as the reload is."""
        run = Run(
            run_id=new_guid(),
            kind="appReload",
            task_id=None,
            task_name=None,
            app_id=app_id,
            trigger=trigger.kind,
            caller=trigger.caller,
            request_id=new_guid(),
            status="Started",
            created_at=to_millis(self._clock()),
        )
        run.started_at = run.created_at
        self._record([run])
        return copy.copy(run)

    def finish_app_reload(self, run_id: str, status: str, message: str) -> Run:
        """Close an app-reload run with the Engine's outcome."""
        with self._changed:
            run = self._open.pop(run_id, None) or self.store.get(run_id)
            if run is None:
                raise KeyError(run_id)
            run.status = status
            run.message = message
            run.finished_at = self._clock()
            run.duration_ms = int((run.finished_at - (run.started_at or run.created_at)) * 1000)
            self.store.save([run])
            self._changed.notify_all()
        self._report_final(run)
        return copy.copy(run)

    def _task_run(
        self, request_id: str, trigger: Trigger, ref: Mapping[str, Any], created_at: float
    ) -> Run:
        created = to_millis(created_at)
        return Run(
            run_id=new_guid(),
            kind="task",
            task_id=ref["taskId"],
            task_name=ref.get("taskName"),
            app_id=None,
            trigger=trigger.kind,
            caller=trigger.caller_for(ref["taskId"]),
            request_id=request_id,
            status="Triggered",
            created_at=created,
            match_after=created - self.settings.clock_skew_seconds,
        )

    def _record(self, runs: list[Run]) -> None:
        if not runs:
            return
        self.store.save(runs)
        with self._changed:
            for run in runs:
                if not run.final:
                    self._open[run.run_id] = run
        for run in runs:
            if run.final:
                self._report_final(run)
        self._wake.set()

    # ----------------------------------------------------------------- reading

    def get(self, run_id: str) -> Run | None:
        with self._changed:
            run = self._open.get(run_id)
            if run is not None:
                return copy.copy(run)
        return self.store.get(run_id)

    def current(self, runs: Iterable[Run]) -> list[Run]:
        """The same runs with their status now."""
        return [self.get(run.run_id) or run for run in runs]

    def statuses(self, run_ids: Iterable[str]) -> dict[str, str]:
        """The status of each known run: open runs from memory, final ones in one store
        query (only when some are not open). A schedule with ``overlap: forbid`` asks this
        at each fire, so a still-running previous fire costs no disk read."""
        found: dict[str, str] = {}
        rest: list[str] = []
        with self._changed:
            for run_id in run_ids:
                run = self._open.get(run_id)
                if run is not None:
                    found[run_id] = run.status
                else:
                    rest.append(run_id)
        if rest:
            found.update(self.store.statuses(rest))
        return found

    def wait(self, runs: Sequence[Run], timeout: float) -> list[Run]:
        """Block until every run in ``runs`` is final or ``timeout`` seconds have passed;
        the runs as they are then."""
        ids = [run.run_id for run in runs]
        deadline = time.monotonic() + timeout
        with self._changed:
            while any(run_id in self._open for run_id in ids) and not self._stop.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(remaining)
        return self.current(runs)

    def open_count(self) -> int:
        with self._changed:
            return len(self._open)

    def tracking_state(self) -> bool | None:
        """Whether the last poll of QRS worked (``None`` before the first)."""
        return self._last_poll_ok

    # ----------------------------------------------------------------- the tracker

    def _track(self) -> None:
        """Poll every ``poll_interval`` from the start of one poll to the next (a slow QRS
        does not stretch the period), and sleep while nothing is open."""
        next_prune = time.monotonic() + PRUNE_INTERVAL
        last_poll = time.monotonic()
        while not self._stop.is_set():
            if not self.open_count():
                self._wake.wait(PRUNE_INTERVAL)
                self._wake.clear()
                last_poll = max(last_poll, time.monotonic())
            pause = last_poll + self.settings.poll_interval - time.monotonic()
            if self._stop.wait(max(0.0, pause)):
                return
            last_poll = time.monotonic()
            try:
                self.poll_once()
            except Exception:
                log.exception("Run tracker: poll failed")
            if time.monotonic() >= next_prune:
                next_prune = time.monotonic() + PRUNE_INTERVAL
                self._prune()

    def poll_once(self) -> int:
        """Ask QRS once about every open task run; the number of runs that changed."""
        if self._qrs is None:
            return 0
        with self._changed:
            tracked = sorted(
                (copy.copy(run) for run in self._open.values() if run.kind == "task"),
                key=lambda run: run.created_at,
            )
        if not tracked:
            return 0
        try:
            changed = poll(self._qrs, tracked, self._clock(), self.store.claimed)
        except ApiError as exc:
            if self._last_poll_ok is not False:
                log.warning("Run tracker: cannot ask QRS about open runs: %s", exc.message)
            self._last_poll_ok = False
            return 0
        if self._last_poll_ok is False:
            log.info("Run tracker: QRS answers again")
        self._last_poll_ok = True
        if not changed:
            return 0
        for run in changed:
            if run.final:
                run.match_after = None
        self.store.save(changed)
        finished = []
        with self._changed:
            for run in changed:
                if run.run_id not in self._open:
                    continue
                if run.final:
                    del self._open[run.run_id]
                    finished.append(run)
                else:
                    self._open[run.run_id] = run
            self._changed.notify_all()
        for run in finished:
            self._report_final(run)
        return len(changed)

    def _report_final(self, run: Run) -> None:
        level = logging.INFO if run.status == "FinishedSuccess" else logging.WARNING
        what = f"app {run.app_id}"
        if run.kind == "task":
            what = f"task '{run.task_name}' {run.task_id}"
        log.log(
            level,
            "Run %s of %s (%s %s): %s%s",
            run.run_id,
            what,
            run.trigger,
            run.caller,
            run.status,
            f": {run.message}" if run.message else "",
        )
        self._events.run_finished(run.to_json())

    def _prune(self) -> None:
        now = self._clock()
        dropped = self.store.prune(
            now - self.settings.retention_days * 86400, self.settings.max_runs
        )
        keys = self.store.prune_keys(now - self.settings.idempotency_hours * 3600)
        if dropped or keys:
            log.info("Runs: dropped %d old run(s) and %d expired idempotency key(s)", dropped, keys)
