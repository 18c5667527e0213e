"""What happens to schedules at run time, kept in a JSON sidecar next to the schedule file.

Last run, last result and the last fired slot change every few seconds and are not
configuration, so they live in ``<stem>.state.json`` and never rewrite the user's YAML.
Losing or corrupting the sidecar only loses that history: an unreadable one is ignored
with a warning. The last fired slot is what keeps a restart from firing a slot again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from butler.schedules.files import atomic_write
from butler.schedules.model import iso_utc

log = logging.getLogger(__name__)


@dataclass
class RunState:
    """What happened to one schedule at run time (kept in the sidecar, not the YAML)."""

    last_run: str | None = None
    last_result: str | None = None
    last_slot: float | None = None
    """POSIX time of the last slot handed to the task starter (guards against re-firing)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "lastRun": self.last_run,
            "lastResult": self.last_result,
            "lastSlot": (
                iso_utc(datetime.fromtimestamp(self.last_slot, UTC))
                if self.last_slot is not None
                else None
            ),
        }

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
        return cls(
            last_run=run if isinstance(run, str) else None,
            last_result=result if isinstance(result, str) else None,
            last_slot=last_slot,
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
            return RunState(**vars(state)) if state is not None else RunState()

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
                    sid: RunState(**vars(self._runs[sid]))
                    for sid in self._dirty | self._stale
                    if sid in self._runs
                }
                self._dirty, self._stale = set(), set()
                self._layout_changed = False
            rendered = {
                sid: f"{json.dumps(sid)}: {json.dumps(state.to_json())}"
                for sid, state in changed.items()
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
