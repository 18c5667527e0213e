"""Unit tests of the key-value store service (no HTTP)."""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from butler.errors import BadRequest, Conflict, FeatureUnavailable, NotFound
from butler.kvstore import KvStore, KvStoreError, parse_ttl, value_text


class FakeClock:
    """Wall clock that only moves when a test says so."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance_ms(self, ms: float) -> None:
        self.now += ms / 1000


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", "sqlite"])
def make_store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> Iterator[Callable[..., KvStore]]:
    """Factory for a store in both modes; every store made is closed at teardown."""
    stores: list[KvStore] = []

    def make(**kwargs: object) -> KvStore:
        path = tmp_path / "kv.sqlite" if request.param == "sqlite" else None
        store = KvStore(path, clock=clock, **kwargs)  # type: ignore[arg-type]
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.close()


def rows(path: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(path) as db:
        return list(db.execute("SELECT namespace, key, value FROM entries ORDER BY seq"))


# --------------------------------------------------------------------------- parse_ttl


@pytest.mark.parametrize(
    ("sent", "ttl"),
    [
        (3000, 3000),
        ("3000", 3000),
        (" 30", 30),
        ("1e3", 1000),
        (3000.9, 3000),
        ("-5", -5),
        (0, 0),
        ("", 0),
        (None, 0),
        ("abc", 0),
        (True, 0),
        ([3000], 0),
        ({"ms": 1}, 0),
        (math.nan, 0),
        (10**400, 10**15),
        (1e300, 10**15),
        ("inf", 0),
    ],
)
def test_parse_ttl_follows_the_original_rules(sent: object, ttl: int) -> None:
    assert parse_ttl(sent) == ttl


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("abc", "abc"),
        (123, "123"),
        (1.5, "1.5"),
        (True, "true"),
        ({"a": [1, "é"]}, '{"a":[1,"é"]}'),
    ],
)
def test_non_string_values_are_stored_as_json_text(value: object, text: str) -> None:
    assert value_text(value) == text


# --------------------------------------------------------------------------- basics


def test_set_get_and_list(make_store: Callable[..., KvStore]) -> None:
    store = make_store()
    assert store.namespaces() == []
    entry = store.set("Sales ETL step 2", "Last extract", "2020-09-29 17:14:56")
    assert (entry.namespace, entry.key, entry.value, entry.ttl) == (
        "Sales ETL step 2",
        "Last extract",
        "2020-09-29 17:14:56",
        0,
    )
    assert store.get("Sales ETL step 2", "Last extract").value == "2020-09-29 17:14:56"
    assert store.exists("Sales ETL step 2", "Last extract")
    assert not store.exists("Sales ETL step 2", "other")
    assert store.find("Sales ETL step 2", "other") is None
    assert store.keys("Sales ETL step 2") == ["Last extract"]
    assert store.namespaces() == ["Sales ETL step 2"]


def test_names_are_case_sensitive_and_may_contain_colons(
    make_store: Callable[..., KvStore],
) -> None:
    store = make_store()
    store.set("a:b", "c:d", "1")
    store.set("A:B", "C:D", "2")
    assert store.keys("a:b") == ["c:d"]
    assert store.get("A:B", "C:D").value == "2"
    with pytest.raises(NotFound):
        store.get("a:b", "C:D")


def test_unknown_namespace_and_key_raise_not_found_with_the_original_messages(
    make_store: Callable[..., KvStore],
) -> None:
    store = make_store()
    for call in (
        lambda: store.get("nope", "k"),
        lambda: store.find("nope", "k"),
        lambda: store.exists("nope", "k"),
        lambda: store.keys("nope"),
        lambda: store.delete_key("nope", "k"),
        lambda: store.delete_namespace("nope"),
    ):
        with pytest.raises(NotFound) as info:
            call()
        assert info.value.message == "Namespace not found: nope"
    store.set("ns", "k", "v")
    for call in (lambda: store.get("ns", "x"), lambda: store.delete_key("ns", "x")):
        with pytest.raises(NotFound) as info:
            call()
        assert info.value.message == "Key 'x' not found in namespace: ns"


@pytest.mark.parametrize(
    ("namespace", "key", "value"),
    [("", "k", "v"), ("ns", "", "v"), ("ns", "k\ud800", "v"), ("ns", "k", "\udfff")],
)
def test_empty_names_and_invalid_text_are_bad_requests(
    make_store: Callable[..., KvStore], namespace: str, key: str, value: str
) -> None:
    store = make_store()
    with pytest.raises(BadRequest):
        store.set(namespace, key, value)
    assert store.namespaces() == []


def test_overwrite_replaces_value_and_keeps_position(make_store: Callable[..., KvStore]) -> None:
    store = make_store()
    for key in ("k1", "k2", "k3"):
        store.set("ns", key, key)
    store.set("ns", "k1", "new")
    assert store.keys("ns") == ["k1", "k2", "k3"]
    assert store.get("ns", "k1").value == "new"


def test_namespaces_keep_creation_order_and_survive_being_emptied(
    make_store: Callable[..., KvStore],
) -> None:
    store = make_store()
    for ns in ("b", "a", "c"):
        store.set(ns, "k", "v")
    store.delete_key("a", "k")
    assert store.namespaces() == ["b", "a", "c"]
    assert store.keys("a") == []
    store.delete_namespace("b")
    store.set("b", "k", "v")
    assert store.namespaces() == ["a", "c", "b"]
    with pytest.raises(NotFound):
        store.get("a", "k")


def test_delete_namespace_removes_its_keys(make_store: Callable[..., KvStore]) -> None:
    store = make_store()
    store.set("ns", "k1", "v")
    store.set("ns", "k2", "v")
    store.set("other", "k1", "kept")
    store.delete_namespace("ns")
    assert store.namespaces() == ["other"]
    store.set("ns", "k3", "v")
    assert store.keys("ns") == ["k3"]
    assert store.get("other", "k1").value == "kept"


# --------------------------------------------------------------------------- TTL


def test_ttl_expires_exactly_after_the_given_milliseconds(
    make_store: Callable[..., KvStore], clock: FakeClock
) -> None:
    store = make_store()
    assert store.set("ns", "k", "v", "3000").ttl == 3000
    clock.advance_ms(2999)
    assert store.get("ns", "k").ttl == 1
    assert store.keys("ns") == ["k"]
    clock.advance_ms(1)
    assert store.find("ns", "k") is None
    assert not store.exists("ns", "k")
    assert store.keys("ns") == []
    assert store.namespaces() == ["ns"]
    with pytest.raises(NotFound):
        store.get("ns", "k")
    with pytest.raises(NotFound):
        store.delete_key("ns", "k")


@pytest.mark.parametrize("no_expiry", [0, -5, None, "", "abc", "0"])
def test_zero_negative_missing_or_non_numeric_ttl_never_expires(
    make_store: Callable[..., KvStore], clock: FakeClock, no_expiry: object
) -> None:
    store = make_store()
    assert store.set("ns", "k", "v", no_expiry).ttl == 0
    clock.advance_ms(10**12)
    assert store.get("ns", "k").value == "v"


def test_rewrite_replaces_the_expiry(make_store: Callable[..., KvStore], clock: FakeClock) -> None:
    store = make_store()
    store.set("ns", "k", "v1", 1000)
    clock.advance_ms(900)
    store.set("ns", "k", "v2", 1000)
    clock.advance_ms(900)
    assert store.get("ns", "k").value == "v2"
    store.set("ns", "k", "v3")
    clock.advance_ms(10**9)
    assert store.get("ns", "k").ttl == 0


def test_huge_ttl_is_accepted(make_store: Callable[..., KvStore], clock: FakeClock) -> None:
    store = make_store()
    store.set("ns", "k", "v", 10**400)
    clock.advance_ms(10**12)
    assert store.get("ns", "k").ttl > 0


def test_rewriting_an_expired_key_moves_it_to_the_end(
    make_store: Callable[..., KvStore], clock: FakeClock
) -> None:
    store = make_store()
    store.set("ns", "k1", "v", 10)
    store.set("ns", "k2", "v")
    clock.advance_ms(10)
    store.set("ns", "k1", "again")
    assert store.keys("ns") == ["k2", "k1"]


def test_purge_expired_removes_only_expired_keys(
    make_store: Callable[..., KvStore], clock: FakeClock
) -> None:
    store = make_store()
    store.set("ns", "short", "v", 10)
    store.set("ns", "long", "v", 10_000)
    store.set("ns", "forever", "v")
    assert store.purge_expired() == 0
    clock.advance_ms(10)
    assert store.purge_expired() == 1
    assert store.keys("ns") == ["long", "forever"]
    if store.path is not None:
        assert [key for _, key, _ in rows(store.path)] == ["long", "forever"]


def test_sweep_thread_purges_expired_keys(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "kv.sqlite"
    store = KvStore(path, clock=clock, sweep_interval=0.01)
    store.start()
    try:
        store.set("ns", "k", "v", 5)
        store.set("ns", "stay", "v")
        clock.advance_ms(5)
        deadline = time.monotonic() + 10
        while len(rows(path)) != 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [key for _, key, _ in rows(path)] == ["stay"]
    finally:
        store.stop()
    assert store.get("ns", "stay").value == "v"
    store.close()


# --------------------------------------------------------------------------- limits


def test_max_keys_per_namespace_refuses_new_keys_but_allows_overwrites(
    make_store: Callable[..., KvStore],
) -> None:
    store = make_store(max_keys_per_namespace=3)
    for key in ("k1", "k2", "k3"):
        store.set("ns", key, "v")
    with pytest.raises(Conflict) as info:
        store.set("ns", "k4", "v")
    assert "ns" in info.value.message
    assert "3" in info.value.message
    assert store.keys("ns") == ["k1", "k2", "k3"]
    store.set("ns", "k2", "overwritten")
    store.set("other", "k4", "another namespace has its own limit")
    store.delete_key("ns", "k1")
    store.set("ns", "k4", "v")
    assert store.keys("ns") == ["k2", "k3", "k4"]


def test_expired_keys_do_not_count_towards_the_limit(
    make_store: Callable[..., KvStore], clock: FakeClock
) -> None:
    store = make_store(max_keys_per_namespace=2)
    store.set("ns", "k1", "v", 100)
    store.set("ns", "k2", "v")
    clock.advance_ms(100)
    store.set("ns", "k3", "v")
    assert store.keys("ns") == ["k2", "k3"]
    with pytest.raises(Conflict):
        store.set("ns", "k4", "v")


@pytest.mark.parametrize("unlimited", [0, None, -1])
def test_zero_or_none_means_unlimited(
    make_store: Callable[..., KvStore], unlimited: object
) -> None:
    store = make_store(max_keys_per_namespace=unlimited)
    for i in range(1001):
        store.set("ns", f"k{i}", "v")
    assert len(store.keys("ns")) == 1001


# --------------------------------------------------------------------------- persistence


def test_everything_survives_reopen(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "sub" / "kv.sqlite"
    store = KvStore(path, clock=clock)
    store.set("b", "k1", "v1")
    store.set("a", "k1", {"n": 1})
    store.set("b", "k2", "v2", 5000)
    store.set("b", "gone", "v", 10)
    store.set("empty", "k", "v")
    store.delete_key("empty", "k")
    store.set("deleted", "k", "v")
    store.delete_namespace("deleted")
    store.set("b", "k1", "rewritten")
    store.close()
    clock.advance_ms(1000)

    reopened = KvStore(path, clock=clock)
    try:
        assert reopened.namespaces() == ["b", "a", "empty"]
        assert reopened.keys("b") == ["k1", "k2"]
        assert reopened.get("b", "k1").value == "rewritten"
        assert reopened.get("a", "k1").value == '{"n":1}'
        assert reopened.get("b", "k2").ttl == 4000
        assert reopened.keys("empty") == []
        reopened.set("b", "k3", "after reopen")
        reopened.set("new", "k", "v")
        assert reopened.keys("b") == ["k1", "k2", "k3"]
        assert reopened.namespaces() == ["b", "a", "empty", "new"]
    finally:
        reopened.close()


def test_order_continues_after_reopening_a_store_of_empty_namespaces(tmp_path: Path) -> None:
    path = tmp_path / "kv.sqlite"
    store = KvStore(path)
    for ns in ("first", "second"):
        store.set(ns, "k", "v")
        store.delete_key(ns, "k")
    store.close()
    store = KvStore(path)
    store.set("third", "k", "v")
    store.close()
    store = KvStore(path)
    try:
        assert store.namespaces() == ["first", "second", "third"]
    finally:
        store.close()


def test_memory_mode_writes_no_file(tmp_path: Path) -> None:
    store = KvStore(None)
    store.set("ns", "k", "v")
    store.close()
    assert store.path is None
    assert list(tmp_path.iterdir()) == []


def test_closed_store_refuses_writes(make_store: Callable[..., KvStore]) -> None:
    store = make_store()
    store.set("ns", "k", "v")
    store.close()
    with pytest.raises(FeatureUnavailable):
        store.set("ns", "k2", "v")


def test_a_file_that_is_not_a_database_stops_start_up(tmp_path: Path) -> None:
    path = tmp_path / "kv.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(KvStoreError, match="Cannot open key-value store file"):
        KvStore(path)


def test_a_newer_schema_version_stops_start_up(tmp_path: Path) -> None:
    path = tmp_path / "kv.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version=99")
    with pytest.raises(KvStoreError, match="schema version 99"):
        KvStore(path)


def test_file_uses_wal_and_full_sync(tmp_path: Path) -> None:
    path = tmp_path / "kv.sqlite"
    store = KvStore(path)
    try:
        assert store._db is not None
        assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2
    finally:
        store.close()


# --------------------------------------------------------------------------- threads


def test_concurrent_writers_and_readers(tmp_path: Path) -> None:
    path = tmp_path / "kv.sqlite"
    store = KvStore(path, max_keys_per_namespace=0)
    errors: list[BaseException] = []
    start = threading.Barrier(17)

    def writer(n: int) -> None:
        try:
            start.wait()
            for i in range(100):
                store.set(f"ns{n % 4}", f"w{n}-k{i}", f"{n}:{i}")
                store.set("shared", "counter", f"{n}:{i}")
        except BaseException as exc:
            errors.append(exc)

    def reader() -> None:
        try:
            start.wait()
            for _ in range(300):
                for ns in store.namespaces():
                    keys = store.keys(ns)
                    if keys:
                        store.find(ns, keys[-1])
        except BaseException as exc:
            errors.append(exc)

    writers = [threading.Thread(target=writer, args=(n,)) for n in range(16)]
    reading = threading.Thread(target=reader)
    for thread in [*writers, reading]:
        thread.start()
    for thread in [*writers, reading]:
        thread.join()
    assert errors == []
    expected = {(f"ns{n % 4}", f"w{n}-k{i}"): f"{n}:{i}" for n in range(16) for i in range(100)}
    store.close()
    reopened = KvStore(path)
    try:
        for (ns, key), value in expected.items():
            assert reopened.get(ns, key).value == value
        assert sum(len(reopened.keys(f"ns{k}")) for k in range(4)) == 1600
        assert reopened.keys("shared") == ["counter"]
    finally:
        reopened.close()


def test_limit_holds_under_concurrent_writers(make_store: Callable[..., KvStore]) -> None:
    store = make_store(max_keys_per_namespace=50)
    accepted: list[str] = []
    refused: list[str] = []
    start = threading.Barrier(8)

    def writer(n: int) -> None:
        start.wait()
        for i in range(20):
            key = f"w{n}-{i}"
            try:
                store.set("ns", key, "v")
                accepted.append(key)
            except Conflict:
                refused.append(key)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(accepted) == 50
    assert len(refused) == 110
    assert sorted(store.keys("ns")) == sorted(accepted)
