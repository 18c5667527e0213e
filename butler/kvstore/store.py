"""The key-value store: namespaces of string values with optional time-to-live.

Load scripts use it to hand parameters from one reload to the next, so a lost write breaks
a reload chain silently. The original kept everything in memory; here every write is
committed to SQLite (WAL, ``synchronous=FULL``) before it is acknowledged, and the whole
store is also held in memory so reads never touch the disk.

Concurrency: writers are serialised by one lock that also guards the single SQLite
connection (SQLite allows one writer at a time anyway, and one guarded connection measured
faster than a connection per thread, see ``scripts/bench_kv.py``). The in-memory model has
its own short lock, taken by readers and, after the commit, by the writer; so a reader never
waits for a disk flush and never sees a write that is not yet durable.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from butler.errors import ApiError, BadRequest, Conflict, FeatureUnavailable, NotFound
from butler.kvstore.values import (
    MAX_KEY_LENGTH,
    MAX_NAMESPACE_LENGTH,
    KvEntry,
    KvStoreError,
    StorageError,
    check_text,
    parse_ttl,
    value_text,
)
from butler.sqlite_file import open_durable

log = logging.getLogger(__name__)

_SCHEMA_VERSION = 1
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS namespaces ("
    " name TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS entries ("
    " namespace TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,"
    " expires_at REAL, seq INTEGER NOT NULL,"
    " PRIMARY KEY (namespace, key)) WITHOUT ROWID",
)


class _Item(NamedTuple):
    value: str
    expires_at: float | None
    seq: int


class KvStore:
    """Namespaced key-value store, persistent (SQLite file) or memory-only (``path=None``).

    ``max_keys_per_namespace`` of ``None`` or <= 0 means unlimited. ``clock`` returns
    seconds since the epoch; expiry times are stored as absolute wall-clock times so they
    keep counting while the service is down.
    """

    def __init__(
        self,
        path: Path | None,
        max_keys_per_namespace: int | None = 1000,
        clock: Callable[[], float] = time.time,
        sweep_interval: float = 60,
    ) -> None:
        self._path = path
        self._max_keys = max(0, max_keys_per_namespace or 0)
        self._clock = clock
        self._sweep_interval = sweep_interval
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._data: dict[str, dict[str, _Item]] = {}
        self._next_seq = 1
        self._closed = False
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None
        self._db = self._open(path) if path is not None else None

    @property
    def path(self) -> Path | None:
        """The SQLite file, or ``None`` in memory-only mode."""
        return self._path

    # ----------------------------------------------------------------- lifecycle

    def _open(self, path: Path) -> sqlite3.Connection:
        db = open_durable(path, "Key-value store", _SCHEMA_VERSION, _SCHEMA, KvStoreError)
        try:
            self._load(db)
        except sqlite3.Error as exc:
            db.close()
            raise KvStoreError(f"Cannot open key-value store file {path}: {exc}") from exc
        return db

    def _load(self, db: sqlite3.Connection) -> None:
        """Read the file into memory; expired rows are skipped (the sweep deletes them)."""
        data = self._data
        for (name,) in db.execute("SELECT name FROM namespaces ORDER BY seq"):
            data[name] = {}
        rows = db.execute(
            "SELECT namespace, key, value, expires_at, seq FROM entries"
            " WHERE expires_at IS NULL OR expires_at > ? ORDER BY seq",
            (self._clock(),),
        )
        for namespace, key, value, expires_at, seq in rows:
            items = data.get(namespace)
            if items is not None:
                items[key] = _Item(value, expires_at, seq)
        top = db.execute(
            "SELECT MAX(COALESCE((SELECT MAX(seq) FROM namespaces), 0),"
            " COALESCE((SELECT MAX(seq) FROM entries), 0))"
        ).fetchone()[0]
        self._next_seq = top + 1

    def start(self) -> None:
        """Start the thread that purges expired keys every ``sweep_interval`` seconds."""
        if self._sweeper is not None:
            return
        self._stop.clear()
        self._sweeper = threading.Thread(target=self._sweep_loop, name="kv-sweep", daemon=True)
        self._sweeper.start()

    def stop(self) -> None:
        """Stop the sweep thread; the store stays usable."""
        self._stop.set()
        if self._sweeper is not None:
            self._sweeper.join()
            self._sweeper = None

    def close(self) -> None:
        """Stop the sweeper and close the file; later calls answer 503."""
        self.stop()
        with self._write_lock:
            self._closed = True
            if self._db is not None:
                self._db.close()
                self._db = None

    def _sweep_loop(self) -> None:
        while not self._stop.wait(self._sweep_interval):
            try:
                purged = self.purge_expired()
            except (ApiError, sqlite3.Error):
                log.exception("Key-value store: purging expired keys failed")
                continue
            if purged:
                log.debug("Key-value store: purged %d expired keys", purged)

    # ----------------------------------------------------------------- reads

    def _live(self, item: _Item | None, now: float) -> bool:
        return item is not None and (item.expires_at is None or item.expires_at > now)

    def _entry(self, namespace: str, key: str, item: _Item, now: float) -> KvEntry:
        if item.expires_at is None:
            return KvEntry(namespace, key, item.value, 0)
        left_ms = round((item.expires_at - now) * 1000, 3)
        return KvEntry(namespace, key, item.value, max(1, math.ceil(left_ms)))

    def namespaces(self) -> list[str]:
        """All namespaces in creation order, including empty ones."""
        with self._lock:
            return list(self._data)

    def keys(self, namespace: str) -> list[str]:
        """Live keys of a namespace in insertion order (a rewrite keeps a key's place)."""
        now = self._clock()
        with self._lock:
            items = self._namespace(namespace)
            return [key for key, item in items.items() if self._live(item, now)]

    def key_counts(self) -> dict[str, int]:
        """Live keys per namespace, in creation order (one pass, for metrics)."""
        now = self._clock()
        with self._lock:
            return {
                namespace: sum(1 for item in items.values() if self._live(item, now))
                for namespace, items in self._data.items()
            }

    def find(self, namespace: str, key: str) -> KvEntry | None:
        """The live entry, or ``None`` when the key is absent or expired."""
        now = self._clock()
        with self._lock:
            item = self._namespace(namespace).get(key)
        if item is None or not self._live(item, now):
            return None
        return self._entry(namespace, key, item, now)

    def get(self, namespace: str, key: str) -> KvEntry:
        """The live entry; 404 naming the namespace or key when there is none."""
        entry = self.find(namespace, key)
        if entry is None:
            raise NotFound(f"Key '{key}' not found in namespace: {namespace}")
        return entry

    def exists(self, namespace: str, key: str) -> bool:
        """Whether a live key exists; 404 when the namespace does not."""
        return self.find(namespace, key) is not None

    def _namespace(self, namespace: str) -> dict[str, _Item]:
        items = self._data.get(namespace)
        if items is None:
            raise NotFound(f"Namespace not found: {namespace}")
        return items

    # ----------------------------------------------------------------- writes

    def _commit(self, statements: list[tuple[str, tuple[object, ...]]]) -> None:
        """Run the statements as one durable transaction (no-op in memory mode)."""
        if self._closed:
            raise FeatureUnavailable("The key-value store is shut down")
        if self._db is None or not statements:
            return
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for sql, params in statements:
                    self._db.execute(sql, params)
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            log.error("Key-value store: write to %s failed: %s", self._path, exc)
            raise StorageError("Failed writing to the key-value store") from exc

    def _take_seq(self) -> int:
        seq = self._next_seq
        self._next_seq += 1
        return seq

    def set(self, namespace: str, key: str, value: object, ttl_ms: object = None) -> KvEntry:
        """Create or overwrite a key; the namespace is created on first use.

        ``value`` that is not a string is stored as JSON text. ``ttl_ms`` follows
        :func:`parse_ttl`; a rewrite replaces the previous expiry (no TTL = permanent again).
        A new key in a namespace that already holds ``max_keys_per_namespace`` live keys is
        refused with 409; overwriting an existing key is always allowed.
        """
        check_text("namespace", namespace, MAX_NAMESPACE_LENGTH)
        check_text("key", key, MAX_KEY_LENGTH)
        text = value_text(value)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise BadRequest("value is not valid Unicode text") from exc
        ttl = parse_ttl(ttl_ms)
        with self._write_lock:
            now = self._clock()
            expires_at = now + ttl / 1000 if ttl > 0 else None
            statements: list[tuple[str, tuple[object, ...]]] = []
            existing = self._data.get(namespace)
            items = {} if existing is None else existing
            if existing is None:
                statements.append(
                    (
                        "INSERT INTO namespaces (name, seq) VALUES (?, ?)",
                        (namespace, self._take_seq()),
                    )
                )
            old = items.get(key)
            stale: list[str] = []
            if old is not None and self._live(old, now):
                seq = old.seq
            else:
                stale = self._make_room(namespace, items, key, now)
                seq = self._take_seq()
            statements.extend(self._delete_statements(namespace, stale))
            statements.append(
                (
                    "INSERT OR REPLACE INTO entries (namespace, key, value, expires_at, seq)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (namespace, key, text, expires_at, seq),
                )
            )
            self._commit(statements)
            item = _Item(text, expires_at, seq)
            with self._lock:
                for gone in stale:
                    del items[gone]
                items[key] = item
                if existing is None:
                    self._data[namespace] = items
        return self._entry(namespace, key, item, now)

    def _make_room(
        self, namespace: str, items: dict[str, _Item], key: str, now: float
    ) -> list[str]:
        """Expired keys to drop before ``key`` is added; 409 when the namespace stays full.

        An expired copy of ``key`` is always dropped so the rewrite goes to the end of the
        insertion order, like a new key. Other expired keys are purged only when the
        namespace looks full, which keeps the common write O(1).
        """
        stale = [key] if key in items else []
        if not self._max_keys or len(items) - len(stale) < self._max_keys:
            return stale
        stale = [k for k, item in items.items() if not self._live(item, now)]
        if len(items) - len(stale) >= self._max_keys:
            raise Conflict(
                f"Namespace '{namespace}' is full: it already holds {self._max_keys} keys "
                "(maxKeysPerNamespace)"
            )
        return stale

    @staticmethod
    def _delete_statements(namespace: str, keys: list[str]) -> list[tuple[str, tuple[object, ...]]]:
        return [
            ("DELETE FROM entries WHERE namespace = ? AND key = ?", (namespace, key))
            for key in keys
        ]

    def delete_key(self, namespace: str, key: str) -> None:
        """Remove a live key; 404 when the namespace or the (live) key does not exist."""
        with self._write_lock:
            now = self._clock()
            items = self._namespace(namespace)
            item = items.get(key)
            self._commit([] if item is None else self._delete_statements(namespace, [key]))
            if item is not None:
                with self._lock:
                    del items[key]
            if not self._live(item, now):
                raise NotFound(f"Key '{key}' not found in namespace: {namespace}")

    def delete_namespace(self, namespace: str) -> None:
        """Remove a namespace and all its keys; 404 when it does not exist."""
        with self._write_lock:
            self._namespace(namespace)
            self._commit(
                [
                    ("DELETE FROM entries WHERE namespace = ?", (namespace,)),
                    ("DELETE FROM namespaces WHERE name = ?", (namespace,)),
                ]
            )
            with self._lock:
                del self._data[namespace]

    def purge_expired(self) -> int:
        """Delete every expired key now; returns how many were removed."""
        with self._write_lock:
            now = self._clock()
            with self._lock:
                doomed = [
                    (namespace, key)
                    for namespace, items in self._data.items()
                    for key, item in items.items()
                    if not self._live(item, now)
                ]
            self._commit(
                [
                    (
                        "DELETE FROM entries WHERE expires_at IS NOT NULL AND expires_at <= ?",
                        (now,),
                    )
                ]
            )
            with self._lock:
                for namespace, key in doomed:
                    del self._data[namespace][key]
            return len(doomed)

    def check_writable(self) -> None:
        """Prove a durable write still succeeds, without touching any namespace or key.

        Rewriting the schema version is a real committed write (header page, WAL, fsync)
        that callers cannot see; a full disk, a read-only file or a lost share fail it the
        way a ``set`` would. Raises ``StorageError`` or, once closed, ``FeatureUnavailable``.
        """
        with self._write_lock:
            self._commit([(f"PRAGMA user_version={_SCHEMA_VERSION}", ())])
