"""``GET /v4/audit`` over a live server: filters, paging, refusals, and 503 when off."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from butler.app import create_app
from butler.audit import AuditRecord
from butler.config import ConfigError
from butler.lifecycle import build_services
from butler.runs.model import parse_iso
from tests.audit.conftest import AuditButler

T0 = parse_iso("2026-12-02T03:00:00Z")
TIMEOUT = 10.0


def get(url: str, **params: Any) -> requests.Response:
    return requests.get(f"{url}/v4/audit", params=params, timeout=TIMEOUT)


def test_records_are_listed_newest_first_and_filtered(audit_butler: AuditButler) -> None:
    url, services = audit_butler()
    assert services.audit is not None
    written = [
        AuditRecord(
            time=T0 + n,
            caller=f"10.0.0.{n % 2}",
            method="PUT",
            route="/v4/keyvalues/{namespace}" if n < 3 else "/v4/schedules/{scheduleId}",
            params={"namespace": "Sales"} if n < 3 else {"scheduleId": "nightly"},
            status=200,
            resources={"namespace": "Sales"} if n < 3 else {"scheduleId": "nightly"},
            request_id=f"request-{n}",
        )
        for n in range(5)
    ]
    for record in written:
        services.audit.record(record)

    response = get(url)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body == {"records": [r.to_api() for r in reversed(written)], "nextCursor": None}

    assert [r["requestId"] for r in get(url, caller="10.0.0.1").json()["records"]] == [
        "request-3",
        "request-1",
    ]
    by_route = get(url, route="/v4/schedules/{scheduleId}").json()["records"]
    assert [r["requestId"] for r in by_route] == ["request-4", "request-3"]
    window = get(url, since="2026-12-02T03:00:01Z", until="2026-12-02T04:00:02+01:00")
    assert [r["requestId"] for r in window.json()["records"]] == ["request-2", "request-1"]

    first = get(url, limit=2).json()
    assert [r["requestId"] for r in first["records"]] == ["request-4", "request-3"]
    second = get(url, limit=2, cursor=first["nextCursor"]).json()
    assert [r["requestId"] for r in second["records"]] == ["request-2", "request-1"]
    last = get(url, limit=2, cursor=second["nextCursor"]).json()
    assert [r["requestId"] for r in last["records"]] == ["request-0"]
    assert last["nextCursor"] is None


@pytest.mark.parametrize(
    "params",
    [
        {"cursor": "forged"},
        {"since": "yesterday"},
        {"until": "2026-13-01T00:00:00Z"},
        {"limit": "0"},
        {"limit": "1001"},
    ],
)
def test_bad_queries_are_400(audit_butler: AuditButler, params: dict[str, str]) -> None:
    url, _ = audit_butler()
    response = get(url, **params)
    assert response.status_code == 400, response.text
    assert response.json()["statusCode"] == 400


def test_the_route_answers_503_while_the_trail_is_off(audit_butler: AuditButler) -> None:
    url, services = audit_butler({"audit": {"enable": False}})
    assert services.audit is None
    response = get(url)
    assert response.status_code == 503, response.text
    assert "Butler.audit.enable" in response.json()["message"]


def test_the_config_section_defaults_and_limits(make_config, tmp_path) -> None:
    section = make_config().get("audit")
    assert section == {
        "enable": False,
        "dbFile": "butler-audit.sqlite",
        "retentionDays": 90,
        "jsonLinesFile": None,
        "flushEachCommit": True,
    }
    with pytest.raises(ConfigError, match=r"Butler\.audit\.retentionDays"):
        make_config({"audit": {"retentionDays": 0}})
    (tmp_path / "taken").mkdir()
    with pytest.raises(ConfigError, match=r"Butler\.audit\.dbFile"):
        build_services(make_config({"audit": {"enable": True, "dbFile": "taken"}}))


def test_an_enabled_trail_writes_its_json_lines_where_configured(make_config, tmp_path) -> None:
    config = make_config(
        {"audit": {"enable": True, "dbFile": "a.sqlite", "jsonLinesFile": "siem/audit.jsonl"}}
    )
    services = build_services(config)
    create_app(config, services)
    services.start()
    try:
        assert services.audit is not None
        services.audit.record(AuditRecord(time=T0, caller="10.0.0.1"))
    finally:
        services.stop()
    assert (tmp_path / "siem" / "audit.jsonl").read_text().count("\n") == 1
    assert (tmp_path / "a.sqlite").is_file()
