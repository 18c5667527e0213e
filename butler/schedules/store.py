"""The schedule file (the original Butler's ``butlerSchedule:`` YAML), kept in memory.

Why it looks like this:

* Existing schedule files must keep loading and keep their comments, so hand-written files
  go through ruamel.yaml's round-trip mode; files in the plain layout Butler itself writes
  take the much faster :mod:`butler.schedules.yaml_codec`, which refuses anything it is
  not certain about, and the file then takes the ruamel path.
* The file is the user's: a file that does not parse or validate stops start-up and is
  never overwritten, and neither is a file edited by someone else after Butler read it
  (409 instead). Every write replaces the whole file atomically
  (:func:`butler.schedules.files.atomic_write`), one writer at a time.
* Every entry of a loaded file is fully validated here, because nobody checked it before.
  Entries written through the store come from the API, whose route schema checked each
  field, so writes are not checked again.
* What happens at run time lives in the sidecar (:mod:`butler.schedules.run_state`) and
  never rewrites the user's YAML.
"""

from __future__ import annotations

import io
import logging
import re
import threading
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from butler.config import ConfigError
from butler.errors import Conflict
from butler.schedules.calendars import NO_CALENDARS, Calendars
from butler.schedules.files import atomic_write
from butler.schedules.model import (
    ROOT_KEY,
    RUNNING_STARTUP_STATES,
    ScheduleValidationError,
    schedule_id_text,
    to_plain,
    validate_schedule,
)
from butler.schedules.run_state import Fire, RunState, RunStateFile
from butler.schedules.yaml_codec import NotFast, emit_fast, parse_fast

log = logging.getLogger(__name__)

_PLAIN_SCALARS = (str, int, float, bool, type(None))
_ROUND_TRIP_MARKERS = re.compile(r"(?m)(?:^|\s)#|[:-][ \t]+[|>][-+0-9]*[ \t]*$|^---|^%")
"""Comments, block scalars, document markers, directives: what only ruamel writes back."""


class ScheduleFileError(ConfigError):
    """The schedule file cannot be used; start-up stops and the file is left as it is."""


