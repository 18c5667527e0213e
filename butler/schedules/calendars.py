"""Calendars: named sets of days (holidays, closing days) that schedules skip or keep to.

Why it is built this way:

* A calendar is consulted for every planned fire of every schedule that names it, and the
  scheduler plans 10,000 schedules at start-up, so the days of each calendar are worked out
  once per year (a frozen set of dates, weekdays apart) and every later question is a set
  look-up. iCalendar recurrences and the ``holidays`` package are only asked per year too.
* Days are plain dates: the scheduler decides a fire's day in the schedule's own time zone
  (:meth:`CalendarRule.next_fire`), so one calendar serves schedules in several zones.
* A search for an allowed day is bounded (:data:`MAX_SEARCH_DAYS`): a schedule whose
  calendars rule out every day it could fire on has no next fire instead of a thread that
  searches forever.
* Every config problem stops start-up with one line naming the key, like every other
  config error (:class:`butler.config.ConfigError`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from butler.config import ConfigError
from butler.schedules.model import ScheduleValidationError
from butler.schedules.timeline import CronTimeline

CALENDAR_FIELDS = ("excludeCalendars", "onlyCalendars")
"""The schedule fields that name calendars."""
MAX_SEARCH_DAYS = 3 * 366
"""How far ahead a next allowed day is searched for before giving up (about 3 years)."""
NEXT_DATES = 10
"""How many dates ``GET /v4/scheduler/calendars`` lists per calendar."""
HOLIDAY_CATEGORIES = ("public",)
"""The ``holidays`` package's default category; ``categories`` adds others (``de_facto``)."""

_ONE_DAY = timedelta(days=1)
_TICK = timedelta(microseconds=1)


@dataclass(frozen=True)
class HolidaySource:
    """Public holidays of one country (and subdivision) from the ``holidays`` package."""

    country: str
    subdiv: str | None = None
    categories: tuple[str, ...] = HOLIDAY_CATEGORIES

    def dates(self, year: int) -> set[date]:
        import holidays

        found = holidays.country_holidays(
            self.country, subdiv=self.subdiv, years=year, categories=self.categories
        )
        return {day for day in found if day.year == year}


class IcsSource:
    """The days covered by the events of one iCalendar file, read once at start-up.

    Recurring events are expanded by ``recurring-ical-events`` one year at a time.
    """

    def __init__(self, path: Path):
        import icalendar
        import recurring_ical_events

        self.path = path
        calendar = icalendar.Calendar.from_ical(path.read_bytes())
        self._query = recurring_ical_events.of(calendar, components=["VEVENT"])
        self._lock = threading.Lock()
        """The query object keeps caches of its own: one year at a time."""

    def dates(self, year: int) -> set[date]:
        first, last = date(year, 1, 1), date(year, 12, 31)
        with self._lock:
            events = list(self._query.between(first, last + _ONE_DAY))
        days: set[date] = set()
        for event in events:
            if str(event.get("STATUS", "")).upper() == "CANCELLED":
                continue
            for day in _event_days(event):
                if first <= day <= last:
                    days.add(day)
        return days


def _event_days(event: Any) -> Iterator[date]:
    """The dates an event covers: an all-day event's end date is exclusive (RFC 5545), a
    timed event covers each date it touches in its own time zone, its end instant excluded."""
    start = event.decoded("DTSTART")
    end = event.decoded("DTEND", None)
    if end is None:
        duration = event.decoded("DURATION", None)
        end = start + duration if duration is not None else None
    if isinstance(start, datetime):
        first = start.date()
        if end is None or end <= start:
            last = first
        else:
            last = (
                (end - _TICK).astimezone(start.tzinfo).date()
                if start.tzinfo
                else (end - _TICK).date()
            )
    else:
        first = start
        last = first if end is None or end <= start else end - _ONE_DAY
    day = first
    while day <= last:
        yield day
        day += _ONE_DAY


