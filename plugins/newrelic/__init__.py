"""POST /v4/newrelic/event and /v4/newrelic/metric: forward one event or gauge to New Relic.

Every destination account is posted to (concurrently) and reported in the answer, instead
of the original's "first account's status text as text/plain". 202 when at least one
account accepted (per-account detail says which); 502/504 when none did; 503 when the
accounts or credentials are not configured.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from butler.cli_options import CliOptions
from butler.config import Config, ConfigError, ConfigSection, EnableKey, when_enabled
from butler.endpoints import ApiRequest, Endpoint, Reply
from butler.errors import FeatureUnavailable
from butler.fields import LoadScriptNumber, LoadScriptString
from butler.hookspecs import hookimpl
from butler.outbound_http import OutboundSession
from butler.services import Services
from butler_plugins.newrelic.client import (
    AccountResult,
    NewRelicAccount,
    event_payload,
    metric_payload,
    post_event,
    post_metric,
    raise_if_none_accepted,
    resolve_accounts,
    unknown_account_result,
)
from butler_plugins.newrelic.settings import (
    CREDENTIALS_KEY,
    EVENT_KEY,
    METRIC_KEY,
    NewRelicAccountSection,
    NewRelicDestinationSection,
    apply_new_relic_cli,
)

TAG = "New Relic"
EVENT_ENABLE_KEY = "newRelic.postNewRelicEvent"
METRIC_ENABLE_KEY = "newRelic.postNewRelicMetric"


def _length(maximum: int) -> list[validate.Length]:
    return [
        validate.Length(min=1, error="must not be empty"),
        validate.Length(max=maximum, error="must NOT have more than {max} characters"),
    ]


class FiniteNumber(LoadScriptNumber):
    """A number JSON can carry: ``"nan"``/``"inf"`` parse as floats but New Relic refuses them."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        number = super()._deserialize(value, attr, data, **kwargs)
        if not math.isfinite(number):
            raise ValidationError("must be a finite number")
        return number


class EventAttribute(Schema):
    class Meta:
        unknown = EXCLUDE

    name = LoadScriptString(required=True, validate=_length(254))
    value = LoadScriptString(
        required=True,
        validate=validate.Length(max=4096, error="must NOT have more than {max} characters"),
    )


class MetricAttribute(Schema):
    class Meta:
        unknown = EXCLUDE

    name = LoadScriptString(required=True, validate=_length(254))
    value = LoadScriptString(required=True)


class EventBody(Schema):
    class Meta:
        unknown = EXCLUDE

    eventType = LoadScriptString(required=True, validate=_length(254))
    timestamp = FiniteNumber(allow_none=True)
    attributes = fields.List(fields.Nested(EventAttribute), allow_none=True)


class MetricBody(Schema):
    class Meta:
        unknown = EXCLUDE

    name = LoadScriptString(required=True, validate=_length(254))
    type = LoadScriptString(
        required=True,
        validate=validate.OneOf(("gauge",), error="must be equal to one of the allowed values"),
    )
    value = FiniteNumber(required=True)
    timestamp = FiniteNumber(allow_none=True)
    interval = FiniteNumber(allow_none=True)
    attributes = fields.List(fields.Nested(MetricAttribute), allow_none=True)


class AccountOutcome(Schema):
    """One destination account's answer (``AccountResult.to_json``)."""

    accountName = fields.String(required=True)
    accountId = fields.String(
        required=True, allow_none=True, metadata={"description": "null: no credentials"}
    )
    success = fields.Boolean(required=True)
    newRelicResultCode = fields.String(
        required=True, allow_none=True, metadata={"description": "null: nothing was answered"}
    )
    newRelicResultText = fields.String(required=True)
    message = fields.String(metadata={"description": "New Relic's answer or why not sent"})


class Forwarded(Schema):
    newRelicResultCode = fields.String(required=True, validate=validate.OneOf(("202",)))
    newRelicResultText = fields.String(required=True)
    accounts = fields.List(fields.Nested(AccountOutcome), required=True)


FORWARDED_EXAMPLE = {
    "newRelicResultCode": "202",
    "newRelicResultText": "Accepted by 1 of 2 accounts",
    "accounts": [
        {
            "accountName": "Production",
            "accountId": "1234567",
            "success": True,
            "newRelicResultCode": "202",
            "newRelicResultText": "Accepted",
        },
        {
            "accountName": "Staging",
            "accountId": None,
            "success": False,
            "newRelicResultCode": None,
            "newRelicResultText": "not sent",
            "message": "no credentials in Butler.thirdPartyToolsCredentials.newRelic",
        },
    ],
}


def _destination(
    config: Config, key: str
) -> tuple[Mapping[str, Any], list[NewRelicAccount], list[str]]:
    """This route's settings and accounts, or 503 naming the key that is missing."""
    settings = config.get(key) or {}
    names = settings.get("destinationAccount") or []
    if not names:
        raise FeatureUnavailable(
            f"New Relic is not configured: set Butler.{key}.destinationAccount"
        )
    if not settings.get("url"):
        raise FeatureUnavailable(f"New Relic is not configured: set Butler.{key}.url")
    credentials = config.get(CREDENTIALS_KEY) or []
    if not credentials:
        raise FeatureUnavailable(
            f"New Relic is not configured: set Butler.{CREDENTIALS_KEY} "
            "(or the --new-relic-* command line options)"
        )
    accounts, unknown = resolve_accounts(names, credentials)
    if not accounts:
        raise FeatureUnavailable(
            f"None of the accounts in Butler.{key}.destinationAccount has credentials in "
            f"Butler.{CREDENTIALS_KEY}"
        )
    return settings, accounts, unknown


