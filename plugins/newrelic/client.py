"""New Relic's event and metric APIs: payloads, one post per account, per-account results.

Every destination account is posted to concurrently, so N accounts cost one timeout, not
N; each account's outcome is kept (the original reported the first account's status text
only). An API key never appears in a log line, a result or an error message.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import requests

from butler.errors import UpstreamError, UpstreamTimeout
from butler.outbound_http import OutboundSession, failure_kind

log = logging.getLogger(__name__)

NEW_RELIC_TIMEOUT = 5.0
"""The original's New Relic timeout."""

NameValues = Iterable[Mapping[str, Any]]


@dataclass(frozen=True)
class NewRelicAccount:
    """One entry of ``Butler.thirdPartyToolsCredentials.newRelic``; the key stays out of repr."""

    name: str
    account_id: str
    api_key: str = field(repr=False)

    @classmethod
    def from_config(cls, entry: Mapping[str, Any]) -> NewRelicAccount:
        return cls(
            name=str(entry["accountName"]),
            account_id=str(entry["accountId"]),
            api_key=str(entry["insertApiKey"]),
        )


@dataclass(frozen=True)
class AccountResult:
    """What one destination account answered (or why nothing was sent to it)."""

    account_name: str
    account_id: str | None
    accepted: bool
    status_code: int | None
    status_text: str
    message: str = ""
    timed_out: bool = False

    def to_json(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "accountName": self.account_name,
            "accountId": self.account_id,
            "success": self.accepted,
            "newRelicResultCode": None if self.status_code is None else str(self.status_code),
            "newRelicResultText": self.status_text,
        }
        if self.message:
            result["message"] = self.message
        return result


def resolve_accounts(
    destination: Iterable[str], credentials: Iterable[Mapping[str, Any]]
) -> tuple[list[NewRelicAccount], list[str]]:
    """Destination names -> accounts in destination order, plus names with no credentials.

    A name listed twice is used once: posting the same data twice to one account would
    double it in New Relic.
    """
    by_name = {
        str(entry["accountName"]): NewRelicAccount.from_config(entry) for entry in credentials
    }
    found: list[NewRelicAccount] = []
    unknown: list[str] = []
    for name in dict.fromkeys(str(n) for n in destination):
        account = by_name.get(name)
        if account is None:
            unknown.append(name)
        else:
            found.append(account)
    return found, unknown


def _number(value: float | int) -> float | int:
    """Integral floats as ints, so a timestamp goes out as 1642164296053, not ...053.0."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def _timestamp(value: float | int | None, now_ms: int | None) -> float | int:
    if value is not None and value > 0:
        return _number(value)
    return now_ms if now_ms is not None else time.time_ns() // 1_000_000


def _pairs(items: NameValues | None) -> dict[str, Any]:
    return {str(item["name"]): item["value"] for item in items or ()}


def event_payload(
    event_type: str,
    timestamp: float | None = None,
    attributes: NameValues | None = None,
    static_attributes: NameValues | None = None,
    now_ms: int | None = None,
) -> dict[str, Any]:
    """One flat event; request attributes override static ones of the same name."""
    payload: dict[str, Any] = {
        "timestamp": _timestamp(timestamp, now_ms),
        "eventType": event_type,
    }
    payload.update(_pairs(static_attributes))
    payload.update(_pairs(attributes))
    return payload


def metric_payload(
    name: str,
    value: float,
    metric_type: str = "gauge",
    timestamp: float | None = None,
    attributes: NameValues | None = None,
    static_attributes: NameValues | None = None,
    now_ms: int | None = None,
) -> list[dict[str, Any]]:
    """The Metric API's ``[{"common": ..., "metrics": [...]}]`` for one gauge value."""
    common_attributes = _pairs(static_attributes)
    common_attributes.update(_pairs(attributes))
    return [
        {
            "common": {
                "timestamp": _timestamp(timestamp, now_ms),
                "attributes": common_attributes,
            },
            "metrics": [{"name": name, "type": metric_type, "value": _number(value)}],
        }
    ]


def event_url(base_url: str, account_id: str) -> str:
    base = base_url if base_url.endswith("/") else base_url + "/"
    return f"{base}v1/accounts/{account_id}/events"