@dataclass
class Calendar:
    """One named calendar: a day is in it when any of its parts holds it."""

    name: str
    dates: frozenset[date] = frozenset()
    ranges: tuple[tuple[date, date], ...] = ()
    weekdays: frozenset[int] = frozenset()
    """ISO weekdays, 1 (Monday) to 7 (Sunday)."""
    sources: tuple[HolidaySource | IcsSource, ...] = ()
    _years: dict[int, frozenset[date]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def holds(self, day: date) -> bool:
        """Whether ``day`` is in the calendar (a set look-up once its year is known)."""
        if self.weekdays and day.isoweekday() in self.weekdays:
            return True
        days = self._years.get(day.year)
        if days is None:
            days = self._year(day.year)
        return day in days

    def next_dates(self, after: date, count: int) -> list[date]:
        """Up to ``count`` days in the calendar strictly after ``after``, within the
        search bound."""
        found: list[date] = []
        day = after
        for _ in range(MAX_SEARCH_DAYS):
            if len(found) >= count:
                break
            day += _ONE_DAY
            if self.holds(day):
                found.append(day)
        return found

    def _year(self, year: int) -> frozenset[date]:
        with self._lock:
            known = self._years.get(year)
            if known is not None:
                return known
            days = {day for day in self.dates if day.year == year}
            first, last = date(year, 1, 1), date(year, 12, 31)
            for low, high in self.ranges:
                day, stop = max(low, first), min(high, last)
                while day <= stop:
                    days.add(day)
                    day += _ONE_DAY
            for source in self.sources:
                days |= source.dates(year)
            frozen = self._years[year] = frozenset(days)
            return frozen


class CalendarRule:
    """The calendars one schedule names: which days it may fire on.

    Shared by every schedule naming the same calendars (:meth:`Calendars.rule_for`).
    """

    def __init__(self, exclude: Sequence[Calendar], only: Sequence[Calendar]):
        self.exclude = tuple(exclude)
        self.only = tuple(only)

    def excluded_by(self, day: date) -> str | None:
        """The calendar that rules ``day`` out: an ``excludeCalendars`` calendar holding it,
        or, when no ``onlyCalendars`` calendar holds it, the names of those, comma-separated."""
        for calendar in self.exclude:
            if calendar.holds(day):
                return calendar.name
        if self.only and not any(calendar.holds(day) for calendar in self.only):
            return ", ".join(calendar.name for calendar in self.only)
        return None

    def allows(self, day: date) -> bool:
        return self.excluded_by(day) is None

    def next_allowed(self, day: date) -> date | None:
        """The first allowed day from ``day`` on, or None within the search bound."""
        for _ in range(MAX_SEARCH_DAYS):
            if self.allows(day):
                return day
            day += _ONE_DAY
        return None

    def next_fire(self, timeline: CronTimeline, after: float) -> float | None:
        """The first fire of ``timeline`` strictly after ``after`` on an allowed day (the
        day in the timeline's zone), or None when none falls within the search bound."""
        zone = timeline.zone
        moment = datetime.fromtimestamp(after, UTC)
        limit = moment.astimezone(zone).date() + timedelta(days=MAX_SEARCH_DAYS)
        while True:
            fire = timeline.next_fire(moment)
            day = fire.astimezone(zone).date()
            if day > limit:
                return None
            if self.allows(day):
                return fire.timestamp()
            allowed = self.next_allowed(day + _ONE_DAY)
            if allowed is None or allowed > limit:
                return None
            moment = datetime.combine(allowed, time(), zone).astimezone(UTC) - _TICK


class Calendars:
    """The configured calendars by name (``Butler.scheduler.calendars``)."""

    def __init__(self, calendars: Sequence[Calendar] = ()):
        self._by_name = {calendar.name: calendar for calendar in calendars}
        self._rules: dict[tuple[tuple[str, ...], tuple[str, ...]], CalendarRule] = {}
        self._lock = threading.Lock()

    def __iter__(self) -> Iterator[Calendar]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    def get(self, name: str) -> Calendar | None:
        return self._by_name.get(name)

    def check_entry(self, entry: Mapping[str, Any]) -> None:
        """Refuse calendar fields that are not lists of names of configured calendars."""
        for field_name in CALENDAR_FIELDS:
            names = entry.get(field_name)
            if names is None:
                continue
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise ScheduleValidationError(field_name, "must be array of strings")
            for name in names:
                if name not in self._by_name:
                    known = ", ".join(sorted(self._by_name)) or "none are configured"
                    raise ScheduleValidationError(
                        field_name,
                        f"names an unknown calendar: {name!r} "
                        f"(Butler.scheduler.calendars: {known})",
                    )

    def rule_for(self, entry: Mapping[str, Any]) -> CalendarRule | None:
        """The rule of a schedule entry, None when it names no calendar (so schedules
        without calendars cost the planner nothing). Unknown names raise
        ``ScheduleValidationError``."""
        exclude = entry.get("excludeCalendars") or []
        only = entry.get("onlyCalendars") or []
        if not exclude and not only:
            return None
        self.check_entry(entry)
        key = (tuple(exclude), tuple(only))
        with self._lock:
            rule = self._rules.get(key)
            if rule is None:
                rule = self._rules[key] = CalendarRule(
                    [self._by_name[n] for n in exclude], [self._by_name[n] for n in only]
                )
        return rule

    def excluded_by(self, schedule_entry: Mapping[str, Any], day: date) -> str | None:
        """The calendar that rules ``day`` (in the schedule's zone) out for the schedule,
        or None: what a preview shows as ``skippedBy``."""
        rule = self.rule_for(schedule_entry)
        return None if rule is None else rule.excluded_by(day)


NO_CALENDARS = Calendars()
"""The registry of a scheduler without ``Butler.scheduler.calendars``."""


def load_calendars(raw: Any, resolve_path: Callable[[str], Path]) -> Calendars:
    """The calendars of ``Butler.scheduler.calendars`` (``ConfigError`` naming the key).

    ``resolve_path`` turns an ``icsFile`` into a path (relative ones from the config's
    folder); each file is read and parsed here, so an unreadable one stops start-up.
    """
    if raw is None:
        return Calendars()
    base = "Butler.scheduler.calendars"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{base}: must be a mapping of calendar names to calendars")
    return Calendars(
        [
            _load_calendar(str(name), spec, f"{base}.{name}", resolve_path)
            for name, spec in raw.items()
        ]
    )


_PARTS = ("dates", "ranges", "weekdays", "icsFile", "holidays")


def _load_calendar(
    name: str, spec: Any, where: str, resolve_path: Callable[[str], Path]
) -> Calendar:
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{where}: must be a mapping with any of {', '.join(_PARTS)}")
    unknown = [key for key in spec if key not in _PARTS]
    if unknown:
        raise ConfigError(
            f"{where}.{unknown[0]}: unknown calendar part (known: {', '.join(_PARTS)})"
        )
    dates = frozenset(
        _iso_date(value, f"{where}.dates.{i}")
        for i, value in enumerate(_list(spec, "dates", where))
    )
    ranges = tuple(
        _range(value, f"{where}.ranges.{i}") for i, value in enumerate(_list(spec, "ranges", where))
    )
    weekdays = frozenset(
        _weekday(value, f"{where}.weekdays.{i}")
        for i, value in enumerate(_list(spec, "weekdays", where))
    )
    sources: list[HolidaySource | IcsSource] = []
    if spec.get("icsFile") is not None:
        sources.append(_ics(spec["icsFile"], f"{where}.icsFile", resolve_path))
    if spec.get("holidays") is not None:
        sources.append(_holidays(spec["holidays"], f"{where}.holidays"))
    return Calendar(name, dates, ranges, weekdays, tuple(sources))


def _list(spec: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = spec.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(f"{where}.{key}: must be a list (or null)")
    return value


def _iso_date(value: Any, where: str) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ConfigError(f"{where}: must be an ISO date (2026-12-24), got {value!r}") from None


def _range(value: Any, where: str) -> tuple[date, date]:
    if not isinstance(value, list) or len(value) != 2:
        raise ConfigError(f"{where}: must be a [from, to] pair of ISO dates, got {value!r}")
    low, high = _iso_date(value[0], f"{where}.0"), _iso_date(value[1], f"{where}.1")
    if high < low:
        raise ConfigError(f"{where}: ends ({high}) before it starts ({low})")
    return low, high


def _weekday(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 7:
        raise ConfigError(
            f"{where}: must be an ISO weekday 1 (Monday) to 7 (Sunday), got {value!r}"
        )
    return value


def _ics(value: Any, where: str, resolve_path: Callable[[str], Path]) -> IcsSource:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: must be the path of an iCalendar (.ics) file")
    path = resolve_path(value)
    try:
        source = IcsSource(path)
        source.dates(date.today().year)
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {path}: {exc.strerror or exc}") from None
    except Exception as exc:
        raise ConfigError(f"{where}: {path} is not a usable iCalendar file: {exc}") from None
    return source


def _holidays(value: Any, where: str) -> HolidaySource:
    import holidays

    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: must be a mapping with country (and subdiv, categories)")
    country = value.get("country")
    if not isinstance(country, str) or not country.strip():
        raise ConfigError(f"{where}.country: is required (an ISO 3166 code such as SE)")
    subdiv = value.get("subdiv")
    if subdiv is not None and not isinstance(subdiv, str | int):
        raise ConfigError(f"{where}.subdiv: must be a subdivision code or null")
    categories = value.get("categories") or list(HOLIDAY_CATEGORIES)
    if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
        raise ConfigError(f"{where}.categories: must be a list of holiday categories")
    supported = holidays.list_supported_countries()
    if country not in supported:
        raise ConfigError(f"{where}.country: not a country the holidays package knows: {country!r}")
    if subdiv is not None and str(subdiv) not in supported[country]:
        raise ConfigError(
            f"{where}.subdiv: {country} has no subdivision {subdiv!r} "
            f"(known: {', '.join(supported[country]) or 'none'})"
        )
    source = HolidaySource(country, None if subdiv is None else str(subdiv), tuple(categories))
    try:
        source.dates(date.today().year)
    except Exception as exc:
        raise ConfigError(f"{where}.categories: {exc}") from None
    return source
