"""The DST matrix: three zones (one with a 30-minute shift), spring gap and autumn repeat, a
fixed-time and a wildcard schedule, each ``dst`` mode.

The expected fire lists are written out by hand from the zones' published rules, never
computed by the code under test: a regression in the timeline cannot move the expectation
along with it.

2024 transitions used (local wall times):
* Europe/Stockholm: 31 Mar 02:00 +01:00 -> 03:00 +02:00; 27 Oct 03:00 +02:00 -> 02:00 +01:00.
* America/New_York: 10 Mar 02:00 -05:00 -> 03:00 -04:00; 3 Nov 02:00 -04:00 -> 01:00 -05:00.
* Australia/Lord_Howe: 6 Oct 02:00 +10:30 -> 02:30 +11:00; 7 Apr 02:00 +11:00 -> 01:30 +10:30.
"""

from __future__ import annotations

from datetime import datetime

import pytest

from butler.schedules.timeline import CronTimeline
from butler.schedules.walls import PreviewTimeline


def every_mode(fires: list[str]) -> dict[str, list[str]]:
    """Spring gaps of wildcard schedules: the wall times do not exist, so no mode fires them."""
    return {mode: list(fires) for mode in ("vixie", "skip", "both")}


# (zone, season, kind, cron, from, {mode: expected fires})
CASES: list[tuple[str, str, str, str, str, dict[str, list[str]]]] = [
    (
        "Europe/Stockholm",
        "spring",
        "fixed",
        "30 2 * * *",
        "2024-03-31T01:00:00+01:00",
        {
            "vixie": [
                "2024-03-31T03:00:00+02:00",
                "2024-04-01T02:30:00+02:00",
                "2024-04-02T02:30:00+02:00",
            ],
            "skip": [
                "2024-04-01T02:30:00+02:00",
                "2024-04-02T02:30:00+02:00",
                "2024-04-03T02:30:00+02:00",
            ],
            "both": [
                "2024-03-31T03:00:00+02:00",
                "2024-04-01T02:30:00+02:00",
                "2024-04-02T02:30:00+02:00",
            ],
        },
    ),
    (
        "Europe/Stockholm",
        "spring",
        "wildcard",
        "*/30 * * * *",
        "2024-03-31T01:00:00+01:00",
        every_mode(
            [
                "2024-03-31T01:30:00+01:00",
                "2024-03-31T03:00:00+02:00",
                "2024-03-31T03:30:00+02:00",
                "2024-03-31T04:00:00+02:00",
            ],
        ),
    ),
    (
        "Europe/Stockholm",
        "autumn",
        "fixed",
        "30 2 * * *",
        "2024-10-27T01:00:00+02:00",
        {
            "vixie": [
                "2024-10-27T02:30:00+02:00",
                "2024-10-28T02:30:00+01:00",
                "2024-10-29T02:30:00+01:00",
            ],
            "skip": [
                "2024-10-27T02:30:00+02:00",
                "2024-10-28T02:30:00+01:00",
                "2024-10-29T02:30:00+01:00",
            ],
            "both": [
                "2024-10-27T02:30:00+02:00",
                "2024-10-27T02:30:00+01:00",
                "2024-10-28T02:30:00+01:00",
            ],
        },
    ),
    (
        "Europe/Stockholm",
        "autumn",
        "wildcard",
        "*/30 * * * *",
        "2024-10-27T01:30:00+02:00",
        {
            "vixie": [
                "2024-10-27T02:00:00+02:00",
                "2024-10-27T02:30:00+02:00",
                "2024-10-27T02:00:00+01:00",
                "2024-10-27T02:30:00+01:00",
                "2024-10-27T03:00:00+01:00",
                "2024-10-27T03:30:00+01:00",
            ],
            "skip": [
                "2024-10-27T02:00:00+02:00",
                "2024-10-27T02:30:00+02:00",
                "2024-10-27T03:00:00+01:00",
                "2024-10-27T03:30:00+01:00",
                "2024-10-27T04:00:00+01:00",
                "2024-10-27T04:30:00+01:00",
            ],
            "both": [
                "2024-10-27T02:00:00+02:00",
                "2024-10-27T02:30:00+02:00",
                "2024-10-27T02:00:00+01:00",
                "2024-10-27T02:30:00+01:00",
                "2024-10-27T03:00:00+01:00",
                "2024-10-27T03:30:00+01:00",
            ],
        },
    ),
    (
        "America/New_York",
        "spring",
        "fixed",
        "30 2 * * *",
        "2024-03-10T00:00:00-05:00",
        {
            "vixie": ["2024-03-10T03:00:00-04:00", "2024-03-11T02:30:00-04:00"],
            "skip": ["2024-03-11T02:30:00-04:00", "2024-03-12T02:30:00-04:00"],
            "both": ["2024-03-10T03:00:00-04:00", "2024-03-11T02:30:00-04:00"],
        },
    ),
    (
        "America/New_York",
        "spring",
        "wildcard",
        "*/30 * * * *",
        "2024-03-10T01:00:00-05:00",
        every_mode(
            [
                "2024-03-10T01:30:00-05:00",
                "2024-03-10T03:00:00-04:00",
                "2024-03-10T03:30:00-04:00",
            ],
        ),
    ),
    (
        "America/New_York",
        "autumn",
        "fixed",
        "30 1 * * *",
        "2024-11-03T00:00:00-04:00",
        {
            "vixie": [
                "2024-11-03T01:30:00-04:00",
                "2024-11-04T01:30:00-05:00",
                "2024-11-05T01:30:00-05:00",
            ],
            "skip": [
                "2024-11-03T01:30:00-04:00",
                "2024-11-04T01:30:00-05:00",
                "2024-11-05T01:30:00-05:00",
            ],
            "both": [
                "2024-11-03T01:30:00-04:00",
                "2024-11-03T01:30:00-05:00",
                "2024-11-04T01:30:00-05:00",
            ],
        },
    ),
    (
        "America/New_York",
        "autumn",
        "wildcard",
        "*/30 * * * *",
        "2024-11-03T00:30:00-04:00",
        {
            "vixie": [
                "2024-11-03T01:00:00-04:00",
                "2024-11-03T01:30:00-04:00",
                "2024-11-03T01:00:00-05:00",
                "2024-11-03T01:30:00-05:00",
                "2024-11-03T02:00:00-05:00",
            ],
            "skip": [
                "2024-11-03T01:00:00-04:00",
                "2024-11-03T01:30:00-04:00",
                "2024-11-03T02:00:00-05:00",
                "2024-11-03T02:30:00-05:00",
                "2024-11-03T03:00:00-05:00",
            ],
            "both": [
                "2024-11-03T01:00:00-04:00",
                "2024-11-03T01:30:00-04:00",
                "2024-11-03T01:00:00-05:00",
                "2024-11-03T01:30:00-05:00",
                "2024-11-03T02:00:00-05:00",
            ],
        },
    ),
    (
        "Australia/Lord_Howe",
        "spring",
        "fixed",
        "15 2 * * *",
        "2024-10-06T01:00:00+10:30",
        {
            "vixie": ["2024-10-06T02:30:00+11:00", "2024-10-07T02:15:00+11:00"],
            "skip": ["2024-10-07T02:15:00+11:00", "2024-10-08T02:15:00+11:00"],
            "both": ["2024-10-06T02:30:00+11:00", "2024-10-07T02:15:00+11:00"],
        },
    ),
    (
        "Australia/Lord_Howe",
        "spring",
        "wildcard",
        "*/15 * * * *",
        "2024-10-06T01:30:00+10:30",
        every_mode(
            [
                "2024-10-06T01:45:00+10:30",
                "2024-10-06T02:30:00+11:00",
                "2024-10-06T02:45:00+11:00",
                "2024-10-06T03:00:00+11:00",
            ],
        ),
    ),
    (
        "Australia/Lord_Howe",
        "autumn",
        "fixed",
        "45 1 * * *",
        "2024-04-07T01:00:00+11:00",
        {
            "vixie": [
                "2024-04-07T01:45:00+11:00",
                "2024-04-08T01:45:00+10:30",
                "2024-04-09T01:45:00+10:30",
            ],
            "skip": [
                "2024-04-07T01:45:00+11:00",
                "2024-04-08T01:45:00+10:30",
                "2024-04-09T01:45:00+10:30",
            ],
            "both": [
                "2024-04-07T01:45:00+11:00",
                "2024-04-07T01:45:00+10:30",
                "2024-04-08T01:45:00+10:30",
            ],
        },
    ),
    (
        "Australia/Lord_Howe",
        "autumn",
        "wildcard",
        "*/15 * * * *",
        "2024-04-07T01:15:00+11:00",
        {
            "vixie": [
                "2024-04-07T01:30:00+11:00",
                "2024-04-07T01:45:00+11:00",
                "2024-04-07T01:30:00+10:30",
                "2024-04-07T01:45:00+10:30",
                "2024-04-07T02:00:00+10:30",
            ],
            "skip": [
                "2024-04-07T01:30:00+11:00",
                "2024-04-07T01:45:00+11:00",
                "2024-04-07T02:00:00+10:30",
                "2024-04-07T02:15:00+10:30",
                "2024-04-07T02:30:00+10:30",
            ],
            "both": [
                "2024-04-07T01:30:00+11:00",
                "2024-04-07T01:45:00+11:00",
                "2024-04-07T01:30:00+10:30",
                "2024-04-07T01:45:00+10:30",
                "2024-04-07T02:00:00+10:30",
            ],
        },
    ),
]

MATRIX = [
    pytest.param(zone, cron, start, mode, fires, id=f"{zone}-{season}-{kind}-{mode}")
    for zone, season, kind, cron, start, expected in CASES
    for mode, fires in expected.items()
]


@pytest.mark.parametrize("kind", [CronTimeline, PreviewTimeline], ids=["firing", "preview"])
@pytest.mark.parametrize(("zone", "cron", "start", "mode", "expected"), MATRIX)
def test_dst_matrix(
    zone: str, cron: str, start: str, mode: str, expected: list[str], kind: type[CronTimeline]
) -> None:
    timeline = kind(cron, zone, mode)
    moment = datetime.fromisoformat(start)
    found = []
    for _ in expected:
        moment = timeline.next_fire(moment)
        found.append(moment.astimezone(timeline.zone).isoformat())
    assert found == expected


def test_the_matrix_covers_every_zone_season_kind_and_mode() -> None:
    covered = {(zone, season, kind, mode) for zone, season, kind, _, _, e in CASES for mode in e}
    assert len(covered) == 3 * 2 * 2 * 3
