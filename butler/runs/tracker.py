"""One poll of QRS for every open task run: what each run's execution is doing now.

Why it is built this way:

* Cost does not grow with the number of runs: one ``GET /qrs/executionresult/full`` per
  poll, its filter naming every known execution (``executionID eq …``, 111 to a request),
  plus one ``createdDate ge '<t>'`` clause when some runs do not know their execution yet.
* A batched ``start/many`` answers 204 without ids, so a new run learns its execution from
  that clause: the earliest execution result of its task created at or after the start
  (less the allowed clock skew) that no other run has claimed. Runs of one task claim in
  start order. A run whose task shows no such execution within ``MATCH_WINDOW`` becomes
  ``Unknown``; it is never reported finished on a guess from an older execution.
* A known execution that QRS no longer lists becomes ``Unknown`` (QRS deletes results with
  its own retention, or the database was restored).
* Failed reloads get the tail of their script log (two more QRS calls, once per failure).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from butler.errors import ApiError
from butler.guid import normalise_guid
from butler.qrs import QrsClient
from butler.runs.model import QRS_STATUS_NAMES, Run, parse_iso

log = logging.getLogger(__name__)

MATCH_WINDOW = 120.0
"""Seconds a run may wait for QRS to show its execution before it is ``Unknown``."""
SCRIPT_LOG_LINES = 50
_NEVER_PREFIX = "1753-"
_ZERO_GUID = "00000000-0000-0000-0000-000000000000"
_FAILED = frozenset({"FinishedFail", "Error", "Aborted"})


def qrs_time(timestamp: float) -> str:
    """A time as QRS writes it (``2026-12-02T01:30:00.000Z``), for ``createdDate`` filters."""
    moment = dt.datetime.fromtimestamp(timestamp, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class Poll:
    """What one poll asks QRS: the filter clauses, in request order."""

    clauses: list[str]

    @classmethod
    def of(cls, runs: Iterable[Run]) -> Poll:
        clauses: list[str] = []
        bounds: list[float] = []
        for run in runs:
            if run.execution_id:
                clauses.append(f"executionID eq {run.execution_id}")
            elif run.match_after is not None:
                bounds.append(run.match_after)
        if bounds:
            clauses.append(f"createdDate ge '{qrs_time(min(bounds))}'")
        return cls(clauses)


def poll(
    qrs: QrsClient,
    runs: Sequence[Run],
    now: float,
    claimed: Callable[[Iterable[str]], set[str]],
) -> list[Run]:
    """Ask QRS about ``runs`` (open task runs, oldest first) and return those that changed.

    ``claimed`` tells which of some execution ids runs outside ``runs`` already have.
    Raises ``ApiError`` (QRS unreachable, failing, timing out): nothing is changed then.
    """
    asked = Poll.of(runs)
    if not asked.clauses:
        return []
    results = qrs.execution_results(asked.clauses)
    by_execution = {str(r.get("executionID", "")).lower(): r for r in results}
    taken = {run.execution_id for run in runs if run.execution_id}
    candidates: dict[str, list[tuple[float, str, Mapping[str, Any]]]] = {}
    if any(run.execution_id is None for run in runs):
        taken |= claimed(set(by_execution) - taken)
        candidates = _by_task(results, taken)
    changed: dict[str, Run] = {}
    for run in runs:
        if run.execution_id is None:
            match = _claim(run, candidates.get(run.task_id or "", []), taken)
            if match is None:
                if now - run.created_at > MATCH_WINDOW:
                    _unknown(run, "QRS shows no execution of this task for Butler's start")
                    changed[run.run_id] = run
                continue
            run.execution_id = str(match["executionID"]).lower()
            taken.add(run.execution_id)
            changed[run.run_id] = run
        result = by_execution.get(run.execution_id or "")
        if result is None:
            _unknown(run, f"QRS no longer knows execution {run.execution_id}")
            changed[run.run_id] = run
        elif _apply(run, result):
            changed[run.run_id] = run
    for run in changed.values():
        if run.status in _FAILED and run.script_log_tail is None:
            run.script_log_tail = _script_log_tail(
                qrs, run, by_execution.get(run.execution_id or "")
            )
    return list(changed.values())


def _by_task(
    results: Sequence[Mapping[str, Any]], taken: set[str]
) -> dict[str, list[tuple[float, str, Mapping[str, Any]]]]:
    """Unclaimed results per task id, oldest first: each run then looks at its own task's
    few, so matching stays linear in the number of results."""
    grouped: dict[str, list[tuple[float, str, Mapping[str, Any]]]] = {}
    for result in results:
        execution = str(result.get("executionID", "")).lower()
        if execution in taken:
            continue
        try:
            created = parse_iso(str(result.get("createdDate", "")))
        except ValueError:
            continue
        task = str(result.get("taskID", "")).lower()
        grouped.setdefault(task, []).append((created, execution, result))
    for found in grouped.values():
        found.sort(key=lambda item: (item[0], item[1]))
    return grouped


def _claim(
    run: Run, candidates: Sequence[tuple[float, str, Mapping[str, Any]]], taken: set[str]
) -> Mapping[str, Any] | None:
    """The earliest result of the run's task created at or after its start, not yet taken."""
    for created, execution, result in candidates:
        if execution not in taken and run.match_after is not None and created >= run.match_after:
            return result
    return None


def _apply(run: Run, result: Mapping[str, Any]) -> bool:
    """Copy status, times, duration and last message from QRS; whether anything changed."""
    before = (run.status, run.started_at, run.finished_at, run.duration_ms, run.message)
    status = QRS_STATUS_NAMES.get(_int(result.get("status")), run.status)
    run.status = status
    run.started_at = _time(result.get("startTime"))
    if run.final:
        run.finished_at = _time(result.get("stopTime"))
        duration = _int(result.get("duration"))
        run.duration_ms = duration if duration >= 0 else None
    app_id = str(result.get("appID") or "").lower()
    if app_id and app_id != _ZERO_GUID:
        run.app_id = app_id
    run.message = _last_message(result) or run.message
    return before != (run.status, run.started_at, run.finished_at, run.duration_ms, run.message)


def _unknown(run: Run, message: str) -> None:
    run.status = "Unknown"
    run.message = message


def _time(value: Any) -> float | None:
    text = str(value or "")
    if not text or text.startswith(_NEVER_PREFIX):
        return None
    try:
        return parse_iso(text)
    except ValueError:
        return None


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1


def _last_message(result: Mapping[str, Any]) -> str:
    details = [d for d in result.get("details") or [] if isinstance(d, Mapping)]
    if not details:
        return ""
    # Stable sort: of details written in the same millisecond, the later listed is the last.
    latest = sorted(details, key=lambda d: str(d.get("detailCreatedDate", "")))[-1]
    return str(latest.get("message", ""))


def _script_log_tail(qrs: QrsClient, run: Run, result: Mapping[str, Any] | None) -> str | None:
    if result is None or not result.get("scriptLogAvailable") or not run.task_id:
        return None
    try:
        text = qrs.script_log(
            normalise_guid(run.task_id),
            str(result.get("id", "")),
            str(result.get("fileReferenceID", "")),
        )
    except ApiError as exc:
        log.warning("Run %s: script log not available: %s", run.run_id, exc.message)
        return None
    return "\n".join(text.splitlines()[-SCRIPT_LOG_LINES:])
