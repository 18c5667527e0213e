"""The preview's wall-clock matcher agrees with croniter, which the firing thread uses."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pytest

from butler.schedules.timeline import CronTimeline
from butler.schedules.walls import PreviewTimeline, WallMatcher

FIELDS = {
    "second": (0, 59),
    "minute": (0, 59),
    "hour": (0, 23),
    "dom": (1, 31),
    "month": (1, 12),
    "dow": (0, 7),
}


def random_field(rng: random.Random, low: int, high: int) -> str:
    kind = rng.randrange(6)
    if kind == 0:
        return "*"
    if kind == 1:
        return f"*/{rng.randint(2, max(2, (high - low) // 2))}"
    if kind == 2:
        return str(rng.randint(low, high))
    a = rng.randint(low, high)
    b = rng.randint(a, high)
    if kind == 3:
        return f"{a}-{b}"
    if kind == 4:
        return f"{a}-{b}/{rng.randint(1, 5)}"
    return ",".join(str(v) for v in sorted(rng.sample(range(low, high + 1), 3)))


def expressions(count: int) -> list[str]:
    rng = random.Random(16)
    found = []
    while len(found) < count:
        names = list(FIELDS)[1:] if rng.random() < 0.5 else list(FIELDS)
        text = " ".join(random_field(rng, *FIELDS[name]) for name in names)
        try:
            CronTimeline(text, "UTC").next_fire(datetime.fromisoformat("2024-01-01T00:00:00+00:00"))
        except Exception:
            continue
        found.append(text)
    return found


@pytest.mark.parametrize("expression", expressions(150))
def test_the_matcher_agrees_with_croniter(expression: str) -> None:
    matcher = WallMatcher.of(expression)
    assert matcher is not None
    reference = CronTimeline(expression, "UTC")
    rng = random.Random(expression)
    for _ in range(5):
        wall = datetime(2024, 1, 1) + timedelta(seconds=rng.randrange(3 * 365 * 86400))
        wall += timedelta(microseconds=rng.choice([0, 0, 1, 500_000]))
        for inclusive in (False, True):
            moment = wall
            for _ in range(4):
                expected = reference._next_wall(moment, inclusive)
                assert matcher.next_wall(moment, inclusive) == expected, (moment, inclusive)
                moment = expected


@pytest.mark.parametrize("expression", ["0 0 L * *", "0 0 * * 5#2", "0 0 15W * *", "0 0 L * 1-5"])
def test_expressions_only_croniter_knows_keep_croniter(expression: str) -> None:
    assert WallMatcher.of(expression) is None
    timeline = PreviewTimeline(expression, "Europe/Stockholm", "vixie")
    reference = CronTimeline(expression, "Europe/Stockholm")
    moment = datetime.fromisoformat("2024-01-01T00:00:00+01:00")
    for _ in range(5):
        expected = reference.next_fire(moment)
        assert timeline.next_fire(moment) == expected
        moment = expected


@pytest.mark.parametrize("expression", ["0 6 * jan-mar mon-fri", "*/20 9 * * sun", "0 0 1 * 7"])
def test_names_and_sunday_seven_agree_with_croniter(expression: str) -> None:
    matcher = WallMatcher.of(expression)
    assert matcher is not None
    reference = CronTimeline(expression, "UTC")
    moment = datetime(2024, 1, 1)
    for _ in range(20):
        expected = reference._next_wall(moment, False)
        assert matcher.next_wall(moment, False) == expected
        moment = expected
