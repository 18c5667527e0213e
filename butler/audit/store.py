"""Audit records in one SQLite file, committed before the change they describe is answered.

Same durability as the run store (WAL, ``synchronous=FULL`` through
:func:`butler.sqlite_file.open_durable`): an acknowledged record survives kill -9 and a
power cut. A record is orjson in a ``data`` column; time, caller and route have columns of
their own because ``GET /v4/audit`` filters by them.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from butler.audit.model import AuditRecord
from butler.page_cursor import decode_cursor, encode_cursor
from butler.sqlite_file import open_durable

_SCHEMA_VERSION = 1
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS audit ("
    " record_id TEXT PRIMARY KEY, time REAL NOT NULL, caller TEXT NOT NULL, route TEXT,"
    " data TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS audit_time ON audit (time, record_id)",
    "CREATE INDEX IF NOT EXISTS audit_caller ON audit (caller, time)",
    "CREATE INDEX IF NOT EXISTS audit_route ON audit (route, time)",
)


_INSERT = "INSERT INTO audit VALUES (?, ?, ?, ?, ?)"


class AuditStoreError(Exception):
    """The audit file cannot be opened or has a schema this Butler does not know."""


@dataclass(frozen=True)
class AuditFilter:
    """What ``GET /v4/audit`` may narrow by; ``None`` means any."""

    since: float | None = None
    until: float | None = None
    caller: str | None = None
    route: str | None = None


class AuditStore:
    """Audit records in SQLite (``path``), or in an in-memory database."""

    def __init__(self, path: Path | None, flush_each_commit: bool = True):
        self._path = path
        self._lock = threading.Lock()
        self._db = open_durable(
            path, "Audit store", _SCHEMA_VERSION, _SCHEMA, AuditStoreError, flush_each_commit
        )
        self.transactions = 0
        """Appends committed so far: how a test sees that group commit shares transactions."""

    @property
    def path(self) -> Path | None:
        return self._path

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def append(self, records: Sequence[AuditRecord]) -> None:
        """Insert ``records`` in one transaction: one disk flush however many there are."""
        if not records:
            return
        rows = [_row(record) for record in records]
        with self._lock:
            if len(rows) == 1:  # one statement is its own transaction: two fewer round trips
                self._db.execute(_INSERT, rows[0])
                self.transactions += 1
                return
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(_INSERT, rows)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            self.transactions += 1

    def query(
        self, where: AuditFilter, limit: int, cursor: str | None = None
    ) -> tuple[list[AuditRecord], str | None]:
        """Records matching ``where``, newest first; and the next page's cursor."""
        clauses, params = _conditions(where)
        if cursor is not None:
            time, record_id = decode_cursor(cursor, "/v4/audit")
            clauses.append("(time < ? OR (time = ? AND record_id < ?))")
            params += [time, time, record_id]
        sql = "SELECT data FROM audit"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY time DESC, record_id DESC LIMIT ?"
        with self._lock:
            rows = self._db.execute(sql, (*params, limit + 1)).fetchall()
        found = [AuditRecord.from_row(orjson.loads(row[0])) for row in rows]
        if len(found) <= limit:
            return found, None
        page = found[:limit]
        return page, encode_cursor(page[-1].time, page[-1].record_id)

    def prune(self, older_than: float) -> int:
        """Drop records from before ``older_than``; the number dropped."""
        with self._lock:
            dropped: int = self._db.execute(
                "DELETE FROM audit WHERE time < ?", (older_than,)
            ).rowcount
        return dropped


def _row(record: AuditRecord) -> tuple[Any, ...]:
    return (
        record.record_id,
        record.time,
        record.caller,
        record.route,
        orjson.dumps(record.to_row()).decode(),
    )


def _conditions(where: AuditFilter) -> tuple[list[str], list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if where.caller is not None:
        clauses.append("caller = ?")
        params.append(where.caller)
    if where.route is not None:
        clauses.append("route = ?")
        params.append(where.route)
    if where.since is not None:
        clauses.append("time >= ?")
        params.append(where.since)
    if where.until is not None:
        # Times are shown to the millisecond: ``until=<a record's time>`` includes it.
        clauses.append("time < ?")
        params.append(math.floor(where.until * 1000) / 1000 + 0.001)
    return clauses, params
