"""Cron timelines: dialect, time zones, and DST per Vixie cron (no threads involved)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from butler.schedules import CronTimeline, ScheduleValidationError, check_cron


def fires(expression: str, zone: str, start: datetime, end: datetime) -> list[datetime]:
    """Every fire instant in (start, end], in UTC."""
    timeline = CronTimeline(expression, zone)
    found: list[datetime] = []
    moment = start
    while True:
        moment = timeline.next_fire(moment)
        if moment > end:
            return found
        found.append(moment)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def local(zone: str, *parts: int, fold: int = 0) -> datetime:
    return datetime(*parts, tzinfo=ZoneInfo(zone), fold=fold).astimezone(UTC)


def test_six_fields_put_seconds_first_and_fire_only_at_00_and_30() -> None:
    found = fires("*/30 * * * * *", "Europe/Stockholm", utc(2024, 1, 1), utc(2024, 1, 1, 0, 3))
    assert [f.second for f in found] == [30, 0] * 3
    assert found[0] == utc(2024, 1, 1, 0, 0, 30)
    assert all(b - a == timedelta(seconds=30) for a, b in pairwise(found))


def test_five_fields_start_with_minutes_and_fire_on_second_zero() -> None:
    found = fires("*/15 * * * *", "UTC", utc(2024, 1, 1), utc(2024, 1, 1, 1))
    assert found == [
        utc(2024, 1, 1, 0, 15),
        utc(2024, 1, 1, 0, 30),
        utc(2024, 1, 1, 0, 45),
        utc(2024, 1, 1, 1),
    ]


def test_standard_months_and_day_of_week_seven_is_sunday() -> None:
    assert fires("0 0 1 1 *", "UTC", utc(2024, 1, 2), utc(2025, 12, 31)) == [utc(2025, 1, 1)]
    sundays = fires("0 12 * * 7", "UTC", utc(2024, 1, 1), utc(2024, 1, 15))
    assert [f.isoweekday() for f in sundays] == [7, 7]


def test_each_schedule_runs_in_its_own_zone() -> None:
    start, end = utc(2024, 1, 15), utc(2024, 1, 16)
    assert fires("0 9 * * *", "Europe/Stockholm", start, end) == [utc(2024, 1, 15, 8)]
    assert fires("0 9 * * *", "America/New_York", start, end) == [utc(2024, 1, 15, 14)]
    # Summer: both zones shift by their own DST rules, on their own dates.
    march = fires("0 9 * * *", "America/New_York", utc(2024, 3, 9), utc(2024, 3, 11, 23))
    assert march == [utc(2024, 3, 9, 14), utc(2024, 3, 10, 13), utc(2024, 3, 11, 13)]


class TestEuropeStockholm:
    """Spring forward 2024-03-31 02:00 -> 03:00; fall back 2024-10-27 03:00 -> 02:00."""

    zone = "Europe/Stockholm"

    def test_fixed_time_in_the_spring_gap_fires_once_at_the_change(self) -> None:
        found = fires("30 2 * * *", self.zone, utc(2024, 3, 30, 12), utc(2024, 4, 1, 12))
        assert found == [utc(2024, 3, 31, 1), local(self.zone, 2024, 4, 1, 2, 30)]

    def test_fixed_time_in_the_repeated_hour_fires_once(self) -> None:
        found = fires("30 2 * * *", self.zone, utc(2024, 10, 26, 12), utc(2024, 10, 28, 12))
        assert found == [local(self.zone, 2024, 10, 27, 2, 30), utc(2024, 10, 28, 1, 30)]

    def test_fixed_time_never_fires_again_when_planned_from_the_second_pass(self) -> None:
        second_pass = local(self.zone, 2024, 10, 27, 2, 10, fold=1)
        nxt = CronTimeline("30 2 * * *", self.zone).next_fire(second_pass)
        assert nxt == local(self.zone, 2024, 10, 28, 2, 30)

    def test_wildcard_schedules_follow_the_wall_clock_through_the_gap(self) -> None:
        found = fires("0 * * * *", self.zone, utc(2024, 3, 30, 22, 30), utc(2024, 3, 31, 2, 30))
        # 00:00, 01:00 CET, then 03:00 CEST (02:00 never exists), 04:00 CEST
        assert found == [
            utc(2024, 3, 30, 23),
            utc(2024, 3, 31, 0),
            utc(2024, 3, 31, 1),
            utc(2024, 3, 31, 2),
        ]
        half = fires("30 * * * *", self.zone, utc(2024, 3, 31, 0), utc(2024, 3, 31, 2))
        assert half == [utc(2024, 3, 31, 0, 30), utc(2024, 3, 31, 1, 30)]

    def test_wildcard_schedules_keep_their_cadence_in_the_repeated_hour(self) -> None:
        found = fires("*/30 * * * *", self.zone, utc(2024, 10, 26, 23, 50), utc(2024, 10, 27, 2))
        spacing = {b - a for a, b in pairwise(found)}
        assert spacing == {timedelta(minutes=30)}
        assert len(found) == 5


class TestLordHowe:
    """A 30-minute DST shift: 2024-04-07 02:00 -> 01:30, 2024-10-06 02:00 -> 02:30."""

    zone = "Australia/Lord_Howe"

    def test_fixed_time_in_the_half_hour_gap_fires_at_the_change(self) -> None:
        found = fires("15 2 * * *", self.zone, utc(2024, 10, 4), utc(2024, 10, 6, 23))
        assert found == [
            local(self.zone, 2024, 10, 5, 2, 15),
            utc(2024, 10, 5, 15, 30),
            local(self.zone, 2024, 10, 7, 2, 15),
        ]

    def test_fixed_time_in_the_repeated_half_hour_fires_once(self) -> None:
        found = fires("45 1 * * *", self.zone, utc(2024, 4, 6), utc(2024, 4, 7, 12))
        assert found == [utc(2024, 4, 6, 14, 45)]

    def test_wildcard_fires_both_passes_of_the_repeated_half_hour(self) -> None:
        found = fires("*/15 * * * *", self.zone, utc(2024, 4, 6, 14, 0), utc(2024, 4, 6, 15, 30))
        assert len(found) == 6
        assert {b - a for a, b in pairwise(found)} == {timedelta(minutes=15)}


def reference(expression: str, zone_name: str, start: datetime, end: datetime) -> list[datetime]:
    """Vixie cron, minute by minute: what the wall clock shows, and each fixed time once."""
    zone = ZoneInfo(zone_name)
    fields = expression.split()
    fixed = not (fields[0].startswith("*") or fields[1].startswith("*"))
    found: list[datetime] = []
    moment = start + timedelta(minutes=1)
    previous_offset = start.astimezone(zone).utcoffset()
    while moment <= end:
        shown = moment.astimezone(zone)
        wall = shown.replace(tzinfo=None)
        offset = shown.utcoffset()
        assert offset is not None and previous_offset is not None
        matches = croniter.match(expression, wall)
        if fixed and offset > previous_offset:
            gap = [wall - (offset - previous_offset) + timedelta(minutes=i) for i in range(0, 180)]
            gap = [g for g in gap if g < wall]
            matches = matches or any(croniter.match(expression, g) for g in gap)
        if fixed and shown.fold == 1:
            matches = False
        if matches:
            found.append(moment)
        previous_offset = offset
        moment += timedelta(minutes=1)
    return found


@pytest.mark.parametrize(
    "zone,start",
    [
        ("Europe/Stockholm", utc(2024, 3, 30, 20)),
        ("Europe/Stockholm", utc(2024, 10, 26, 20)),
        ("Australia/Lord_Howe", utc(2024, 4, 6, 10)),
        ("Australia/Lord_Howe", utc(2024, 10, 5, 10)),
        ("America/New_York", utc(2024, 3, 10, 2)),
        ("America/New_York", utc(2024, 11, 3, 2)),
    ],
)
@pytest.mark.parametrize(
    "expression",
    ["*/7 * * * *", "15,45 * * * *", "0 2 * * *", "30 2 * * *", "0,20,40 1-3 * * *"],
)
def test_matches_a_minute_by_minute_reference_across_dst(
    expression: str, zone: str, start: datetime
) -> None:
    end = start + timedelta(hours=8)
    assert fires(expression, zone, start, end) == reference(expression, zone, start, end)


@pytest.mark.parametrize(
    "expression,why",
    [
        ("* * * *", "5 or 6 fields"),
        ("* * * * * * *", "5 or 6 fields"),
        ("0 0 1 13 *", "not a valid cron expression"),
        ("0 0 * * 8", "not a valid cron expression"),
        ("*/0 * * * *", "not a valid cron expression"),
        ("H * * * *", "hashed/random"),
        ("0 R * * *", "hashed/random"),
        ("0 0 30 2 *", "not a valid cron expression"),
        ("every minute", "5 or 6 fields"),
    ],
)
def test_invalid_expressions_are_refused_with_the_reason(expression: str, why: str) -> None:
    with pytest.raises(ScheduleValidationError) as info:
        check_cron(expression)
    assert info.value.field == "cronSchedule"
    assert why in info.value.message
