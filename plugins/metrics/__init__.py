"""Metrics: ``GET /metrics`` in the Prometheus text format.

Requests are counted through the core's ``butler_app_built`` seam, and task starts, QRS
calls and schedule fires through the core's events, so no other plugin knows this one
exists. On by default (enable key ``metrics``), like health: an upgraded config gains it.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Flask, Request, Response, request
from marshmallow import fields

from butler.config import Config, EnableKey
from butler.endpoints import ApiRequest, Endpoint, Reply
from butler.hookspecs import hookimpl
from butler.services import Services
from butler_plugins.metrics.collectors import ButlerMetrics

STARTED = "butler.metrics.started"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The classic Prometheus text format, which every Prometheus version scrapes."""

EXAMPLE = """\
# HELP butler_http_requests_total HTTP requests answered, by route rule, method and status
# TYPE butler_http_requests_total counter
butler_http_requests_total{method="GET",route="/v4/butlerping",status="200"} 42.0
"""


@hookimpl
def butler_enable_keys() -> list[EnableKey]:
    return [EnableKey("metrics", default=True)]


@hookimpl
def butler_services(config: Config, services: Services) -> None:
    if config.endpoint_enabled("metrics"):
        metrics = services.register(
            ButlerMetrics, ButlerMetrics(services.kv_store, services.mqtt, services.runs)
        )
        services.events.subscribe(metrics)


@hookimpl
def butler_app_built(app: Flask, config: Config, services: Services) -> None:
    metrics = services.get(ButlerMetrics)
    if metrics is None:
        return

    @app.before_request
    def _started() -> None:
        request.environ[STARTED] = time.perf_counter()

    @app.after_request
    def _answered(response: Response) -> Response:
        # One proxy lookup instead of one per attribute: this runs on every request.
        answered: Request = request._get_current_object()  # type: ignore[attr-defined]
        rule = answered.url_rule
        started = answered.environ.get(STARTED)
        metrics.request_done(
            rule.rule if rule is not None else None,
            answered.method,
            response.status_code,
            time.perf_counter() - started if started is not None else 0.0,
        )
        return response


@hookimpl
def butler_endpoints(config: Config, services: Services) -> list[Endpoint]:
    def scrape(call: ApiRequest) -> Any:
        metrics = services.require(ButlerMetrics, "Metrics are not collected")
        return Response(metrics.exposition(), mimetype=None, content_type=CONTENT_TYPE)

    return [
        Endpoint(
            enable_key="metrics",
            method="GET",
            rule="/metrics",
            view=scrape,
            summary="Prometheus metrics",
            description=(
                "Requests by route rule, method and status; task starts by trigger and "
                "outcome; QRS call durations; schedule fires and their lateness; key-value "
                "store sizes; the MQTT connection; the build. See docs/health-and-metrics.md."
            ),
            tag="Health",
            responses={
                200: Reply(
                    "Metrics, Prometheus text format", fields.String(), EXAMPLE, "text/plain"
                )
            },
        )
    ]
