"""The task starter: the one path by which anything starts a Qlik Sense task.

REST calls, MQTT messages, schedules and app-reload chains all come here, so the start
filter, GUID rules, de-duplication and truthful reporting apply to every trigger alike.
QRS round trips are batched: one filtered lookup for all ids plus one per tag or custom
property (issued concurrently), then a single ``start/many`` call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from butler.auth.callers import TaskScope
from butler.errors import ApiError, UpstreamTimeout
from butler.events import Events
from butler.guid import is_guid, new_guid, normalise_guid
from butler.tasks.trigger import IdStarts, Trigger

if TYPE_CHECKING:
    from butler.kvstore import KvStore
    from butler.qrs import QrsClient
    from butler.runs import Run, Runs

log = logging.getLogger(__name__)


class StartOutcomeUnknown(UpstreamTimeout):
    """QRS took the start request but did not answer in time: the tasks may be running.

    504 like any timeout, with its own code, so a caller (or a retry policy) can tell "not
    started" from "perhaps started" and does not blindly start a reload twice.
    """

    def __init__(self, message: str):
        super().__init__(message, code="START_OUTCOME_UNKNOWN")
        self.runs: list[Run] = []
        """The runs recorded for the start: ``Triggered``, the tracker finds out the rest."""


@dataclass(frozen=True)
class StartFilter:
    """``Butler.startTaskFilter``: each kind of request is checked against its own list."""

    enabled: bool = False
    task_ids: frozenset[str] = frozenset()
    tags: frozenset[str] = frozenset()
    custom_properties: frozenset[tuple[str, str]] = frozenset()

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None) -> StartFilter:
        section = section or {}
        allow = section.get("allowTask") or {}
        # The config refuses non-GUIDs while the filter is on (butler/config_schema.py).
        ids = [t for t in allow.get("taskId") or [] if isinstance(t, str)]
        return cls(
            enabled=section.get("enable") is True,
            task_ids=frozenset(t.lower() for t in ids),
            tags=frozenset(str(t) for t in allow.get("tag") or []),
            custom_properties=frozenset(
                (str(cp.get("name")), str(cp.get("value")))
                for cp in allow.get("customProperty") or []
                if isinstance(cp, Mapping)
            ),
        )

    def allows_id(self, task_id: str) -> bool:
        return not self.enabled or normalise_guid(task_id) in self.task_ids

    def allows_tag(self, tag: str) -> bool:
        return not self.enabled or tag in self.tags

    def allows_custom_property(self, name: str, value: str) -> bool:
        return not self.enabled or (name, value) in self.custom_properties


@dataclass(frozen=True)
class KvItem:
    """A ``keyvaluestore`` item; the store turns non-string values into JSON text."""

    namespace: str
    key: str
    value: Any
    ttl: Any = None


@dataclass
class StartRequest:
    """What one trigger asks for, in the order the caller gave it."""

    task_ids: list[Any] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    custom_properties: list[tuple[str, str]] = field(default_factory=list)
    kv_items: list[KvItem] = field(default_factory=list)
    all_task_ids_must_exist: bool = False
    dry_run: bool = False
    """Resolve and filter as for a start, then start nothing and write no key-value item."""
    scope: TaskScope | None = None
    """The caller's ``tasks`` scope, applied on top of ``startTaskFilter`` the same way."""


