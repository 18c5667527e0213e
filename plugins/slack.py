"""PUT /v4/slackpostmessage: post a plain-text message through a Slack incoming webhook.

The original swallowed Slack's errors and always answered 201; here 201 means Slack took
the message, and Slack's refusal comes back as 502 with its answer (never the webhook URL,
which is itself the credential).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from marshmallow import EXCLUDE, Schema

from butler.endpoints import ApiRequest, Endpoint
from butler.errors import FeatureUnavailable
from butler.fields import LoadScriptString
from butler.hookspecs import hookimpl
from butler.outbound import SLACK_TIMEOUT, post_slack, slack_payload, timeout_setting

TAG = "Slack"
WEBHOOK_KEY = "slackNotification.restMessage.webhookURL"
TIMEOUT_KEY = "slackNotification.restMessage.timeout"


class SlackBody(Schema):
    class Meta:
        unknown = EXCLUDE

    channel = LoadScriptString(required=True)
    from_user = LoadScriptString(required=True)
    msg = LoadScriptString(required=True)
    emoji = LoadScriptString()


def _webhook_url(config: Any) -> str:
    url = config.get(WEBHOOK_KEY)
    if not isinstance(url, str) or not url.strip():
        raise FeatureUnavailable(f"Slack is not configured: set Butler.{WEBHOOK_KEY}")
    if urlsplit(url.strip()).scheme not in ("http", "https") or not urlsplit(url).hostname:
        raise FeatureUnavailable(f"Butler.{WEBHOOK_KEY} is not an http(s) URL")
    return url.strip()


@hookimpl
def butler_endpoints(config: Any, services: Any) -> list[Endpoint]:
    def post_message(call: ApiRequest) -> Any:
        url = _webhook_url(config)
        session = services.extras.get("http")
        if session is None:
            raise FeatureUnavailable("Outbound HTTP is not set up in this Butler instance")
        body = call.body
        payload = slack_payload(body["channel"], body["from_user"], body["msg"], body.get("emoji"))
        post_slack(session, url, payload, timeout_setting(config.get(TIMEOUT_KEY), SLACK_TIMEOUT))
        echo = {key: body[key] for key in ("channel", "from_user", "msg", "emoji") if key in body}
        return echo, 201

    return [
        Endpoint(
            enable_key="slackPostMessage",
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
            body_example={
                "channel": "#reload-notification",
                "from_user": "Butler the Bot",
                "msg": "This is a message from Qlik Sense",
                "emoji": "thumbsup",
            },
            responses={
                201: "Slack accepted the message; the fields are echoed",
                400: "Missing or invalid field",
                502: "Slack refused the message or could not be reached",
                503: f"No webhook configured (Butler.{WEBHOOK_KEY})",
                504: "Slack did not answer in time",
            },
        )
    ]
