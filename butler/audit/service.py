"""The audit trail: every change is committed before it is answered, fsyncs shared.

``record`` must not return before its record is on disk (a change whose record could be
lost is an unaudited change), but one fsync per request would cap Butler's write rate at
the disk's flush rate. So callers queue their record and wait; one writer thread commits
whatever is queued in one transaction and then wakes them all (group commit: 16
concurrent requests share one flush). The writer is also the one place that appends to the
optional JSON-lines file and prunes old records, so neither races a commit.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from butler.audit.model import AuditRecord
from butler.audit.store import AuditFilter, AuditStore
from butler.errors import ApiError

log = logging.getLogger(__name__)

PRUNE_INTERVAL = 3600.0
COMMIT_TIMEOUT = 30.0
"""How long ``record`` waits for the writer before refusing: a stuck disk must turn into
503s, not into requests that hang for ever."""


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
    done: threading.Event = field(default_factory=threading.Event)
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
        self._cond = threading.Condition()
        self._queue: list[_Pending] = []
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._next_prune: float | None = None

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Prune what is past retention, then keep pruning hourly on the writer thread."""
        self._prune()
        with self._cond:
            self._next_prune = time.monotonic() + PRUNE_INTERVAL
            self._ensure_writer()
            self._cond.notify_all()

    def stop(self) -> None:
        """Commit what is queued, then refuse new records."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=COMMIT_TIMEOUT)

    def close(self) -> None:
        self.store.close()
        if self._lines is not None:
            self._lines.close()

    # ----------------------------------------------------------------- recording

    def record(self, record: AuditRecord) -> None:
        """Return once ``record`` is committed; :class:`AuditUnavailable` if it was not."""
        pending = _Pending(record)
        with self._cond:
            if self._stopping:
                raise AuditUnavailable("Butler is stopping: the audit trail takes no records")
            # Lazily, so a Butler built but not started (tests, check tools) still records.
            self._ensure_writer()
            self._queue.append(pending)
            self._cond.notify_all()
        if not pending.done.wait(COMMIT_TIMEOUT):
            raise AuditUnavailable("The audit record was not committed in time")
        if pending.error is not None:
            raise AuditUnavailable(
                f"The audit record could not be committed: {pending.error}"
            ) from pending.error

    def query(
        self, where: AuditFilter, limit: int, cursor: str | None = None
    ) -> tuple[list[AuditRecord], str | None]:
        return self.store.query(where, limit, cursor)

    # ----------------------------------------------------------------- the writer

    def _ensure_writer(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._write, name="butler-audit", daemon=True)
            self._thread.start()

    def _write(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping and not self._prune_due():
                    self._cond.wait(self._until_prune())
                batch, self._queue = self._queue, []
                stopping = self._stopping
            if batch:
                self._commit(batch)
            elif stopping:
                return
            if self._prune_due():
                self._prune()
                with self._cond:
                    self._next_prune = time.monotonic() + PRUNE_INTERVAL

    def _prune_due(self) -> bool:
        return self._next_prune is not None and time.monotonic() >= self._next_prune

    def _until_prune(self) -> float | None:
        return None if self._next_prune is None else self._next_prune - time.monotonic()

    def _commit(self, batch: list[_Pending]) -> None:
        try:
            self.store.append([pending.record for pending in batch])
        except Exception as exc:
            log.exception(
                "Audit: cannot commit %d record(s); their changes are refused", len(batch)
            )
            for pending in batch:
                pending.error = exc
                pending.done.set()
            return
        self._append_lines(batch)
        for pending in batch:
            pending.done.set()

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
