"""OpenAPI 3 document and Swagger UI, generated from the mounted endpoints' schemas.

The document is built from the same marshmallow schemas that validate requests, so the
documentation cannot drift from what the service accepts, and it lists exactly the routes
this config enables. Answers are documented from each endpoint's :class:`~butler.endpoints.Reply`
values; the statuses the core answers by itself, and the one error body every 4xx and 5xx
carries, are added here, so no plugin has to repeat them (or can get them wrong).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from http import HTTPStatus
from pathlib import Path
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin, OpenAPIConverter
from flask import Blueprint, Flask, Response, jsonify, send_from_directory
from marshmallow import Schema, fields

from butler import __version__
from butler.endpoints import JSON_TYPE, AnswerSchema, Endpoint, Reply
from butler.fields import LoadScriptBoolean, LoadScriptInteger

_PATH_PARAM = re.compile(r"<(?:[a-z_]+(?:\([^)]*\))?:)?([A-Za-z_][A-Za-z0-9_]*)>")

TITLE = "Butler API documentation"


class Error(Schema):
    """The body of every 4xx and 5xx answer, as ``butler.app.error_response`` renders it."""

    statusCode = fields.Integer(required=True, metadata={"description": "The HTTP status"})
    error = fields.String(required=True, metadata={"description": "Its reason phrase"})
    message = fields.String(required=True, metadata={"description": "What went wrong"})
    code = fields.String(
        metadata={
            "description": (
                "A stable code for programs, when there is one (FST_ERR_VALIDATION: the "
                "query string or body does not match the route's schema)"
            )
        }
    )


BAD_INPUT = (
    "Bad input: the URL is not UTF-8, X-HTTP-Method-Override is unknown, the body is not "
    "JSON, or the query string or body does not match the route's schema"
)
TOO_LARGE = "The body is larger than restServerConfig.maxBodyBytes"
NOT_JSON = "The body is not JSON: send Content-Type: application/json"
NO_ROUTE = "No route matches: a path parameter is empty or holds a '/'"
BUSY = "Every worker for waiting calls is taken (restServerConfig.maxWaiting): retry"
RATE_LIMITED = "Rate limit exceeded (restServerConfig.rateLimit): retry in a minute"
UNAUTHORISED = "No credential or a wrong one (send X-Api-Key or Authorization: Bearer)"
FAILED_TOO_OFTEN = "Too many failed authentication attempts from this address this minute"
FORBIDDEN = "The caller's key or certificate lacks the scope this route or resource needs"

SECURITY_SCHEMES = {
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
    "bearer": {"type": "http", "scheme": "bearer"},
}
"""How callers present a key when ``restServerConfig.auth`` is on (no secret is here)."""


def openapi_path(rule: str) -> str:
    """Flask rule syntax to OpenAPI path syntax."""
    return _PATH_PARAM.sub(r"{\1}", rule)


def schema_name(schema: type[Schema] | Schema) -> str:
    """Component name of a schema: its class name; a partial body is ``<Name>Changes``.

    ``ScheduleBody(partial=True)`` documents as ``ScheduleChanges``: the same fields, none
    required, which is what an update body is.
    """
    if isinstance(schema, Schema):
        name = type(schema).__name__
        return name.removesuffix("Body") + "Changes" if schema.partial is True else name
    return schema.__name__


def build_openapi(
    endpoints: Iterable[Endpoint],
    *,
    rate_limited: bool = False,
    anonymous: frozenset[str] | None = None,
) -> dict[str, Any]:
    """The OpenAPI 3.0 document for ``endpoints``.

    ``rate_limited``: ``restServerConfig.rateLimit`` is on, so every route may answer 429.
    ``anonymous``: auth is on and routes of these enable keys need no credential (``None``:
    auth is off, and the document declares no security scheme).
    The server URL is relative: the host Butler binds (``0.0.0.0``, a container name) is
    rarely the one an admin's browser reaches it by, and "Try it out" must call the page's
    own origin.
    """
    marshmallow_plugin = MarshmallowPlugin(schema_name_resolver=schema_name)
    spec = APISpec(
        title=TITLE,
        version=__version__,
        openapi_version="3.0.3",
        plugins=[marshmallow_plugin],
        info={"description": "REST API of Butler for Python, compatible with Butler 16."},
        servers=[{"url": "/"}],
        **({} if anonymous is None else {"security": [{"apiKey": []}, {"bearer": []}]}),
    )
    if anonymous is not None:
        for name, scheme in SECURITY_SCHEMES.items():
            spec.components.security_scheme(name, scheme)
    marshmallow_plugin.map_to_openapi_type(LoadScriptBoolean, "boolean", None)
    marshmallow_plugin.map_to_openapi_type(LoadScriptInteger, "integer", None)
    converter = marshmallow_plugin.converter
    assert converter is not None  # set when the plugin was handed to APISpec
    operations: dict[str, dict[str, Any]] = {}
    for ep in sorted(endpoints, key=lambda e: (e.rule, e.method)):
        guarded = anonymous is not None and ep.enable_key not in anonymous
        responses = _responses(ep, rate_limited, guarded, converter)
        operation = _operation(ep, responses)
        if anonymous is not None and not guarded:
            operation["security"] = []
        operations.setdefault(openapi_path(ep.rule), {})[ep.method.lower()] = operation
    for path, ops in operations.items():
        spec.path(path=path, operations=ops)
    return spec.to_dict()


def _core_statuses(ep: Endpoint, rate_limited: bool, guarded: bool) -> dict[int, str]:
    """What ``butler.app`` itself may answer on this route, whatever the view does."""
    statuses = {400: BAD_INPUT, 413: TOO_LARGE}
    if guarded:
        statuses[401] = UNAUTHORISED
        statuses[403] = FORBIDDEN
    if _PATH_PARAM.search(ep.rule):
        statuses[404] = NO_ROUTE
    if ep.body_schema is not None or ep.body_example is not None:  # a documented body
        statuses[415] = NOT_JSON
    refusals = [
        text
        for text, applies in (
            (BUSY, ep.waits),
            (RATE_LIMITED, rate_limited),
            (FAILED_TOO_OFTEN, guarded),
        )
        if applies
    ]
    if refusals:
        statuses[429] = "; or ".join(refusals)
    return statuses


def _responses(
    ep: Endpoint, rate_limited: bool, guarded: bool, converter: OpenAPIConverter
) -> dict[str, dict[str, Any]]:
    replies = ep.replies()
    for status, text in _core_statuses(ep, rate_limited, guarded).items():
        replies.setdefault(status, Reply(text))
    return {
        str(status): _response(status, reply, converter)
        for status, reply in sorted(replies.items())
    }


def _response(status: int, reply: Reply, converter: OpenAPIConverter) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": reply.description}
    if status >= 400 and reply.schema is None:
        example = {
            "statusCode": status,
            "error": HTTPStatus(status).phrase,
            "message": reply.description,
        }
        answer["content"] = {JSON_TYPE: {"schema": Error, "example": example}}
    elif reply.schema is not None:
        content: dict[str, Any] = {"schema": _schema_object(reply.schema, converter)}
        if reply.example is not None:
            content["example"] = reply.example
        answer["content"] = {reply.media_type: content}
    return answer


def _schema_object(schema: AnswerSchema, converter: OpenAPIConverter) -> Any:
    """A schema (apispec resolves it to a $ref), a field's schema, or ``oneOf`` of those."""
    if isinstance(schema, tuple):
        return {"oneOf": [_schema_object(one, converter) for one in schema]}
    if isinstance(schema, fields.Field):
        return converter.field2property(schema)
    return schema


