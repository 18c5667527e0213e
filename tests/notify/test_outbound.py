"""Slack and New Relic senders against a real local HTTP server."""

from __future__ import annotations

import logging
import socket

import pytest
import requests

from butler.config_schema import timeout_setting
from butler.errors import UpstreamError, UpstreamTimeout
from butler_plugins.newrelic.client import (
    AccountResult,
    NewRelicAccount,
    event_payload,
    event_url,
    metric_payload,
    post_event,
    post_metric,
    raise_if_none_accepted,
    resolve_accounts,
    unknown_account_result,
)
from butler_plugins.newrelic.settings import apply_new_relic_cli
from butler_plugins.slack import post_slack, slack_payload
from tests.fixtures.http_receiver import Answer, HttpReceiver

HOOK_PATH = "/services/T0000/B0000/XXXXsecretXXXX"
API_KEY = "NRII-very-secret-insert-key"


def _closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}{HOOK_PATH}"


# --- Slack -----------------------------------------------------------------------------


def test_slack_payload_shape() -> None:
    assert slack_payload("#ch", "Bot", "hello", "thumbsup") == {
        "username": "Bot",
        "channel": "#ch",
        "icon_emoji": "thumbsup",
        "blocks": [{"type": "section", "text": {"type": "plain_text", "text": "hello"}}],
    }
    assert "icon_emoji" not in slack_payload("#ch", "Bot", "hello")


def test_slack_posts_json(http_receiver: HttpReceiver, http_session: requests.Session) -> None:
    payload = slack_payload("#reload", "Butler", 'He said "hi" åäö')
    post_slack(http_session, http_receiver.url + HOOK_PATH, payload)
    (req,) = http_receiver.wait_for(1)
    assert req.method == "POST"
    assert req.path == HOOK_PATH
    assert req.header("Content-Type") == "application/json"
    assert req.json() == payload


