"""Health: ``GET /health`` (liveness) and ``GET /health/ready`` (readiness).

Liveness only says the process serves HTTP, so an orchestrator restarts Butler when it
hangs, not when Qlik Sense is down (a restart would not help). Readiness says whether
Butler can do its work now: it reads the report the background monitor keeps, so it never
waits on an upstream. On by default (enable key ``health``), because an upgraded config
should gain it without an edit.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from butler.config import Config, ConfigSection, EnableKey, when_enabled
from butler.config_schema import OpenSchema
from butler.endpoints import ApiRequest, Endpoint, Reply
from butler.hookspecs import hookimpl
from butler.services import Services
from butler_plugins.health.monitor import HealthMonitor
from butler_plugins.health.probes import components

TAG = "Health"
MAX_INTERVAL = 10.0


class HealthSection(OpenSchema):
    probeIntervalSeconds = fields.Float(
        load_default=5.0,
        validate=validate.Range(
            0.1, MAX_INTERVAL, error=f"must be a number of seconds 0.1-{MAX_INTERVAL:g}"
        ),
        error_messages={"invalid": "must be a number", "null": "must be a number"},
    )


class Liveness(Schema):
    status = fields.String(required=True, metadata={"description": "Always ok"})


class ComponentHealth(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["ok", "fail"]))
    critical = fields.Boolean(
        required=True, metadata={"description": "Its failure makes Butler not ready (503)"}
    )
    latencyMs = fields.Float(required=True, metadata={"description": "Duration of the probe"})
    message = fields.String(required=True)


class Readiness(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["ok", "degraded", "fail"]))
    components = fields.Dict(
        keys=fields.String(
            validate=validate.OneOf(["qrs", "kvStore", "scheduler", "engine", "mqtt"])
        ),
        values=fields.Nested(ComponentHealth),
        required=True,
    )


READY_EXAMPLE = {
    "status": "degraded",
    "components": {
        "qrs": {
            "status": "ok",
            "critical": True,
            "latencyMs": 4.2,
            "message": "QRS 30.9.1.0 at https://qlik.example.com:4242/qrs",
        },
        "mqtt": {
            "status": "fail",
            "critical": False,
            "latencyMs": 0.0,
            "message": "not connected to mqtt.example.com:1883",
        },
    },
}


FAIL_EXAMPLE = {
    "status": "fail",
    "components": {
        "qrs": {
            "status": "fail",
            "critical": True,
            "latencyMs": 1.3,
            "message": "Qlik Sense repository (QRS) at qlik.example.com:4242 is unreachable",
        }
    },
}


@hookimpl
def butler_enable_keys() -> list[EnableKey]:
    return [EnableKey("health", default=True)]


@hookimpl
def butler_config_sections() -> list[ConfigSection]:
    return [ConfigSection("health", HealthSection, when_enabled("health"))]


@hookimpl
def butler_services(config: Config, services: Services) -> None:
    if config.endpoint_enabled("health"):
        monitor = HealthMonitor(components(services), config.get("health.probeIntervalSeconds"))
        services.register(HealthMonitor, monitor)


@hookimpl
def butler_endpoints(config: Config, services: Services) -> list[Endpoint]:
    def live(call: ApiRequest) -> Any:
        return {"status": "ok"}

    def ready(call: ApiRequest) -> Any:
        report = services.require(HealthMonitor, "The health monitor is not running").report()
        return report.to_json(), 503 if report.status == "fail" else 200

    return [
        Endpoint(
            enable_key="health",
            method="GET",
            rule="/health",
            view=live,
            summary="Liveness: the process serves HTTP",
            description="Answers 200 whenever Butler can answer at all; checks no upstream.",
            tag=TAG,
            responses={200: Reply("Butler serves", Liveness, example={"status": "ok"})},
        ),
        Endpoint(
            enable_key="health",
            method="GET",
            rule="/health/ready",
            view=ready,
            summary="Readiness: whether the components Butler needs work",
            description=(
                "The last report of the background probes (every "
                "Butler.health.probeIntervalSeconds), so the answer never waits on an "
                "upstream. Components: qrs, kvStore, scheduler (critical), engine, mqtt (not "
                "critical), each only when its feature is on. 503 only when a critical "
                "component fails; a failing non-critical one makes the status degraded."
            ),
            tag=TAG,
            responses={
                200: Reply("Ready (ok or degraded)", Readiness, example=READY_EXAMPLE),
                503: Reply(
                    "Not ready: a critical component fails (same body, status fail)",
                    Readiness,
                    example=FAIL_EXAMPLE,
                ),
            },
        ),
    ]
