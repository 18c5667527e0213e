"""The schedule file (the original Butler's ``butlerSchedule:`` YAML) and its runtime sidecar.

Why it looks like this:

* Existing schedule files must keep loading and keep their comments, so hand-written files
  go through ruamel.yaml's round-trip mode. That mode costs about 1.5 ms per entry, far too
  slow for thousands of schedules, so files in the plain layout Butler itself writes are
  read and written by a small line-based codec instead; the codec refuses anything it is
  not certain about and the file then takes the ruamel path.
* The file is the user's: a file that does not parse or validate stops start-up and is
  never overwritten, and neither is a file edited by someone else after Butler read it
  (409 instead). Every write replaces the whole file atomically (temp file in the same
  folder, fsync, ``os.replace``), one writer at a time.
* What happens at run time (last run, last result, last fired slot) changes every few
  seconds and is not configuration, so it lives in ``<stem>.state.json`` next to the file
  and never rewrites the user's YAML.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from butler.config import ConfigError
from butler.errors import Conflict

log = logging.getLogger(__name__)

ROOT_KEY = "butlerSchedule"
STARTUP_STATES = ("start", "started", "stop", "stopped")
RUNNING_STARTUP_STATES = frozenset({"start", "started"})
READ_ONLY_FIELDS = ("id", "created", "lastKnownState", "nextRun", "lastRun", "lastResult")
"""Fields a caller cannot set: Butler assigns or computes them."""

REQUIRED_FIELDS = ("name", "cronSchedule", "timezone", "qlikSenseTaskId", "startupState")
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_REPLACE_ATTEMPTS = 5
_PLAIN_SCALARS = (str, int, float, bool, type(None))


class ScheduleFileError(ConfigError):
    """The schedule file cannot be used; start-up stops and the file is left as it is."""


class ScheduleValidationError(ValueError):
    """One field of a schedule is invalid; ``field`` names it for the caller."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field} {message}")
        self.field = field
        self.message = message


# --- validation -------------------------------------------------------------------------


def cron_fields(expression: str) -> list[str]:
    """The 5 or 6 fields of a cron expression; 6 fields means seconds come first."""
    fields = expression.split()
    if len(fields) not in (5, 6):
        raise ScheduleValidationError(
            "cronSchedule", f"must have 5 or 6 fields, got {len(fields)}: {expression!r}"
        )
    for field in fields:
        for part in field.split(","):
            if part[:1] in ("H", "h", "R", "r"):
                raise ScheduleValidationError(
                    "cronSchedule", f"hashed/random values (H, R) are not supported: {part!r}"
                )
    return fields


def check_cron(expression: Any) -> str:
    """The expression with normalised spacing, if croniter accepts it and it ever fires."""
    if not isinstance(expression, str):
        raise ScheduleValidationError("cronSchedule", "must be string")
    return _check_cron_text(expression)


@functools.lru_cache(maxsize=1024)
def _check_cron_text(expression: str) -> str:
    fields = cron_fields(expression)
    normalised = " ".join(fields)
    try:
        it = croniter(normalised, datetime(2000, 1, 1), second_at_beginning=len(fields) == 6)
        it.get_next(datetime)
    except Exception as exc:
        raise ScheduleValidationError(
            "cronSchedule", f"is not a valid cron expression ({normalised!r}): {exc}"
        ) from None
    return normalised


def check_timezone(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ScheduleValidationError("timezone", "must be an IANA time zone name")
    return _check_zone_name(name)


@functools.lru_cache(maxsize=1024)
def _check_zone_name(name: str) -> str:
    try:
        ZoneInfo(name)
    except Exception:
        raise ScheduleValidationError(
            "timezone", f"is not a known IANA time zone: {name!r}"
        ) from None
    return name


def check_task_id(value: Any) -> str:
    if not isinstance(value, str) or not _GUID.fullmatch(value):
        raise ScheduleValidationError("qlikSenseTaskId", "must be a GUID")
    return value


def check_startup_state(value: Any) -> str:
    if value not in STARTUP_STATES:
        raise ScheduleValidationError(
            "startupState",
            "must be equal to one of the allowed values: " + ", ".join(STARTUP_STATES),
        )
    return str(value)


def check_name(value: Any) -> str:
    if not isinstance(value, str):
        raise ScheduleValidationError("name", "must be string")
    return value


def check_tags(value: Any) -> Any:
    if value is None:
        return value
    if not isinstance(value, list) or not all(
        isinstance(tag, str | int | float) and not isinstance(tag, bool) for tag in value
    ):
        raise ScheduleValidationError("tags", "must be array of strings")
    return value


_CHECKS = {
    "name": check_name,
    "cronSchedule": check_cron,
    "timezone": check_timezone,
    "qlikSenseTaskId": check_task_id,
    "startupState": check_startup_state,
    "tags": check_tags,
}


def validate_schedule(data: Mapping[str, Any]) -> None:
    """Check a complete schedule definition (required fields present, each valid)."""
    for field in REQUIRED_FIELDS:
        if field not in data or data[field] is None:
            raise ScheduleValidationError(field, "is required")
    for field, check in _CHECKS.items():
        if field in data:
            check(data[field])


def schedule_id_text(value: Any) -> str | None:
    """The id as callers address it: hand-written numeric ids become their text."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    return None


def iso_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and ``Z``, as JavaScript's ``toISOString``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def to_plain(value: Any) -> Any:
    """ruamel's commented containers and scalar subclasses as plain JSON-ready values."""
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, datetime):
        return iso_utc(value) if value.tzinfo else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


