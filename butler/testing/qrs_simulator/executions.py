"""The QRS simulator's execution model: Qlik's scheduler queue, played out on a clock.

Butler's run tracking must be proven against executions that queue, run for a while and
then succeed or fail, as on a real site whose scheduler runs at most a few reloads at once.
Every state follows from the clock and the start order (an execution is ``Triggered`` for
``start_delay``, waits ``Queued`` while ``max_concurrent`` others run, runs for its task's
duration, then ends with its task's outcome), so there is no timer thread per execution and
a test that drives a :class:`ManualClock` sees every state without sleeping.

Duration and outcome are taken from the task when the task is triggered: changing them at
run time affects later starts, never one already under way (as editing a real task does).
The caller holds the simulator's lock around every method.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable

from butler.testing.qrs_catalogue import Execution, Task, script_log

__all__ = ["Clock", "ExecutionQueue", "ManualClock"]

Clock = Callable[[], float]


class ManualClock:
    """A clock tests move forward by hand (``advance``), so queued and running states can be
    observed at exact instants instead of by sleeping."""

    def __init__(self, start: float | None = None):
        self._now = time.time() if start is None else float(start)
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        """Move the clock ``seconds`` forward; returns the new time."""
        with self._lock:
            self._now += max(0.0, float(seconds))
            return self._now


class ExecutionQueue:
    """All executions (the newest ``max_log``), the scheduler queue and the script logs."""

    def __init__(self, *, max_concurrent: int, start_delay: float, max_log: int):
        self._max_log = max_log
        self.max_concurrent = max(1, int(max_concurrent))
        self.start_delay = max(0.0, float(start_delay))
        self._executions: OrderedDict[str, Execution] = OrderedDict()
        self._by_result: dict[str, Execution] = {}
        self._waiting: deque[Execution] = deque()
        self._running: list[Execution] = []
        self._last_start = float("-inf")
        self._downloads: dict[str, str] = {}

    def clear(self) -> None:
        self._executions.clear()
        self._by_result.clear()
        self._waiting.clear()
        self._running.clear()
        self._last_start = float("-inf")
        self._downloads.clear()

    def trigger(self, task: Task, now: float) -> Execution:
        execution = Execution(
            session_id=str(uuid.uuid4()),
            result_id=str(uuid.uuid4()),
            task=task,
            triggered=now,
            ready=now + self.start_delay,
            duration=task.duration,
            outcome=task.outcome,
            file_reference_id=str(uuid.uuid4()),
        )
        task.last_execution = execution
        self._executions[execution.session_id] = execution
        self._by_result[execution.result_id] = execution
        self._waiting.append(execution)
        while len(self._executions) > self._max_log:
            _, dropped = self._executions.popitem(last=False)
            self._by_result.pop(dropped.result_id, None)
        return execution

    def advance(self, now: float) -> None:
        """Start, in trigger order, every execution whose slot came free by ``now``.

        Each start happens at the instant it would have on a real scheduler (when the
        execution became ready, or when enough running ones finished), not at ``now``, so
        start and stop times do not depend on when someone happened to look.
        """
        while self._waiting:
            head = self._waiting[0]
            at = max(head.ready, self._last_start)
            busy = sorted(e.finished for e in self._running if e.finished > at)
            if len(busy) >= self.max_concurrent:
                at = busy[len(busy) - self.max_concurrent]
            if at > now:
                return
            self._waiting.popleft()
            head.started = at
            self._last_start = at
            self._running = [e for e in self._running if e.finished > at]
            self._running.append(head)

    def session(self, session_id: str) -> Execution | None:
        return self._executions.get(session_id)

    def result(self, result_id: str) -> Execution | None:
        return self._by_result.get(result_id)

    def all(self) -> list[Execution]:
        return list(self._executions.values())

    def offer_download(self, execution: Execution) -> str:
        """A one-off reference under which ``/qrs/download/reloadtask/{ref}/...`` serves the
        execution's script log, as QRS hands out before a download."""
        reference = str(uuid.uuid4())
        self._downloads[reference] = script_log(execution)
        return reference

    def download(self, reference: str) -> str | None:
        return self._downloads.pop(reference, None)