@dataclass
class StartResult:
    """Per-request outcome; field names follow the original's response and seed 001."""

    started_by_id: list[dict[str, str]] = field(default_factory=list)
    invalid_ids: list[dict[str, Any]] = field(default_factory=list)
    denied_ids: list[dict[str, Any]] = field(default_factory=list)
    started_by_tag: list[dict[str, str]] = field(default_factory=list)
    denied_tags: list[dict[str, str]] = field(default_factory=list)
    started_by_cp: list[dict[str, str]] = field(default_factory=list)
    denied_cps: list[dict[str, str]] = field(default_factory=list)
    started: list[dict[str, str]] = field(default_factory=list)
    not_found: list[dict[str, str]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    would_start: list[dict[str, str]] = field(default_factory=list)
    """A dry run's answer: every task a start would have handed to QRS."""
    request_id: str = field(default_factory=new_guid)
    """Shared by the runs this request started."""
    runs: list[Run] = field(default_factory=list)
    """One per task handed to QRS or refused by it, status as at the answer."""

    def outcomes(self) -> dict[str, str]:
        """Lower-case task id -> started / failed: ... / notFound / denied / invalid."""
        result: dict[str, str] = {}
        for item in self.invalid_ids:
            result[str(item["taskId"]).lower()] = "invalid"
        for item in self.not_found:
            result[item["taskId"].lower()] = "notFound"
        for item in self.denied_ids:
            result[str(item["taskId"]).lower()] = "denied"
        for item in self.failed:
            result[item["taskId"]] = f"failed: {item['message']}"
        for item in self.started:
            result[item["taskId"]] = "started"
        return result


class TaskStarter:
    """Resolves, filters and starts tasks through one pooled QRS client."""

    def __init__(
        self,
        qrs: QrsClient,
        start_filter: StartFilter | None = None,
        kv_store: KvStore | None = None,
        lookup_workers: int = 16,
        events: Events | None = None,
        runs: Runs | None = None,
    ):
        self._events = events or Events()
        self._runs = runs
        self._qrs = qrs
        self._filter = start_filter or StartFilter()
        self._kv = kv_store
        self._pool = ThreadPoolExecutor(lookup_workers, thread_name_prefix="qrs-lookup")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def start(self, request: StartRequest, trigger: Trigger) -> StartResult:
        """Start what ``request`` names; raises 502/504 errors when QRS fails before a start."""
        result = StartResult()
        scope = request.scope
        queued_ids = self._classify_ids(request.task_ids, scope, result)
        tags = [t for t in dict.fromkeys(request.tags) if self._tag_allowed(t, scope, result)]
        cps = [
            cp
            for cp in dict.fromkeys(request.custom_properties)
            if self._cp_allowed(cp, scope, result)
        ]

        lookups: list[Callable[[], list[dict[str, Any]]]] = []
        if queued_ids:
            lookups.append(partial(self._qrs.find_tasks_by_ids, queued_ids))
        lookups += [partial(self._qrs.find_tasks_by_tag, t) for t in tags]
        lookups += [partial(self._qrs.find_tasks_by_custom_property, *cp) for cp in cps]
        answers = self._look_up(lookups)
        found = _names(answers.pop(0) if queued_ids else [])
        by_tag = [_task_refs(answers.pop(0)) for _ in tags]
        by_cp = [_task_refs(answers.pop(0)) for _ in cps]

        id_refs: list[dict[str, str]] = []
        for task_id in queued_ids:
            if task_id in found:
                id_refs.append({"taskId": task_id, "taskName": found[task_id]})
            else:
                result.invalid_ids.append({"taskId": task_id})
                result.not_found.append({"taskId": task_id})
        if request.all_task_ids_must_exist and result.invalid_ids:
            result.denied_ids.extend({"taskId": ref["taskId"]} for ref in id_refs)
            id_refs = []

        to_start = _unique(id_refs + [r for refs in by_tag + by_cp for r in refs])
        if request.dry_run:
            result.would_start = to_start
            _log_result(trigger, result, dry_run=True)
            return result
        self._write_kv_items(request.kv_items)
        runs = (
            self._runs.record_task_starts(result.request_id, trigger, to_start, time.time())
            if self._runs is not None
            else []
        )
        result.runs = runs
        try:
            refused = self._start_all(to_start)
        except StartOutcomeUnknown as exc:
            # They may have started: their runs let the tracker find out, and say so.
            exc.runs = runs
            raise
        except ApiError as exc:
            if self._runs is not None:
                self._runs.refused(runs, {ref["taskId"]: exc.message for ref in to_start})
            raise
        if refused and self._runs is not None:
            result.runs = self._runs.refused(
                runs, {task_id: message for task_id, (_, message) in refused.items()}
            )
        for ref in to_start:
            if ref["taskId"] in refused:
                status, message = refused[ref["taskId"]]
                result.failed.append({**ref, "status": status, "message": message})
            else:
                result.started.append({**ref, "status": "started"})
        ok = {ref["taskId"] for ref in result.started}
        result.started_by_id = [r for r in id_refs if r["taskId"] in ok]
        result.started_by_tag = [r for refs in by_tag for r in refs if r["taskId"] in ok]
        result.started_by_cp = [r for refs in by_cp for r in refs if r["taskId"] in ok]
        _log_result(trigger, result)
        self._events.task_starts(trigger.kind, result.outcomes())
        self._events.start_requested(trigger, result.request_id, result.outcomes())
        return result

    def _look_up(
        self, lookups: Sequence[Callable[[], list[dict[str, Any]]]]
    ) -> list[list[dict[str, Any]]]:
        """Each lookup's answer, in order: concurrently on the pool when there are several.

        A single lookup runs on the calling thread: handing it to the pool and waiting for
        it cost two thread switches and nothing ran meanwhile.
        """
        if len(lookups) <= 1:
            return [lookup() for lookup in lookups]
        futures = [self._pool.submit(lookup) for lookup in lookups]
        return [future.result() for future in futures]

    def start_ids(self, task_ids: Sequence[str], trigger: Trigger) -> dict[str, str]:
        """Start tasks by id and return the outcome per lower-case id (chains)."""
        return self.start(StartRequest(task_ids=list(task_ids)), trigger).outcomes()

    def start_ids_with_runs(self, task_ids: Sequence[str], trigger: Trigger) -> IdStarts:
        """Start tasks by id: the outcome and the run id per lower-case id (schedules)."""
        result = self.start(StartRequest(task_ids=list(task_ids)), trigger)
        return IdStarts(
            result.outcomes(), {run.task_id: run.run_id for run in result.runs if run.task_id}
        )

    def _classify_ids(
        self, raw_ids: Iterable[Any], scope: TaskScope | None, result: StartResult
    ) -> list[str]:
        queued: list[str] = []
        for raw in raw_ids:
            if not is_guid(raw):
                result.invalid_ids.append({"taskId": raw})
            elif not self._filter.allows_id(raw) or (
                scope is not None and not scope.allows_id(raw)
            ):
                result.denied_ids.append({"taskId": raw})
            elif normalise_guid(raw) not in queued:
                queued.append(normalise_guid(raw))
        return queued

    def _tag_allowed(self, tag: str, scope: TaskScope | None, result: StartResult) -> bool:
        if self._filter.allows_tag(tag) and (scope is None or tag in scope.tags):
            return True
        result.denied_tags.append({"tag": tag})
        return False

    def _cp_allowed(
        self, cp: tuple[str, str], scope: TaskScope | None, result: StartResult
    ) -> bool:
        if self._filter.allows_custom_property(*cp) and (
            scope is None or cp in scope.custom_properties
        ):
            return True
        result.denied_cps.append({"name": cp[0], "value": cp[1]})
        return False

    def _write_kv_items(self, items: Sequence[KvItem]) -> None:
        if not items:
            return
        if self._kv is None:
            log.warning(
                "Task start carried %d key-value item(s) but the KV store is off", len(items)
            )
            return
        for item in items:
            self._kv.set(item.namespace, item.key, item.value, item.ttl)

    def _start_all(self, refs: list[dict[str, str]]) -> dict[str, tuple[int | str, str]]:
        """Start every task in one call; on refusal, find out task by task which failed."""
        from butler.qrs import QrsHttpError, QrsTimeout

        ids = [ref["taskId"] for ref in refs]
        if not ids:
            return {}
        try:
            self._qrs.start_tasks(ids)
            return {}
        except QrsTimeout:
            log.warning(
                "QRS did not answer a start of %d task(s) in time: outcome unknown", len(ids)
            )
            raise StartOutcomeUnknown(
                f"QRS did not answer the start of {len(ids)} task(s) in time: they may have "
                "started. Check their state in the QMC before retrying; a retry may start "
                "them twice"
            ) from None
        except QrsHttpError as batch_error:
            log.warning(
                "QRS refused a batch start (HTTP %s); starting one by one", batch_error.qrs_status
            )
        refused: dict[str, tuple[int | str, str]] = {}
        futures = {task_id: self._pool.submit(self._qrs.start_task, task_id) for task_id in ids}
        for task_id, future in futures.items():
            try:
                future.result()
            except QrsHttpError as exc:
                refused[task_id] = (
                    exc.qrs_status,
                    f"QRS refused the start (HTTP {exc.qrs_status})",
                )
            except QrsTimeout:
                refused[task_id] = ("unknown", "QRS did not answer in time: it may have started")
            except ApiError as exc:
                refused[task_id] = ("error", exc.message)
        return refused


def _names(tasks: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    return {str(t["id"]).lower(): str(t.get("name", "")) for t in tasks}


def _task_refs(tasks: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    return [{"taskId": str(t["id"]).lower(), "taskName": str(t.get("name", ""))} for t in tasks]


def _unique(refs: Iterable[dict[str, str]]) -> list[dict[str, str]]:
    seen: dict[str, dict[str, str]] = {}
    for ref in refs:
        seen.setdefault(ref["taskId"], ref)
    return list(seen.values())


_LISTED_AT_MOST = 20


def _listed(items: Sequence[Mapping[str, Any]]) -> str:
    """`` ['Reload App1' e3b2..., tag 'x']``: what a count stands for, cut to a readable size."""
    if not items:
        return ""
    shown = ", ".join(_named_item(item) for item in items[:_LISTED_AT_MOST])
    more = len(items) - _LISTED_AT_MOST
    return f" [{shown}{f' and {more} more' if more > 0 else ''}]"


def _named_item(item: Mapping[str, Any]) -> str:
    if "taskId" in item:
        name = item.get("taskName")
        return f"'{name}' {item['taskId']}" if name else str(item["taskId"])
    if "tag" in item:
        return f"tag '{item['tag']}'"
    return f"custom property {item.get('name')}={item.get('value')}"


def _log_result(trigger: Trigger, result: StartResult, dry_run: bool = False) -> None:
    """One line naming every task QRS started (or, in a dry run, would have), and the
    refusals; WARN when a start failed."""
    denied = result.denied_ids + result.denied_tags + result.denied_cps
    started, verb = (result.would_start, "would start") if dry_run else (result.started, "started")
    for failed in result.failed:
        log.warning(
            "Task start via %s: task %s failed: %s", trigger, _named_item(failed), failed["message"]
        )
    log.log(
        logging.WARNING if result.failed else logging.INFO,
        "Task start via %s%s: %d %s%s, %d failed%s, %d invalid%s, %d denied%s (request %s)",
        trigger,
        " (dry run)" if dry_run else "",
        len(started),
        verb,
        _listed(started),
        len(result.failed),
        _listed(result.failed),
        len(result.invalid_ids),
        _listed(result.invalid_ids),
        len(denied),
        _listed(denied),
        result.request_id,
    )