def _operation(ep: Endpoint, responses: dict[str, dict[str, Any]]) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": ep.summary,
        "tags": [ep.tag],
        "operationId": f"{ep.method.lower()}_{ep.rule}",
        "responses": responses,
    }
    if ep.description:
        op["description"] = ep.description
    params: list[Any] = [_path_parameter(name, ep) for name in _PATH_PARAM.findall(ep.rule)]
    if ep.query_schema is not None:
        params.append({"in": "query", "schema": ep.query_schema})
    params.extend(
        {"in": "header", "name": name, "description": text, "schema": {"type": "string"}}
        for name, text in ep.headers.items()
    )
    if params:
        op["parameters"] = params
    if ep.body_schema is not None:
        content: dict[str, Any] = {"schema": ep.body_schema}
        if ep.body_example is not None:
            content["example"] = ep.body_example
        op["requestBody"] = {"content": {"application/json": content}}
    elif ep.body_example is not None:
        op["requestBody"] = {
            "content": {"application/json": {"schema": {}, "example": ep.body_example}}
        }
    return op


def _path_parameter(name: str, ep: Endpoint) -> dict[str, Any]:
    parameter: dict[str, Any] = {
        "in": "path",
        "name": name,
        "required": True,
        "schema": {"type": "string"},
    }
    if name in ep.path_examples:
        parameter["example"] = ep.path_examples[name]
    return parameter


_SWAGGER_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<link rel="stylesheet" href="/documentation/static/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/documentation/static/swagger-ui-bundle.js"></script>
<script src="/documentation/start.js"></script></body></html>
"""

_SWAGGER_START = """window.ui = SwaggerUIBundle({url: "/documentation/json", dom_id: "#swagger-ui",
  operationsSorter: "alpha", docExpansion: "list", persistAuthorization: false});
"""
"""Swagger UI's start, as a file: the page's Content-Security-Policy allows no inline script."""


def documentation_blueprint(document: dict[str, Any]) -> Blueprint:
    """Routes for the document and a Swagger UI served from local files (no CDN)."""
    from swagger_ui_bundle import swagger_ui_path

    assets = Path(swagger_ui_path)
    bp = Blueprint("documentation", __name__)
    page = _SWAGGER_PAGE.format(title=TITLE)

    @bp.get("/documentation")
    def ui() -> Response:
        return Response(page, mimetype="text/html")

    @bp.get("/documentation/start.js")
    def start() -> Response:
        return Response(_SWAGGER_START, mimetype="text/javascript")

    @bp.get("/documentation/json")
    def as_json() -> Response:
        return jsonify(document)

    @bp.get("/documentation/static/<path:name>")
    def static(name: str) -> Response:
        return send_from_directory(assets, name)

    return bp


def install_documentation(
    app: Flask,
    endpoints: Iterable[Endpoint],
    *,
    rate_limited: bool,
    anonymous: frozenset[str] | None = None,
) -> None:
    document = build_openapi(endpoints, rate_limited=rate_limited, anonymous=anonymous)
    app.register_blueprint(documentation_blueprint(document))
