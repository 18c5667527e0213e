"""A Butler with task start and run routes, served against the session's QRS simulator."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import requests

from butler.services import Services
from butler.testing.qrs_simulator import QrsSimulator
from tests.conftest import deep_merge
from tests.fixtures.qrs import butler_qrs_config

POLL = 0.1


@pytest.fixture
def runs_butler(
    started_butler, qrs_simulator, qrs_certs, tmp_path
) -> Callable[..., tuple[str, Services]]:
    """Factory: ``(base URL, services)`` of a started Butler; ``extra`` is merged into the
    config. The run store lives in tmp_path, so a second call reopens the same records."""

    def start(extra: dict[str, Any] | None = None) -> tuple[str, Services]:
        base = {
            **butler_qrs_config(qrs_simulator, qrs_certs),
            "restServerEndpointsEnable": {"senseStartTask": True, "runs": True},
            "keyValueStore": {"persistence": "memory"},
            "runs": {"pollIntervalSeconds": POLL, "dbFile": str(tmp_path / "runs.sqlite")},
        }
        return started_butler(deep_merge(base, extra or {}))

    return start


def poll_until(check: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    """``check()``'s first truthy value, polled until ``timeout`` (its last value then)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def add_tasks(
    sim: QrsSimulator, count: int, tag: str, duration: float = 0.0, outcome: str = "success"
) -> list[str]:
    """``count`` new reload tasks tagged ``tag``; their ids in order."""
    ids = []
    for number in range(count):
        task_id = str(uuid.uuid4())
        sim.add_task(
            {
                "id": task_id,
                "name": f"{tag} task {number:02d}",
                "tags": [tag],
                "durationSeconds": duration,
                "outcome": outcome,
            }
        )
        ids.append(task_id)
    return ids


def start(url: str, body: Any = None, task: str = "-", **query: Any) -> requests.Response:
    return requests.put(
        f"{url}/v4/reloadtask/{task}/start",
        json=body if body is not None else [],
        params={key: str(value) for key, value in query.items()},
        timeout=30,
    )


def tag_body(tag: str) -> list[dict[str, Any]]:
    return [{"type": "starttasktag", "payload": {"tag": tag}}]
