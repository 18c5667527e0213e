"""Previews: the next fires of a saved schedule and of an unsaved body, over real sockets.

Expected times are written out by hand (the zones' 2024 rules), like the DST matrix's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from butler.schedules import Scheduler, ScheduleStore
from butler.schedules.calendars import Calendar, Calendars
from butler.schedules.preview import preview
from tests.scheduler.conftest import START, TASK_A, Recorder, entry, write_schedules
from tests.scheduler.fake_clock import FakeClock
from tests.scheduler.test_http import NEW, Api, assert_error, serve

STOCKHOLM_SPRING = "2024-03-31T02:00:00+03:00"
"""Midnight of the spring-forward day in Stockholm, written in another offset."""


@pytest.fixture
def api(
    tmp_path: Path, make_config: Callable[..., Any], live_server: Callable[..., str]
) -> Iterator[Api]:
    path = tmp_path / "schedule.yaml"
    write_schedules(
        path,
        [
            entry("nightly", "30 2 * * *"),
            entry("nightly-skip", "30 2 * * *", dst="skip"),
            entry("jittery", "0 6 * * *", zone="UTC", jitterSeconds=30),
            entry("stopped", "*/30 * * * *", zone="America/New_York", state="stopped"),
        ],
    )
    clock = FakeClock(START)
    scheduler = Scheduler(ScheduleStore(path), Recorder(clock), clock=clock)
    url = serve(make_config, live_server, scheduler)
    with requests.Session() as session:
        yield Api(url, scheduler, clock, Recorder(clock), path, session)


def times(response: requests.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["time"] for item in response.json()]


def test_a_saved_schedule_lists_its_next_fires_in_its_own_zone(api: Api) -> None:
    answer = api.call("GET", "/v4/schedules/nightly/preview")
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith(
        "application/json"
    )
    items = answer.json()
    assert len(items) == 10
    assert items[0] == {
        "time": "2024-01-16T02:30:00+01:00",
        "dstAdjacent": False,
        "skippedBy": None,
    }
    assert items[-1]["time"] == "2024-01-25T02:30:00+01:00"

    spring = api.call(
        "GET", "/v4/schedules/nightly/preview", params={"count": 2, "from": STOCKHOLM_SPRING}
    )
    assert spring.json() == [
        {"time": "2024-03-31T03:00:00+02:00", "dstAdjacent": True, "skippedBy": None},
        {"time": "2024-04-01T02:30:00+02:00", "dstAdjacent": False, "skippedBy": None},
    ]
    skip = api.call(
        "GET", "/v4/schedules/nightly-skip/preview", params={"count": 1, "from": STOCKHOLM_SPRING}
    )
    assert times(skip) == ["2024-04-01T02:30:00+02:00"]
    stopped = api.call(
        "GET", "/v4/schedules/stopped/preview", params={"count": 3, "from": "2024-11-03T05:15:00Z"}
    )
    assert times(stopped) == [
        "2024-11-03T01:30:00-04:00",
        "2024-11-03T01:00:00-05:00",
        "2024-11-03T01:30:00-05:00",
    ]
    jitter = api.call("GET", "/v4/schedules/jittery/preview", params={"count": 1})
    assert jitter.json() == [
        {
            "time": "2024-01-16T06:00:00+00:00",
            "dstAdjacent": False,
            "skippedBy": None,
            "maxJitterSeconds": 30,
        }
    ]


def test_count_from_and_include_skipped_edges(api: Api) -> None:
    path = "/v4/schedules/nightly/preview"
    assert times(api.call("GET", path, params={"from": "2024-01-16T01:30:00Z", "count": 1})) == [
        "2024-01-17T02:30:00+01:00"
    ], "strictly after from: a fire exactly at from is not listed"
    assert times(
        api.call("GET", path, params={"from": "2024-01-16T01:29:59.999Z", "count": "1"})
    ) == ["2024-01-16T02:30:00+01:00"]
    assert times(api.call("GET", path, params={"from": "2024-01-16T02:30:00", "count": 1})) == [
        "2024-01-17T02:30:00+01:00"
    ], "no offset means UTC, as for every other time parameter"
    most = api.call("GET", path, params={"count": 1000, "includeSkipped": "true"}).json()
    assert len(most) == 1000 and {item["skippedBy"] for item in most} == {None}
    assert most[-1]["time"] == "2026-10-11T02:30:00+02:00"
    assert len(times(api.call("GET", path, params={"includeSkipped": "false"}))) == 10
    last = api.call("GET", path, params={"from": "9999-12-30T00:00:00Z"})
    assert len(times(last)) < 10, "the end of representable time ends the list, not the call"
    for params, field in [
        ({"count": 0}, "count"),
        ({"count": 1001}, "count"),
        ({"count": -1}, "count"),
        ({"count": "ten"}, "count"),
        ({"count": "1.5"}, "count"),
        ({"from": "yesterday"}, "from"),
        ({"from": ""}, "from"),
        ({"includeSkipped": "maybe"}, "includeSkipped"),
    ]:
        assert_error(api.call("GET", path, params=params), 400, f"querystring/{field}")
        body = {**NEW, "cronSchedule": "30 2 * * *"}
        assert_error(
            api.call("POST", "/v4/schedules/preview", params=params, json=body), 400, field
        )
    assert_error(api.call("GET", "/v4/schedules/nope/preview"), 404, "Schedule ID nope not found")


def test_an_unsaved_body_is_previewed_and_checked_like_a_create(api: Api) -> None:
    before = api.file.read_bytes()
    body = {**NEW, "cronSchedule": "15 2 * * *", "timezone": "Australia/Lord_Howe", "dst": "both"}
    autumn = api.call(
        "POST",
        "/v4/schedules/preview",
        params={"count": 3, "from": "2024-04-06T12:00:00Z"},
        json=body,
    )
    assert autumn.json() == [
        {"time": "2024-04-07T02:15:00+10:30", "dstAdjacent": True, "skippedBy": None},
        {"time": "2024-04-08T02:15:00+10:30", "dstAdjacent": False, "skippedBy": None},
        {"time": "2024-04-09T02:15:00+10:30", "dstAdjacent": False, "skippedBy": None},
    ]
    repeat = {**body, "cronSchedule": "45 1 * * *"}
    assert times(
        api.call(
            "POST",
            "/v4/schedules/preview",
            params={"count": 2, "from": "2024-04-06T12:00:00Z"},
            json=repeat,
        )
    ) == ["2024-04-07T01:45:00+11:00", "2024-04-07T01:45:00+10:30"]
    default = api.call("POST", "/v4/schedules/preview", json={**NEW, "cronSchedule": "0 12 * * *"})
    assert times(default)[0] == "2024-01-16T12:00:00+01:00"
    for change, message in [
        (
            {"dst": "summer"},
            "body/dst must be equal to one of the allowed values: vixie, skip, both",
        ),
        ({"cronSchedule": "61 * * * *"}, "body/cronSchedule is not a valid cron expression"),
        ({"timezone": "Europe/Atlantis"}, "body/timezone is not a known IANA time zone"),
    ]:
        create = api.call("POST", "/v4/schedules", json={**NEW, **change})
        assert_error(create, 400, message)
        refused = api.call("POST", "/v4/schedules/preview", json={**NEW, **change})
        assert_error(refused, 400, message)
        assert refused.json() == create.json()
    missing = {k: v for k, v in NEW.items() if k != "name"}
    assert_error(
        api.call("POST", "/v4/schedules/preview", json=missing), 400, "required property 'name'"
    )
    assert_error(api.call("POST", "/v4/schedules/preview", json=[NEW]), 400, "body")
    assert api.file.read_bytes() == before
    assert [s["id"] for s in api.call("GET", "/v4/schedules").json()] == [
        "nightly",
        "nightly-skip",
        "jittery",
        "stopped",
    ]


def test_preview_is_never_a_schedule_id(api: Api) -> None:
    before = api.file.read_bytes()
    assert_error(api.call("DELETE", "/v4/schedules/preview"), 404, "Route DELETE:")
    assert_error(api.call("PUT", "/v4/schedules/preview", json={"name": "n"}), 404, "Route PUT:")
    allow = api.call("OPTIONS", "/v4/schedules/preview").headers["Allow"]
    assert {m.strip() for m in allow.split(",")} == {"POST", "OPTIONS"}
    assert api.call("POST", "/v4/schedules/nightly", json=NEW).status_code == 404
    assert api.file.read_bytes() == before


def test_dst_is_stored_through_the_api_and_changes_the_plan(api: Api) -> None:
    created = api.call("POST", "/v4/schedules", json={**NEW, "dst": "skip"})
    assert created.status_code == 201 and created.json()["dst"] == "skip"
    new_id = created.json()["id"]
    assert "    dst: skip\n" in api.file.read_text(encoding="utf-8")
    changed = api.call("PUT", f"/v4/schedules/{new_id}", json={"dst": "both"})
    assert changed.status_code == 200 and changed.json()["dst"] == "both"
    assert_error(api.call("PUT", f"/v4/schedules/{new_id}", json={"dst": None}), 400, "body/dst")


def test_the_calendar_hook_lists_or_drops_excluded_days() -> None:
    def weekends(_entry: Mapping[str, Any], day: date) -> str | None:
        return "weekends" if day.isoweekday() >= 6 else None

    schedule = entry("daily", "0 7 * * *")
    friday = datetime(2024, 1, 19, 12, tzinfo=UTC)
    kept = preview(schedule, friday, count=2, excluded_by=weekends)
    assert [f.time.isoformat() for f in kept] == [
        "2024-01-22T07:00:00+01:00",
        "2024-01-23T07:00:00+01:00",
    ]
    listed = preview(schedule, friday, count=3, include_skipped=True, excluded_by=weekends)
    assert [(f.time.isoformat(), f.skipped_by) for f in listed] == [
        ("2024-01-20T07:00:00+01:00", "weekends"),
        ("2024-01-21T07:00:00+01:00", "weekends"),
        ("2024-01-22T07:00:00+01:00", None),
    ]
    assert preview(schedule, friday, count=5, excluded_by=lambda _e, _d: "always") == []


def test_a_scheduler_hands_its_calendar_hook_to_previews(tmp_path: Path) -> None:
    clock = FakeClock(START)
    every_day = Calendars([Calendar("all", weekdays=frozenset(range(1, 8)))])
    store = ScheduleStore(tmp_path / "s.yaml", calendars=every_day)
    scheduler = Scheduler(store, Recorder(clock), clock=clock)
    schedule = {**entry("x", "0 7 * * *", task=TASK_A), "excludeCalendars": ["all"]}
    fires = scheduler.preview(schedule, None, 2, True)
    assert [(f.time.isoformat(), f.skipped_by) for f in fires] == [
        ("2024-01-16T07:00:00+01:00", "all"),
        ("2024-01-17T07:00:00+01:00", "all"),
    ]


@pytest.mark.parametrize(
    ("zone", "cron", "after", "expected"),
    [
        # Stockholm's spring day: every fire that day, not only those near 02:00-03:00.
        (
            "Europe/Stockholm",
            "0 12 * * *",
            "2024-03-30T00:00:00Z",
            [("2024-03-30T12:00:00+01:00", False), ("2024-03-31T12:00:00+02:00", True),
             ("2024-04-01T12:00:00+02:00", False)],
        ),
        (
            "Australia/Lord_Howe",
            "0 23 * * *",
            "2024-10-05T00:00:00Z",
            [("2024-10-05T23:00:00+10:30", False), ("2024-10-06T23:00:00+11:00", True),
             ("2024-10-07T23:00:00+11:00", False)],
        ),
        ("UTC", "0 0 * * *", "2024-03-30T12:00:00Z", [("2024-03-31T00:00:00+00:00", False)]),
    ],
)  # fmt: skip
def test_dst_adjacent_marks_every_fire_on_a_day_whose_offset_changes(
    zone: str, cron: str, after: str, expected: list[tuple[str, bool]]
) -> None:
    fires = preview(entry("x", cron, zone=zone), datetime.fromisoformat(after), len(expected))
    assert [(f.time.isoformat(), f.dst_adjacent) for f in fires] == expected
