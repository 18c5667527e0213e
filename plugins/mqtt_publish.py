"""PUT /v4/mqttpublishmessage: publish one message through Butler's MQTT connection.

Unlike the original (which hung with MQTT disabled and answered 201 for messages that never
left), the answer is truthful: 201 only after the client sent the message (QoS 0) or the
broker acknowledged it (QoS 1/2); 503 when MQTT is switched off; 502/504 when the broker
is down or slow.

With ``Butler.mqttConfig.taskRunTopic`` set, every run that becomes final is also published
there (the run object as JSON, QoS 1), so upstream systems can react without polling.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from marshmallow import INCLUDE, Schema, validate

from butler.config import Config, ConfigError, EnableKey
from butler.endpoints import ApiRequest, Endpoint, Reply
from butler.errors import BadRequest, FeatureUnavailable
from butler.events import Observer
from butler.fields import LoadScriptBoolean, LoadScriptInteger, LoadScriptString
from butler.hookspecs import hookimpl
from butler.mqtt import MqttService, validate_topic
from butler.services import Services

TAG = "MQTT"
ENABLE_KEY = "mqttPublishMessage"
PUBLISH_TIMEOUT = 5.0


class PublishBody(Schema):
    """Extra properties are kept: the original echoes the whole body back."""

    class Meta:
        unknown = INCLUDE

    topic = LoadScriptString(required=True)
    message = LoadScriptString(required=True)
    qos = LoadScriptInteger(
        validate=validate.OneOf((0, 1, 2), error="must be equal to one of the allowed values")
    )
    retain = LoadScriptBoolean()


class RunPublisher(Observer):
    """Publishes each final run to the run topic, without waiting for the broker."""

    def __init__(self, mqtt: MqttService, topic: str):
        self._mqtt = mqtt
        self._topic = topic

    def run_finished(self, run: Mapping[str, Any]) -> None:
        self._mqtt.publish_later(self._topic, json.dumps(run, ensure_ascii=False))


@hookimpl
def butler_enable_keys() -> list[EnableKey]:
    return [EnableKey(ENABLE_KEY)]


@hookimpl
def butler_services(config: Config, services: Services) -> None:
    topic = config.get("mqttConfig.taskRunTopic") if services.mqtt else None
    if services.mqtt is None or not topic:
        return
    try:
        validate_topic(topic)
    except BadRequest as exc:
        raise ConfigError(f"Butler.mqttConfig.taskRunTopic: {exc.message}") from None
    services.events.subscribe(RunPublisher(services.mqtt, topic))


@hookimpl
def butler_endpoints(config: Config, services: Services) -> list[Endpoint]:
    def publish(call: ApiRequest) -> Any:
        mqtt = services.mqtt
        if mqtt is None:
            raise FeatureUnavailable(
                "MQTT is not enabled: set Butler.mqttConfig.enable to true to publish messages"
            )
        body = call.body
        call.audit.resources["topic"] = body["topic"]
        mqtt.publish(
            body["topic"],
            body["message"],
            qos=body.get("qos", 0),
            retain=body.get("retain", False),
            timeout=PUBLISH_TIMEOUT,
        )
        return dict(body), 201

    return [
        Endpoint(
            enable_key=ENABLE_KEY,
            method="PUT",
            rule="/v4/mqttpublishmessage",
            view=publish,
            summary="Publish a message to a MQTT topic.",
            description=(
                "Publishes `message` to `topic` on the broker in `Butler.mqttConfig`. Optional "
                "`qos` (0, 1, 2; default 0) and `retain` (default false). Answers 201 with the "
                "request body once the message was sent (QoS 0) or acknowledged by the broker "
                "(QoS 1 and 2)."
            ),
            tag=TAG,
            body_schema=PublishBody,
            waits=True,
            body_example={
                "topic": "qliksense/new_data_notification/sales",
                "message": "dt=20201028",
            },
            responses={
                201: Reply(
                    "Message published; the request body is echoed, as read",
                    PublishBody,
                    example={
                        "topic": "qliksense/new_data_notification/sales",
                        "message": "dt=20201028",
                        "qos": 1,
                        "retain": False,
                    },
                ),
                400: "Missing or invalid topic/message/qos/retain",
                502: "MQTT broker not connected or refused the message",
                503: "MQTT is not enabled (Butler.mqttConfig.enable)",
                504: "The broker did not acknowledge the message in time",
            },
        )
    ]
