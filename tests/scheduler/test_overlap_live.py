"""``overlap: forbid`` over real sockets: Butler's scheduler against the QRS simulator.

A 3 s reload on an every-second schedule starts once per about 3 s; the fires in between
are listed as ``skipped:overlap`` naming the run that is still going.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

from butler.services import Services
from butler.testing.qrs_simulator import QrsSimulator
from tests.runs.conftest import add_tasks, poll_until, runs_butler  # noqa: F401
from tests.scheduler.conftest import entry, write_schedules

TIMEOUT = 10
KEYS = {"getSchedule": True, "startSchedule": True}


def planned(fire: dict[str, Any]) -> float:
    return datetime.fromisoformat(fire["plannedAt"].replace("Z", "+00:00")).timestamp()


def test_a_3_second_reload_on_a_1_second_schedule_starts_once_per_3_seconds(
    runs_butler: Callable[..., tuple[str, Services]],  # noqa: F811
    qrs_simulator: QrsSimulator,
    tmp_path: Path,
) -> None:
    (task,) = add_tasks(qrs_simulator, 1, "overlap live", duration=3.0)
    path = tmp_path / "schedule.yaml"
    write_schedules(path, [entry("every-second", "* * * * * *", task=task, overlap="forbid")])
    url, _ = runs_butler(
        {
            "scheduler": {"enable": True, "configfile": str(path)},
            "restServerEndpointsEnable": {"scheduler": KEYS},
        }
    )
    fires_url = f"{url}/v4/schedules/every-second/fires"

    def started() -> list[dict[str, Any]]:
        fires = requests.get(fires_url, timeout=TIMEOUT).json()
        return [fire for fire in fires if fire["outcome"] == "started"]

    first = poll_until(started, timeout=5)
    assert first, "the schedule never started its task"
    manual = requests.post(f"{url}/v4/schedules/every-second/run", timeout=TIMEOUT)
    assert manual.status_code == 409, manual.text
    assert manual.json()["outcome"] == "skipped:overlap"

    assert len(poll_until(lambda: len(started()) >= 2 and started(), timeout=8) or []) >= 2
    fires = requests.get(fires_url, timeout=TIMEOUT).json()
    assert all(fire["outcome"] in ("started", "skipped:overlap") for fire in fires), fires
    starts = [fire for fire in fires if fire["outcome"] == "started"]
    newer, older = starts[0], starts[1]
    assert planned(newer) - planned(older) >= 3
    (first_run,) = older["runIds"]
    between = [f for f in fires if planned(older) < planned(f) < planned(newer)]
    assert len(between) >= 3, fires  # two timed fires at least, and the manual one
    assert all(f["outcome"] == "skipped:overlap" and f["runIds"] == [] for f in between)
    assert all(f"run {first_run} of the previous fire is " in f["note"] for f in between)
    run = requests.get(f"{url}/v4/runs/{first_run}", timeout=TIMEOUT).json()
    assert (run["trigger"], run["caller"], run["taskId"]) == ("schedule", "every-second", task)
    assert run["status"] == "FinishedSuccess" and run["durationMs"] >= 3000