# --- the fast codec for the layout Butler writes -----------------------------------------

_SPECIAL_WORDS = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"})
_INDICATORS = frozenset("-?:,[]{}#&*!|>'\"%@`")
_UNSAFE_CHAR = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\ufeff\ufffe\uffff]")
_INT = re.compile(r"-?(?:0|[1-9][0-9]*)")
_FLOAT = re.compile(r"-?[0-9]+\.[0-9]+(?:e[-+][0-9]+)?")
_CONSTANTS: dict[str, Any] = {"true": True, "false": False, "null": None, "~": None}
_KEY = re.compile(r"([A-Za-z_][A-Za-z0-9_]*):(?: (.*))?")
_ROUND_TRIP_MARKERS = re.compile(r"(?m)(?:^|\s)#|[:-][ \t]+[|>][-+0-9]*[ \t]*$|^---|^%")


class _NotFast(Exception):
    """The text or value is outside what the fast codec handles with certainty."""


def _plain_ok(text: str) -> bool:
    """Whether ``text`` can be written unquoted and reads back as this same string."""
    if not text or text != text.strip() or text[0] in _INDICATORS or _UNSAFE_CHAR.search(text):
        return False
    if ": " in text or " #" in text or text.endswith(":"):
        return False
    if text[0].isalpha():
        return text.lower() not in _SPECIAL_WORDS
    if _GUID.fullmatch(text):
        return True
    # Numbers and timestamps never contain these, so digit-led cron expressions stay text.
    return text[0].isdigit() and ("*" in text or "/" in text)


def _emit_str(text: str) -> str:
    if _plain_ok(text):
        return text
    if not _UNSAFE_CHAR.search(text):
        return "'" + text.replace("'", "''") + "'"
    escaped = json.dumps(text, ensure_ascii=False)
    return _UNSAFE_CHAR.sub(lambda m: f"\\u{ord(m.group()):04x}", escaped)


def _emit_float(value: float) -> str:
    if value != value:
        return ".nan"
    if value in (float("inf"), float("-inf")):
        return ".inf" if value > 0 else "-.inf"
    text = repr(value)
    if "e" in text and "." not in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}.0e{exponent}"
    return text


def _emit_scalar(value: Any) -> str:
    if isinstance(value, str):
        return _emit_str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        return _emit_float(value)
    if value is None:
        return "null"
    if isinstance(value, list | dict):
        try:
            text = json.dumps(to_plain(value), ensure_ascii=False, allow_nan=False)
        except ValueError:
            raise _NotFast from None
        return _UNSAFE_CHAR.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    raise _NotFast


def _emit_fast(entries: Iterable[Mapping[str, Any]]) -> str:
    """The js-yaml-like block layout the original wrote; raises _NotFast on odd values.

    Most values repeat across entries (zone, cron, state, tags), so each distinct string is
    quoted once per call.
    """
    quoted: dict[str, str] = {}
    keys_ok: set[str] = set()
    out: list[str] = []
    append = out.append
    for entry in entries:
        prefix = "  - "
        for key, value in entry.items():
            if key not in keys_ok:
                if not isinstance(key, str) or not _KEY.fullmatch(key + ":"):
                    raise _NotFast
                keys_ok.add(key)
            if type(value) is str:
                text = quoted.get(value)
                if text is None:
                    text = quoted[value] = _emit_str(value)
                append(f"{prefix}{key}: {text}\n")
            elif isinstance(value, list) and value and all(type(v) is str for v in value):
                append(f"{prefix}{key}:\n")
                for item in value:
                    text = quoted.get(item)
                    if text is None:
                        text = quoted[item] = _emit_str(item)
                    append(f"      - {text}\n")
            else:
                append(f"{prefix}{key}: {_emit_scalar(value)}\n")
            prefix = "    "
        if prefix == "  - ":
            raise _NotFast
    if not out:
        return f"{ROOT_KEY}: []\n"
    return f"{ROOT_KEY}:\n" + "".join(out)


