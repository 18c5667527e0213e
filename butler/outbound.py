"""Outbound HTTP to Slack and New Relic over one shared, pooled ``requests.Session``.

Every call has a timeout and every failure becomes a caller-safe ``ApiError``: the caller
learns what the upstream answered, never the webhook URL or an API key. ``requests``
exception texts contain the full URL (a Slack webhook URL *is* the credential), so they are
never logged or shown; only the exception type is.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from butler import __version__
from butler.errors import UpstreamError, UpstreamTimeout

log = logging.getLogger(__name__)

SLACK_TIMEOUT = 10.0
NEW_RELIC_TIMEOUT = 5.0
"""The original's New Relic timeout; Slack had none, 10 s keeps a stuck hook from hanging."""

_ANSWER_CHARS = 200
NameValues = Iterable[Mapping[str, Any]]


class _RedactSecrets(logging.Filter):
    """Scrub registered secrets from urllib3's debug lines, which print request paths."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()

    def add(self, secret: str) -> None:
        if len(secret) > 1:
            self._secrets.add(secret)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        text = record.getMessage()
        if any(secret in text for secret in self._secrets):
            for secret in self._secrets:
                text = text.replace(secret, "<redacted>")
            record.msg, record.args = text, None
        return True


_redactor = _RedactSecrets()
for _name in ("urllib3.connectionpool", "urllib3.util.retry"):
    logging.getLogger(_name).addFilter(_redactor)


def new_session(pool_size: int = 16) -> requests.Session:
    """The session the core puts in ``services.extras["http"]``; pooled, identifies Butler."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = f"butler-py/{__version__}"
    return session


def timeout_setting(value: Any, default: float) -> float:
    """An optional ``timeout`` config value in seconds; anything else means ``default``."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return default
    try:
        seconds = float(value)
    except ValueError:
        return default
    return seconds if 0 < seconds < 3600 else default


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _ANSWER_CHARS else text[: _ANSWER_CHARS - 1] + "…"


def _failure_kind(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if isinstance(exc, requests.ConnectionError):
        return "connection failed"
    return f"request failed ({type(exc).__name__})"


# --- Slack -----------------------------------------------------------------------------


def slack_payload(
    channel: str, from_user: str, msg: str, emoji: str | None = None
) -> dict[str, Any]:
    """The original's message shape: one plain-text section block."""
    payload: dict[str, Any] = {"username": from_user, "channel": channel}
    if emoji is not None:
        payload["icon_emoji"] = emoji
    payload["blocks"] = [{"type": "section", "text": {"type": "plain_text", "text": msg}}]
    return payload


def post_slack(
    session: requests.Session,
    webhook_url: str,
    payload: Mapping[str, Any],
    timeout: float = SLACK_TIMEOUT,
) -> None:
    """POST ``payload`` as JSON to a Slack incoming webhook; raise unless Slack took it."""
    parts = urlsplit(webhook_url)
    host = parts.hostname or "?"
    _redactor.add(parts.path)
    _redactor.add(parts.query)
    try:
        response = session.post(webhook_url, json=dict(payload), timeout=timeout)
    except requests.Timeout:
        log.warning("Slack webhook at %s did not answer within %g s", host, timeout)
        raise UpstreamTimeout(f"Slack did not answer within {timeout:g} s") from None
    except requests.RequestException as exc:
        log.warning("Slack webhook at %s could not be reached: %s", host, _failure_kind(exc))
        raise UpstreamError(f"Slack could not be reached: {_failure_kind(exc)}") from None
    if not 200 <= response.status_code < 300:
        answer = _short(response.text)
        log.warning("Slack refused the message: %s %s", response.status_code, answer)
        raise UpstreamError(f"Slack refused the message: {response.status_code} {answer}")
    log.info("Slack message posted to channel %s", payload.get("channel"))


# --- New Relic -------------------------------------------------------------------------


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


def apply_new_relic_cli(
    names: Sequence[str] | None, keys: Sequence[str] | None, ids: Sequence[str] | None
) -> list[dict[str, str]]:
    """Turn ``--new-relic-account-name/-api-key/-account-id`` into the config list.

    The three options come together with equal counts or not at all (as in the original);
    the result replaces ``Butler.thirdPartyToolsCredentials.newRelic``. The message never
    echoes a key.
    """
    given = [names or [], keys or [], ids or []]
    if not any(given):
        return []
    counts = [len(values) for values in given]
    if len(set(counts)) != 1 or 0 in counts:
        raise ValueError(
            "--new-relic-account-name, --new-relic-api-key and --new-relic-account-id must "
            f"be given together with the same number of values (got {counts[0]}, "
            f"{counts[1]} and {counts[2]})"
        )
    return [
        {"accountName": name, "insertApiKey": key, "accountId": str(account_id)}
        for name, key, account_id in zip(*given, strict=True)
    ]


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
    session: requests.Session,
    what: str,
    url: str,
    account: NewRelicAccount,
    payload: Any,
    headers: NameValues | None,
    timeout: float,
) -> AccountResult:
    try:
        response = session.post(
            url, json=payload, headers=_headers(headers, account), timeout=timeout
        )
    except requests.RequestException as exc:
        kind = _failure_kind(exc)
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
    answer = _short(response.text)
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
    session: requests.Session,
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
    session: requests.Session,
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
    session: requests.Session,
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
