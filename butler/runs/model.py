"""One run: a task (or app reload) Butler started, and what became of it.

Statuses are QRS's execution states by name, so a run reads like the QMC's task list, plus
two of ours: ``StartFailed`` (QRS refused the start) and ``Unknown`` (QRS no longer knows
the execution, or never showed one for our start). Times are ISO 8601 with an offset.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any, Literal

RunKind = Literal["task", "appReload"]

FINAL_STATUSES = frozenset(
    {
        "FinishedSuccess",
        "FinishedFail",
        "Aborted",
        "Skipped",
        "Error",
        "Reset",
        "StartFailed",
        "Unknown",
    }
)
STATUSES = (
    "Triggered",
    "Queued",
    "Started",
    "AbortInitiated",
    "Aborting",
    "Retrying",
    *sorted(FINAL_STATUSES),
)

QRS_STATUS_NAMES = {
    0: "Triggered",  # NeverStarted: the execution exists but the scheduler has not moved it
    1: "Triggered",
    2: "Started",
    3: "Queued",
    4: "AbortInitiated",
    5: "Aborting",
    6: "Aborted",
    7: "FinishedSuccess",
    8: "FinishedFail",
    9: "Skipped",
    10: "Retrying",
    11: "Error",
    12: "Reset",
    13: "Started",  # DistributionQueue: the reload is done, the app waits to be distributed
    14: "Started",  # DistributionRunning
}
"""QRS's numeric ``TaskExecutionStatus`` by the names runs use."""


def is_final(status: str) -> bool:
    return status in FINAL_STATUSES


def to_millis(timestamp: float) -> float:
    """A time cut to the millisecond, as the API shows it, so ``until=<a createdAt>``
    includes that run."""
    return math.floor(timestamp * 1000) / 1000


def iso(timestamp: float | None) -> str | None:
    """Seconds since the epoch as ISO 8601 in UTC with its offset, milliseconds kept."""
    if timestamp is None:
        return None
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).isoformat(timespec="milliseconds")


def parse_iso(text: str) -> float:
    """An ISO 8601 time (``Z`` or an offset; no offset means UTC) as epoch seconds.

    Raises ``ValueError`` for anything else.
    """
    moment = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


@dataclass
class Run:
    """The record of one start; ``to_json`` gives the field names of the API."""

    run_id: str
    kind: RunKind
    task_id: str | None
    task_name: str | None
    app_id: str | None
    trigger: str
    caller: str
    request_id: str
    status: str
    created_at: float
    execution_id: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    duration_ms: int | None = None
    message: str = ""
    script_log_tail: str | None = None
    match_after: float | None = None
    """For a task run whose execution id is not known yet: the earliest QRS ``createdDate``
    an execution may have to be this run's (Butler's clock at the start less the allowed
    clock skew). Internal; not part of the API."""

    @property
    def final(self) -> bool:
        return is_final(self.status)

    def to_json(self) -> dict[str, Any]:
        return {
            "runId": self.run_id,
            "kind": self.kind,
            "taskId": self.task_id,
            "taskName": self.task_name,
            "appId": self.app_id,
            "trigger": self.trigger,
            "caller": self.caller,
            "requestId": self.request_id,
            "executionId": self.execution_id,
            "status": self.status,
            "createdAt": iso(self.created_at),
            "startedAt": iso(self.started_at),
            "finishedAt": iso(self.finished_at),
            "durationMs": self.duration_ms,
            "message": self.message,
            "scriptLogTail": self.script_log_tail,
        }

    def to_row(self) -> dict[str, Any]:
        """Every field, for the store (all scalars: a shallow copy is a full one)."""
        return dict(vars(self))

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Run:
        return cls(**row)


def outcome_of(runs: list[Run]) -> str:
    """``success`` (all FinishedSuccess), ``failure`` (any other final status) or ``timeout``
    (some are still going): the ``outcome`` of a waited start.

    A start that started nothing failed: a load script waiting on a tag nobody may start
    must not carry on as if its reloads had run.
    """
    if not runs:
        return "failure"
    if any(not run.final for run in runs):
        return "timeout"
    if all(run.status == "FinishedSuccess" for run in runs):
        return "success"
    return "failure"