def _answer(what: str, names: Sequence[str], results: Sequence[AccountResult]) -> Any:
    by_name = {result.account_name: result for result in results}
    ordered = [by_name[name] for name in dict.fromkeys(names) if name in by_name]
    raise_if_none_accepted(what, ordered)
    accepted = sum(result.accepted for result in ordered)
    text = (
        "Accepted"
        if accepted == len(ordered)
        else f"Accepted by {accepted} of {len(ordered)} accounts"
    )
    return {
        "newRelicResultCode": "202",
        "newRelicResultText": text,
        "accounts": [result.to_json() for result in ordered],
    }, 202


def _session(services: Services) -> OutboundSession:
    session = services.http
    if session is None:
        raise FeatureUnavailable("Outbound HTTP is not set up in this Butler instance")
    return session


@hookimpl
def butler_enable_keys() -> list[EnableKey]:
    return [EnableKey(METRIC_ENABLE_KEY), EnableKey(EVENT_ENABLE_KEY)]


@hookimpl
def butler_config_sections() -> list[ConfigSection]:
    return [
        ConfigSection(
            CREDENTIALS_KEY,
            NewRelicAccountSection,
            when_enabled(EVENT_ENABLE_KEY, METRIC_ENABLE_KEY),
            many=True,
        ),
        ConfigSection(EVENT_KEY, NewRelicDestinationSection, when_enabled(EVENT_ENABLE_KEY)),
        ConfigSection(METRIC_KEY, NewRelicDestinationSection, when_enabled(METRIC_ENABLE_KEY)),
    ]


@hookimpl
def butler_cli_arguments(options: CliOptions) -> None:
    options.add_argument(
        "--new-relic-account-name",
        nargs="+",
        default=None,
        metavar="NAME",
        help="New Relic accounts, replacing Butler.thirdPartyToolsCredentials.newRelic",
    )
    options.add_argument(
        "--new-relic-api-key",
        nargs="+",
        default=None,
        metavar="KEY",
        help="their insert API keys, one per --new-relic-account-name, same order",
    )
    options.add_argument(
        "--new-relic-account-id",
        nargs="+",
        default=None,
        metavar="ID",
        help="their account ids, one per --new-relic-account-name, same order",
    )


@hookimpl
def butler_cli_overrides(args: argparse.Namespace) -> Mapping[str, Any] | None:
    try:
        accounts = apply_new_relic_cli(
            args.new_relic_account_name, args.new_relic_api_key, args.new_relic_account_id
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return {CREDENTIALS_KEY: accounts} if accounts else None


@hookimpl
def butler_endpoints(config: Config, services: Services) -> list[Endpoint]:
    def send(what: str, key: str, build: Callable[..., Any], body: Mapping[str, Any]) -> Any:
        settings, accounts, unknown = _destination(config, key)
        session = _session(services)
        static = (settings.get("attribute") or {}).get("static")
        payload = build(body, static)
        post = post_event if what == "event" else post_metric
        results = post(
            session, accounts, settings["url"], payload, settings.get("header"), settings["timeout"]
        )
        results += [unknown_account_result(name) for name in unknown]
        return _answer(what, [str(n) for n in settings["destinationAccount"]], results)

    def event(call: ApiRequest) -> Any:
        def build(body: Mapping[str, Any], static: Any) -> Any:
            return event_payload(
                body["eventType"], body.get("timestamp"), body.get("attributes"), static
            )

        call.audit.resources["eventType"] = call.body["eventType"]
        return send("event", EVENT_KEY, build, call.body)

    def metric(call: ApiRequest) -> Any:
        def build(body: Mapping[str, Any], static: Any) -> Any:
            return metric_payload(
                body["name"],
                body["value"],
                body["type"],
                body.get("timestamp"),
                body.get("attributes"),
                static,
            )

        call.audit.resources["metric"] = call.body["name"]
        return send("metric", METRIC_KEY, build, call.body)

    responses: dict[int, str | Reply] = {
        202: Reply(
            "Accepted by at least one account; per-account results in `accounts`",
            Forwarded,
            example=FORWARDED_EXAMPLE,
        ),
        400: "Invalid body",
        502: "No destination account accepted the data",
        503: "Destination accounts or credentials not configured",
        504: "Every destination account timed out",
    }
    return [
        Endpoint(
            enable_key=EVENT_ENABLE_KEY,
            method="POST",
            rule="/v4/newrelic/event",
            view=event,
            summary="Post events to New Relic.",
            description=(
                "Posts one event to the New Relic event API of every account in "
                f"`Butler.{EVENT_KEY}.destinationAccount`, with the configured static "
                "attributes (request attributes win). `timestamp` defaults to now (ms)."
            ),
            tag=TAG,
            body_schema=EventBody,
            waits=True,
            body_example={
                "eventType": "reload-failed",
                "timestamp": 1642164296053,
                "attributes": [{"name": "host.name", "value": "dev.server.com"}],
            },
            responses=responses,
        ),
        Endpoint(
            enable_key=METRIC_ENABLE_KEY,
            method="POST",
            rule="/v4/newrelic/metric",
            view=metric,
            summary="Post metrics to New Relic.",
            description=(
                "Posts one gauge value to the New Relic metric API for every account in "
                f"`Butler.{METRIC_KEY}.destinationAccount`, with the configured static "
                "attributes (request attributes win). `timestamp` defaults to now (ms)."
            ),
            tag=TAG,
            body_schema=MetricBody,
            waits=True,
            body_example={
                "name": "memory.heap",
                "type": "gauge",
                "value": 2.3,
                "timestamp": 1642164296053,
                "interval": 0,
                "attributes": [{"name": "host.name", "value": "dev.server.com"}],
            },
            responses=responses,
        ),
    ]