def _parse_scalar(raw: str) -> Any:
    if raw != raw.strip() or not raw:
        raise _NotFast
    if raw[0] == "'":
        inner = raw[1:-1]
        if len(raw) < 2 or raw[-1] != "'" or "'" in inner.replace("''", ""):
            raise _NotFast
        if _UNSAFE_CHAR.search(inner):
            raise _NotFast
        return inner.replace("''", "'")
    if raw[0] in '"[{':
        if any(ch in raw for ch in "\x85\u2028\u2029"):
            raise _NotFast
        try:
            value = json.loads(
                raw,
                object_pairs_hook=_no_duplicates,
                parse_float=_strict_float,
                parse_constant=_refuse,
            )
        except (ValueError, _NotFast):
            raise _NotFast from None
        if raw[0] == '"' and not isinstance(value, str):
            raise _NotFast
        return value
    if _plain_ok(raw):
        return raw
    if _INT.fullmatch(raw):
        return int(raw)
    if _FLOAT.fullmatch(raw):
        return float(raw)
    if raw in _CONSTANTS:
        return _CONSTANTS[raw]
    raise _NotFast


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _NotFast
    return result


def _strict_float(text: str) -> float:
    if not re.fullmatch(r"-?[0-9]+\.[0-9]+(?:[eE][-+]?[0-9]+)?", text):
        raise _NotFast
    return float(text)


def _refuse(_text: str) -> Any:
    raise _NotFast


_ITEM, _FIRST, _FIELD = 0, 1, 2


def _parse_line(line: str) -> tuple[int, str, Any, bool]:
    """(kind, key, value, is_container) of one line of the fast layout."""
    if line.startswith("      - "):
        item = _parse_scalar(line[8:])
        if not isinstance(item, str):
            raise _NotFast
        return _ITEM, "", item, False
    if line.startswith("  - "):
        kind = _FIRST
    elif line.startswith("    "):
        kind = _FIELD
    else:
        raise _NotFast
    match = _KEY.fullmatch(line[4:])
    if match is None:
        raise _NotFast
    raw = match.group(2)
    if raw is None:
        return kind, match.group(1), None, True
    value = _parse_scalar(raw)
    return kind, match.group(1), value, isinstance(value, list | dict)


def _parse_fast(text: str) -> list[dict[str, Any]]:
    """Entries of a file in the layout ``_emit_fast`` writes; _NotFast for anything else.

    Lines repeat across entries, so each distinct line is parsed once per call.
    """
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if lines == [f"{ROOT_KEY}: []"]:
        return []
    if not lines or lines[0] != f"{ROOT_KEY}:" or len(lines) == 1:
        raise _NotFast
    seen: dict[str, tuple[int, str, Any, bool]] = {}
    entries: list[dict[str, Any]] = []
    entry: dict[str, Any] = {}
    open_list: list[str] | None = None
    for line in lines[1:]:
        parsed = seen.get(line)
        if parsed is None:
            parsed = _parse_line(line)
            if not parsed[3] or parsed[2] is None:
                seen[line] = parsed
        kind, key, value, container = parsed
        if kind == _ITEM:
            if open_list is None:
                raise _NotFast
            open_list.append(value)
            continue
        _close_list(entry, open_list)
        if kind == _FIRST:
            entry = {}
            entries.append(entry)
        elif not entries or key in entry:
            raise _NotFast
        if container and value is None:
            open_list = entry[key] = []
        else:
            entry[key] = value
            open_list = None
    _close_list(entry, open_list)
    return entries


def _close_list(entry: dict[str, Any], items: list[str] | None) -> None:
    """``key:`` with no items below it is null in YAML, not an empty list."""
    if items is not None and not items:
        for key, value in entry.items():
            if value is items:
                entry[key] = None


def _round_trip_yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096
    yaml.preserve_quotes = True
    return yaml


# --- atomic file writes ------------------------------------------------------------------


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so readers see the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        _replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _replace(source: Path, target: Path) -> None:
    """``os.replace``, retried briefly: on Windows a reader or virus scanner may hold it."""
    for attempt in range(_REPLACE_ATTEMPTS):
        try:
            source.replace(target)
            return
        except PermissionError:
            if attempt == _REPLACE_ATTEMPTS - 1:
                raise
            time.sleep(0.05 * (attempt + 1))


# --- runtime state -----------------------------------------------------------------------


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


# --- the store ---------------------------------------------------------------------------


