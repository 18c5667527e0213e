"""PUT /v4/slackpostmessage: post a plain-text message through a Slack incoming webhook.

The original swallowed Slack's errors and always answered 201; here 201 means Slack took
the message, and Slack's refusal comes back as 502 with its answer (never the webhook URL,
which is itself the credential: it is registered as a secret of the outbound session so
urllib3's debug lines never show it either).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import requests
from marshmallow import EXCLUDE, Schema

from butler.config import Config, ConfigSection, EnableKey, when_enabled
from butler.config_schema import OpenSchema, TimeoutSeconds, config_url
from butler.endpoints import ApiRequest, Endpoint, Reply
from butler.errors import FeatureUnavailable, UpstreamError, UpstreamTimeout
from butler.fields import LoadScriptString
from butler.hookspecs import hookimpl
from butler.outbound_http import OutboundSession, failure_kind
from butler.services import Services

log = logging.getLogger(__name__)

TAG = "Slack"
ENABLE_KEY = "slackPostMessage"
SECTION = "slackNotification.restMessage"
WEBHOOK_KEY = f"{SECTION}.webhookURL"
TIMEOUT_KEY = f"{SECTION}.timeout"
SLACK_TIMEOUT = 10.0
"""The original had no timeout; 10 s keeps a stuck webhook from holding a worker."""


class SlackRestMessage(OpenSchema):
    webhookURL = config_url(allow_none=True, load_default=None)
    timeout = TimeoutSeconds(SLACK_TIMEOUT)


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
    session: OutboundSession,
    webhook_url: str,
    payload: Mapping[str, Any],
    timeout: float = SLACK_TIMEOUT,
) -> None:
    """POST ``payload`` as JSON to a Slack incoming webhook; raise unless Slack took it."""
    parts = urlsplit(webhook_url)
    host = parts.hostname or "?"
    session.add_secret(parts.path)
    session.add_secret(parts.query)
    try:
        response = session.post(webhook_url, json=dict(payload), timeout=timeout)
    except requests.Timeout:
        log.warning("Slack webhook at %s did not answer within %g s", host, timeout)
        raise UpstreamTimeout(f"Slack did not answer within {timeout:g} s") from None
    except requests.RequestException as exc:
        log.warning("Slack webhook at %s could not be reached: %s", host, failure_kind(exc))
        raise UpstreamError(f"Slack could not be reached: {failure_kind(exc)}") from None
    if not 200 <= response.status_code < 300:
        answer = session.answer_of(response)
        log.warning("Slack refused the message: %s %s", response.status_code, answer)
        raise UpstreamError(f"Slack refused the message: {response.status_code} {answer}")
    log.info("Slack message posted to channel %s", payload.get("channel"))


class SlackBody(Schema):
    class Meta:
        unknown = EXCLUDE

    channel = LoadScriptString(required=True)
    from_user = LoadScriptString(required=True)
    msg = LoadScriptString(required=True)
    emoji = LoadScriptString()


EXAMPLE = {
    "channel": "#reload-notification",
    "from_user": "Butler the Bot",
    "msg": "This is a message from Qlik Sense",
    "emoji": "thumbsup",
}


def _webhook_url(config: Config) -> str:
    url = config.get(WEBHOOK_KEY)
    if not isinstance(url, str):
        raise FeatureUnavailable(f"Slack is not configured: set Butler.{WEBHOOK_KEY}")
    return url


@hookimpl
def butler_enable_keys() -> list[EnableKey]:
    return [EnableKey(ENABLE_KEY)]


@hookimpl
def butler_config_sections() -> list[ConfigSection]:
    return [ConfigSection(SECTION, SlackRestMessage, when_enabled(ENABLE_KEY))]


@hookimpl
def butler_endpoints(config: Config, services: Services) -> list[Endpoint]:
    def post_message(call: ApiRequest) -> Any:
        url = _webhook_url(config)
        session = services.http
        if session is None:
            raise FeatureUnavailable("Outbound HTTP is not set up in this Butler instance")
        body = call.body
        call.audit.resources["channel"] = body["channel"]
        payload = slack_payload(body["channel"], body["from_user"], body["msg"], body.get("emoji"))
        post_slack(session, url, payload, config.get(TIMEOUT_KEY))
        echo = {key: body[key] for key in ("channel", "from_user", "msg", "emoji") if key in body}
        return echo, 201

    return [
        Endpoint(
            enable_key=ENABLE_KEY,
            method="PUT",
            rule="/v4/slackpostmessage",
            view=post_message,
            summary="Send message to Slack.",
            description=(
                "Posts `msg` as a plain-text message to `channel` through the incoming "
                f"webhook in `Butler.{WEBHOOK_KEY}`, shown as `from_user` with the optional "
                "`emoji` icon. Answers 201 once Slack accepted the message."
            ),
            tag=TAG,
            body_schema=SlackBody,
            waits=True,
            body_example=EXAMPLE,
            responses={
                201: Reply(
                    "Slack accepted the message; the fields are echoed",
                    SlackBody,
                    example=EXAMPLE,
                ),
                400: "Missing or invalid field",
                502: "Slack refused the message or could not be reached",
                503: f"No webhook configured (Butler.{WEBHOOK_KEY})",
                504: "Slack did not answer in time",
            },
        )
    ]
