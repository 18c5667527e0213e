"""The firing thread, driven by a fake clock: cadence, coalescing, results, jumps, restarts."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from butler.errors import NotFound, UpstreamError
from butler.schedules import MAX_WAIT, Scheduler, ScheduleStore, SystemClock
from butler.tasks import IdStarts, Trigger
from tests.scheduler.conftest import (
    START,
    TASK_A,
    TASK_B,
    Answers,
    Recorder,
    entry,
    step,
    write_schedules,
)
from tests.scheduler.fake_clock import FakeClock

MakeScheduler = Callable[..., Scheduler]


def at(seconds: float) -> datetime:
    return START + timedelta(seconds=seconds)


def test_every_30_seconds_fires_only_at_00_and_30(
    make_scheduler: MakeScheduler, clock: FakeClock, recorder: Recorder
) -> None:
    scheduler = make_scheduler([entry("s", "*/30 * * * * *")])
    step(clock, scheduler, 150)
    assert recorder.times == [at(30), at(60), at(90), at(120), at(150)]
    assert all(call == [TASK_A] for _, call in recorder.calls)


def test_five_field_expressions_fire_on_the_minute(
    make_scheduler: MakeScheduler, clock: FakeClock, recorder: Recorder
) -> None:
    scheduler = make_scheduler([entry("s", "*/2 * * * *")])
    step(clock, scheduler, 300, every=5)
    assert recorder.times == [at(120), at(240)]


def test_schedules_due_together_share_one_start_call(
    make_scheduler: MakeScheduler, clock: FakeClock, recorder: Recorder
) -> None:
    entries = [entry(f"a{i}", "* * * * *", task=TASK_A) for i in range(30)]
    entries += [entry(f"b{i}", "0 * * * * *", task=TASK_B.upper()) for i in range(30)]
    entries.append(entry("later", "0 30 * * * *", task=TASK_B))
    scheduler = make_scheduler(entries)
    clock.advance(60)
    assert scheduler.drain()
    assert recorder.calls == [(at(60), [TASK_A, TASK_B])]
    results = {s["id"]: (s["lastResult"], s["lastRun"]) for s in scheduler.list()}
    assert results["a0"] == results["b29"] == ("started", "2024-01-15T12:01:00.000Z")
    assert results["later"] == (None, None)


@pytest.mark.parametrize(
    "outcome,error,expected",
    [
        ("notFound", None, "notFound"),
        ("denied", None, "denied"),
        ("failed: QRS answered 409", None, "failed: QRS answered 409"),
        (None, UpstreamError("QRS is unreachable"), "failed: QRS is unreachable"),
        (None, RuntimeError("boom"), "failed: internal error while starting the task"),
    ],
)
def test_each_fire_records_the_true_outcome(
    make_scheduler: MakeScheduler,
    clock: FakeClock,
    recorder: Recorder,
    outcome: str | None,
    error: Exception | None,
    expected: str,
) -> None:
    if outcome is not None:
        recorder.outcomes[TASK_A] = outcome
    recorder.error = error
    scheduler = make_scheduler([entry("s", "* * * * * *")])
    clock.advance(1)
    assert scheduler.drain()
    found = scheduler.get("s")
    assert found["lastResult"] == expected
    assert found["lastRun"] == "2024-01-15T12:00:01.000Z"


def test_a_missing_outcome_is_recorded_as_a_failure(
    make_scheduler: MakeScheduler, clock: FakeClock
) -> None:
    scheduler = make_scheduler([entry("s", "* * * * * *")], starter=Answers({}))
    clock.advance(1)
    assert scheduler.drain()
    assert scheduler.get("s")["lastResult"] == "failed: no result for this task"


def test_fires_tell_the_starter_they_come_from_a_schedule(
    make_scheduler: MakeScheduler, clock: FakeClock, recorder: Recorder
) -> None:
    scheduler = make_scheduler([entry("s", "* * * * * *")])
    step(clock, scheduler, 2)
    assert recorder.triggers == [Trigger.schedule("'Schedule s' (s)")] * 2
    assert str(recorder.triggers[0]) == "schedule 'Schedule s' (s)"


def test_a_fire_logs_the_schedules_and_counts_tasks_as_qrs_started_them(
    make_scheduler: MakeScheduler, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="butler.schedules")
    scheduler = make_scheduler([entry("a", "* * * * * *"), entry("b", "* * * * * *")])
    clock.advance(1)
    assert scheduler.drain()
    (line,) = [r.getMessage() for r in caplog.records if "fired" in r.getMessage()]
    assert line == (
        f"Scheduler: 2 schedule(s) fired ('Schedule a' (a), 'Schedule b' (b)): "
        f"1 task(s) started ({TASK_A}), 0 failed"
    )


def test_a_failed_fire_warns_naming_the_task_and_its_schedules(
    make_scheduler: MakeScheduler, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="butler.schedules")
    scheduler = make_scheduler([entry("s", "* * * * * *")], starter=Answers({}))
    clock.advance(1)
    assert scheduler.drain()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"Scheduler: task {TASK_A} failed: no result for this task (fired by 'Schedule s' (s))"
    ]


def test_a_slow_start_delays_no_other_schedule_and_does_not_pile_up(
    make_scheduler: MakeScheduler, clock: FakeClock, recorder: Recorder
) -> None:
    gate = recorder.gates[TASK_A] = threading.Event()
    scheduler = make_scheduler(
        [entry("slow", "* * * * * *"), entry("b", "* * * * * *", task=TASK_B)]
    )
    clock.advance(1)  # both due: one call, which blocks on TASK_A
    assert recorder.entered.wait(10)
    for _ in range(3):
        clock.advance(1)  # "slow" and "b" are still in flight: skipped, not queued
    assert recorder.calls == []
    gate.set()
    assert scheduler.drain()
    assert len(recorder.calls) == 1
    recorder.gates.clear()
    clock.advance(1)
    assert scheduler.drain()
    assert len(recorder.calls) == 2


def test_a_blocked_start_leaves_other_instants_on_time(
    make_scheduler: MakeScheduler, clock: FakeClock, recorder: Recorder
) -> None:
    gate = recorder.gates[TASK_A] = threading.Event()
    scheduler = make_scheduler(
        [entry("slow", "0 * * * * *", task=TASK_A), entry("other", "1-59 * * * * *", task=TASK_B)]
    )
    clock.advance_to(at(59))
    assert scheduler.drain()
    clock.advance(1)  # only "slow" is due: its start call blocks in a worker
    assert recorder.entered.wait(10)
    for second in range(1, 4):
        clock.advance(1)
        assert recorder.wait_calls(1 + second)
        assert scheduler.drain(10, ["other"])
    assert [ids for _, ids in recorder.calls] == [[TASK_B]] * 4
    assert recorder.times[1:] == [at(61), at(62), at(63)]
    gate.set()
    assert scheduler.drain()
    assert [ids for _, ids in recorder.calls][-1] == [TASK_A]


def test_the_thread_sleeps_until_due_and_never_busy_polls(
    make_scheduler: MakeScheduler, clock: FakeClock, recorder: Recorder
) -> None:
    scheduler = make_scheduler([entry("daily", "0 6 * * *")])
    clock.timeouts.clear()
    step(clock, scheduler, 20)
    assert len(clock.timeouts) <= 40
    assert all(0 < timeout <= MAX_WAIT for timeout in clock.timeouts)
    assert recorder.calls == []


class TestClockJumps:
    def test_forward_jump_fires_each_overdue_schedule_once(
        self, make_scheduler: MakeScheduler, clock: FakeClock, recorder: Recorder
    ) -> None:
        scheduler = make_scheduler([entry("s", "*/30 * * * * *")])
        clock.jump(3600)
        assert scheduler.drain()
        assert len(recorder.calls) == 1
        step(clock, scheduler, 60)
        assert recorder.times[1:] == [at(3630), at(3660)]

    def test_forward_jump_beyond_three_hours_replays_nothing(
        self, make_scheduler: MakeScheduler, clock: FakeClock, recorder: Recorder
    ) -> None:
        scheduler = make_scheduler([entry("s", "*/30 * * * * *")])
        clock.jump(5 * 3600)
        assert scheduler.drain()
        assert recorder.calls == []
        step(clock, scheduler, 30)
        assert recorder.times == [at(5 * 3600 + 30)]

    def test_backward_jump_does_not_stall_wildcard_schedules(
        self, make_scheduler: MakeScheduler, clock: FakeClock, recorder: Recorder
    ) -> None:
        scheduler = make_scheduler([entry("s", "*/30 * * * * *")])
        step(clock, scheduler, 30)
        clock.jump(-3600)
        step(clock, scheduler, 60)
        assert recorder.times == [at(30), at(-3600 + 60), at(-3600 + 90)]

    def test_small_backward_step_does_not_fire_the_same_slot_twice(
        self, make_scheduler: MakeScheduler, clock: FakeClock, recorder: Recorder
    ) -> None:
        scheduler = make_scheduler([entry("s", "*/30 * * * * *")])
        step(clock, scheduler, 30)
        clock.jump(-10)
        step(clock, scheduler, 40)
        assert recorder.times == [at(30), at(60)]

    def test_fixed_time_schedules_never_refire_after_a_backward_jump(
        self, make_scheduler: MakeScheduler, clock: FakeClock, recorder: Recorder
    ) -> None:
        scheduler = make_scheduler([entry("noon", "0 5 13 * * *", zone="UTC")])
        clock.advance_to(at(3900))
        assert scheduler.drain()
        clock.jump(-1800)
        step(clock, scheduler, 3600, every=60)
        assert recorder.times == [at(3900)]
        assert scheduler.get("noon")["nextRun"] == "2024-01-16T13:05:00.000Z"


class TestRestart:
    def test_restart_never_refires_the_slot_that_already_fired(
        self,
        make_scheduler: MakeScheduler,
        clock: FakeClock,
        recorder: Recorder,
    ) -> None:
        first = make_scheduler([entry("s", "*/30 * * * * *")])
        step(clock, first, 30)
        first.stop()
        # The host clock is set back a few seconds while Butler restarts.
        again = recorder.clock = FakeClock(at(25))
        second = make_scheduler(use_clock=again)
        step(again, second, 35)
        assert recorder.times == [at(30), at(60)]

    def test_fires_missed_while_down_are_not_replayed(
        self,
        make_scheduler: MakeScheduler,
        clock: FakeClock,
        recorder: Recorder,
    ) -> None:
        first = make_scheduler([entry("s", "*/30 * * * * *")])
        first.stop()
        later = recorder.clock = FakeClock(at(7200 + 10))
        second = make_scheduler(use_clock=later)
        assert second.get("s")["nextRun"] == "2024-01-15T14:00:30.000Z"
        step(later, second, 20)
        assert recorder.times == [at(7230)]

    def test_results_survive_a_restart(
        self, make_scheduler: MakeScheduler, clock: FakeClock, recorder: Recorder
    ) -> None:
        recorder.outcomes[TASK_A] = "notFound"
        first = make_scheduler([entry("s", "* * * * * *")])
        step(clock, first, 1)
        first.stop()
        second = make_scheduler(start=False)
        found = second.get("s")
        assert (found["lastRun"], found["lastResult"]) == ("2024-01-15T12:00:01.000Z", "notFound")


class TestApi:
    def test_startup_state_decides_what_runs_at_load(
        self, make_scheduler: MakeScheduler, clock: FakeClock, recorder: Recorder
    ) -> None:
        scheduler = make_scheduler(
            [entry("on", "* * * * * *"), entry("off", "* * * * * *", task=TASK_B, state="stop")]
        )
        step(clock, scheduler, 2)
        assert [ids for _, ids in recorder.calls] == [[TASK_A], [TASK_A]]
        off = scheduler.get("off")
        assert off["lastKnownState"] == "stopped" and off["nextRun"] is None
        assert scheduler.get("on")["nextRun"] == "2024-01-15T12:00:03.000Z"

    def test_add_assigns_id_created_and_state_and_starts_firing(
        self, make_scheduler: MakeScheduler, clock: FakeClock, recorder: Recorder
    ) -> None:
        scheduler = make_scheduler([])
        body = {k: v for k, v in entry("ignored", "*/5 * * * * *").items() if k != "id"}
        created = scheduler.add({**body, "id": "mine", "created": "x", "nextRun": "y", "t": 1})
        assert created["id"] != "mine" and len(created["id"]) == 36
        assert created["created"] == "2024-01-15T12:00:00.000Z"
        assert created["lastKnownState"] == "started"
        assert created["nextRun"] == "2024-01-15T12:00:05.000Z"
        assert created["t"] == 1
        assert list(created)[: len(body)] == list(body)
        step(clock, scheduler, 5)
        assert recorder.times == [at(5)]

    def test_stop_and_start_change_firing_and_last_known_state(
        self, make_scheduler: MakeScheduler, clock: FakeClock, recorder: Recorder
    ) -> None:
        scheduler = make_scheduler([entry("s", "* * * * * *")])
        assert scheduler.stop_schedule("s")["lastKnownState"] == "stopped"
        step(clock, scheduler, 3)
        assert recorder.calls == []
        assert scheduler.start_schedule("s")["nextRun"] == "2024-01-15T12:00:04.000Z"
        assert scheduler.start_schedule("s")["lastKnownState"] == "started"
        step(clock, scheduler, 1)
        assert recorder.times == [at(4)]

    def test_start_all_and_stop_all(
        self, make_scheduler: MakeScheduler, clock: FakeClock, recorder: Recorder
    ) -> None:
        scheduler = make_scheduler(
            [entry("a", "* * * * * *"), entry("b", "* * * * * *", task=TASK_B, state="stopped")]
        )
        assert [s["lastKnownState"] for s in scheduler.start_all()] == ["started", "started"]
        step(clock, scheduler, 1)
        assert recorder.calls == [(at(1), [TASK_A, TASK_B])]
        assert [s["nextRun"] for s in scheduler.stop_all()] == [None, None]
        step(clock, scheduler, 2)
        assert len(recorder.calls) == 1

    def test_update_replans_and_keeps_the_running_state(
        self, make_scheduler: MakeScheduler, clock: FakeClock, recorder: Recorder
    ) -> None:
        scheduler = make_scheduler([entry("s", "0 0 * * *")])
        changed = scheduler.update("s", {"cronSchedule": "*/10 * * * * *", "id": "renamed"})
        assert changed["id"] == "s" and changed["nextRun"] == "2024-01-15T12:00:10.000Z"
        step(clock, scheduler, 10)
        assert recorder.times == [at(10)]

    def test_delete_stops_firing(
        self, make_scheduler: MakeScheduler, clock: FakeClock, recorder: Recorder
    ) -> None:
        scheduler = make_scheduler([entry("s", "* * * * * *")])
        scheduler.delete("s")
        step(clock, scheduler, 2)
        assert recorder.calls == [] and scheduler.list() == []

    @pytest.mark.parametrize(
        "call",
        [
            lambda s: s.get("nope"),
            lambda s: s.delete("nope"),
            lambda s: s.start_schedule("nope"),
            lambda s: s.stop_schedule("nope"),
            lambda s: s.update("nope", {"name": "x"}),
        ],
    )
    def test_unknown_ids_are_not_found(
        self, make_scheduler: MakeScheduler, call: Callable[[Scheduler], object]
    ) -> None:
        scheduler = make_scheduler([entry("s", "* * * * *")])
        with pytest.raises(NotFound, match="nope"):
            call(scheduler)

    def test_status_text_has_one_line_per_schedule(self, make_scheduler: MakeScheduler) -> None:
        scheduler = make_scheduler(
            [entry("a", "*/45 * * * * *"), entry("b", "0 */2 * * *", state="stop")]
        )
        assert scheduler.status_text() == (
            "{\n'a': */45 * * * * * status: Running\n'b': 0 */2 * * * status: Stopped\n}"
        )

    def test_concurrent_changes_are_all_kept(
        self, make_scheduler: MakeScheduler, schedule_file: Path
    ) -> None:
        scheduler = make_scheduler([entry("keep", "* * * * *")])
        body = {k: v for k, v in entry("x", "*/7 * * * * *").items() if k != "id"}
        created: list[str] = []
        errors: list[BaseException] = []

        def worker() -> None:
            try:
                for _ in range(10):
                    new_id = scheduler.add(body)["id"]
                    created.append(new_id)
                    scheduler.stop_schedule(new_id)
                    scheduler.list()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert errors == []
        on_disk = ScheduleStore(schedule_file)
        assert sorted(on_disk.ids()) == sorted([*created, "keep"])
        assert len(created) == 80
        raw = YAML(typ="safe", pure=True).load(schedule_file.read_text(encoding="utf-8"))
        states = {e["id"]: e["lastKnownState"] for e in raw["butlerSchedule"]}
        assert states == {**dict.fromkeys(created, "stopped"), "keep": "started"}


def test_real_clock_fires_and_stops_promptly(tmp_path: Path) -> None:
    path = tmp_path / "schedule.yaml"
    write_schedules(path, [entry("s", "* * * * * *")])
    fired = threading.Event()
    calls: list[datetime] = []

    class Starter:
        def start_ids_with_runs(self, ids: object, trigger: Trigger) -> IdStarts:
            calls.append(datetime.now(UTC))
            if len(calls) >= 2:
                fired.set()
            return IdStarts({TASK_A: "started"})

    scheduler = Scheduler(ScheduleStore(path), Starter(), clock=SystemClock())
    scheduler.start()
    try:
        assert fired.wait(10)
    finally:
        scheduler.stop()
    assert ScheduleStore(path).run_state("s").last_result == "started"
