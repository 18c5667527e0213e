"""The REST answer of a task start, in the original's layout (field names of seed 001)."""

from __future__ import annotations

from typing import Any

from butler.tasks import StartResult


def start_response(result: StartResult) -> dict[str, Any]:
    """Per-kind lists of what was started, denied, invalid, not found or failed."""
    return {
        "tasksId": {
            "started": result.started_by_id,
            "invalid": result.invalid_ids,
            "denied": result.denied_ids,
        },
        "tasksTag": result.started_by_tag,
        "tasksTagDenied": result.denied_tags,
        "tasksCP": result.started_by_cp,
        "tasksCPDenied": result.denied_cps,
        "tasksStarted": result.started,
        "tasksNotFound": result.not_found,
        "tasksFailed": result.failed,
        "totalTasksStarted": len(result.started),
    }
