"""The one way Butler opens a SQLite file it must not lose a write of.

The key-value store and the run store both acknowledge a write only once it is on disk:
WAL journal (readers never wait for the writer) with ``synchronous=FULL`` (each commit is
flushed, so neither kill -9 nor a power cut loses an acknowledged write). The audit trail
does the same unless its owner turns the flush off. A file written by
a newer Butler (higher ``user_version``) is refused rather than misread.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)


def open_durable(
    path: Path | None,
    what: str,
    version: int,
    schema: Sequence[str],
    error: type[Exception],
    flush_each_commit: bool = True,
) -> sqlite3.Connection:
    """The connection to ``path`` (``None``: an in-memory database) with ``schema`` applied.

    ``what`` names the file in messages ("Key-value store"); failures raise ``error``. The
    connection is in autocommit mode and may be used from any thread behind a lock.
    ``flush_each_commit=False`` (``synchronous=NORMAL``) keeps every commit through a crash
    or kill of Butler but not through a power cut or an OS crash, for about a quarter of
    the time per commit: for stores whose owner chose that trade.
    """
    try:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(
            ":memory:" if path is None else path, isolation_level=None, check_same_thread=False
        )
    except (OSError, sqlite3.Error) as exc:
        raise error(f"Cannot open {what.lower()} file {path}: {exc}") from exc
    try:
        _prepare(db, path, what, version, schema, error, flush_each_commit)
    except sqlite3.Error as exc:
        db.close()
        raise error(f"Cannot open {what.lower()} file {path}: {exc}") from exc
    except BaseException:
        db.close()
        raise
    return db


def _prepare(
    db: sqlite3.Connection,
    path: Path | None,
    what: str,
    version: int,
    schema: Sequence[str],
    error: type[Exception],
    flush_each_commit: bool,
) -> None:
    if path is not None:
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            log.warning("%s %s: WAL not available, using %s journal", what, path, mode)
    db.execute(f"PRAGMA synchronous={'FULL' if flush_each_commit else 'NORMAL'}")
    found = db.execute("PRAGMA user_version").fetchone()[0]
    if found not in (0, version):
        raise error(
            f"{what} file {path} has schema version {found}; this Butler understands "
            f"version {version}"
        )
    db.execute("BEGIN IMMEDIATE")
    for statement in schema:
        db.execute(statement)
    db.execute(f"PRAGMA user_version={version}")
    db.execute("COMMIT")
