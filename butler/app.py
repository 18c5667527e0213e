"""The Flask app factory: mounts plugin endpoints, validates input, renders every error.

This is the only place that turns exceptions into HTTP error bodies, so every route (and
every unknown route) answers errors in the same ``{"statusCode", "error", "message"}`` shape.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import unquote_to_bytes

import pluggy
from flask import Flask, Request, Response, current_app, g, request
from marshmallow import EXCLUDE, Schema, ValidationError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from butler.audit import AuditRecord, AuditTrail
from butler.auth.authenticator import Authenticator, authenticator_for
from butler.auth.callers import Caller
from butler.config import Config
from butler.endpoints import CONVERTERS, ApiRequest, AuditNote, Endpoint, schema_instance
from butler.errors import (
    ApiError,
    BadRequest,
    PayloadTooLarge,
    TooManyRequests,
    UnsupportedMediaType,
    ValidationFailed,
)
from butler.middleware import BAD_OVERRIDE_KEY, AccessLog, MethodOverride
from butler.openapi import install_documentation, openapi_path
from butler.plugins import PluginInfo, collect_endpoints, get_plugin_manager, plugin_infos
from butler.ratelimit import RateLimiter
from butler.services import Services
from butler.web_policy import install_web_policy

log = logging.getLogger(__name__)

JSON_TYPE = "application/json"
MAX_BODY_DEPTH = 64
"""No Butler body is nested more than a few levels; 64 leaves room and bounds the work."""


def create_app(
    config: Config,
    services: Services | None = None,
    plugin_manager: pluggy.PluginManager | None = None,
) -> Flask:
    """Build the WSGI app for ``config``.

    ``services`` defaults to an empty container (no core services, no plugin objects):
    routes whose service is missing answer 503. ``butler run`` passes the services that
    :func:`butler.lifecycle.build_services` built with the same plugin manager.
    """
    services = services or Services(config=config)
    pm = plugin_manager or get_plugin_manager()
    app = Flask("butler")
    # "//" must not be merged and redirected: /v4/reloadtask//start would land on the
    # body-only route, and /v4/schedules//start on another; an empty segment is a 404.
    app.url_map.merge_slashes = False
    app.url_map.converters.update(CONVERTERS)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.config["MAX_CONTENT_LENGTH"] = config.get("restServerConfig.maxBodyBytes")
    app.config["BUTLER_READ_TIMEOUT"] = config.get("restServerConfig.requestReadTimeout")
    app.config["BUTLER_MAX_CONNECTIONS_PER_CLIENT"] = config.get(
        "restServerConfig.maxConnectionsPerClient"
    )
    waiting = config.get("restServerConfig.maxWaiting")
    # Waiting calls get workers of their own on top of ``threads``, so however many of them
    # hang on QRS or the Engine, ``threads`` workers stay for pings and key-value calls.
    app.config["BUTLER_WORKERS"] = config.get("restServerConfig.threads") + waiting

    served = [
        (plugin, ep)
        for plugin, ep in collect_endpoints(pm, config, services)
        if config.endpoint_enabled(ep.enable_key)
    ]
    mounted = [ep for _, ep in served]
    authenticator = authenticator_for(config)
    slots = threading.BoundedSemaphore(waiting)
    by_name: dict[str, Endpoint] = {}
    for ep in mounted:
        name = f"{ep.method} {ep.rule}"
        by_name[name] = ep
        guarded = authenticator is not None and ep.enable_key not in authenticator.anonymous
        app.add_url_rule(
            ep.rule,
            endpoint=name,
            view_func=_make_view(ep, slots, guarded, services.audit),
            methods=[ep.method],
        )
    app.extensions["butler"] = _AppState(endpoints=mounted, plugins=plugin_infos(pm, served))
    rate_limited = config.get("restServerConfig.rateLimit") > 0
    install_documentation(
        app,
        mounted,
        rate_limited=rate_limited,
        anonymous=None if authenticator is None else authenticator.anonymous,
    )

    pm.hook.butler_app_built(app=app, config=config, services=services)
    _install_hooks(app, config, authenticator, by_name)
    install_web_policy(app, config.get("restServerConfig.cors.allowOrigins") or [])
    app.wsgi_app = AccessLog(MethodOverride(app.wsgi_app))  # type: ignore[method-assign]
    return app


@dataclass(frozen=True)
class _AppState:
    """What the factory knows about the app it built, kept in ``app.extensions``."""

    endpoints: list[Endpoint]
    plugins: list[PluginInfo]


def _state(app: Flask) -> _AppState:
    state: _AppState = app.extensions["butler"]
    return state


def mounted_endpoints(app: Flask) -> list[Endpoint]:
    """The endpoints this app serves, for documentation and introspection."""
    return list(_state(app).endpoints)


def loaded_plugins(app: Flask) -> list[PluginInfo]:
    """The plugins of this app, each with the endpoints it serves here."""
    return list(_state(app).plugins)


def _install_hooks(
    app: Flask,
    config: Config,
    authenticator: Authenticator | None,
    endpoints: Mapping[str, Endpoint],
) -> None:
    limit = config.get("restServerConfig.rateLimit")
    limiter = RateLimiter(limit) if limit > 0 else None

    @app.before_request
    def _before() -> None:
        environ = request.environ
        _check_utf8(environ)
        bad = environ.get(BAD_OVERRIDE_KEY)
        if bad is not None:
            raise BadRequest(f"Unsupported X-HTTP-Method-Override value: {bad[:20]}")
        if limiter is not None:
            decision = limiter.check(request.remote_addr or "-")
            g.rate = decision
            if not decision.allowed:
                log.warning(
                    "Rate limit exceeded for %s %s %s",
                    request.remote_addr,
                    request.method,
                    request.path,
                )
                raise TooManyRequests("Rate limit exceeded, retry in 1 minute")
        if authenticator is not None:
            rule = request.url_rule
            ep = endpoints.get(rule.endpoint) if rule is not None else None
            # Routes of no endpoint (the documentation, unknown paths) and CORS preflights
            # (browsers send them without credentials) are open; so are anonymous keys.
            if ep is None or request.method == "OPTIONS":
                return
            if ep.enable_key not in authenticator.anonymous:
                headers = cast("Mapping[str, str]", request.headers)
                g.caller = authenticator.identify(environ, headers)

    @app.after_request
    def _after(response: Response) -> Response:
        state = g._get_current_object()  # one proxy lookup
        retry_after = state.get("retry_after")
        if retry_after is not None:
            response.headers["retry-after"] = str(retry_after)
        decision = state.get("rate")
        if decision is not None:
            response.headers["x-ratelimit-limit"] = str(decision.limit)
            response.headers["x-ratelimit-remaining"] = str(decision.remaining)
            response.headers["x-ratelimit-reset"] = str(decision.reset_seconds)
            if not decision.allowed:
                response.headers["retry-after"] = str(decision.reset_seconds)
        if response.status_code == 204:
            # Flask labels every answer; a 204 has no body to describe.
            del response.headers["Content-Type"]
        return response

    @app.errorhandler(Exception)
    def _error(exc: Exception) -> Response:
        return error_response(exc)


def _check_utf8(environ: Mapping[str, Any]) -> None:
    """Refuse paths and query strings that are not UTF-8 instead of reading them as U+FFFD.

    Otherwise ``%FF`` and ``%FE`` would both name the namespace "\ufffd": two URLs, one
    key, and a key no caller can name again.
    """
    path = environ.get("PATH_INFO", "")
    query = environ.get("QUERY_STRING", "")
    try:
        if not path.isascii():
            path.encode("latin-1").decode("utf-8")
        if "%" in query:
            unquote_to_bytes(query.replace("+", " ")).decode("utf-8")
    except UnicodeError:
        raise BadRequest("The URL is not valid UTF-8 (percent-encode UTF-8 bytes)") from None


def error_status(exc: BaseException) -> int:
    """The status :func:`error_response` answers for ``exc``."""
    if isinstance(exc, RequestEntityTooLarge):
        return 413
    if isinstance(exc, ApiError):
        return exc.status
    if isinstance(exc, HTTPException):
        status = exc.code or 500
        return 404 if status == 405 else status
    return 500


def error_response(exc: BaseException) -> Response:
    """Render any exception as the stable JSON error shape; log the cause."""
    if isinstance(exc, RequestEntityTooLarge):
        exc = PayloadTooLarge("Request body is too large")
    if isinstance(exc, ApiError):
        status, message, code = exc.status, exc.message, exc.code
        level = logging.WARNING if status >= 500 else logging.INFO
        log.log(level, "%s %s -> %s: %s", request.method, request.path, status, message)
    elif isinstance(exc, HTTPException):
        status = exc.code or 500
        code = None
        if status in (404, 405):
            status = 404
            message = f"Route {request.method}:{request.full_path.rstrip('?')} not found"
        else:
            message = exc.description or HTTPStatus(status).phrase
    else:
        log.exception("Unhandled error in %s %s", request.method, request.path)
        status, message, code = 500, "Internal server error", None
    body: dict[str, Any] = {
        "statusCode": status,
        "error": HTTPStatus(status).phrase,
        "message": message,
    }
    if code:
        body["code"] = code
    return Response(
        json.dumps(body, ensure_ascii=False), status=status, mimetype="application/json"
    )


def _make_view(
    ep: Endpoint,
    slots: threading.BoundedSemaphore,
    guarded: bool,
    audit: AuditTrail | None,
) -> Callable[..., Any]:
    """The Flask view of ``ep``: scope check, input validation, waiting slots, audit."""
    query_schema = schema_instance(ep.query_schema)
    body_schema = schema_instance(ep.body_schema)
    route = openapi_path(ep.rule)

    def serve(req: Request, caller: Caller, note: AuditNote, path: dict[str, str]) -> Any:
        if guarded:
            caller.require_endpoint(ep.enable_key, ep.method)
        query = _validated_query(query_schema, req)
        raw = _raw_body(req)
        body = _read_body(req, raw)
        if body_schema is not None:
            body = _validated_body(body_schema, body)
        call = ApiRequest(
            path=path,
            query=query,
            body=body,
            client=req.remote_addr or "-",
            caller=caller,
            # Werkzeug's headers read like a case-insensitive mapping without declaring one.
            headers=cast("Mapping[str, str]", req.headers),
            raw_query=req.query_string,
            raw_body=raw,
            audit=note,
        )
        if not ep.waits:
            return ep.view(call)
        if not slots.acquire(blocking=False):
            g.retry_after = 1
            log.warning("Busy: every waiting slot is taken, %s %s refused", ep.method, ep.rule)
            raise TooManyRequests(
                "Butler is busy: every worker for calls that wait on Qlik Sense or a "
                "webhook is taken (restServerConfig.maxWaiting); retry in a moment"
            )
        try:
            return ep.view(call)
        finally:
            slots.release()

    def view(**path: str) -> Any:
        req: Request = request._get_current_object()  # type: ignore[attr-defined]
        client = req.remote_addr or "-"
        caller = g.caller if guarded else Caller.unrestricted(client)
        note = AuditNote()
        if audit is None or not ep.writes_audit:
            return serve(req, caller, note, path)
        started = time.time()
        try:
            audit.check_writable()
            response = current_app.make_response(serve(req, caller, note, path))
        except BaseException as exc:
            _record(audit, started, caller, req, route, path, error_status(exc), note)
            raise
        _record(audit, started, caller, req, route, path, response.status_code, note)
        return response

    view.__name__ = f"{ep.method.lower()}_{ep.rule}"
    view.__doc__ = ep.summary
    return view


def _record(
    audit: AuditTrail,
    started: float,
    caller: Caller,
    req: Request,
    route: str,
    path: Mapping[str, str],
    status: int,
    note: AuditNote,
) -> None:
    """Write the call's audit record before its answer leaves.

    The call has already acted: if the trail cannot take the record now, the answer still
    tells the truth about the action and the failure is logged; the trail then refuses the
    next changes before they are made (``AuditTrail.check_writable``).
    """
    try:
        audit.record(
            AuditRecord(
                time=started,
                caller=caller.name,
                method=req.method,
                route=route,
                params=dict(path),
                status=status,
                resources=dict(note.resources),
                request_id=note.request_id,
                trigger=None,
            )
        )
    except Exception:
        log.exception("Audit record of %s %s by %s was not written", req.method, route, caller.name)


def _validated_query(schema: Schema | None, req: Request) -> Mapping[str, Any]:
    if schema is None and not req.environ.get("QUERY_STRING"):
        return {}
    args = req.args
    if schema is None:
        return args.to_dict()
    flat: dict[str, Any] = {}
    for key in args:
        values = args.getlist(key)
        if len(values) > 1 and key in schema.fields:
            raise ValidationFailed(f"querystring/{key} must be given once")
        flat[key] = values[0]
    try:
        # Unknown query parameters are ignored, as the original did.
        return schema.load(flat, unknown=EXCLUDE)
    except ValidationError as exc:
        raise ValidationFailed(_describe("querystring", exc.messages)) from None


def _raw_body(req: Request) -> bytes:
    """The body as sent (``b""`` for none); 413 past ``maxBodyBytes``."""
    try:
        return req.get_data(cache=True)
    except RequestEntityTooLarge:
        raise PayloadTooLarge("Request body is too large") from None


def _read_body(req: Request, raw: bytes) -> Any:
    """The parsed JSON body, or ``None`` when the request carries none."""
    if not raw or not raw.strip():
        return None
    mimetype = req.mimetype
    if mimetype != JSON_TYPE and not mimetype.endswith("+json"):
        # A browser page may send text/plain, form or untyped bodies to any site without
        # asking first; only a JSON type needs the preflight no hostile page gets through.
        shown = mimetype or "none"
        raise UnsupportedMediaType(f"Unsupported Content-Type '{shown}': send application/json")
    try:
        body = json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError:
        raise BadRequest(f"Body is nested more than {MAX_BODY_DEPTH} levels deep") from None
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("Body is not valid JSON") from None
    _check_body_values(body)
    return body


def _refuse_constant(name: str) -> Any:
    """``NaN`` and ``Infinity`` are not JSON; Python's parser would take them as floats."""
    raise ValueError(name)


