"""WSGI middleware that must act before Flask routes a request."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

OVERRIDE_ALLOWED = frozenset({"GET", "PUT", "DELETE", "PATCH"})
BAD_OVERRIDE_KEY = "butler.bad_method_override"

access_log = logging.getLogger("butler.access")

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class MethodOverride:
    """Honour ``X-HTTP-Method-Override`` on POST.

    Qlik's REST connector can only send GET and POST, so load scripts reach PUT and DELETE
    routes this way. Routing happens on the rewritten method, so this has to sit in front of
    Flask. An unknown value is flagged for the app to answer 400 rather than guessed at.
    """

    def __init__(self, app: WsgiApp):
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        override = environ.get("HTTP_X_HTTP_METHOD_OVERRIDE")
        if override and environ.get("REQUEST_METHOD") == "POST":
            method = override.strip().upper()
            if method in OVERRIDE_ALLOWED:
                environ["REQUEST_METHOD"] = method
            elif method != "POST":
                environ[BAD_OVERRIDE_KEY] = override
        return self.app(environ, start_response)


class AccessLog:
    """One log line per request: method, path, caller, status and duration.

    The record is made and handled directly (``makeRecord`` + ``handle``, what
    ``Logger.info`` does) without ``Logger.info``'s walk up the stack for the caller's file
    and line, which no Butler format shows; that walk was a tenth of a ping's own time.
    """

    def __init__(self, app: WsgiApp):
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if not access_log.isEnabledFor(logging.INFO):
            return self.app(environ, start_response)
        started = time.perf_counter()
        status_holder: list[str] = []

        def recording_start_response(status: str, headers: Any, *args: Any) -> Any:
            status_holder.append(status)
            return start_response(status, headers, *args)

        try:
            return self.app(environ, recording_start_response)
        finally:
            access_log.handle(
                access_log.makeRecord(
                    access_log.name,
                    logging.INFO,
                    __file__,
                    0,
                    "%s %s from %s -> %s in %.1f ms",
                    (
                        environ.get("REQUEST_METHOD"),
                        environ.get("PATH_INFO"),
                        environ.get("REMOTE_ADDR"),
                        status_holder[0].split(" ", 1)[0] if status_holder else "-",
                        (time.perf_counter() - started) * 1000,
                    ),
                    None,
                    "__call__",
                )
            )