class ScheduleStore:
    """Schedules from one file, kept in memory in file order; the one writer of that file.

    Construction reads and validates the file (``ScheduleFileError`` on any problem); a
    missing file means no schedules and is created on the first write. As in the original,
    ``lastKnownState`` is recomputed from ``startupState`` at every load.
    """

    def __init__(self, path: Path, state_path: Path | None = None):
        self.path = Path(path)
        self.state_path = state_path or self.path.with_name(f"{self.path.stem}.state.json")
        self._lock = threading.RLock()
        self._state_lock = threading.Lock()
        self._state_write_lock = threading.Lock()
        self._yaml: YAML | None = None
        self._root: MutableMapping[str, Any] = {ROOT_KEY: []}
        self._entries: list[MutableMapping[str, Any]] = self._root[ROOT_KEY]
        self._by_id: dict[str, MutableMapping[str, Any]] = {}
        self._runs: dict[str, RunState] = {}
        self._fragments: dict[str, str] = {}
        self._dirty: set[str] = set()
        self._stale: set[str] = set()
        """Loaded but not yet rendered: rendered at the next write, no reason for one."""
        self._layout_changed = False
        self._stamp: tuple[int, int] | None = None
        """mtime and size of the file as Butler last read or wrote it."""
        self._load()
        self._load_state()

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

    # writing (each call persists the whole file once)

    def add(self, entry: Mapping[str, Any]) -> dict[str, Any]:
        """Append a complete, validated schedule (it carries its own ``id``)."""
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
        with self._state_lock:
            self._runs.pop(schedule_id, None)
            if self._fragments.pop(schedule_id, None) is not None:
                self._layout_changed = True

    # runtime state

    def run_state(self, schedule_id: str) -> RunState:
        with self._state_lock:
            state = self._runs.get(schedule_id)
            return RunState(**vars(state)) if state is not None else RunState()

    def record_fires(self, schedule_ids: Iterable[str], slot: float) -> None:
        """Note the slot handed to the task starter (before its answer is known)."""
        with self._state_lock:
            runs, dirty = self._runs, self._dirty
            for sid in schedule_ids:
                state = runs.get(sid)
                if state is None:
                    state = runs[sid] = RunState()
                state.last_slot = slot
                dirty.add(sid)

    def record_results(self, results: Iterable[tuple[str, str]], run_at: datetime) -> None:
        """Note ``(schedule id, outcome)`` of fires that ran at ``run_at``."""
        when = iso_utc(run_at)
        with self._state_lock:
            for sid, result in results:
                if sid not in self._by_id:
                    continue
                state = self._runs.get(sid)
                if state is None:
                    state = self._runs[sid] = RunState()
                state.last_run, state.last_result = when, result
                self._dirty.add(sid)

    @property
    def state_dirty(self) -> bool:
        return bool(self._dirty) or self._layout_changed

    def flush_state(self) -> None:
        """Write the sidecar if anything changed since the last write.

        Each schedule's JSON is rendered only when it changed, in small steps, so writing
        the state of 10,000 schedules never holds the interpreter lock for long (a single
        large ``json.dumps`` would, and would make fires late).
        """
        with self._state_write_lock:
            with self._state_lock:
                if not self.state_dirty:
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
            with self._state_lock:
                for sid, fragment in rendered.items():
                    if sid in self._runs:
                        self._fragments[sid] = fragment
                body = ",\n  ".join(self._fragments.values())
            text = f'{{"version": 1, "schedules": {{\n  {body}\n}}}}\n'
            try:
                atomic_write(self.state_path, text.encode("utf-8"))
            except OSError:
                with self._state_lock:
                    self._dirty.update(sid for sid in changed if sid in self._runs)
                    self._layout_changed = True
                log.exception("Could not write scheduler state file %s", self.state_path)

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
            entries: list[Any] = _parse_fast(text)
            root: MutableMapping[str, Any] = {ROOT_KEY: entries}
        except _NotFast:
            root = self._load_yaml(text)
            entries = root[ROOT_KEY]
        self._root, self._entries = root, entries
        self._by_id = self._index(entries)
        for entry in entries:
            running = entry["startupState"] in RUNNING_STARTUP_STATES
            entry["lastKnownState"] = "started" if running else "stopped"

    def _load_yaml(self, text: str) -> MutableMapping[str, Any]:
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
            except ScheduleValidationError as exc:
                raise ScheduleFileError(f"{where}: field '{exc.field}' {exc.message}") from None
            by_id[schedule_id] = entry
        return by_id

    def _load_state(self) -> None:
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("Ignoring unreadable scheduler state file %s: %s", self.state_path, exc)
            return
        schedules = data.get("schedules") if isinstance(data, Mapping) else None
        if not isinstance(schedules, Mapping):
            log.warning("Ignoring scheduler state file %s: unexpected layout", self.state_path)
            return
        self._runs = {
            sid: RunState.from_json(state) for sid, state in schedules.items() if sid in self._by_id
        }
        self._stale = set(self._runs)

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
                text = _emit_fast(self._entries)
            except _NotFast:
                buffer = io.StringIO()
                _round_trip_yaml().dump({ROOT_KEY: to_plain(self._entries)}, buffer)
                text = buffer.getvalue()
        atomic_write(self.path, text.encode("utf-8"))
        self._stamp = self._disk_stamp()
