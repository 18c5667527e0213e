"""Audit trail (``audit``): who changed what, read back newest first.

The records are written by the core (the HTTP layer for every change it answers, the task
starter's event for MQTT, schedule and chain starts); this plugin only reads them, so an
audit record can never be written by a route it describes.
"""

from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, Schema, fields, validate

from butler.audit import AuditFilter, AuditTrail
from butler.config import Config, EnableKey
from butler.endpoints import ApiRequest, Endpoint, Reply
from butler.errors import FeatureUnavailable
from butler.fields import IsoTime, LoadScriptInteger, LoadScriptString
from butler.hookspecs import hookimpl
from butler.services import Services

ENABLE_KEY = "audit"
TAG = "Audit"
MISSING = "The audit trail is off: set Butler.audit.enable to true"
EXAMPLE: dict[str, Any] = {
    "time": "2026-12-02T03:00:00.120+00:00",
    "caller": "10.0.0.17",
    "method": "PUT",
    "route": "/v4/keyvalues/{namespace}",
    "params": {"namespace": "Sales"},
    "status": 200,
    "resources": {"namespace": "Sales", "key": "lastReload"},
    "requestId": "2f1d9c3e-7a4b-4f0e-8b6a-1c2d3e4f5a6b",
    "trigger": None,
}


class AuditQuery(Schema):
    class Meta:
        unknown = EXCLUDE

    since = IsoTime(metadata={"description": "time at or after (ISO 8601)"})
    until = IsoTime(metadata={"description": "time at or before (ISO 8601)"})
    caller = LoadScriptString(metadata={"description": "Client address, topic or schedule id"})
    route = LoadScriptString(
        metadata={"description": "Endpoint rule in OpenAPI form, e.g. /v4/keyvalues/{namespace}"}
    )
    limit = LoadScriptInteger(
        load_default=100, validate=validate.Range(1, 1000, error="must be 1-1000")
    )
    cursor = LoadScriptString(metadata={"description": "nextCursor of the previous page"})


class AuditTriggerSchema(Schema):
    kind = fields.String(required=True, validate=validate.OneOf(("mqtt", "schedule", "chain")))
    caller = fields.String(
        required=True, metadata={"description": "MQTT topic, schedule id or parent run id"}
    )


class AuditRecordSchema(Schema):
    """What :meth:`butler.audit.AuditRecord.to_api` gives."""

    time = fields.String(required=True, metadata={"description": "ISO 8601, UTC, ms"})
    caller = fields.String(required=True)
    method = fields.String(
        required=True, allow_none=True, metadata={"description": "null: no HTTP"}
    )
    route = fields.String(required=True, allow_none=True)
    params = fields.Dict(keys=fields.String(), values=fields.String(), required=True)
    status = fields.Integer(required=True, allow_none=True)
    resources = fields.Dict(
        keys=fields.String(),
        required=True,
        metadata={"description": "Names and ids of what changed (never secret values)"},
    )
    requestId = fields.String(required=True, allow_none=True)
    trigger = fields.Nested(
        AuditTriggerSchema,
        required=True,
        allow_none=True,
        metadata={"description": "null for an HTTP request"},
    )


class AuditPage(Schema):
    records = fields.List(fields.Nested(AuditRecordSchema), required=True)
    nextCursor = fields.String(
        required=True, allow_none=True, metadata={"description": "null on the last page"}
    )


def _trail(services: Services) -> AuditTrail:
    if services.audit is None:
        raise FeatureUnavailable(MISSING)
    return services.audit


@hookimpl
def butler_enable_keys() -> list[EnableKey]:
    return [EnableKey(ENABLE_KEY)]


@hookimpl
def butler_endpoints(config: Config, services: Services) -> list[Endpoint]:
    def list_records(call: ApiRequest) -> Any:
        q = call.query
        where = AuditFilter(
            since=q.get("since"), until=q.get("until"), caller=q.get("caller"), route=q.get("route")
        )
        page, cursor = _trail(services).query(where, q["limit"], q.get("cursor"))
        return {"records": [record.to_api() for record in page], "nextCursor": cursor}, 200

    return [
        Endpoint(
            enable_key=ENABLE_KEY,
            method="GET",
            rule="/v4/audit",
            view=list_records,
            query_schema=AuditQuery,
            summary="List audit records, newest first",
            description=(
                "Filters: since/until (ISO 8601), caller, route. Pages of at most limit "
                "records (default 100, max 1000); pass nextCursor as cursor for the next one."
            ),
            tag=TAG,
            responses={
                200: Reply(
                    "A page of audit records",
                    AuditPage,
                    example={"records": [EXAMPLE], "nextCursor": None},
                ),
                400: "Bad filter, limit or cursor",
                503: MISSING,
            },
        )
    ]
