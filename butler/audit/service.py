"""The audit trail: every change is committed before it is answered, fsyncs shared.

``record`` must not return before its record is on disk (a change whose record could be
lost is an unaudited change), but one fsync per request would cap Butler's write rate at
the disk's flush rate. So records are group-committed without a writer thread: a caller
queues its record and takes the commit lock; whoever gets it commits everything queued in
one transaction, so requests that arrived during a flush share the next one, and a lone
request commits its own record on its own thread (no hand-over to another thread and back,
which cost more CPU than the insert). The commit is the one place that appends to the
optional JSON-lines file; pruning takes the same lock, so neither races a commit.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from butler.audit.model import AuditRecord
from butler.audit.store import AuditFilter, AuditStore
from butler.errors import ApiError

log = logging.getLogger(__name__)

PRUNE_INTERVAL = 3600.0
COMMIT_TIMEOUT = 30.0
"""How long ``record`` waits for the commit lock before refusing: a stuck disk must turn
into 503s, not into requests that hang for ever."""
RETRY_AFTER_FAILURE = 5.0
"""After a failed commit, changes are refused up front for this long, then tried again."""


class AuditUnavailable(ApiError):
    """The audit record could not be committed, so the change must be refused."""

    status = 503

    def __init__(self, message: str):
        super().__init__(message, code="AUDIT_UNAVAILABLE")


@dataclass(frozen=True)
class AuditSettings:
    """``Butler.audit`` (docs/audit.md)."""

    retention_days: float = 90
    json_lines_file: Path | None = None

    @classmethod
    def from_config(cls, section: Mapping[str, Any], json_lines_file: Path | None) -> AuditSettings:
        return cls(retention_days=section["retentionDays"], json_lines_file=json_lines_file)


@dataclass
class _Pending:
    record: AuditRecord
    done: bool = False
    error: Exception | None = None


class AuditTrail:
    """Durable audit records (group-committed) with an optional JSON-lines copy."""

    def __init__(
        self,
        store: AuditStore,
        settings: AuditSettings | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.store = store
        self.settings = settings or AuditSettings()
        self._clock = clock
        self._lines: IO[bytes] | None = None
        if self.settings.json_lines_file is not None:
            path = self.settings.json_lines_file
            path.parent.mkdir(parents=True, exist_ok=True)
            self._lines = path.open("ab")
        self._queue_lock = threading.Lock()
        self._queue: list[_Pending] = []
        self._commit_lock = threading.Lock()
        self._stopping = False
        self._failed_at: float | None = None
        self._wake = threading.Event()
        self._pruner: threading.Thread | None = None

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Prune what is past retention, then keep pruning hourly."""
        with self._commit_lock:
            self._prune()
        self._pruner = threading.Thread(target=self._prune_hourly, name="butler-audit", daemon=True)
        self._pruner.start()

    def stop(self) -> None:
        """Refuse new records; those already handed in are committed by their callers."""
        self._stopping = True
        self._wake.set()
        pruner, self._pruner = self._pruner, None
        if pruner is not None:
            pruner.join(timeout=COMMIT_TIMEOUT)
        if self._commit_lock.acquire(timeout=COMMIT_TIMEOUT):
            self._commit_lock.release()

    def close(self) -> None:
        self.store.close()
        if self._lines is not None:
            self._lines.close()

    # ----------------------------------------------------------------- recording

    def check_writable(self) -> None:
        """Refuse a change before it is made while the last commit failed recently.

        A change is acted on before its record exists; once the disk refuses records,
        refusing new changes up front keeps them from being made unaudited. After
        ``RETRY_AFTER_FAILURE`` seconds the next change tries again.
        """
        if self._stopping:
            raise AuditUnavailable("Butler is stopping: the audit trail takes no records")
        failed = self._failed_at
        if failed is not None and time.monotonic() - failed < RETRY_AFTER_FAILURE:
            raise AuditUnavailable(
                "The audit trail cannot commit records (see the log), so changes are refused"
            )

    def record(self, record: AuditRecord) -> None:
        """Return once ``record`` is committed; :class:`AuditUnavailable` if it was not."""
        pending = _Pending(record)
        with self._queue_lock:
            if self._stopping:
                raise AuditUnavailable("Butler is stopping: the audit trail takes no records")
            self._queue.append(pending)
        if not self._commit_lock.acquire(timeout=COMMIT_TIMEOUT):
            raise AuditUnavailable("The audit record was not committed in time")
        try:
            if not pending.done:  # no earlier group took it: commit everything queued
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                self._commit(batch)
        finally:
            self._commit_lock.release()
        if pending.error is not None:
            raise AuditUnavailable(
                f"The audit record could not be committed: {pending.error}"
            ) from pending.error

    def query(
        self, where: AuditFilter, limit: int, cursor: str | None = None
    ) -> tuple[list[AuditRecord], str | None]:
        return self.store.query(where, limit, cursor)

    # ----------------------------------------------------------------- committing

    def _prune_hourly(self) -> None:
        while not self._wake.wait(PRUNE_INTERVAL):
            with self._commit_lock:
                self._prune()

    def _commit(self, batch: list[_Pending]) -> None:
        """Called with the commit lock held."""
        try:
            self.store.append([pending.record for pending in batch])
        except Exception as exc:
            log.exception("Audit: cannot commit %d record(s)", len(batch))
            self._failed_at = time.monotonic()
            for pending in batch:
                pending.error = exc
                pending.done = True
            return
        self._failed_at = None
        self._append_lines(batch)
        for pending in batch:
            pending.done = True

    def _append_lines(self, batch: list[_Pending]) -> None:
        """The SIEM copy: the database holds the record already, so a failure here is
        logged, never turned into a refused change."""
        if self._lines is None:
            return
        try:
            # orjson escapes every control character: a value cannot end a line early.
            self._lines.write(b"".join(orjson.dumps(p.record.to_api()) + b"\n" for p in batch))
            self._lines.flush()
        except (OSError, ValueError) as exc:
            log.error("Audit: cannot append to %s: %s", self.settings.json_lines_file, exc)

    def _prune(self) -> None:
        try:
            dropped = self.store.prune(self._clock() - self.settings.retention_days * 86400)
        except Exception:
            log.exception("Audit: pruning old records failed")
            return
        if dropped:
            log.info(
                "Audit: dropped %d record(s) older than %g days",
                dropped,
                self.settings.retention_days,
            )
