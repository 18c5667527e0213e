"""What happens to schedules at run time, kept in a JSON sidecar next to the schedule file.

Last run, last result and the last fired slot change every few seconds and are not
configuration, so they live in ``<stem>.state.json`` and never rewrite the user's YAML.
Losing or corrupting the sidecar only loses that history: an unreadable one is ignored
with a warning. The last fired slot is what keeps a restart from firing a slot again.

The fire history (the newest ``FIRE_HISTORY`` fires of each schedule) is kept here too. An
every-second schedule adds a fire a second, so a fire is stored compactly, as
``[plannedMs, firedMs, outcome, runIds]`` plus a note when it has one (epoch
milliseconds), and rendered once: rewriting the sidecar joins already rendered fires.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections import deque
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from butler.schedules.files import atomic_write
from butler.schedules.model import iso_utc

log = logging.getLogger(__name__)

FIRE_HISTORY = 100
"""Fires kept per schedule (the newest); older ones are dropped as new ones come."""
FIRE_OUTCOMES = ("started", "skipped:overlap", "skipped:calendar", "failed", "retried")


@dataclass(slots=True)
class Fire:
    """One fire of a schedule: when it was due, when it was handed on, what came of it."""

    planned: float
    fired: float
    outcome: str
    run_ids: tuple[str, ...] = ()
    note: str | None = None
    """Why a fire was skipped, or why it went ahead although ``overlap`` is ``forbid``."""
    text: str | None = field(default=None, compare=False)
    """The rendered sidecar form, cached: it never changes once the fire is recorded."""

    def to_json(self) -> dict[str, Any]:
        return {
            "plannedAt": _iso(self.planned),
            "firedAt": _iso(self.fired),
            "latenessMs": max(0, round((self.fired - self.planned) * 1000)),
            "outcome": self.outcome,
            "runIds": list(self.run_ids),
            "note": self.note,
        }

    def rendered(self) -> str:
        if self.text is None:
            row: list[Any] = [
                round(self.planned * 1000),
                round(self.fired * 1000),
                self.outcome,
                list(self.run_ids),
            ]
            if self.note is not None:
                row.append(self.note)
            self.text = json.dumps(row)
        return self.text

    @classmethod
    def from_row(cls, row: Any) -> Fire | None:
        """A stored fire, or ``None`` for a damaged one (only that fire is lost)."""
        if not isinstance(row, list) or len(row) not in (4, 5):
            return None
        planned, fired, outcome, run_ids = row[:4]
        note = row[4] if len(row) == 5 else None
        if (
            not all(_is_number(t) for t in (planned, fired))
            or outcome not in FIRE_OUTCOMES
            or not isinstance(run_ids, list)
            or not all(isinstance(r, str) for r in run_ids)
            or not (note is None or isinstance(note, str))
        ):
            return None
        return cls(planned / 1000, fired / 1000, outcome, tuple(run_ids), note)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _iso(timestamp: float) -> str:
    return iso_utc(datetime.fromtimestamp(timestamp, UTC))


def _fires() -> deque[Fire]:
    return deque(maxlen=FIRE_HISTORY)


@dataclass
class RunState:
    """What happened to one schedule at run time (kept in the sidecar, not the YAML)."""

    last_run: str | None = None
    last_result: str | None = None
    last_slot: float | None = None
    """POSIX time of the last slot handed to the task starter (guards against re-firing)."""
    last_run_ids: tuple[str, ...] = ()
    """Runs of the newest fire that started any: what ``overlap: forbid`` waits for."""
    fires: deque[Fire] = field(default_factory=_fires)
    """Oldest first, at most ``FIRE_HISTORY``."""

    def copy(self) -> RunState:
        """A copy whose fire history a later fire does not change."""
        return RunState(
            self.last_run,
            self.last_result,
            self.last_slot,
            self.last_run_ids,
            deque(self.fires, maxlen=FIRE_HISTORY),
        )

    def rendered(self) -> str:
        """The sidecar JSON of this state; fires are joined from their cached text."""
        head = json.dumps(
            {
                "lastRun": self.last_run,
                "lastResult": self.last_result,
                "lastSlot": _iso(self.last_slot) if self.last_slot is not None else None,
                "lastRunIds": list(self.last_run_ids),
            }
        )
        fires = ", ".join(fire.rendered() for fire in self.fires)
        return f'{head[:-1]}, "fires": [{fires}]}}'

    @classmethod
    def from_json(cls, data: Any) -> RunState:
        """Whatever of a sidecar entry is usable; a damaged entry only loses its history."""
        if not isinstance(data, Mapping):
            return cls()
        slot = data.get("lastSlot")
        last_slot = None
        if isinstance(slot, str):
            with contextlib.suppress(ValueError):
                last_slot = datetime.fromisoformat(slot.replace("Z", "+00:00")).timestamp()
        run, result = data.get("lastRun"), data.get("lastResult")
        run_ids = data.get("lastRunIds")
        rows = data.get("fires")
        fires = _fires()
        if isinstance(rows, list):
            fires.extend(fire for fire in map(Fire.from_row, rows) if fire is not None)
        return cls(
            last_run=run if isinstance(run, str) else None,
            last_result=result if isinstance(result, str) else None,
            last_slot=last_slot,
            last_run_ids=(
                tuple(r for r in run_ids if isinstance(r, str)) if isinstance(run_ids, list) else ()
            ),
            fires=fires,
        )


class RunStateFile:
    """The run-time state of every schedule, and the sidecar file it is written to.

    Fires record their state from the firing thread and its workers while a separate
    thread writes the file, so the state has a lock of its own (never the store's) and
    the write happens outside it.
    """

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._runs: dict[str, RunState] = {}
        self._fragments: dict[str, str] = {}
        """Each schedule's rendered JSON, kept so only changed schedules are rendered."""
        self._dirty: set[str] = set()
        self._stale: set[str] = set()
        """Loaded but not yet rendered: rendered at the next write, no reason for one."""
        self._layout_changed = False

    def load(self, known: Container[str]) -> None:
        """Read the sidecar, keeping the state of the schedules in ``known`` only."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("Ignoring unreadable scheduler state file %s: %s", self.path, exc)
            return
        schedules = data.get("schedules") if isinstance(data, Mapping) else None
        if not isinstance(schedules, Mapping):
            log.warning("Ignoring scheduler state file %s: unexpected layout", self.path)
            return
        self._runs = {
            sid: RunState.from_json(state) for sid, state in schedules.items() if sid in known
        }
        self._stale = set(self._runs)

    def get(self, schedule_id: str) -> RunState:
        """A copy, so callers never see a fire change it under them."""
        with self._lock:
            state = self._runs.get(schedule_id)
            return state.copy() if state is not None else RunState()

    def summary(self, schedule_id: str) -> tuple[str | None, str | None, Fire | None]:
        """Last run, last result and newest fire: what every schedule answer shows, without
        copying the fire history (a list of 10,000 schedules asks this 10,000 times)."""
        with self._lock:
            state = self._runs.get(schedule_id)
            if state is None:
                return None, None, None
            return state.last_run, state.last_result, state.fires[-1] if state.fires else None

    def fires(self, schedule_id: str, limit: int) -> list[Fire]:
        """The newest ``limit`` fires, newest first."""
        with self._lock:
            state = self._runs.get(schedule_id)
            if state is None:
                return []
            fires = state.fires
            return [fires[-i] for i in range(1, min(limit, len(fires)) + 1)]

    def record_fire_history(self, fires: Sequence[tuple[str, Fire]], known: Container[str]) -> None:
        """Append ``(schedule id, fire)`` to each schedule's history; a fire that started
        runs makes them the schedule's ``last_run_ids``. Fires of schedules no longer in
        ``known`` (deleted meanwhile) are dropped."""
        with self._lock:
            runs, dirty = self._runs, self._dirty
            for sid, fire in fires:
                if sid not in known:
                    continue
                state = runs.get(sid)
                if state is None:
                    state = runs[sid] = RunState()
                state.fires.append(fire)
                if fire.run_ids:
                    state.last_run_ids = fire.run_ids
                dirty.add(sid)

    def record_fires(self, schedule_ids: Iterable[str], slot: float) -> None:
        with self._lock:
            runs, dirty = self._runs, self._dirty
            for sid in schedule_ids:
                state = runs.get(sid)
                if state is None:
                    state = runs[sid] = RunState()
                state.last_slot = slot
                dirty.add(sid)

    def record_results(
        self, results: Iterable[tuple[str, str]], run_at: datetime, known: Container[str]
    ) -> None:
        """Results of schedules no longer in ``known`` (deleted meanwhile) are dropped."""
        when = iso_utc(run_at)
        with self._lock:
            for sid, result in results:
                if sid not in known:
                    continue
                state = self._runs.get(sid)
                if state is None:
                    state = self._runs[sid] = RunState()
                state.last_run, state.last_result = when, result
                self._dirty.add(sid)

    def forget(self, schedule_id: str) -> None:
        with self._lock:
            self._runs.pop(schedule_id, None)
            if self._fragments.pop(schedule_id, None) is not None:
                self._layout_changed = True

    @property
    def dirty(self) -> bool:
        return bool(self._dirty) or self._layout_changed

    def flush(self) -> None:
        """Write the sidecar if anything changed since the last write.

        Each schedule's JSON is rendered only when it changed, in small steps, so writing
        the state of 10,000 schedules never holds the interpreter lock for long (a single
        large ``json.dumps`` would, and would make fires late). A failed write is logged
        and retried at the next flush; it never stops the scheduler.
        """
        with self._write_lock:
            with self._lock:
                if not self.dirty:
                    return
                changed = {
                    sid: self._runs[sid].copy()
                    for sid in self._dirty | self._stale
                    if sid in self._runs
                }
                self._dirty, self._stale = set(), set()
                self._layout_changed = False
            rendered = {
                sid: f"{json.dumps(sid)}: {state.rendered()}" for sid, state in changed.items()
            }
            with self._lock:
                for sid, fragment in rendered.items():
                    if sid in self._runs:
                        self._fragments[sid] = fragment
                body = ",\n  ".join(self._fragments.values())
            text = f'{{"version": 1, "schedules": {{\n  {body}\n}}}}\n'
            try:
                atomic_write(self.path, text.encode("utf-8"))
            except OSError:
                with self._lock:
                    self._dirty.update(sid for sid in changed if sid in self._runs)
                    self._layout_changed = True
                log.exception("Could not write scheduler state file %s", self.path)
