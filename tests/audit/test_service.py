"""The audit trail service: group commit, refusal when the store fails, the JSON-lines
copy and retention."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import orjson
import pytest

from butler.audit import (
    AuditFilter,
    AuditRecord,
    AuditSettings,
    AuditStore,
    AuditTrail,
    AuditUnavailable,
)
from butler.errors import ApiError

WRITERS = 16


class SlowStore(AuditStore):
    """A real store whose commits take as long as a slow disk's flush, so concurrent
    records queue up behind one commit as they do in production."""

    def append(self, records: Sequence[AuditRecord]) -> None:
        time.sleep(0.05)
        super().append(records)


@pytest.fixture
def trail(tmp_path: Path) -> Iterator[AuditTrail]:
    started = AuditTrail(AuditStore(tmp_path / "audit.sqlite"))
    started.start()
    yield started
    started.stop()
    started.close()


def change(caller: str, **resources: object) -> AuditRecord:
    return AuditRecord(
        time=time.time(),
        caller=caller,
        method="DELETE",
        route="/v4/keyvalues/{namespace}",
        params={"namespace": "Sales"},
        status=204,
        resources=resources,
    )


def test_a_record_is_committed_when_record_returns(trail: AuditTrail) -> None:
    written = change("10.0.0.1", namespace="Sales")
    trail.record(written)
    assert trail.query(AuditFilter(), 10) == ([written], None)


def test_concurrent_records_share_one_commit(tmp_path: Path) -> None:
    store = SlowStore(tmp_path / "audit.sqlite")
    trail = AuditTrail(store)
    trail.start()
    gate = threading.Barrier(WRITERS)
    errors: list[BaseException] = []

    def write(number: int) -> None:
        gate.wait()
        try:
            trail.record(change(f"writer-{number}"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    try:
        assert errors == []
        found, _ = trail.query(AuditFilter(), 100)
        assert sorted(r.caller for r in found) == sorted(f"writer-{n}" for n in range(WRITERS))
        # The first record's commit holds the others back; they go in together after it.
        assert store.transactions <= 3, store.transactions
    finally:
        trail.stop()
        trail.close()


def test_a_store_that_fails_refuses_the_change_with_503(tmp_path: Path) -> None:
    store = AuditStore(tmp_path / "audit.sqlite")
    trail = AuditTrail(store)
    trail.start()
    store.close()  # every later commit fails, as with a vanished disk
    with pytest.raises(AuditUnavailable) as refused:
        trail.record(change("10.0.0.1"))
    assert isinstance(refused.value, ApiError)
    assert refused.value.status == 503 and refused.value.code == "AUDIT_UNAVAILABLE"
    trail.stop()


def test_after_stop_records_are_refused_and_queued_ones_were_kept(tmp_path: Path) -> None:
    store = AuditStore(tmp_path / "audit.sqlite")
    trail = AuditTrail(store)
    trail.start()
    trail.record(change("before"))
    trail.stop()
    with pytest.raises(AuditUnavailable):
        trail.record(change("after"))
    assert [r.caller for r in store.query(AuditFilter(), 10)[0]] == ["before"]
    trail.close()


def test_a_trail_built_but_not_started_still_records(tmp_path: Path) -> None:
    trail = AuditTrail(AuditStore(tmp_path / "audit.sqlite"))
    trail.record(change("early"))
    assert [r.caller for r in trail.query(AuditFilter(), 10)[0]] == ["early"]
    trail.stop()
    trail.close()


def test_json_lines_hold_one_line_per_record_whatever_the_values(tmp_path: Path) -> None:
    lines = tmp_path / "siem" / "audit.jsonl"
    lines.parent.mkdir()
    lines.write_bytes(b'{"kept": "from before"}\n')
    trail = AuditTrail(AuditStore(None), AuditSettings(json_lines_file=lines))
    trail.start()
    forged = 'Sales\n{"caller": "forged"}\r\u2028\x00\x1b[31m'
    records = [change("10.0.0.1", namespace=forged, key="k\nk"), change("10.0.0.2")]
    for written in records:
        trail.record(written)
    trail.stop()
    trail.close()

    raw = lines.read_bytes()
    assert raw.count(b"\n") == 3 and raw.endswith(b"\n")
    assert b"\r" not in raw and b"\x00" not in raw and b"\x1b" not in raw
    first, *appended = raw.splitlines()
    assert orjson.loads(first) == {"kept": "from before"}
    assert [orjson.loads(line) for line in appended] == [r.to_api() for r in records]
    assert orjson.loads(appended[0])["resources"]["namespace"] == forged


def test_start_prunes_what_is_past_retention(tmp_path: Path) -> None:
    now = time.time()
    store = AuditStore(tmp_path / "audit.sqlite")
    old = AuditRecord(time=now - 3 * 86400, caller="old")
    recent = AuditRecord(time=now - 86400 + 60, caller="recent")
    store.append([old, recent])
    trail = AuditTrail(store, AuditSettings(retention_days=1), clock=lambda: now)
    trail.start()
    try:
        assert [r.caller for r in trail.query(AuditFilter(), 10)[0]] == ["recent"]
    finally:
        trail.stop()
        trail.close()


def test_the_writer_keeps_pruning_while_butler_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("butler.audit.service.PRUNE_INTERVAL", 0.05)
    now = time.time()
    store = AuditStore(tmp_path / "audit.sqlite")
    trail = AuditTrail(store, AuditSettings(retention_days=1), clock=lambda: now)
    trail.start()
    try:
        store.append([AuditRecord(time=now - 2 * 86400, caller="expired meanwhile")])
        deadline = time.monotonic() + 5
        while trail.query(AuditFilter(), 10)[0] and time.monotonic() < deadline:
            time.sleep(0.02)
        assert trail.query(AuditFilter(), 10)[0] == []
    finally:
        trail.stop()
        trail.close()


def test_after_a_failed_commit_changes_are_refused_before_they_are_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = AuditStore(tmp_path / "audit.sqlite")
    trail = AuditTrail(store)
    trail.check_writable()
    store.close()
    with pytest.raises(AuditUnavailable):
        trail.record(change("10.0.0.1"))
    with pytest.raises(AuditUnavailable, match="changes are refused"):
        trail.check_writable()
    monkeypatch.setattr("butler.audit.service.RETRY_AFTER_FAILURE", 0.0)
    trail.check_writable()  # the next change may try again
    trail.stop()
    with pytest.raises(AuditUnavailable, match="stopping"):
        trail.check_writable()
