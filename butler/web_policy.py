"""Headers every answer carries: security headers, and CORS for the origins configured.

CORS is off unless ``restServerConfig.cors.allowOrigins`` lists origins: a browser page
from anywhere else cannot read Butler's answers, and cannot send the JSON bodies or the
``X-Api-Key`` header that need a preflight. HTML pages (Swagger UI) also get a
Content-Security-Policy without inline scripts and may not be framed (click-jacking).
"""

from __future__ import annotations

from collections.abc import Iterable

from flask import Flask, Response, request

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
ALLOWED_REQUEST_HEADERS = (
    "Content-Type, X-Api-Key, Authorization, Idempotency-Key, X-HTTP-Method-Override"
)
EXPOSED_HEADERS = "Retry-After, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset"
WWW_AUTHENTICATE = 'Bearer realm="Butler", ApiKey header="X-Api-Key"'


def install_web_policy(app: Flask, allow_origins: Iterable[str]) -> None:
    origins = frozenset(allow_origins)

    @app.after_request
    def _headers(response: Response) -> Response:
        headers = response.headers
        headers["X-Content-Type-Options"] = "nosniff"
        if response.status_code == 401:
            headers["WWW-Authenticate"] = WWW_AUTHENTICATE
        if response.mimetype == "text/html":
            headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
            headers["X-Frame-Options"] = "DENY"
        if origins:
            _cors(response, origins)
        return response


def _cors(response: Response, origins: frozenset[str]) -> None:
    origin = request.headers.get("Origin")
    if origin is None:
        return
    response.headers.add("Vary", "Origin")
    if origin not in origins and "*" not in origins:
        return
    headers = response.headers
    headers["Access-Control-Allow-Origin"] = origin
    headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        headers["Access-Control-Allow-Methods"] = headers.get("Allow", "GET")
        headers["Access-Control-Allow-Headers"] = ALLOWED_REQUEST_HEADERS
        headers["Access-Control-Max-Age"] = "600"
