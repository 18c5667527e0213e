"""OpenAPI 3 document and Swagger UI, generated from the mounted endpoints' schemas.

The document is built from the same marshmallow schemas that validate requests, so the
documentation cannot drift from what the service accepts, and it lists exactly the routes
this config enables.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, Flask, Response, jsonify, send_from_directory
from marshmallow import Schema

from butler import __version__
from butler.endpoints import Endpoint
from butler.fields import LoadScriptBoolean, LoadScriptInteger

_PATH_PARAM = re.compile(r"<(?:[a-z_]+(?:\([^)]*\))?:)?([A-Za-z_][A-Za-z0-9_]*)>")

TITLE = "Butler API documentation"


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


def build_openapi(endpoints: Iterable[Endpoint], server_url: str | None = None) -> dict[str, Any]:
    """The OpenAPI 3.0 document for ``endpoints``."""
    marshmallow_plugin = MarshmallowPlugin(schema_name_resolver=schema_name)
    spec = APISpec(
        title=TITLE,
        version=__version__,
        openapi_version="3.0.3",
        plugins=[marshmallow_plugin],
        info={"description": "REST API of Butler for Python, compatible with Butler 16."},
        servers=[{"url": server_url}] if server_url else [],
    )
    marshmallow_plugin.map_to_openapi_type(LoadScriptBoolean, "boolean", None)
    marshmallow_plugin.map_to_openapi_type(LoadScriptInteger, "integer", None)
    operations: dict[str, dict[str, Any]] = {}
    for ep in sorted(endpoints, key=lambda e: (e.rule, e.method)):
        operations.setdefault(openapi_path(ep.rule), {})[ep.method.lower()] = _operation(ep)
    for path, ops in operations.items():
        spec.path(path=path, operations=ops)
    return spec.to_dict()


def _responses(ep: Endpoint) -> dict[int, str]:
    answers = dict(ep.responses or {200: "Success"})
    if ep.waits:
        answers.setdefault(
            429, "Every worker for waiting calls is taken (restServerConfig.maxWaiting): retry"
        )
    return answers


def _operation(ep: Endpoint) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": ep.summary,
        "tags": [ep.tag],
        "operationId": f"{ep.method.lower()}_{ep.rule}",
        "responses": {str(code): {"description": text} for code, text in _responses(ep).items()},
    }
    if ep.description:
        op["description"] = ep.description
    params: list[Any] = [
        {"in": "path", "name": name, "required": True, "schema": {"type": "string"}}
        for name in _PATH_PARAM.findall(ep.rule)
    ]
    if ep.query_schema is not None:
        params.append({"in": "query", "schema": ep.query_schema})
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


_SWAGGER_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<link rel="stylesheet" href="/documentation/static/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/documentation/static/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({{url: "/documentation/json", dom_id: "#swagger-ui",
  operationsSorter: "alpha", docExpansion: "list"}});
</script></body></html>
"""


def documentation_blueprint(document: dict[str, Any]) -> Blueprint:
    """Routes for the document and a Swagger UI served from local files (no CDN)."""
    from swagger_ui_bundle import swagger_ui_path

    assets = Path(swagger_ui_path)
    bp = Blueprint("documentation", __name__)
    page = _SWAGGER_PAGE.format(title=TITLE)

    @bp.get("/documentation")
    def ui() -> Response:
        return Response(page, mimetype="text/html")

    @bp.get("/documentation/json")
    def as_json() -> Response:
        return jsonify(document)

    @bp.get("/documentation/static/<path:name>")
    def static(name: str) -> Response:
        return send_from_directory(assets, name)

    return bp


def install_documentation(
    app: Flask, endpoints: Iterable[Endpoint], server_url: str | None
) -> None:
    app.register_blueprint(documentation_blueprint(build_openapi(endpoints, server_url)))