def _check_body_values(body: Any) -> None:
    """Refuse what no store, file, log or answer can hold: deep nesting, lone surrogates.

    JSON's ``\\ud800`` escapes decode to strings that cannot be encoded as UTF-8; stored,
    they would make every later answer that carries them fail. Walked without recursion,
    so a deep body cannot exhaust the stack here either.
    """
    pending: list[tuple[Any, int]] = [(body, 1)]
    while pending:
        node, depth = pending.pop()
        if isinstance(node, str):
            _check_text(node)
        elif isinstance(node, dict | list):
            if depth > MAX_BODY_DEPTH:
                raise BadRequest(f"Body is nested more than {MAX_BODY_DEPTH} levels deep")
            if isinstance(node, dict):
                for key, value in node.items():
                    _check_text(key)
                    pending.append((value, depth + 1))
            else:
                pending.extend((value, depth + 1) for value in node)


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest("Body text is not valid Unicode (an unpaired surrogate)") from None


def _validated_body(schema: Schema, body: Any) -> Any:
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise ValidationFailed("body must be object")
    try:
        return schema.load(body)
    except ValidationError as exc:
        raise ValidationFailed(_describe("body", exc.messages)) from None


def _describe(where: str, messages: Any) -> str:
    """First marshmallow error as the original's ``body/ttl must be number`` style."""
    path: list[str] = [where]
    node = messages
    while isinstance(node, Mapping) and node:
        key, node = next(iter(node.items()))
        path.append(str(key))
    text = node[0] if isinstance(node, list) and node else str(node)
    text = str(text).rstrip(".")
    replacements = {
        "Not a valid string": "must be string",
        "Not a valid integer": "must be integer",
        "Not a valid number": "must be number",
        "Not a valid boolean": "must be boolean",
        "Not a valid list": "must be array",
        "Invalid input type": "must be object",
        "Field may not be null": "must not be null",
    }
    if text == "Missing data for required field" and len(path) > 1:
        return f"{'/'.join(path[:-1])} must have required property '{path[-1]}'"
    text = replacements.get(text, text)
    return f"{'/'.join(path)} {text}"
