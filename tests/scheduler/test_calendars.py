"""Calendars: each part, iCalendar files, holidays, config errors, planning and the route."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from butler.app import create_app
from butler.config import ConfigError
from butler.schedules import ScheduleFileError, Scheduler, ScheduleStore
from butler.schedules.calendars import MAX_SEARCH_DAYS, Calendars, load_calendars
from butler.schedules.yaml_codec import emit_fast
from butler.services import Services
from tests.conftest import QLIK_PLACEHOLDERS
from tests.scheduler.conftest import START, TASK_A, TEMPLATE, Recorder, entry, write_schedules
from tests.scheduler.fake_clock import FakeClock

ICS_HEADER = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Butler tests//EN\r\n"
ICS_FOOTER = "END:VCALENDAR\r\n"


def ics(tmp_path: Path, *events: str, name: str = "closed.ics") -> Path:
    """An iCalendar file with the given VEVENT bodies (each a list of property lines)."""
    body = "".join(
        f"BEGIN:VEVENT\r\nUID:{i}@butler\r\nDTSTAMP:20260101T000000Z\r\n{event}END:VEVENT\r\n"
        for i, event in enumerate(events)
    )
    path = tmp_path / name
    path.write_text(ICS_HEADER + body + ICS_FOOTER, encoding="utf-8", newline="")
    return path


def calendars(tmp_path: Path, raw: Any) -> Calendars:
    return load_calendars(raw, lambda value: tmp_path / value)


def one(tmp_path: Path, spec: dict[str, Any]) -> Any:
    found = calendars(tmp_path, {"c": spec}).get("c")
    assert found is not None
    return found


# the parts


def test_dates_ranges_and_weekdays(tmp_path: Path) -> None:
    cal = one(
        tmp_path,
        {
            "dates": ["2026-06-19", date(2026, 6, 22)],
            "ranges": [["2026-12-30", "2027-01-02"]],
            "weekdays": [7],
        },
    )
    assert cal.holds(date(2026, 6, 19)) and cal.holds(date(2026, 6, 22))
    assert not cal.holds(date(2026, 6, 18))
    for day in (date(2026, 12, 30), date(2026, 12, 31), date(2027, 1, 1), date(2027, 1, 2)):
        assert cal.holds(day), day
    assert not cal.holds(date(2026, 12, 29)) and not cal.holds(date(2027, 1, 4))
    assert cal.holds(date(2026, 6, 21))  # a Sunday
    assert cal.next_dates(date(2026, 12, 28), 4) == [
        date(2026, 12, 30),
        date(2026, 12, 31),
        date(2027, 1, 1),
        date(2027, 1, 2),
    ]


def test_an_empty_calendar_has_no_next_dates_and_the_search_is_bounded(tmp_path: Path) -> None:
    cal = one(tmp_path, {"dates": ["2020-01-01"]})
    assert cal.next_dates(date(2026, 1, 1), 10) == []
    far = date(2026, 1, 1).toordinal() + MAX_SEARCH_DAYS + 5
    assert (
        one(tmp_path, {"dates": [date.fromordinal(far).isoformat()]}).next_dates(
            date(2026, 1, 1), 1
        )
        == []
    )


def test_ics_all_day_multi_day_timed_and_cancelled_events(tmp_path: Path) -> None:
    path = ics(
        tmp_path,
        "DTSTART;VALUE=DATE:20261224\r\nDTEND;VALUE=DATE:20261225\r\nSUMMARY:Christmas Eve\r\n",
        "DTSTART;VALUE=DATE:20260720\r\nDTEND;VALUE=DATE:20260724\r\nSUMMARY:Summer close\r\n",
        "DTSTART:20260301T220000Z\r\nDTEND:20260302T010000Z\r\nSUMMARY:Maintenance\r\n",
        "DTSTART;VALUE=DATE:20260401\r\nSTATUS:CANCELLED\r\nSUMMARY:Called off\r\n",
    )
    cal = one(tmp_path, {"icsFile": path.name})
    assert cal.holds(date(2026, 12, 24)) and not cal.holds(date(2026, 12, 25))
    assert [d.day for d in cal.next_dates(date(2026, 7, 1), 4)] == [20, 21, 22, 23]
    assert not cal.holds(date(2026, 7, 24))  # DTEND of an all-day event is exclusive
    assert cal.holds(date(2026, 3, 1)) and cal.holds(date(2026, 3, 2))
    assert not cal.holds(date(2026, 4, 1))


def test_ics_yearly_and_weekly_recurring_all_day_events(tmp_path: Path) -> None:
    path = ics(
        tmp_path,
        "DTSTART;VALUE=DATE:20200606\r\nRRULE:FREQ=YEARLY\r\nSUMMARY:National day\r\n",
        "DTSTART;VALUE=DATE:20260105\r\nRRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=3\r\n"
        "EXDATE;VALUE=DATE:20260112\r\nSUMMARY:Closed Mondays\r\n",
    )
    cal = one(tmp_path, {"icsFile": path.name})
    assert all(cal.holds(date(year, 6, 6)) for year in (2020, 2026, 2031))
    assert cal.holds(date(2026, 1, 5)) and cal.holds(date(2026, 1, 19))
    assert not cal.holds(date(2026, 1, 12)) and not cal.holds(date(2026, 1, 26))


def test_swedish_public_holidays_and_the_de_facto_category(tmp_path: Path) -> None:
    public = one(tmp_path, {"holidays": {"country": "SE", "subdiv": None}})
    assert public.holds(date(2026, 12, 25)) and public.holds(date(2026, 12, 26))
    assert not public.holds(date(2026, 12, 24)) and not public.holds(date(2026, 12, 23))
    with_eves = one(tmp_path, {"holidays": {"country": "SE", "categories": ["public", "de_facto"]}})
    assert with_eves.next_dates(date(2026, 12, 23), 3) == [
        date(2026, 12, 24),
        date(2026, 12, 25),
        date(2026, 12, 26),
    ]


def test_a_subdivision_adds_its_own_holidays(tmp_path: Path) -> None:
    germany = one(tmp_path, {"holidays": {"country": "DE"}})
    bavaria = one(tmp_path, {"holidays": {"country": "DE", "subdiv": "BY"}})
    assert bavaria.holds(date(2026, 1, 6)) and not germany.holds(date(2026, 1, 6))
    assert bavaria.holds(date(2026, 12, 25)) and germany.holds(date(2026, 12, 25))


# config errors name the key


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"dates": ["2026-02-30"]}, "Butler.scheduler.calendars.c.dates.0: must be an ISO date"),
        ({"dates": "2026-01-01"}, "Butler.scheduler.calendars.c.dates: must be a list"),
        ({"ranges": [["2026-01-05", "2026-01-01"]]}, "calendars.c.ranges.0: ends (2026-01-01)"),
        ({"ranges": [["2026-01-05"]]}, "calendars.c.ranges.0: must be a [from, to] pair"),
        ({"weekdays": [0]}, "calendars.c.weekdays.0: must be an ISO weekday"),
        ({"holidays": {"country": "XX"}}, "calendars.c.holidays.country: not a country"),
        ({"holidays": {"country": "SE", "subdiv": "ZZ"}}, "calendars.c.holidays.subdiv: SE has"),
        ({"holidays": {}}, "calendars.c.holidays.country: is required"),
        ({"holidays": {"country": "SE", "categories": ["nope"]}}, "holidays.categories:"),
        ({"icsFile": "missing.ics"}, "calendars.c.icsFile: cannot read"),
        ({"weekday": [1]}, "calendars.c.weekday: unknown calendar part"),
        ("weekends", "Butler.scheduler.calendars.c: must be a mapping"),
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, spec: Any, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        calendars(tmp_path, {"c": spec})
    assert message in str(info.value)


def test_a_file_that_is_not_icalendar_stops_start_up(tmp_path: Path) -> None:
    (tmp_path / "bad.ics").write_text("this is no calendar", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"calendars\.c\.icsFile: .*bad\.ics is not a usable"):
        calendars(tmp_path, {"c": {"icsFile": "bad.ics"}})


def test_the_config_section_must_be_a_mapping(make_config: Callable[..., Any]) -> None:
    with pytest.raises(ConfigError, match=r"Butler\.scheduler\.calendars: must be a mapping"):
        make_config({"scheduler": {"calendars": ["holidays"]}})


# planning with the fake clock


def scheduler_with(
    tmp_path: Path, entries: list[dict[str, Any]], raw: Any, clock: FakeClock | None = None
) -> tuple[Scheduler, FakeClock, Recorder]:
    path = tmp_path / "schedule.yaml"
    write_schedules(path, entries)
    the_clock = clock or FakeClock(START)
    recorder = Recorder(the_clock)
    store = ScheduleStore(path, calendars=calendars(tmp_path, raw))
    return Scheduler(store, recorder, clock=the_clock), the_clock, recorder


@pytest.fixture
def stop_after() -> Iterator[list[Scheduler]]:
    made: list[Scheduler] = []
    yield made
    for scheduler in made:
        scheduler.stop()


def test_an_excluded_day_in_stockholm_fires_the_next_day(
    tmp_path: Path, stop_after: list[Scheduler]
) -> None:
    # START is Monday 2024-01-15 12:00 UTC; 06:00 in Stockholm is 05:00 UTC in winter.
    scheduler, clock, recorder = scheduler_with(
        tmp_path,
        [entry("s", "0 6 * * *", excludeCalendars=["closed"])],
        {"closed": {"dates": ["2024-01-16"]}},
    )
    stop_after.append(scheduler)
    assert scheduler.get("s")["nextRun"] == "2024-01-17T05:00:00.000Z"
    scheduler.start()
    clock.settle()
    clock.advance_to(datetime(2024, 1, 17, 5, 0, 0, tzinfo=UTC))
    assert recorder.wait_calls(1)
    assert recorder.times == [datetime(2024, 1, 17, 5, 0, 0, tzinfo=UTC)]
    assert scheduler.get("s")["nextRun"] == "2024-01-18T05:00:00.000Z"


def test_the_day_is_the_schedules_own_zone_day(tmp_path: Path) -> None:
    # 00:30 in Stockholm on the 17th is 23:30 UTC on the 16th: excluding the 17th skips it.
    scheduler, _, _ = scheduler_with(
        tmp_path,
        [
            entry("stockholm", "30 0 * * *", excludeCalendars=["c"]),
            entry("utc", "30 23 * * *", zone="UTC", excludeCalendars=["c"]),
        ],
        {"c": {"dates": ["2024-01-17"]}},
        FakeClock(datetime(2024, 1, 16, 12, 0, tzinfo=UTC)),
    )
    assert scheduler.get("stockholm")["nextRun"] == "2024-01-17T23:30:00.000Z"
    assert scheduler.get("utc")["nextRun"] == "2024-01-16T23:30:00.000Z"


def test_only_calendars_fire_only_on_their_days_and_exclude_wins(tmp_path: Path) -> None:
    scheduler, _, _ = scheduler_with(
        tmp_path,
        [
            entry("fridays", "0 6 * * *", onlyCalendars=["fridays"]),
            entry("both", "0 6 * * *", onlyCalendars=["fridays"], excludeCalendars=["19th"]),
        ],
        {"fridays": {"weekdays": [5]}, "19th": {"dates": ["2024-01-19"]}},
    )
    assert scheduler.get("fridays")["nextRun"] == "2024-01-19T05:00:00.000Z"
    assert scheduler.get("both")["nextRun"] == "2024-01-26T05:00:00.000Z"
    rule = scheduler.calendars
    both = scheduler.get("both")
    assert rule.excluded_by(both, date(2024, 1, 19)) == "19th"
    assert rule.excluded_by(both, date(2024, 1, 18)) == "fridays"
    assert rule.excluded_by(both, date(2024, 1, 26)) is None
    assert rule.excluded_by(entry("plain", "0 6 * * *"), date(2024, 1, 19)) is None


def test_no_allowed_day_within_the_bound_means_no_next_fire(tmp_path: Path) -> None:
    scheduler, _, _ = scheduler_with(
        tmp_path,
        [
            entry("never", "0 6 * * *", onlyCalendars=["past"]),
            entry("mismatch", "0 6 * * 1", onlyCalendars=["sundays"]),
        ],
        {"past": {"dates": ["2020-01-01"]}, "sundays": {"weekdays": [7]}},
    )
    assert scheduler.get("never")["nextRun"] is None
    assert scheduler.get("mismatch")["nextRun"] is None


def test_an_unknown_calendar_in_the_file_stops_start_up(tmp_path: Path) -> None:
    path = tmp_path / "schedule.yaml"
    write_schedules(path, [entry("a", "0 6 * * *"), entry("b", "0 6 * * *", onlyCalendars=["x"])])
    original = path.read_bytes()
    with pytest.raises(ScheduleFileError) as info:
        ScheduleStore(path, calendars=calendars(tmp_path, {"holidays": {"weekdays": [6]}}))
    text = str(info.value)
    assert "entry 2 (id 'b'): field 'onlyCalendars' names an unknown calendar: 'x'" in text
    assert path.read_bytes() == original


def test_a_file_without_calendar_fields_round_trips_byte_for_byte(tmp_path: Path) -> None:
    path = tmp_path / "schedule.yaml"
    entries = [
        {**entry(str(i), "0 6 * * *"), "created": "2026-01-01T00:00:00.000Z"} for i in range(3)
    ]
    for item in entries:
        item["lastKnownState"] = "started"
    path.write_text(emit_fast(entries), encoding="utf-8")
    original = path.read_bytes()
    store = ScheduleStore(path, calendars=calendars(tmp_path, {"c": {"weekdays": [6, 7]}}))
    store.set_known_state(store.ids(), "started")
    assert path.read_bytes() == original


# the REST API


@pytest.fixture
def api_url(
    tmp_path: Path, make_config: Callable[..., Any], live_server: Callable[..., str]
) -> Iterator[tuple[str, Scheduler]]:
    path = tmp_path / "schedule.yaml"
    shutil.copyfile(TEMPLATE, path)
    holiday_file = ics(
        tmp_path, "DTSTART;VALUE=DATE:20240201\r\nDTEND;VALUE=DATE:20240203\r\n", name="h.ics"
    )
    raw = {"closed": {"dates": ["2024-01-16"]}, "winter": {"icsFile": holiday_file.name}}
    clock = FakeClock(START)
    scheduler = Scheduler(
        ScheduleStore(path, calendars=calendars(tmp_path, raw)), Recorder(clock), clock=clock
    )
    scheduler.start()
    clock.settle()
    config = make_config(
        {
            **QLIK_PLACEHOLDERS,
            "scheduler": {"enable": True, "configfile": "schedule.yaml", "calendars": raw},
            "restServerEndpointsEnable": {
                "scheduler": {
                    "getSchedule": True,
                    "createNewSchedule": True,
                    "updateSchedule": True,
                }
            },
        }
    )
    yield live_server(create_app(config, Services(config=config, scheduler=scheduler))), scheduler
    scheduler.stop()


NEW = {
    "name": "Morning",
    "cronSchedule": "0 6 * * *",
    "timezone": "Europe/Stockholm",
    "qlikSenseTaskId": TASK_A,
    "startupState": "started",
}


def test_the_calendars_route_lists_next_dates(api_url: tuple[str, Scheduler]) -> None:
    url, _ = api_url
    response = requests.get(f"{url}/v4/scheduler/calendars", timeout=10)
    assert response.status_code == 200, response.text
    assert response.json() == [
        {"name": "closed", "nextDates": ["2024-01-16"]},
        {"name": "winter", "nextDates": ["2024-02-01", "2024-02-02"]},
    ]


def test_unknown_calendar_names_answer_400_naming_them(api_url: tuple[str, Scheduler]) -> None:
    url, scheduler = api_url
    before = scheduler.list()
    for method, path in (("POST", "/v4/schedules"), ("PUT", "/v4/schedules/task-1")):
        response = requests.request(
            method, f"{url}{path}", json={**NEW, "excludeCalendars": ["closed", "xmas"]}, timeout=10
        )
        assert response.status_code == 400, response.text
        message = response.json()["message"]
        assert "body/excludeCalendars names an unknown calendar: 'xmas'" in message
    assert scheduler.list() == before


def test_a_created_schedule_honours_its_calendars(api_url: tuple[str, Scheduler]) -> None:
    url, _ = api_url
    response = requests.post(
        f"{url}/v4/schedules", json={**NEW, "excludeCalendars": ["closed"]}, timeout=10
    )
    assert response.status_code == 201, response.text
    assert response.json()["excludeCalendars"] == ["closed"]
    assert response.json()["nextRun"] == "2024-01-17T05:00:00.000Z"
    changed = requests.put(
        f"{url}/v4/schedules/{response.json()['id']}", json={"excludeCalendars": []}, timeout=10
    )
    assert changed.json()["nextRun"] == "2024-01-16T05:00:00.000Z"
