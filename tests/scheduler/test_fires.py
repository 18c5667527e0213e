"""Fire history, ``lastFire``, ``overlap: forbid`` and run-now, driven by the fake clock."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from butler.errors import NotFound, UpstreamError
from butler.runs import Run
from butler.schedules import Scheduler
from butler.schedules.run_state import FIRE_HISTORY
from butler.tasks import StartOutcomeUnknown, Trigger
from tests.scheduler.conftest import (
    START,
    TASK_A,
    TASK_B,
    TEMPLATE,
    FakeRuns,
    Recorder,
    entry,
    step,
)
from tests.scheduler.fake_clock import FakeClock

MakeScheduler = Callable[..., Scheduler]


def iso(seconds: float) -> str:
    moment = START + timedelta(seconds=seconds)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def outcomes(scheduler: Scheduler, schedule_id: str = "s") -> list[str]:
    return [fire["outcome"] for fire in scheduler.fires(schedule_id, FIRE_HISTORY)]


class TestFireHistory:
    def test_each_fire_is_recorded_newest_first_with_its_runs(
        self, make_scheduler: MakeScheduler, clock: FakeClock
    ) -> None:
        scheduler = make_scheduler([entry("s", "* * * * * *")])
        step(clock, scheduler, 3)
        fires = scheduler.fires("s", 10)
        assert fires == [
            {
                "plannedAt": iso(second),
                "firedAt": iso(second),
                "latenessMs": 0,
                "outcome": "started",
                "runIds": [f"run-{second}-0"],
                "note": None,
            }
            for second in (3, 2, 1)
        ]
        assert scheduler.fires("s", 2) == fires[:2]

    def test_lateness_is_fired_minus_planned(
        self, make_scheduler: MakeScheduler, clock: FakeClock
    ) -> None:
        scheduler = make_scheduler([entry("s", "*/30 * * * * *")])
        clock.jump(40)  # the 30 s slot is overdue: it fires once, 10 s late
        assert scheduler.drain()
        (fire,) = scheduler.fires("s", 10)
        assert (fire["plannedAt"], fire["firedAt"]) == (iso(30), iso(40))
        assert fire["latenessMs"] == 10_000

    def test_a_failed_start_is_a_failed_fire_saying_why(
        self, make_scheduler: MakeScheduler, clock: FakeClock, recorder: Recorder
    ) -> None:
        recorder.error = UpstreamError("QRS is unreachable")
        scheduler = make_scheduler([entry("s", "* * * * * *")])
        recorder.outcomes[TASK_B] = "notFound"
        step(clock, scheduler, 1)
        (fire,) = scheduler.fires("s", 1)
        assert fire["outcome"] == "failed" and fire["runIds"] == []
        assert fire["note"] == "failed: QRS is unreachable"
        recorder.error = None
        scheduler.update("s", {"qlikSenseTaskId": TASK_B})
        step(clock, scheduler, 1)
        assert scheduler.fires("s", 1)[0]["note"] == "notFound"

    def test_history_is_bounded(self, make_scheduler: MakeScheduler, clock: FakeClock) -> None:
        scheduler = make_scheduler([entry("s", "* * * * * *")])
        step(clock, scheduler, FIRE_HISTORY + 5)
        fires = scheduler.fires("s", FIRE_HISTORY)
        assert len(fires) == FIRE_HISTORY
        assert fires[0]["plannedAt"] == iso(FIRE_HISTORY + 5)
        assert fires[-1]["plannedAt"] == iso(6)

    def test_history_and_last_runs_survive_a_restart(
        self, make_scheduler: MakeScheduler, clock: FakeClock, schedule_file: Path
    ) -> None:
        first = make_scheduler([entry("s", "* * * * * *", overlap="forbid")])
        step(clock, first, 2)
        before = first.fires("s", 10)
        first.stop()
        state = json.loads(schedule_file.with_name("schedule.state.json").read_text())
        assert state["schedules"]["s"]["lastRunIds"] == ["run-2-0"]
        second = make_scheduler(start=False)
        assert second.fires("s", 10) == before
        assert second.get("s")["lastFire"] == before[0]
        assert second._jobs["s"].last_run_ids == ("run-2-0",)

    def test_a_damaged_fire_in_the_sidecar_loses_only_that_fire(
        self, make_scheduler: MakeScheduler, clock: FakeClock, schedule_file: Path
    ) -> None:
        first = make_scheduler([entry("s", "* * * * * *")])
        step(clock, first, 2)
        first.stop()
        sidecar = schedule_file.with_name("schedule.state.json")
        state = json.loads(sidecar.read_text())
        state["schedules"]["s"]["fires"][0] = ["x", 1, "started", []]
        sidecar.write_text(json.dumps(state))
        assert [f["plannedAt"] for f in make_scheduler(start=False).fires("s", 10)] == [iso(2)]

    def test_unknown_schedules_have_no_history(self, make_scheduler: MakeScheduler) -> None:
        scheduler = make_scheduler([entry("s", "* * * * * *")])
        assert scheduler.fires("s", 10) == []
        with pytest.raises(NotFound, match="nope"):
            scheduler.fires("nope", 10)


class TestLastFire:
    def test_every_schedule_answer_has_last_fire_and_next_run(
        self, make_scheduler: MakeScheduler, clock: FakeClock
    ) -> None:
        scheduler = make_scheduler(
            [entry("s", "* * * * * *"), entry("daily", "0 6 * * *", zone="America/New_York")]
        )
        assert scheduler.get("s")["lastFire"] is None
        step(clock, scheduler, 1)
        newest = scheduler.fires("s", 1)[0]
        assert scheduler.get("s")["lastFire"] == newest
        listed = {item["id"]: item for item in scheduler.list()}
        assert listed["s"]["lastFire"] == newest and listed["daily"]["lastFire"] is None
        assert listed["daily"]["nextRun"] == "2024-01-16T11:00:00.000Z"
        assert scheduler.stop_schedule("s")["lastFire"] == newest
        assert scheduler.start_all()[0]["lastFire"] == newest
        assert scheduler.update("s", {"name": "x", "lastFire": None})["lastFire"] == newest

    def test_the_file_never_gets_run_time_fields(
        self, make_scheduler: MakeScheduler, clock: FakeClock, schedule_file: Path
    ) -> None:
        schedule_file.parent.mkdir(parents=True)
        shutil.copyfile(TEMPLATE, schedule_file)
        original = schedule_file.read_bytes()
        scheduler = make_scheduler()
        step(clock, scheduler, 30)
        first = scheduler.get("task-1")
        assert first["lastFire"]["outcome"] == "started"
        scheduler.update("task-1", {"name": first["name"], "lastFire": first["lastFire"]})
        assert schedule_file.read_bytes() == original


class TestOverlap:
    @pytest.fixture
    def runs(self, recorder: Recorder) -> FakeRuns:
        recorder.runs = FakeRuns()
        return recorder.runs

    def test_forbid_skips_while_the_previous_run_is_not_final(
        self, make_scheduler: MakeScheduler, clock: FakeClock, recorder: Recorder, runs: FakeRuns
    ) -> None:
        scheduler = make_scheduler([entry("s", "* * * * * *", overlap="forbid")], runs=runs)
        step(clock, scheduler, 3)
        assert len(recorder.calls) == 1
        assert outcomes(scheduler) == ["skipped:overlap", "skipped:overlap", "started"]
        skipped = scheduler.fires("s", 1)[0]
        assert skipped["note"] == "run run-1-0 of the previous fire is Triggered"
        assert skipped["runIds"] == [] and skipped["plannedAt"] == iso(3)
        runs.status["run-1-0"] = "Started"
        step(clock, scheduler, 1)
        assert scheduler.fires("s", 1)[0]["note"] == "run run-1-0 of the previous fire is Started"
        runs.finish("FinishedFail")
        step(clock, scheduler, 1)
        assert len(recorder.calls) == 2
        assert scheduler.fires("s", 1)[0] == {
            "plannedAt": iso(5),
            "firedAt": iso(5),
            "latenessMs": 0,
            "outcome": "started",
            "runIds": ["run-2-0"],
            "note": None,
        }
        assert scheduler.get("s")["lastResult"] == "started"

    def test_a_run_qrs_forgot_lets_the_fire_go_ahead_saying_so(
        self, make_scheduler: MakeScheduler, clock: FakeClock, recorder: Recorder, runs: FakeRuns
    ) -> None:
        scheduler = make_scheduler([entry("s", "* * * * * *", overlap="forbid")], runs=runs)
        step(clock, scheduler, 1)
        runs.finish("Unknown")
        step(clock, scheduler, 1)
        fire = scheduler.fires("s", 1)[0]
        assert fire["outcome"] == "started" and fire["runIds"] == ["run-2-0"]
        assert fire["note"] == (
            "run run-1-0 of the previous fire is Unknown (QRS no longer knows its execution); "
            "fired anyway"
        )

    def test_qrs_unreachable_lets_the_fire_go_ahead_saying_so(
        self, make_scheduler: MakeScheduler, clock: FakeClock, recorder: Recorder, runs: FakeRuns
    ) -> None:
        scheduler = make_scheduler([entry("s", "* * * * * *", overlap="forbid")], runs=runs)
        step(clock, scheduler, 1)
        runs.tracking = False
        step(clock, scheduler, 1)
        assert len(recorder.calls) == 2
        assert scheduler.fires("s", 1)[0]["note"] == (
            "QRS unreachable: run run-1-0 of the previous fire (Triggered) may still be going; "
            "fired anyway"
        )

    def test_a_start_qrs_did_not_confirm_keeps_its_runs_and_holds_the_next_fire(
        self, make_scheduler: MakeScheduler, clock: FakeClock, recorder: Recorder, runs: FakeRuns
    ) -> None:
        lost = StartOutcomeUnknown("QRS did not answer the start of 1 task(s) in time")
        lost.runs = [
            Run("lost-1", "task", TASK_A, None, None, "schedule", "s", "r", "Triggered", 0.0)
        ]
        runs.status["lost-1"] = "Triggered"
        recorder.error = lost
        scheduler = make_scheduler([entry("s", "* * * * * *", overlap="forbid")], runs=runs)
        step(clock, scheduler, 1)
        recorder.error = None
        step(clock, scheduler, 1)
        fires = scheduler.fires("s", 10)
        assert [f["outcome"] for f in fires] == ["skipped:overlap", "failed"]
        assert fires[1]["runIds"] == ["lost-1"] and "in time" in fires[1]["note"]
        assert fires[0]["note"] == "run lost-1 of the previous fire is Triggered"

    def test_allow_never_asks_the_run_service(
        self, make_scheduler: MakeScheduler, clock: FakeClock, recorder: Recorder, runs: FakeRuns
    ) -> None:
        scheduler = make_scheduler(
            [entry("a", "* * * * * *"), entry("b", "* * * * * *", task=TASK_B, overlap="allow")],
            runs=runs,
        )
        step(clock, scheduler, 3)
        assert runs.asked == [] and len(recorder.calls) == 3

    def test_one_status_call_per_fire_for_all_forbid_schedules(
        self, make_scheduler: MakeScheduler, clock: FakeClock, recorder: Recorder, runs: FakeRuns
    ) -> None:
        scheduler = make_scheduler(
            [entry(f"f{i}", "* * * * * *", overlap="forbid") for i in range(5)]
            + [entry("other", "* * * * * *", task=TASK_B)],
            runs=runs,
        )
        step(clock, scheduler, 2)
        assert runs.asked == [{"run-1-0"}]
        assert [ids for _, ids in recorder.calls] == [[TASK_A, TASK_B], [TASK_B]]
        assert outcomes(scheduler, "f3") == ["skipped:overlap", "started"]
        assert outcomes(scheduler, "other") == ["started", "started"]

    def test_a_start_call_still_in_progress_is_an_overlap_too(
        self, make_scheduler: MakeScheduler, clock: FakeClock, recorder: Recorder
    ) -> None:
        gate = recorder.gates[TASK_A] = threading.Event()
        scheduler = make_scheduler([entry("s", "* * * * * *")])
        clock.advance(1)
        assert recorder.entered.wait(10)
        clock.advance(1)
        gate.set()
        assert scheduler.drain()
        fires = scheduler.fires("s", 10)
        assert [f["outcome"] for f in fires] == ["started", "skipped:overlap"]
        assert fires[1]["note"] == "the previous fire's start call is still in progress"
        assert fires[1]["plannedAt"] == iso(2)

    def test_forbid_can_be_set_and_lifted_by_update(
        self, make_scheduler: MakeScheduler, clock: FakeClock, recorder: Recorder, runs: FakeRuns
    ) -> None:
        scheduler = make_scheduler([entry("s", "* * * * * *")], runs=runs)
        step(clock, scheduler, 1)
        scheduler.update("s", {"overlap": "forbid"})
        step(clock, scheduler, 1)
        scheduler.update("s", {"overlap": "allow"})
        step(clock, scheduler, 1)
        assert outcomes(scheduler) == ["started", "skipped:overlap", "started"]


class TestRunNow:
    def test_run_now_fires_through_the_timed_path(
        self, make_scheduler: MakeScheduler, clock: FakeClock, recorder: Recorder
    ) -> None:
        scheduler = make_scheduler([entry("s", "0 6 * * *", state="stopped")])
        fire = scheduler.run_now("s", "manual:s")
        assert fire == {
            "plannedAt": iso(0),
            "firedAt": iso(0),
            "latenessMs": 0,
            "outcome": "started",
            "runIds": ["run-1-0"],
            "note": None,
        }
        assert recorder.triggers == [Trigger.schedule("'Schedule s' (s)", {TASK_A: "manual:s"})]
        assert recorder.triggers[0].caller_for(TASK_A) == "manual:s"
        assert scheduler.fires("s", 10) == [fire]
        found = scheduler.get("s")
        assert found["lastFire"] == fire and found["lastResult"] == "started"
        assert found["lastKnownState"] == "stopped" and found["nextRun"] is None

    def test_run_now_respects_overlap(
        self, make_scheduler: MakeScheduler, clock: FakeClock, recorder: Recorder
    ) -> None:
        runs = recorder.runs = FakeRuns()
        scheduler = make_scheduler([entry("s", "* * * * * *", overlap="forbid")], runs=runs)
        step(clock, scheduler, 1)
        skipped = scheduler.run_now("s", "manual:s")
        assert skipped["outcome"] == "skipped:overlap" and len(recorder.calls) == 1
        runs.finish()
        assert scheduler.run_now("s", "manual:s")["outcome"] == "started"
        step(clock, scheduler, 1)  # the manual fire's run is the one a timed fire waits for
        assert outcomes(scheduler) == ["skipped:overlap", "started", "skipped:overlap", "started"]

    def test_run_now_of_a_failing_start_is_a_failed_fire(
        self, make_scheduler: MakeScheduler, recorder: Recorder
    ) -> None:
        recorder.error = UpstreamError("QRS is unreachable")
        scheduler = make_scheduler([entry("s", "0 6 * * *")])
        fire = scheduler.run_now("s", "manual:s")
        assert (fire["outcome"], fire["note"]) == ("failed", "failed: QRS is unreachable")

    def test_run_now_of_an_unknown_schedule(self, make_scheduler: MakeScheduler) -> None:
        scheduler = make_scheduler([])
        with pytest.raises(NotFound, match="nope"):
            scheduler.run_now("nope", "manual:nope")
