"""The QRS routes Butler uses, answered from a live task catalogue.

Butler must be proven against what QRS really checks and answers: the Xrfkey check, QRS
filter expressions, task starts by id, by name and many at once, and the execution
session/result objects Butler polls after a start. The JSON shapes live in
``butler.testing.qrs_catalogue``; this module owns the catalogue state and the routing.
Starts are recorded (see ``recording``) because a start is what tests most want to assert.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Mapping
from typing import Any

from butler.testing.qrs_catalogue import (
    UNFINISHED,
    Execution,
    Task,
    build_task,
    condensed_task,
    rendered_task,
    result_json,
    session_json,
    synthetic_task,
)
from butler.testing.qrs_filter import FilterError, filter_items, parse_filter
from butler.testing.qrs_simulator.executions import Clock, ExecutionQueue
from butler.testing.qrs_simulator.recording import Recorder, StartRecord
from butler.testing.qrs_simulator.server import Reply, Request

__all__ = ["QrsRoutes", "parse_body"]

# One logger name for the whole simulator, so its log lines read (and filter) the same
# whichever part wrote them.
_log = logging.getLogger("butler.testing.qrs_simulator")

# The body of a request whose bytes are not JSON: a matched route answers 400, but faults and
# the request log still see the request, as they do any other.
_INVALID_JSON = object()

_GUID = r"[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}"


def parse_body(raw: bytes) -> Any:
    """The JSON body, ``None`` when empty, or a marker that a matched route answers with 400.

    Parsed once, before faults are matched, because a task-id fault looks into the body of a
    ``start/many`` call.
    """
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return _INVALID_JSON


class _ClientError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class QrsRoutes:
    """The task catalogue and executions, and the answers to the QRS routes.

    ``catalogue_data`` is a loaded catalogue; ``synthetic`` is the count and tag of generated
    tasks. The constructor builds no tasks: the simulator calls ``reset_catalogue`` once the
    rest of it is set up. ``executions`` is the scheduler queue; ``clock`` gives "now" for
    starts and for every state read (the simulator can swap it for a test's clock).
    """

    def __init__(
        self,
        catalogue_data: Mapping[str, Any],
        synthetic: tuple[int, str],
        *,
        lock: threading.RLock,
        recorder: Recorder,
        executions: ExecutionQueue,
        clock: Clock,
    ):
        self._catalogue_data = catalogue_data
        self._synthetic = synthetic
        self._lock = lock
        self._recorder = recorder
        self._tasks: dict[str, Task] = {}
        self._executions = executions
        self.clock = clock

    # ----------------------------------------------------------------- catalogue

    def reset_catalogue(self) -> None:
        tasks = [build_task(spec) for spec in self._catalogue_data.get("tasks") or []]
        count, tag = self._synthetic
        tasks.extend(synthetic_task(index, tag) for index in range(1, count + 1))
        with self._lock:
            self._tasks = {task.id: task for task in tasks}

    def add_task(self, spec: Mapping[str, Any]) -> str:
        task = build_task(spec)
        with self._lock:
            self._tasks[task.id] = task
        return task.id

    def set_execution(
        self, task_id: str, *, duration: float | None = None, outcome: str | None = None
    ) -> None:
        """Change how the task's later starts run (duration in seconds, ``success``/``fail``)."""
        if outcome is not None and outcome not in ("success", "fail"):
            raise ValueError("outcome must be 'success' or 'fail'")
        with self._lock:
            task = self._tasks.get(task_id.lower())
            if task is None:
                raise KeyError(task_id)
            if duration is not None:
                task.duration = max(0.0, float(duration))
            if outcome is not None:
                task.outcome = outcome

    def now(self) -> float:
        """The clock's time, with the scheduler queue played out up to it; caller holds the
        lock, so every answer sees one consistent instant."""
        now = self.clock()
        self._executions.advance(now)
        return now

    def remove_task(self, task_id: str) -> None:
        with self._lock:
            self._tasks.pop(task_id.lower(), None)

    def task_ids(self, tag: str | None = None) -> list[str]:
        with self._lock:
            return [
                task.id
                for task in self._tasks.values()
                if tag is None or any(t["name"] == tag for t in task.tags)
            ]

    def task_by_name(self, name: str) -> Task | None:
        """The task QRS would start for ``?name=`` (case-insensitive, first in catalogue)."""
        wanted = name.casefold()
        with self._lock:
            return next((t for t in self._tasks.values() if t.name.casefold() == wanted), None)

    # ----------------------------------------------------------------- routing

    def answer(self, request: Request, body: Any) -> Reply:
        """Xrfkey check, then the matching route; ``body`` is ``parse_body`` of the request."""
        query = request.query
        key = request.headers.get("X-Qlik-Xrfkey")
        param = next((value for name, value in query.items() if name.lower() == "xrfkey"), None)
        if key is None or param is None or key != param or len(key) != 16:
            return Reply(
                400,
                "XSRF prevention check failed. Possible XSRF discovered.",
                "text/plain; charset=utf-8",
            )
        route = request.path.lower().rstrip("/")
        try:
            for pattern, allowed, action in _ROUTES:
                match = pattern.fullmatch(route)
                if match is None:
                    continue
                if request.method not in allowed:
                    return Reply(405, None, extra={"Allow": ", ".join(allowed)})
                if request.raw_body and body is _INVALID_JSON:
                    raise _ClientError(400, "request body is not valid JSON")
                return action(self, match, query, body)
        except _ClientError as exc:
            return Reply(exc.status, exc.message, "text/plain; charset=utf-8")
        return Reply(404, None)

    def _about(self, match: re.Match[str], query: Mapping[str, str], body: Any) -> Reply:
        return Reply(
            200,
            {
                "buildVersion": "30.9.1.0",
                "buildDate": "9/20/2013 10:09:00 AM",
                "databaseProvider": "Devart.Data.PostgreSql",
                "nodeType": 1,
                "sharedPersistence": True,
                "requiresBootstrap": False,
                "singleNodeOnly": False,
                "schemaPath": "About",
            },
        )

    def _list_tasks(
        self, query: Mapping[str, str], *, full: bool, reload_only: bool = False
    ) -> Reply:
        with self._lock:
            now = self.now()
            tasks = [t for t in self._tasks.values() if not reload_only or t.task_type == 0]
        entries = [rendered_task(task, now) for task in tasks]
        text = query.get("filter")
        try:
            if text is not None and text.strip():
                expr = parse_filter(text)
                entries = [entry for entry in entries if expr.matches(entry[0])]
        except FilterError as exc:
            raise _ClientError(400, f"Invalid filter: {exc}") from exc
        if not full:
            return Reply(200, [condensed_task(item) for item, _ in entries])
        return Reply(200, b"[" + b",".join(data for _, data in entries) + b"]")

    def _task_condensed(self, match: re.Match[str], query: Mapping[str, str], body: Any) -> Reply:
        return self._list_tasks(query, full=False)

    def _task_full(self, match: re.Match[str], query: Mapping[str, str], body: Any) -> Reply:
        return self._list_tasks(query, full=True)

    def _reloadtask_full(self, match: re.Match[str], query: Mapping[str, str], body: Any) -> Reply:
        return self._list_tasks(query, full=True, reload_only=True)

    def _start_by_id(self, match: re.Match[str], query: Mapping[str, str], body: Any) -> Reply:
        synchronous = match.group("sync") is not None
        route = "/qrs/task/{id}/start" + ("/synchronous" if synchronous else "")
        with self._lock:
            task = self._tasks.get(match.group("id"))
            if task is None:
                raise _ClientError(404, "")
            execution = self._start(task, route)
        return Reply(201, {"value": execution.session_id}) if synchronous else Reply(204)

    def _start_by_name(self, match: re.Match[str], query: Mapping[str, str], body: Any) -> Reply:
        synchronous = match.group("sync") is not None
        route = "/qrs/task/start" + ("/synchronous" if synchronous else "") + "?name="
        name = query.get("name")
        if not name:
            raise _ClientError(400, "query parameter 'name' is required")
        with self._lock:
            task = self.task_by_name(name)
            if task is None:
                raise _ClientError(404, "")
            execution = self._start(task, route)
        return Reply(201, {"value": execution.session_id}) if synchronous else Reply(204)

    def _start_many(self, match: re.Match[str], query: Mapping[str, str], body: Any) -> Reply:
        if not isinstance(body, list) or not all(isinstance(item, str) for item in body):
            raise _ClientError(400, "body must be a JSON array of task ids")
        with self._lock:
            tasks = []
            for task_id in dict.fromkeys(item.lower() for item in body):
                task = self._tasks.get(task_id)
                if task is None:
                    raise _ClientError(404, "")
                tasks.append(task)
            for task in tasks:
                self._start(task, "/qrs/task/start/many")
        return Reply(204)

    def _session_list(self, match: re.Match[str], query: Mapping[str, str], body: Any) -> Reply:
        """``/qrs/executionsession[/full]``: sessions exist only while an execution is
        unfinished; QRS deletes a session when its execution ends."""
        full = match.group("full") is not None
        with self._lock:
            now = self.now()
            live = [e for e in self._executions.all() if e.status(now) in UNFINISHED]
            return _filtered([session_json(e, now) for e in live], query, full, _condense_session)

    def _session_one(self, match: re.Match[str], query: Mapping[str, str], body: Any) -> Reply:
        with self._lock:
            now = self.now()
            execution = self._executions.session(match.group("id"))
            if execution is None or execution.status(now) not in UNFINISHED:
                raise _ClientError(404, "")
            return Reply(200, session_json(execution, now))

    def _result_list(self, match: re.Match[str], query: Mapping[str, str], body: Any) -> Reply:
        """``/qrs/executionresult[/full]``: one result per start. The filter sees the full
        object (``executionID``, ``taskID``), the condensed answer does not carry them."""
        full = match.group("full") is not None
        with self._lock:
            now = self.now()
            objects = [result_json(e, now) for e in self._executions.all()]
        return _filtered(objects, query, full, _condense_result)

    def _result_one(self, match: re.Match[str], query: Mapping[str, str], body: Any) -> Reply:
        with self._lock:
            now = self.now()
            execution = self._executions.result(match.group("id"))
            if execution is None:
                raise _ClientError(404, "")
            return Reply(200, result_json(execution, now))

    def _script_log_reference(
        self, match: re.Match[str], query: Mapping[str, str], body: Any
    ) -> Reply:
        """Step one of a script log download: ``scriptlog?fileReferenceId=`` (QRS before May
        2025) or ``scriptlogfile?executionResultId=`` (May 2025 on) answer ``{"value": ref}``."""
        by_result = match.group("kind") == "scriptlogfile"
        name = "executionResultId" if by_result else "fileReferenceId"
        wanted = next((v for k, v in query.items() if k.lower() == name.lower()), "").lower()
        with self._lock:
            now = self.now()
            task_id = match.group("id")
            found = [
                e
                for e in self._executions.all()
                if e.task.id == task_id
                and (e.result_id if by_result else e.file_reference_id) == wanted
                and e.task.task_type == 0
                and e.status(now) not in UNFINISHED
            ]
            if not found:
                raise _ClientError(404, "")
            return Reply(200, {"value": self._executions.offer_download(found[0])})

    def _download(self, match: re.Match[str], query: Mapping[str, str], body: Any) -> Reply:
        with self._lock:
            text = self._executions.download(match.group("ref"))
        if text is None:
            raise _ClientError(404, "")
        return Reply(200, text, "text/plain; charset=utf-8")

    def _start(self, task: Task, route: str) -> Execution:
        """Trigger one execution and record the start; caller holds the lock."""
        now = self.now()
        execution = self._executions.trigger(task, now)
        self._executions.advance(now)
        self._recorder.add_start(StartRecord(task.id, task.name, now, route, execution.session_id))
        _log.info("task started: %s (%s) via %s", task.id, task.name, route)
        return execution


def _condense_result(item: dict[str, Any]) -> dict[str, Any]:
    return {key: item[key] for key in _RESULT_CONDENSED_KEYS}


def _condense_session(item: dict[str, Any]) -> dict[str, Any]:
    return {key: item[key] for key in _SESSION_CONDENSED_KEYS}


_RESULT_CONDENSED_KEYS = (
    "id",
    "privileges",
    "executingNodeName",
    "status",
    "startTime",
    "stopTime",
    "duration",
    "fileReferenceID",
    "scriptLogAvailable",
    "details",
    "scriptLogLocation",
    "scriptLogSize",
)
_SESSION_CONDENSED_KEYS = (
    "id",
    "privileges",
    "executingNode",
    "executionResult",
    "abortAt",
    "abortReason",
    "reloadTask",
    "userSyncTask",
    "externalProgramTask",
)


def _filtered(
    objects: list[dict[str, Any]], query: Mapping[str, str], full: bool, condense: Any
) -> Reply:
    """Filter full objects as QRS does, then answer them full or condensed."""
    try:
        matched = filter_items(objects, query.get("filter"))
    except FilterError as exc:
        raise _ClientError(400, f"Invalid filter: {exc}") from exc
    return Reply(200, matched if full else [condense(item) for item in matched])


_ROUTES: list[tuple[re.Pattern[str], tuple[str, ...], Any]] = [
    (re.compile(r"/qrs/about"), ("GET",), QrsRoutes._about),
    (re.compile(r"/qrs/task"), ("GET",), QrsRoutes._task_condensed),
    (re.compile(r"/qrs/task/full"), ("GET",), QrsRoutes._task_full),
    (re.compile(r"/qrs/reloadtask/full"), ("GET",), QrsRoutes._reloadtask_full),
    (re.compile(r"/qrs/task/start/many"), ("POST",), QrsRoutes._start_many),
    (re.compile(r"/qrs/task/start(?P<sync>/synchronous)?"), ("POST",), QrsRoutes._start_by_name),
    (
        re.compile(r"/qrs/task/(?P<id>[^/]+)/start(?P<sync>/synchronous)?"),
        ("POST",),
        QrsRoutes._start_by_id,
    ),
    (re.compile(r"/qrs/executionsession(?P<full>/full)?"), ("GET",), QrsRoutes._session_list),
    (re.compile(rf"/qrs/executionsession/(?P<id>{_GUID})"), ("GET",), QrsRoutes._session_one),
    (re.compile(r"/qrs/executionresult(?P<full>/full)?"), ("GET",), QrsRoutes._result_list),
    (re.compile(rf"/qrs/executionresult/(?P<id>{_GUID})"), ("GET",), QrsRoutes._result_one),
    (
        re.compile(rf"/qrs/reloadtask/(?P<id>{_GUID})/(?P<kind>scriptlog|scriptlogfile)"),
        ("GET",),
        QrsRoutes._script_log_reference,
    ),
    (
        re.compile(rf"/qrs/download/reloadtask/(?P<ref>{_GUID})/[^/]+"),
        ("GET",),
        QrsRoutes._download,
    ),
]
