"""The audit store: records round-trip, filter, page newest first and expire."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from butler.audit import AuditFilter, AuditRecord, AuditStore, BadCursor
from butler.runs.model import parse_iso

T0 = parse_iso("2026-12-02T03:00:00Z")


def record(offset: float, caller: str = "10.0.0.1", route: str = "/v4/keyvalues") -> AuditRecord:
    return AuditRecord(
        time=T0 + offset,
        caller=caller,
        method="POST",
        route=route,
        params={},
        status=201,
        resources={"namespace": "Sales"},
        request_id=f"request-{offset:g}",
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AuditStore]:
    opened = AuditStore(tmp_path / "audit.sqlite")
    yield opened
    opened.close()


def test_a_record_reads_back_whole_from_the_file(tmp_path: Path) -> None:
    written = AuditRecord(
        time=T0 + 0.1234,
        caller="10.0.0.17",
        method="PUT",
        route="/v4/keyvalues/{namespace}",
        params={"namespace": "Sales"},
        status=200,
        resources={"namespace": "Sales", "key": "lastReload", "paths": ["a", "b"]},
        request_id="2f1d9c3e-7a4b-4f0e-8b6a-1c2d3e4f5a6b",
    )
    first = AuditStore(tmp_path / "audit.sqlite")
    first.append([written])
    first.close()
    again = AuditStore(tmp_path / "audit.sqlite")
    (found,), cursor = again.query(AuditFilter(), 10)
    again.close()
    assert found == written and cursor is None
    assert found.to_api() == {
        "time": "2026-12-02T03:00:00.123+00:00",
        "caller": "10.0.0.17",
        "method": "PUT",
        "route": "/v4/keyvalues/{namespace}",
        "params": {"namespace": "Sales"},
        "status": 200,
        "resources": {"namespace": "Sales", "key": "lastReload", "paths": ["a", "b"]},
        "requestId": "2f1d9c3e-7a4b-4f0e-8b6a-1c2d3e4f5a6b",
        "trigger": None,
    }


def test_a_non_http_record_carries_its_trigger() -> None:
    started = AuditRecord(
        time=T0, caller="nightly", trigger={"kind": "schedule", "caller": "nightly"}
    )
    shown = started.to_api()
    assert shown["trigger"] == {"kind": "schedule", "caller": "nightly"}
    assert shown["method"] is None and shown["route"] is None and shown["status"] is None


def test_filters_narrow_by_caller_route_and_time(store: AuditStore) -> None:
    store.append(
        [
            record(0, caller="a"),
            record(1, caller="b"),
            record(2, caller="a", route="/v4/schedules"),
            record(3, caller="b", route="/v4/schedules"),
        ]
    )

    def offsets(where: AuditFilter) -> list[float]:
        found, _ = store.query(where, 100)
        return [round(r.time - T0) for r in found]

    assert offsets(AuditFilter()) == [3, 2, 1, 0]
    assert offsets(AuditFilter(caller="a")) == [2, 0]
    assert offsets(AuditFilter(route="/v4/schedules")) == [3, 2]
    assert offsets(AuditFilter(caller="b", route="/v4/keyvalues")) == [1]
    assert offsets(AuditFilter(since=T0 + 1, until=T0 + 2)) == [2, 1]


def test_until_a_shown_time_includes_that_record(store: AuditStore) -> None:
    store.append([record(0.1236)])
    shown = parse_iso(store.query(AuditFilter(), 1)[0][0].to_api()["time"])
    assert len(store.query(AuditFilter(until=shown), 10)[0]) == 1
    assert store.query(AuditFilter(until=shown - 0.001), 10)[0] == []


def test_pages_follow_each_other_newest_first(store: AuditStore) -> None:
    # Same-time records too: the cursor orders them by id, so none is skipped or repeated.
    written = [record(n // 3) for n in range(10)]
    store.append(written)
    seen: list[AuditRecord] = []
    cursor = None
    pages = 0
    while True:
        page, cursor = store.query(AuditFilter(), 3, cursor)
        seen += page
        pages += 1
        if cursor is None:
            break
    assert pages == 4
    assert sorted(r.record_id for r in seen) == sorted(r.record_id for r in written)
    assert [r.time for r in seen] == sorted((r.time for r in written), reverse=True)


@pytest.mark.parametrize(
    "cursor",
    [
        "not base64!",
        base64.urlsafe_b64encode(b"[1, 2, 3]").decode(),
        base64.urlsafe_b64encode(json.dumps(["x", "id"]).encode()).decode(),
        base64.urlsafe_b64encode(json.dumps([True, "id"]).encode()).decode(),
        base64.urlsafe_b64encode(b'[1e999, "id"]').decode(),
        base64.urlsafe_b64encode(json.dumps([1.0, 5]).encode()).decode(),
    ],
)
def test_a_forged_cursor_is_refused(store: AuditStore, cursor: str) -> None:
    with pytest.raises(BadCursor):
        store.query(AuditFilter(), 10, cursor)


def test_prune_drops_only_records_older_than_the_limit(store: AuditStore) -> None:
    store.append([record(0), record(10), record(20)])
    assert store.prune(T0 + 10) == 1
    assert [round(r.time - T0) for r in store.query(AuditFilter(), 10)[0]] == [20, 10]
    assert store.prune(T0 + 10) == 0


def test_one_append_is_one_transaction(store: AuditStore) -> None:
    store.append([record(n) for n in range(50)])
    store.append([])
    assert store.transactions == 1


def test_without_a_flush_per_commit_the_store_says_so_to_sqlite(tmp_path: Path) -> None:
    flushed, unflushed = AuditStore(tmp_path / "a.sqlite"), AuditStore(tmp_path / "b.sqlite", False)
    try:
        assert flushed._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert unflushed._db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    finally:
        flushed.close()
        unflushed.close()
