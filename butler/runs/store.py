"""Durable run records and idempotency keys in one SQLite file.

A run is what a caller asks about after the fact ("did last night's reload work?"), and an
idempotency key is what stops a retried start from reloading twice, so both are committed
(WAL, ``synchronous=FULL``, like the key-value store) before the start is acknowledged:
nothing acknowledged is lost on kill -9 or power loss. One connection guarded by one lock:
the writes are small, and SQLite takes one writer at a time anyway.

Records are kept ``retention_days`` and at most ``max_runs``; :meth:`RunStore.prune` drops
the oldest *final* runs beyond either limit (an unfinished run is never dropped, so the
tracker can still finish it).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from butler.page_cursor import decode_cursor, encode_cursor
from butler.runs.model import FINAL_STATUSES, Run
from butler.sqlite_file import open_durable

_SCHEMA_VERSION = 1
_SCHEMA = (
    # A rowid table: rows are large and keys random, where WITHOUT ROWID inserts cost twice.
    "CREATE TABLE IF NOT EXISTS runs ("
    " run_id TEXT PRIMARY KEY, created_at REAL NOT NULL, request_id TEXT NOT NULL,"
    " task_id TEXT, status TEXT NOT NULL, trigger TEXT NOT NULL, final INTEGER NOT NULL,"
    " execution_id TEXT, data TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS runs_created ON runs (created_at, run_id)",
    "CREATE INDEX IF NOT EXISTS runs_request ON runs (request_id)",
    "CREATE INDEX IF NOT EXISTS runs_open ON runs (final) WHERE final = 0",
    "CREATE INDEX IF NOT EXISTS runs_execution ON runs (execution_id)"
    " WHERE execution_id IS NOT NULL",
    "CREATE TABLE IF NOT EXISTS idempotency ("
    " key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, created_at REAL NOT NULL,"
    " request_id TEXT, status INTEGER, answer TEXT) WITHOUT ROWID",
)


_IN_CHUNK = 500
"""Ids per ``IN (...)``: well under the 999 parameters older SQLite builds allow."""


class RunStoreError(Exception):
    """The run store file cannot be opened or has a schema this Butler does not know."""


@dataclass(frozen=True)
class RunFilter:
    """What ``GET /v4/runs`` may narrow by; ``None`` means any."""

    task_id: str | None = None
    status: str | None = None
    trigger: str | None = None
    request_id: str | None = None
    since: float | None = None
    until: float | None = None


@dataclass(frozen=True)
class IdempotentAnswer:
    """What the first request with an ``Idempotency-Key`` left behind.

    ``status`` is ``None`` while the first request is still being processed.
    """

    fingerprint: str
    created_at: float
    request_id: str | None
    status: int | None
    answer: Any


class RunStore:
    """Runs and idempotency keys in SQLite (``path``), or in an in-memory database."""

    def __init__(self, path: Path | None):
        self._path = path
        self._lock = threading.Lock()
        self._db = open_durable(path, "Run store", _SCHEMA_VERSION, _SCHEMA, RunStoreError)

    @property
    def path(self) -> Path | None:
        return self._path

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ----------------------------------------------------------------- runs

    def save(self, runs: Sequence[Run]) -> None:
        """Insert or replace ``runs`` in one transaction (one disk flush for a whole start)."""
        if not runs:
            return
        rows = [_row(run) for run in runs]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                # An upsert keeps a run's rowid, so runs keep their start order.
                self._db.executemany(
                    "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id)"
                    " DO UPDATE SET status = excluded.status, final = excluded.final,"
                    " execution_id = excluded.execution_id, data = excluded.data",
                    rows,
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def open_runs(self) -> list[Run]:
        """Every run that is not final, in start order (what the tracker resumes after a
        start)."""
        return self._runs("SELECT data FROM runs WHERE final = 0 ORDER BY created_at, rowid", ())

    def get(self, run_id: str) -> Run | None:
        found = self._runs("SELECT data FROM runs WHERE run_id = ?", (run_id,))
        return found[0] if found else None

    def by_request(self, request_id: str) -> list[Run]:
        return self._runs(
            "SELECT data FROM runs WHERE request_id = ? ORDER BY created_at, rowid",
            (request_id,),
        )

    def statuses(self, run_ids: Iterable[str]) -> dict[str, str]:
        """The status of each of these runs the store has (by primary key, no scan)."""
        ids = list(run_ids)
        found: dict[str, str] = {}
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start : start + _IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            with self._lock:
                rows = self._db.execute(
                    f"SELECT run_id, status FROM runs WHERE run_id IN ({marks})", chunk
                ).fetchall()
            found.update((row[0], row[1]) for row in rows)
        return found

    def claimed(self, execution_ids: Iterable[str]) -> set[str]:
        """Which of these execution ids a run already has."""
        ids = list(execution_ids)
        found: set[str] = set()
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start : start + _IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            with self._lock:
                rows = self._db.execute(
                    f"SELECT execution_id FROM runs WHERE execution_id IN ({marks})", chunk
                ).fetchall()
            found.update(row[0] for row in rows)
        return found

    def query(
        self, where: RunFilter, limit: int, cursor: str | None = None
    ) -> tuple[list[Run], str | None]:
        """Runs matching ``where``, newest first by ``createdAt``; and the next page's cursor."""
        clauses, params = _conditions(where)
        if cursor is not None:
            created, run_id = decode_cursor(cursor, "/v4/runs")
            clauses.append("(created_at < ? OR (created_at = ? AND run_id < ?))")
            params += [created, created, run_id]
        sql = "SELECT data FROM runs"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY created_at DESC, run_id DESC LIMIT ?"
        found = self._runs(sql, (*params, limit + 1))
        if len(found) <= limit:
            return found, None
        page = found[:limit]
        return page, encode_cursor(page[-1].created_at, page[-1].run_id)

    def summary(self, since: float | None) -> tuple[dict[str, int], list[dict[str, Any]]]:
        """Counts per status, and per task (with its name and counts per status)."""
        sql = "SELECT task_id, status, COUNT(*), MAX(json_extract(data, '$.task_name')) FROM runs"
        params: tuple[Any, ...] = ()
        if since is not None:
            sql += " WHERE created_at >= ?"
            params = (since,)
        sql += " GROUP BY task_id, status ORDER BY task_id, status"
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
        by_status: dict[str, int] = {}
        by_task: dict[str | None, dict[str, Any]] = {}
        for task_id, status, count, name in rows:
            by_status[status] = by_status.get(status, 0) + count
            entry = by_task.setdefault(
                task_id, {"taskId": task_id, "taskName": name, "total": 0, "byStatus": {}}
            )
            entry["total"] += count
            entry["byStatus"][status] = count
            entry["taskName"] = entry["taskName"] or name
        return by_status, sorted(by_task.values(), key=lambda t: (-t["total"], t["taskId"] or ""))

    def prune(self, older_than: float, max_runs: int) -> int:
        """Drop final runs created before ``older_than`` and the oldest final runs beyond
        ``max_runs`` in all; the number dropped."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            dropped = self._db.execute(
                "DELETE FROM runs WHERE final = 1 AND created_at < ?", (older_than,)
            ).rowcount
            excess = self._db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] - max_runs
            if excess > 0:
                dropped += self._db.execute(
                    "DELETE FROM runs WHERE run_id IN (SELECT run_id FROM runs WHERE final = 1"
                    " ORDER BY created_at, run_id LIMIT ?)",
                    (excess,),
                ).rowcount
            self._db.execute("COMMIT")
        return dropped

    def _runs(self, sql: str, params: Sequence[Any]) -> list[Run]:
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
        return [Run.from_row(orjson.loads(row[0])) for row in rows]

    # ----------------------------------------------------------------- idempotency keys

    def claim_key(
        self, key: str, fingerprint: str, now: float, expired_before: float
    ) -> IdempotentAnswer | None:
        """Take ``key`` for a new request, or return what an earlier request left under it.

        ``None`` means the key was free, or its entry was created before ``expired_before``
        and is replaced: go ahead and process.
        """
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT fingerprint, created_at, request_id, status, answer"
                    " FROM idempotency WHERE key = ?",
                    (key,),
                ).fetchone()
                if row is not None and row[1] < expired_before:
                    row = None
                if row is None:
                    self._db.execute(
                        "INSERT OR REPLACE INTO idempotency (key, fingerprint, created_at)"
                        " VALUES (?, ?, ?)",
                        (key, fingerprint, now),
                    )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        if row is None:
            return None
        answer = json.loads(row[4]) if row[4] is not None else None
        return IdempotentAnswer(row[0], row[1], row[2], row[3], answer)

    def complete_key(self, key: str, request_id: str | None, status: int, answer: Any) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE idempotency SET request_id = ?, status = ?, answer = ? WHERE key = ?",
                (request_id, status, json.dumps(answer, ensure_ascii=False), key),
            )

    def release_key(self, key: str) -> None:
        """Forget a key whose request started nothing, so the caller may simply retry."""
        with self._lock:
            self._db.execute("DELETE FROM idempotency WHERE key = ?", (key,))

    def settle_unfinished_keys(self, message: str) -> int:
        """Keys whose first request was still being processed when Butler stopped: nobody
        will complete them, and whether QRS took their start is unknown. They answer 504
        ``START_OUTCOME_UNKNOWN`` from now on, as a start QRS did not confirm does."""
        with self._lock:
            return self._db.execute(
                "UPDATE idempotency SET status = 504, answer = ? WHERE status IS NULL",
                (json.dumps(message),),
            ).rowcount

    def prune_keys(self, older_than: float) -> int:
        with self._lock:
            return self._db.execute(
                "DELETE FROM idempotency WHERE created_at < ?", (older_than,)
            ).rowcount


def _row(run: Run) -> tuple[Any, ...]:
    return (
        run.run_id,
        run.created_at,
        run.request_id,
        run.task_id,
        run.status,
        run.trigger,
        1 if run.status in FINAL_STATUSES else 0,
        run.execution_id,
        # orjson: a fifth of json's time per run, and its floats read back exactly.
        orjson.dumps(run.to_row()).decode(),
    )


def _conditions(where: RunFilter) -> tuple[list[str], list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in (
        ("task_id", where.task_id),
        ("status", where.status),
        ("trigger", where.trigger),
        ("request_id", where.request_id),
    ):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if where.since is not None:
        clauses.append("created_at >= ?")
        params.append(where.since)
    if where.until is not None:
        clauses.append("created_at <= ?")
        params.append(where.until)
    return clauses, params