def _headers(extra: NameValues | None, account: NewRelicAccount) -> dict[str, str]:
    headers = {"Content-Type": "application/json; charset=utf-8"}
    headers.update({str(k): str(v) for k, v in _pairs(extra).items()})
    headers["Api-Key"] = account.api_key
    return headers


def _post_one(
    session: OutboundSession,
    what: str,
    url: str,
    account: NewRelicAccount,
    payload: Any,
    headers: NameValues | None,
    timeout: float,
) -> AccountResult:
    session.add_secret(account.api_key)
    try:
        response = session.post(
            url, json=payload, headers=_headers(headers, account), timeout=timeout
        )
    except requests.RequestException as exc:
        kind = failure_kind(exc)
        log.warning("New Relic %s for account %s: %s", what, account.name, kind)
        return AccountResult(
            account.name,
            account.account_id,
            accepted=False,
            status_code=None,
            status_text=kind,
            timed_out=isinstance(exc, requests.Timeout),
        )
    accepted = 200 <= response.status_code < 300
    reason = response.reason or ""
    if accepted:
        log.info(
            "New Relic %s accepted for account %s: %s %s",
            what,
            account.name,
            response.status_code,
            reason,
        )
        return AccountResult(account.name, account.account_id, True, response.status_code, reason)
    answer = session.answer_of(response)
    log.warning(
        "New Relic %s refused for account %s: %s %s %s",
        what,
        account.name,
        response.status_code,
        reason,
        answer,
    )
    return AccountResult(
        account.name, account.account_id, False, response.status_code, reason, answer
    )


def _post_all(
    session: OutboundSession,
    what: str,
    targets: Sequence[tuple[NewRelicAccount, str]],
    payload: Any,
    headers: NameValues | None,
    timeout: float,
) -> list[AccountResult]:
    """Post to every account at once, so N accounts cost one timeout, not N."""
    headers = list(headers or ())
    if len(targets) <= 1:
        return [_post_one(session, what, u, a, payload, headers, timeout) for a, u in targets]
    with ThreadPoolExecutor(max_workers=min(len(targets), 8)) as pool:
        futures = [
            pool.submit(_post_one, session, what, url, account, payload, headers, timeout)
            for account, url in targets
        ]
        return [future.result() for future in futures]


def post_event(
    session: OutboundSession,
    accounts: Sequence[NewRelicAccount],
    base_url: str,
    payload: Mapping[str, Any],
    headers: NameValues | None = None,
    timeout: float = NEW_RELIC_TIMEOUT,
) -> list[AccountResult]:
    """Send one event to ``<base_url>/v1/accounts/<id>/events`` of every account."""
    targets = [(account, event_url(base_url, account.account_id)) for account in accounts]
    return _post_all(session, "event", targets, dict(payload), headers, timeout)


def post_metric(
    session: OutboundSession,
    accounts: Sequence[NewRelicAccount],
    url: str,
    payload: Sequence[Mapping[str, Any]],
    headers: NameValues | None = None,
    timeout: float = NEW_RELIC_TIMEOUT,
) -> list[AccountResult]:
    """Send one metric payload to the Metric API ``url`` (used verbatim) for every account."""
    targets = [(account, url) for account in accounts]
    return _post_all(session, "metric", targets, list(payload), headers, timeout)


def unknown_account_result(name: str) -> AccountResult:
    """A destination named in the config with no credentials: reported, not silently skipped."""
    return AccountResult(
        name,
        None,
        accepted=False,
        status_code=None,
        status_text="not sent",
        message="no credentials in Butler.thirdPartyToolsCredentials.newRelic",
    )


def raise_if_none_accepted(what: str, results: Sequence[AccountResult]) -> None:
    """All accounts failed: 504 if every failure was a timeout, else 502."""
    if any(result.accepted for result in results):
        return
    details = "; ".join(
        f"{r.account_name}: "
        + " ".join(p for p in (str(r.status_code or ""), r.status_text, r.message) if p)
        for r in results
    )
    message = f"New Relic accepted the {what} for no account ({details})"
    sent = [r for r in results if r.account_id is not None]
    if sent and all(r.timed_out for r in sent):
        raise UpstreamTimeout(message)
    raise UpstreamError(message)
