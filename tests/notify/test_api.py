"""The MQTT, Slack and New Relic routes over real sockets: Butler, broker and receivers."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from butler.app import create_app
from butler.config import Config
from butler.mqtt import MqttService
from butler.services import Services
from tests.fixtures.http_receiver import Answer, HttpReceiver
from tests.fixtures.mqtt import Mosquitto

from .conftest import WAIT, Subscriber

HOOK_PATH = "/services/T0000/B0000/XXXXsecretXXXX"
API_KEY = "NRII-very-secret-insert-key"


@pytest.fixture
def mqtt_service(mosquitto: Mosquitto) -> Iterator[MqttService]:
    service = MqttService(mosquitto.host, mosquitto.port)
    service.start()
    assert service.wait_connected(WAIT)
    yield service
    service.stop()


@pytest.fixture
def serve(
    make_config: Callable[..., Config],
    live_server: Callable[..., str],
    http_session: requests.Session,
) -> Callable[..., str]:
    """Factory: Butler with ``butler`` config and the given MQTT service; returns base URL."""

    def start(butler: dict[str, Any], mqtt: MqttService | None = None) -> str:
        config = make_config(butler)
        services = Services(config=config, mqtt=mqtt, http=http_session)
        return live_server(create_app(config, services))

    return start


# --- MQTT ------------------------------------------------------------------------------

MQTT_ON = {"restServerEndpointsEnable": {"mqttPublishMessage": True}}


def test_publish_201_echo_and_exact_delivery(
    serve: Callable[..., str],
    mqtt_service: MqttService,
    mosquitto: Mosquitto,
    subscribe: Callable[..., Subscriber],
) -> None:
    sub = subscribe(mosquitto, "qliksense/#")
    base = serve(MQTT_ON, mqtt_service)
    body = {
        "topic": "qliksense/new_data",
        "message": 20201028,
        "qos": "1",
        "retain": "false",
        "x": 1,
    }
    resp = requests.put(f"{base}/v4/mqttpublishmessage", json=body, timeout=WAIT)
    assert resp.status_code == 201
    assert resp.headers["Content-Type"].startswith("application/json")
    assert resp.json() == {
        "topic": "qliksense/new_data",
        "message": "20201028",
        "qos": 1,
        "retain": False,
        "x": 1,
    }
    got = sub.next_on("qliksense/new_data")
    assert got.payload == b"20201028"
    assert got.qos == 1


def test_publish_via_post_with_method_override(
    serve: Callable[..., str],
    mqtt_service: MqttService,
    mosquitto: Mosquitto,
    subscribe: Callable[..., Subscriber],
) -> None:
    sub = subscribe(mosquitto, "ls/#")
    base = serve(MQTT_ON, mqtt_service)
    resp = requests.post(
        f"{base}/v4/mqttpublishmessage",
        json={"topic": "ls/a", "message": "from a load script"},
        headers={"X-HTTP-Method-Override": "PUT"},
        timeout=WAIT,
    )
    assert resp.status_code == 201
    assert sub.next_on("ls/a").payload == b"from a load script"


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ({"message": "m"}, "topic"),
        ({"topic": "a"}, "message"),
        ({"topic": "a/#", "message": "m"}, "wildcards"),
        ({"topic": "", "message": "m"}, "non-empty"),
        ({"topic": "a", "message": {"x": 1}}, "message"),
        ({"topic": "a", "message": "m", "qos": 3}, "qos"),
        ({"topic": "a", "message": "m", "retain": "maybe"}, "retain"),
    ],
)
def test_publish_bad_input_is_400(
    serve: Callable[..., str], mqtt_service: MqttService, body: dict[str, Any], text: str
) -> None:
    base = serve(MQTT_ON, mqtt_service)
    resp = requests.put(f"{base}/v4/mqttpublishmessage", json=body, timeout=WAIT)
    assert resp.status_code == 400
    assert text in resp.json()["message"]


@pytest.mark.parametrize("topic", ["a\u0001b", "a\x00b", "line\nbreak", "del\x7f", "c1\x85"])
def test_control_characters_in_topics_are_400_and_the_connection_survives(
    serve: Callable[..., str],
    mqtt_service: MqttService,
    mosquitto: Mosquitto,
    subscribe: Callable[..., Subscriber],
    topic: str,
) -> None:
    sub = subscribe(mosquitto, "after/#")
    base = serve(MQTT_ON, mqtt_service)
    url = f"{base}/v4/mqttpublishmessage"
    refused = requests.put(url, json={"topic": topic, "message": "m", "qos": 1}, timeout=WAIT)
    assert refused.status_code == 400
    assert "control characters" in refused.json()["message"]
    after = requests.put(url, json={"topic": "after/x", "message": "ok", "qos": 1}, timeout=WAIT)
    assert after.status_code == 201
    assert sub.next_on("after/x").payload == b"ok"
    assert mqtt_service.connected


def test_publish_with_mqtt_disabled_is_503(serve: Callable[..., str]) -> None:
    base = serve(MQTT_ON, None)
    resp = requests.put(
        f"{base}/v4/mqttpublishmessage", json={"topic": "a", "message": "m"}, timeout=WAIT
    )
    assert resp.status_code == 503
    assert resp.json()["statusCode"] == 503
    assert "Butler.mqttConfig.enable" in resp.json()["message"]


def test_publish_broker_down_is_502_then_works_after_restart(
    serve: Callable[..., str],
    mqtt_service: MqttService,
    mosquitto: Mosquitto,
    subscribe: Callable[..., Subscriber],
) -> None:
    base = serve(MQTT_ON, mqtt_service)
    url = f"{base}/v4/mqttpublishmessage"
    mosquitto.stop()
    statuses: list[int] = []
    for _ in range(200):
        resp = requests.put(url, json={"topic": "a/b", "message": "m", "qos": 1}, timeout=WAIT)
        statuses.append(resp.status_code)
        if resp.status_code == 502:
            break
    assert statuses[-1] == 502, statuses
    assert "not connected" in resp.json()["message"]

    mosquitto.start()
    assert mqtt_service.wait_connected(WAIT)
    sub = subscribe(mosquitto, "a/#")
    resp = requests.put(url, json={"topic": "a/b", "message": "back", "qos": 1}, timeout=WAIT)
    assert resp.status_code == 201
    assert sub.next_on("a/b").payload == b"back"


# --- Slack -----------------------------------------------------------------------------


def _slack_on(url: str | None) -> dict[str, Any]:
    return {
        "restServerEndpointsEnable": {"slackPostMessage": True},
        "slackNotification": {"restMessage": {"webhookURL": url}},
    }


SLACK_BODY = {"channel": "#reload", "from_user": "Butler", "msg": "Reload done", "emoji": ":ok:"}


def test_slack_201_echo_and_payload(serve: Callable[..., str], http_receiver: HttpReceiver) -> None:
    base = serve(_slack_on(http_receiver.url + HOOK_PATH))
    resp = requests.put(
        f"{base}/v4/slackpostmessage", json={**SLACK_BODY, "extra": 1}, timeout=WAIT
    )
    assert resp.status_code == 201
    assert resp.json() == SLACK_BODY
    (req,) = http_receiver.wait_for(1)
    assert req.method == "POST"
    assert req.path == HOOK_PATH
    assert req.header("Content-Type") == "application/json"
    assert req.json() == {
        "username": "Butler",
        "channel": "#reload",
        "icon_emoji": ":ok:",
        "blocks": [{"type": "section", "text": {"type": "plain_text", "text": "Reload done"}}],
    }


def test_slack_without_emoji_echoes_three_fields(
    serve: Callable[..., str], http_receiver: HttpReceiver
) -> None:
    base = serve(_slack_on(http_receiver.url + HOOK_PATH))
    body = {"channel": "#c", "from_user": "u", "msg": 42}
    resp = requests.put(f"{base}/v4/slackpostmessage", json=body, timeout=WAIT)
    assert resp.status_code == 201
    assert resp.json() == {"channel": "#c", "from_user": "u", "msg": "42"}
    assert "icon_emoji" not in http_receiver.wait_for(1)[0].json()


def test_slack_refusal_is_502_with_answer_and_no_secret(
    serve: Callable[..., str], http_receiver: HttpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    http_receiver.answer(Answer(404, "no_service"))
    base = serve(_slack_on(http_receiver.url + HOOK_PATH))
    resp = requests.put(f"{base}/v4/slackpostmessage", json=SLACK_BODY, timeout=WAIT)
    assert resp.status_code == 502
    assert resp.json()["message"] == "Slack refused the message: 404 no_service"
    assert "secret" not in resp.text
    assert "secret" not in caplog.text


def test_slack_slow_is_504(serve: Callable[..., str], http_receiver: HttpReceiver) -> None:
    http_receiver.answer(Answer(200, "ok", delay=30))
    config = _slack_on(http_receiver.url + HOOK_PATH)
    config["slackNotification"]["restMessage"]["timeout"] = 0.3
    base = serve(config)
    resp = requests.put(f"{base}/v4/slackpostmessage", json=SLACK_BODY, timeout=WAIT)
    assert resp.status_code == 504
    assert "secret" not in resp.text


def test_slack_not_configured_is_503(serve: Callable[..., str]) -> None:
    base = serve(_slack_on(None))
    resp = requests.put(f"{base}/v4/slackpostmessage", json=SLACK_BODY, timeout=WAIT)
    assert resp.status_code == 503
    assert "Butler.slackNotification.restMessage.webhookURL" in resp.json()["message"]


def test_slack_missing_field_is_400(serve: Callable[..., str], http_receiver: HttpReceiver) -> None:
    base = serve(_slack_on(http_receiver.url + HOOK_PATH))
    resp = requests.put(
        f"{base}/v4/slackpostmessage", json={"channel": "#c", "msg": "m"}, timeout=WAIT
    )
    assert resp.status_code == 400
    assert "from_user" in resp.json()["message"]
    assert http_receiver.requests == []


# --- New Relic -------------------------------------------------------------------------


def _nr_config(receiver: HttpReceiver, destination: Any = ("First", "Second")) -> dict[str, Any]:
    route = {
        "destinationAccount": list(destination) if destination is not None else None,
        "header": [{"name": "X-My-Header", "value": "Header value"}],
        "attribute": {"static": [{"name": "env", "value": "prod"}]},
    }
    return {
        "restServerEndpointsEnable": {
            "newRelic": {"postNewRelicEvent": True, "postNewRelicMetric": True}
        },
        "thirdPartyToolsCredentials": {
            "newRelic": [
                {"accountName": "First", "insertApiKey": API_KEY + "-1", "accountId": 1111},
                {"accountName": "Second", "insertApiKey": API_KEY + "-2", "accountId": "2222"},
            ]
        },
        "restServerEndpointsConfig": {
            "newRelic": {
                "postNewRelicEvent": {**route, "url": receiver.url},
                "postNewRelicMetric": {**route, "url": receiver.url + "/metric/v1"},
            }
        },
    }


def test_event_202_json_for_every_account(
    serve: Callable[..., str], http_receiver: HttpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    http_receiver.answer(Answer(200, {"success": True}))
    base = serve(_nr_config(http_receiver))
    body = {
        "eventType": "reload-failed",
        "timestamp": "1642164296053",
        "attributes": [{"name": "host.name", "value": "dev"}, {"name": "env", "value": "test"}],
    }
    resp = requests.post(f"{base}/v4/newrelic/event", json=body, timeout=WAIT)
    assert resp.status_code == 202
    assert resp.headers["Content-Type"].startswith("application/json")
    answer = resp.json()
    assert answer["newRelicResultCode"] == "202"
    assert answer["newRelicResultText"] == "Accepted"
    assert [
        (a["accountName"], a["success"], a["newRelicResultCode"]) for a in answer["accounts"]
    ] == [
        ("First", True, "200"),
        ("Second", True, "200"),
    ]
    reqs = sorted(http_receiver.wait_for(2), key=lambda r: r.path)
    assert [r.path for r in reqs] == ["/v1/accounts/1111/events", "/v1/accounts/2222/events"]
    assert [r.header("Api-Key") for r in reqs] == [API_KEY + "-1", API_KEY + "-2"]
    assert all(r.header("X-My-Header") == "Header value" for r in reqs)
    assert reqs[0].json() == {
        "timestamp": 1642164296053,
        "eventType": "reload-failed",
        "env": "test",
        "host.name": "dev",
    }
    assert API_KEY not in resp.text
    assert API_KEY not in caplog.text


def test_metric_partial_failure_is_202_with_detail(
    serve: Callable[..., str], http_receiver: HttpReceiver
) -> None:
    http_receiver.answer(Answer(202, {"requestId": "r"}), Answer(403, {"error": "bad key"}))
    base = serve(_nr_config(http_receiver, destination=("First",)))
    body = {"name": "memory.heap", "type": "gauge", "value": "2.5", "attributes": []}
    ok = requests.post(f"{base}/v4/newrelic/metric", json=body, timeout=WAIT)
    assert ok.status_code == 202
    assert ok.json()["accounts"][0]["newRelicResultText"] == "Accepted"
    (req,) = http_receiver.wait_for(1)
    assert req.path == "/metric/v1"
    sent = req.json()
    assert sent[0]["metrics"] == [{"name": "memory.heap", "type": "gauge", "value": 2.5}]
    assert sent[0]["common"]["attributes"] == {"env": "prod"}
    assert isinstance(sent[0]["common"]["timestamp"], int)

    failed = requests.post(f"{base}/v4/newrelic/metric", json=body, timeout=WAIT)
    assert failed.status_code == 502
    assert "First: 403 Forbidden" in failed.json()["message"]


def test_event_one_of_two_accounts_fails_is_202_partial(
    serve: Callable[..., str], http_receiver: HttpReceiver
) -> None:
    http_receiver.answer(Answer(200, "{}"), path="/v1/accounts/1111/")
    http_receiver.answer(Answer(500, "oops"), path="/v1/accounts/2222/")
    base = serve(_nr_config(http_receiver, destination=("First", "Second", "Ghost")))
    resp = requests.post(f"{base}/v4/newrelic/event", json={"eventType": "e"}, timeout=WAIT)
    assert resp.status_code == 202
    answer = resp.json()
    assert answer["newRelicResultText"] == "Accepted by 1 of 3 accounts"
    assert [(a["accountName"], a["success"]) for a in answer["accounts"]] == [
        ("First", True),
        ("Second", False),
        ("Ghost", False),
    ]
    assert answer["accounts"][1]["newRelicResultCode"] == "500"
    assert answer["accounts"][2]["newRelicResultCode"] is None


def test_event_all_slow_is_504(serve: Callable[..., str], http_receiver: HttpReceiver) -> None:
    http_receiver.answer(Answer(202, "", delay=30))
    config = _nr_config(http_receiver)
    config["restServerEndpointsConfig"]["newRelic"]["postNewRelicEvent"]["timeout"] = "0.3"
    base = serve(config)
    resp = requests.post(f"{base}/v4/newrelic/event", json={"eventType": "e"}, timeout=WAIT)
    assert resp.status_code == 504
    assert "timed out" in resp.json()["message"]


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"destination": None}, "postNewRelicEvent.destinationAccount"),
        ({"destination": ()}, "postNewRelicEvent.destinationAccount"),
        ({"credentials": None}, "thirdPartyToolsCredentials.newRelic"),
        ({"destination": ("Nobody",)}, "thirdPartyToolsCredentials.newRelic"),
    ],
)
def test_event_not_configured_is_503(
    serve: Callable[..., str], http_receiver: HttpReceiver, change: dict[str, Any], key: str
) -> None:
    config = _nr_config(http_receiver, destination=change.get("destination", ("First",)))
    if "credentials" in change:
        config["thirdPartyToolsCredentials"]["newRelic"] = None
    base = serve(config)
    resp = requests.post(f"{base}/v4/newrelic/event", json={"eventType": "e"}, timeout=WAIT)
    assert resp.status_code == 503
    assert key in resp.json()["message"]
    assert http_receiver.requests == []


@pytest.mark.parametrize(
    ("path", "body", "text"),
    [
        ("event", {}, "eventType"),
        ("event", {"eventType": "x" * 255}, "254"),
        ("event", {"eventType": "e", "timestamp": "soon"}, "timestamp"),
        ("event", {"eventType": "e", "attributes": [{"name": "n", "value": "v" * 4097}]}, "4096"),
        ("metric", {"name": "m", "type": "count", "value": 1}, "type"),
        ("metric", {"name": "m", "type": "gauge"}, "value"),
        ("metric", {"name": "m", "type": "gauge", "value": "abc"}, "value"),
        ("metric", {"name": "m", "type": "gauge", "value": "nan"}, "value"),
    ],
)
def test_new_relic_bad_body_is_400(
    serve: Callable[..., str], http_receiver: HttpReceiver, path: str, body: Any, text: str
) -> None:
    base = serve(_nr_config(http_receiver))
    resp = requests.post(f"{base}/v4/newrelic/{path}", json=body, timeout=WAIT)
    assert resp.status_code == 400
    assert text in resp.json()["message"]
    assert http_receiver.requests == []
