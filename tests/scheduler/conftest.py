"""Fixtures for scheduler tests: a fake clock, a recording task starter, schedule files."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from butler.schedules import Scheduler, ScheduleStore
from butler.tasks import IdStarts, StartsScheduledTasks, Trigger
from tests.scheduler.fake_clock import FakeClock

START = datetime(2024, 1, 15, 12, 0, 0, tzinfo=UTC)
"""A Monday, in winter time in Europe and North America."""
TASK_A = "0fe447a9-ba1f-44a9-ac23-68c3a1d88d8b"
TASK_B = "e3b27f50-b1c0-4879-88fc-c7cdd9c1cf3e"
TEMPLATE = Path(__file__).resolve().parents[1] / "data" / "schedule_template.yaml"


def entry(
    schedule_id: str,
    cron: str,
    zone: str = "Europe/Stockholm",
    task: str = TASK_A,
    state: str = "started",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "id": schedule_id,
        "name": f"Schedule {schedule_id}",
        "cronSchedule": cron,
        "timezone": zone,
        "qlikSenseTaskId": task,
        "startupState": state,
        **extra,
    }


def write_schedules(path: Path, entries: Sequence[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    YAML(typ="safe", pure=True).dump({"butlerSchedule": list(entries)}, buffer)
    path.write_text(buffer.getvalue(), encoding="utf-8")


class FakeRuns:
    """The run service as the overlap check sees it: a status per run id, set by tests."""

    def __init__(self) -> None:
        self.status: dict[str, str] = {}
        self.tracking: bool | None = True
        self.asked: list[set[str]] = []

    def statuses(self, run_ids: Iterable[str]) -> dict[str, str]:
        ids = set(run_ids)
        self.asked.append(ids)
        return {run_id: self.status[run_id] for run_id in ids if run_id in self.status}

    def tracking_state(self) -> bool | None:
        return self.tracking

    def finish(self, status: str = "FinishedSuccess") -> None:
        for run_id in self.status:
            self.status[run_id] = status


class Recorder:
    """A task starter that records each call with the fake time it happened at."""

    def __init__(self, clock: FakeClock):
        self.clock = clock
        self.calls: list[tuple[datetime, list[str]]] = []
        self.triggers: list[Trigger] = []
        self.outcomes: dict[str, str] = {}
        self.error: BaseException | None = None
        self.gates: dict[str, threading.Event] = {}
        self.entered = threading.Event()
        self.runs: FakeRuns | None = None
        self._lock = threading.Condition()

    def start_ids_with_runs(self, task_ids: Sequence[str], trigger: Trigger) -> IdStarts:
        """Each call's runs are ``run-<call>-<task number>``; ``runs`` (when set) learns
        them as ``Triggered``, as the run service would."""
        for task_id in task_ids:
            gate = self.gates.get(task_id)
            if gate is not None:
                self.entered.set()
                assert gate.wait(10), "test never released the gate"
        with self._lock:
            self.calls.append((self.clock.now(), list(task_ids)))
            self.triggers.append(trigger)
            number = len(self.calls)
            self._lock.notify_all()
        if self.error is not None:
            raise self.error
        run_ids = {task_id: f"run-{number}-{i}" for i, task_id in enumerate(task_ids)}
        if self.runs is not None:
            self.runs.status.update(dict.fromkeys(run_ids.values(), "Triggered"))
        return IdStarts(
            {task_id: self.outcomes.get(task_id, "started") for task_id in task_ids}, run_ids
        )

    def wait_calls(self, count: int, timeout: float = 10.0) -> bool:
        """Wait until at least ``count`` calls were recorded."""
        with self._lock:
            return self._lock.wait_for(lambda: len(self.calls) >= count, timeout)

    @property
    def times(self) -> list[datetime]:
        with self._lock:
            return [moment for moment, _ in self.calls]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def recorder(clock: FakeClock) -> Recorder:
    return Recorder(clock)


@pytest.fixture
def schedule_file(tmp_path: Path) -> Path:
    return tmp_path / "config" / "schedule.yaml"


@pytest.fixture
def make_scheduler(
    schedule_file: Path, clock: FakeClock, recorder: Recorder
) -> Iterator[Callable[..., Scheduler]]:
    """Factory: a Scheduler over ``schedule_file`` (written first when entries are given)."""
    made: list[Scheduler] = []

    def factory(
        entries: Sequence[dict[str, Any]] | None = None,
        *,
        start: bool = True,
        use_clock: FakeClock | None = None,
        starter: StartsScheduledTasks | None = None,
        runs: FakeRuns | None = None,
        workers: int = 4,
    ) -> Scheduler:
        if entries is not None:
            schedule_file.parent.mkdir(parents=True, exist_ok=True)
            write_schedules(schedule_file, entries)
        the_clock = use_clock or clock
        scheduler = Scheduler(
            ScheduleStore(schedule_file),
            starter or recorder,
            clock=the_clock,
            workers=workers,
            runs=runs,
        )
        made.append(scheduler)
        if start:
            scheduler.start()
            the_clock.settle()
        return scheduler

    yield factory
    for scheduler in made:
        scheduler.stop()


class Answers:
    """A task starter that gives the same answer to every call."""

    def __init__(self, outcomes: dict[str, str]):
        self.outcomes = outcomes

    def start_ids_with_runs(self, task_ids: Sequence[str], trigger: Trigger) -> IdStarts:
        return IdStarts(dict(self.outcomes))


def step(clock: FakeClock, scheduler: Scheduler, seconds: int, every: float = 1.0) -> None:
    """Advance ``seconds`` in steps of ``every``, letting each step's fires finish."""
    for _ in range(int(seconds / every)):
        clock.advance(every)
        assert scheduler.drain(10)