class ScheduleStore:
    """Schedules from one file, kept in memory in file order; the one writer of that file.

    Construction reads and validates the file (``ScheduleFileError`` on any problem); a
    missing file means no schedules and is created on the first write. As in the original,
    ``lastKnownState`` is recomputed from ``startupState`` at every load. Calendar names
    in the file must be those of ``calendars`` (the scheduler plans with the same registry).
    """

    def __init__(
        self, path: Path, state_path: Path | None = None, calendars: Calendars | None = None
    ):
        self.path = Path(path)
        self.calendars = NO_CALENDARS if calendars is None else calendars
        self.state_path = state_path or self.path.with_name(f"{self.path.stem}.state.json")
        self._lock = threading.RLock()
        self._yaml: YAML | None = None
        self._root: MutableMapping[str, Any] = {ROOT_KEY: []}
        self._entries: list[MutableMapping[str, Any]] = self._root[ROOT_KEY]
        self._by_id: dict[str, MutableMapping[str, Any]] = {}
        self._state = RunStateFile(self.state_path)
        self._stamp: tuple[int, int] | None = None
        """mtime and size of the file as Butler last read or wrote it."""
        self._load()
        self._state.load(self._by_id)

    # reading

    def ids(self) -> list[str]:
        with self._lock:
            return list(self._by_id)

    def get(self, schedule_id: str) -> dict[str, Any] | None:
        with self._lock:
            entry = self._by_id.get(schedule_id)
            return self._public(entry) if entry is not None else None

    def entries(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._public(entry) for entry in self._entries]

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    # writing (each call persists the whole file once; memory is restored if that fails)

    def add(self, entry: Mapping[str, Any]) -> dict[str, Any]:
        """Append a complete, checked schedule (it carries its own ``id``)."""
        schedule_id = schedule_id_text(entry.get("id"))
        if schedule_id is None:
            raise ValueError("a new schedule needs a string id")
        with self._lock:
            if schedule_id in self._by_id:
                raise ValueError(f"duplicate schedule id {schedule_id!r}")
            stored: MutableMapping[str, Any] = dict(entry)
            self._entries.append(stored)
            self._by_id[schedule_id] = stored
            try:
                self._save()
            except BaseException:
                self._entries.pop()
                del self._by_id[schedule_id]
                raise
            return self._public(stored)

    def update(self, schedule_id: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Overwrite the given fields in place (key order and comments stay)."""
        with self._lock:
            entry = self._by_id[schedule_id]
            missing = object()
            before = {key: entry.get(key, missing) for key in changes}
            for key, value in changes.items():
                entry[key] = value
            try:
                self._save()
            except BaseException:
                for key, old in before.items():
                    if old is missing:
                        del entry[key]
                    else:
                        entry[key] = old
                raise
            return self._public(entry)

    def set_known_state(self, schedule_ids: Iterable[str], state: str) -> list[dict[str, Any]]:
        """Set ``lastKnownState`` on several schedules with one write."""
        with self._lock:
            targets = [self._by_id[sid] for sid in schedule_ids]
            missing = object()
            before = [entry.get("lastKnownState", missing) for entry in targets]
            for entry in targets:
                entry["lastKnownState"] = state
            try:
                self._save()
            except BaseException:
                for entry, old in zip(targets, before, strict=True):
                    if old is missing:
                        del entry["lastKnownState"]
                    else:
                        entry["lastKnownState"] = old
                raise
            return [self._public(entry) for entry in targets]

    def delete(self, schedule_id: str) -> None:
        with self._lock:
            entry = self._by_id[schedule_id]
            index = next(i for i, e in enumerate(self._entries) if e is entry)
            del self._entries[index]
            del self._by_id[schedule_id]
            try:
                self._save()
            except BaseException:
                self._entries.insert(index, entry)
                self._by_id = {schedule_id_text(e.get("id")) or "": e for e in self._entries}
                raise
        self._state.forget(schedule_id)

    # runtime state (the sidecar)

    def run_state(self, schedule_id: str) -> RunState:
        return self._state.get(schedule_id)

    def record_fires(self, schedule_ids: Iterable[str], slot: float) -> None:
        """Note the slot handed to the task starter (before its answer is known)."""
        self._state.record_fires(schedule_ids, slot)

    def record_results(self, results: Iterable[tuple[str, str]], run_at: datetime) -> None:
        """Note ``(schedule id, outcome)`` of fires that ran at ``run_at``."""
        self._state.record_results(results, run_at, self._by_id)

    def record_fire_history(self, fires: Sequence[tuple[str, Fire]]) -> None:
        """Append ``(schedule id, fire)`` to the schedules' fire histories."""
        self._state.record_fire_history(fires, self._by_id)

    def fires(self, schedule_id: str, limit: int) -> list[Fire]:
        """The newest ``limit`` fires of a schedule, newest first."""
        return self._state.fires(schedule_id, limit)

    def run_summary(self, schedule_id: str) -> tuple[str | None, str | None, Fire | None]:
        """Last run, last result and newest fire of a schedule."""
        return self._state.summary(schedule_id)

    @property
    def state_dirty(self) -> bool:
        return self._state.dirty

    def flush_state(self) -> None:
        """Write the sidecar if anything changed since the last write."""
        self._state.flush()

    # internals

    def _public(self, entry: Mapping[str, Any]) -> dict[str, Any]:
        """A detached plain copy; plain scalars are shared, containers converted."""
        plain = {
            key: value if type(value) in _PLAIN_SCALARS else to_plain(value)
            for key, value in entry.items()
        }
        plain["id"] = schedule_id_text(entry.get("id"))
        return plain

    def _load(self) -> None:
        self._stamp = self._disk_stamp()
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            log.info("Schedule file %s does not exist yet: starting with no schedules", self.path)
            return
        except OSError as exc:
            raise ScheduleFileError(f"Schedule file {self.path}: cannot read: {exc}") from None
        try:
            text = raw.decode("utf-8").lstrip("\ufeff").replace("\r\n", "\n")
        except UnicodeDecodeError as exc:
            raise ScheduleFileError(f"Schedule file {self.path}: not UTF-8 text: {exc}") from None
        if not text.strip():
            return
        try:
            entries: list[Any] = parse_fast(text)
            root: MutableMapping[str, Any] = {ROOT_KEY: entries}
        except NotFast:
            root = self._load_yaml(text)
            entries = root[ROOT_KEY]
        self._root, self._entries = root, entries
        self._by_id = self._index(entries)
        for entry in entries:
            running = entry["startupState"] in RUNNING_STARTUP_STATES
            entry["lastKnownState"] = "started" if running else "stopped"

    def _load_yaml(self, text: str) -> MutableMapping[str, Any]:
        """The ruamel path; the round-trip tree is kept only if the file needs it back."""
        yaml = _round_trip_yaml()
        try:
            root = yaml.load(io.StringIO(text))
        except YAMLError as exc:
            raise ScheduleFileError(f"Schedule file {self.path}: not valid YAML: {exc}") from None
        if root is None:
            root = {ROOT_KEY: []}
        if not isinstance(root, MutableMapping):
            raise ScheduleFileError(
                f"Schedule file {self.path}: the top level must be a mapping with {ROOT_KEY}"
            )
        entries = root.get(ROOT_KEY)
        if entries is None:
            root[ROOT_KEY] = entries = []
        if not isinstance(entries, list):
            raise ScheduleFileError(f"Schedule file {self.path}: {ROOT_KEY} must be a list")
        if _ROUND_TRIP_MARKERS.search(text) or set(root) != {ROOT_KEY}:
            self._yaml = yaml
            return root
        return {ROOT_KEY: to_plain(entries)}

    def _index(self, entries: list[Any]) -> dict[str, MutableMapping[str, Any]]:
        """Entries by id, each fully validated: a file is checked entry by entry at load."""
        by_id: dict[str, MutableMapping[str, Any]] = {}
        for number, entry in enumerate(entries, start=1):
            where = f"Schedule file {self.path}: entry {number}"
            if not isinstance(entry, MutableMapping):
                raise ScheduleFileError(f"{where}: must be a mapping of schedule fields")
            schedule_id = schedule_id_text(entry.get("id"))
            if schedule_id is None:
                raise ScheduleFileError(f"{where}: field 'id' is required (text or number)")
            where = f"{where} (id {schedule_id!r})"
            if schedule_id in by_id:
                raise ScheduleFileError(f"{where}: field 'id' duplicates an earlier entry")
            try:
                validate_schedule(entry)
                self.calendars.check_entry(entry)
            except ScheduleValidationError as exc:
                raise ScheduleFileError(f"{where}: field '{exc.field}' {exc.message}") from None
            by_id[schedule_id] = entry
        return by_id

    def _disk_stamp(self) -> tuple[int, int] | None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def _save(self) -> None:
        if self._disk_stamp() != self._stamp:
            log.error(
                "Schedule file %s was changed by something other than Butler since Butler "
                "read it; refusing to overwrite those changes (restart Butler to load them)",
                self.path,
            )
            raise Conflict(
                "The schedule file was edited outside Butler since it was loaded; restart "
                "Butler to load the edits before changing schedules through the API"
            )
        if self._yaml is not None:
            buffer = io.StringIO()
            self._yaml.dump(self._root, buffer)
            text = buffer.getvalue()
        else:
            try:
                text = emit_fast(self._entries)
            except NotFast:
                buffer = io.StringIO()
                _round_trip_yaml().dump({ROOT_KEY: to_plain(self._entries)}, buffer)
                text = buffer.getvalue()
        atomic_write(self.path, text.encode("utf-8"))
        self._stamp = self._disk_stamp()


def _round_trip_yaml() -> YAML:
    """The fast codec's indentation, no line folding, and the user's quotes kept as written."""
    yaml = YAML(typ="rt")
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096
    yaml.preserve_quotes = True
    return yaml