@pytest.mark.parametrize(
    ("status", "answer"), [(404, "no_service"), (400, "invalid_blocks"), (500, "server error")]
)
def test_slack_refusal_is_502_with_answer_but_no_url(
    http_receiver: HttpReceiver,
    http_session: requests.Session,
    caplog: pytest.LogCaptureFixture,
    status: int,
    answer: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    http_receiver.answer(Answer(status, answer))
    with pytest.raises(UpstreamError) as err:
        post_slack(http_session, http_receiver.url + HOOK_PATH, slack_payload("#c", "u", "m"))
    assert err.value.status == 502
    assert str(status) in err.value.message
    assert answer in err.value.message
    assert "secret" not in err.value.message
    assert "secret" not in caplog.text


def test_an_answer_echoing_the_webhook_path_is_redacted(
    http_receiver: HttpReceiver,
    http_session: requests.Session,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    http_receiver.answer(Answer(500, f"Internal error while handling POST {HOOK_PATH}"))
    with pytest.raises(UpstreamError) as err:
        post_slack(http_session, http_receiver.url + HOOK_PATH, slack_payload("#c", "u", "m"))
    assert "Internal error while handling POST <redacted>" in err.value.message
    assert "secret" not in err.value.message
    assert "secret" not in caplog.text


def test_slack_slow_answer_is_504(
    http_receiver: HttpReceiver, http_session: requests.Session, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    http_receiver.answer(Answer(200, "ok", delay=30))
    with pytest.raises(UpstreamTimeout) as err:
        post_slack(http_session, http_receiver.url + HOOK_PATH, {"text": "x"}, timeout=0.3)
    assert "secret" not in err.value.message
    assert "secret" not in caplog.text


def test_slack_unreachable_is_502_without_url(
    http_session: requests.Session, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(UpstreamError) as err:
        post_slack(http_session, _closed_port_url(), {"text": "x"})
    assert err.value.status == 502
    assert err.value.__cause__ is None
    assert "secret" not in err.value.message
    assert "secret" not in caplog.text


# --- New Relic: pure parts ---------------------------------------------------------------


def test_event_payload_static_then_request_attributes_and_timestamp_rules() -> None:
    static = [{"name": "env", "value": "prod"}, {"name": "team", "value": "bi"}]
    attrs = [{"name": "team", "value": "ops"}, {"name": "host.name", "value": "x"}]
    assert event_payload("reload-failed", 1642164296053.0, attrs, static, now_ms=5) == {
        "timestamp": 1642164296053,
        "eventType": "reload-failed",
        "env": "prod",
        "team": "ops",
        "host.name": "x",
    }
    assert event_payload("e", 0, now_ms=77)["timestamp"] == 77
    assert event_payload("e", -3, now_ms=77)["timestamp"] == 77
    assert event_payload("e", None, now_ms=77)["timestamp"] == 77
    assert event_payload("e", 1.5, now_ms=77)["timestamp"] == 1.5
    assert isinstance(event_payload("e")["timestamp"], int)


def test_metric_payload_shape() -> None:
    static = [{"name": "env", "value": "prod"}]
    attrs = [{"name": "host.name", "value": "x"}]
    assert metric_payload("memory.heap", 2.3, "gauge", 1642164296053, attrs, static) == [
        {
            "common": {
                "timestamp": 1642164296053,
                "attributes": {"env": "prod", "host.name": "x"},
            },
            "metrics": [{"name": "memory.heap", "type": "gauge", "value": 2.3}],
        }
    ]
    assert metric_payload("m", 5.0, now_ms=9)[0]["metrics"][0]["value"] == 5
    assert metric_payload("m", 5.0, now_ms=9)[0]["common"]["timestamp"] == 9


def test_event_url_adds_slash_once() -> None:
    assert event_url("https://nr.example/", "123") == "https://nr.example/v1/accounts/123/events"
    assert event_url("https://nr.example", "123") == "https://nr.example/v1/accounts/123/events"


def test_resolve_accounts_keeps_order_dedupes_and_reports_unknown() -> None:
    creds = [
        {"accountName": "A", "insertApiKey": "ka", "accountId": "1"},
        {"accountName": "B", "insertApiKey": "kb", "accountId": 2},
    ]
    found, unknown = resolve_accounts(["B", "X", "A", "B"], creds)
    assert [a.name for a in found] == ["B", "A"]
    assert found[0].account_id == "2"
    assert unknown == ["X"]
    assert "kb" not in repr(found[0])


def test_apply_new_relic_cli() -> None:
    assert apply_new_relic_cli(None, None, None) == []
    assert apply_new_relic_cli(["A", "B"], ["ka", "kb"], ["1", "2"]) == [
        {"accountName": "A", "insertApiKey": "ka", "accountId": "1"},
        {"accountName": "B", "insertApiKey": "kb", "accountId": "2"},
    ]
    with pytest.raises(ValueError, match="same number") as err:
        apply_new_relic_cli(["A", "B"], ["secret-key"], ["1", "2"])
    assert "secret-key" not in str(err.value)
    with pytest.raises(ValueError):
        apply_new_relic_cli(["A"], None, None)


def test_none_accepted_is_502_or_504_when_all_timed_out() -> None:
    ok = AccountResult("A", "1", True, 202, "Accepted")
    refused = AccountResult("B", "2", False, 403, "Forbidden", "bad key")
    slow = AccountResult("C", "3", False, None, "timed out", timed_out=True)
    raise_if_none_accepted("event", [ok, refused])
    with pytest.raises(UpstreamError) as err:
        raise_if_none_accepted("event", [refused, slow])
    assert err.value.status == 502
    assert "B: 403 Forbidden bad key" in err.value.message
    with pytest.raises(UpstreamTimeout):
        raise_if_none_accepted("metric", [slow, unknown_account_result("Z")])


# --- New Relic over HTTP -----------------------------------------------------------------


def _accounts() -> list[NewRelicAccount]:
    return [
        NewRelicAccount("First", "1111", API_KEY + "-1"),
        NewRelicAccount("Second", "2222", API_KEY + "-2"),
    ]


def test_event_goes_to_every_account_with_its_key_and_headers(
    http_receiver: HttpReceiver, http_session: requests.Session, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    http_receiver.answer(Answer(200, {"success": True}), path="/v1/accounts/1111/")
    http_receiver.answer(Answer(202, {"success": True}), path="/v1/accounts/2222/")
    payload = event_payload("reload-failed", 1642164296053, [{"name": "a", "value": "1"}])
    results = post_event(
        http_session,
        _accounts(),
        http_receiver.url,
        payload,
        headers=[{"name": "X-My-Header", "value": "Header value"}],
    )
    assert [r.to_json() for r in results] == [
        {
            "accountName": "First",
            "accountId": "1111",
            "success": True,
            "newRelicResultCode": "200",
            "newRelicResultText": "OK",
        },
        {
            "accountName": "Second",
            "accountId": "2222",
            "success": True,
            "newRelicResultCode": "202",
            "newRelicResultText": "Accepted",
        },
    ]
    requests_seen = sorted(http_receiver.wait_for(2), key=lambda r: r.path)
    assert [r.path for r in requests_seen] == [
        "/v1/accounts/1111/events",
        "/v1/accounts/2222/events",
    ]
    for req, suffix in zip(requests_seen, ("-1", "-2"), strict=True):
        assert req.method == "POST"
        assert req.header("Api-Key") == API_KEY + suffix
        assert req.header("X-My-Header") == "Header value"
        assert req.header("Content-Type") == "application/json; charset=utf-8"
        assert req.json() == payload
    assert API_KEY not in caplog.text


def test_metric_url_verbatim_and_failures_per_account(
    http_receiver: HttpReceiver, http_session: requests.Session, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    http_receiver.answer(Answer(202, {"requestId": "r"}), Answer(403, {"error": "bad key"}))
    payload = metric_payload("memory.heap", 2.3, timestamp=1)
    accounts = _accounts()[:1]
    url = http_receiver.url + "/metric/v1"
    first = post_metric(http_session, accounts, url, payload)
    second = post_metric(http_session, accounts, url, payload)
    assert first[0].accepted and first[0].status_code == 202
    assert not second[0].accepted
    assert second[0].status_code == 403
    assert "bad key" in second[0].message
    reqs = http_receiver.wait_for(2)
    assert reqs[0].path == "/metric/v1"
    assert reqs[0].json() == payload
    assert API_KEY not in caplog.text


def test_an_answer_echoing_the_api_key_is_redacted(
    http_receiver: HttpReceiver, http_session: requests.Session, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    http_receiver.answer(Answer(403, f"key {API_KEY}-1 is not valid"))
    (result,) = post_metric(
        http_session, _accounts()[:1], http_receiver.url + "/metric/v1", [{"metrics": []}]
    )
    assert not result.accepted
    assert result.message == "key <redacted> is not valid"
    assert API_KEY not in caplog.text


def test_slow_and_unreachable_accounts_are_reported_not_raised(
    http_receiver: HttpReceiver, http_session: requests.Session
) -> None:
    http_receiver.answer(Answer(202, "", delay=30))
    results = post_event(http_session, _accounts()[:1], http_receiver.url, {"x": 1}, timeout=0.3)
    assert results[0].timed_out
    assert results[0].status_text == "timed out"
    unreachable = post_metric(http_session, _accounts()[:1], _closed_port_url(), [])
    assert unreachable[0].status_text == "connection failed"
    assert not unreachable[0].timed_out


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, 5.0), (2, 2.0), ("0.5", 0.5), (0, 5.0), (-1, 5.0), ("x", 5.0), (True, 5.0), ([], 5.0)],
)
def test_timeout_setting(value: object, expected: float) -> None:
    assert timeout_setting(value, 5.0) == expected
