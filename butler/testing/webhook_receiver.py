"""The demo's stand-in for Slack and New Relic: accepts their posts and logs what arrived.

``butler demo`` points the Slack webhook and the New Relic URLs here, so those routes work
on a machine with no network and an admin sees in the demo's log exactly what Butler would
have sent. Slack paths answer ``ok`` as Slack does; New Relic paths answer 202 with the
JSON New Relic's APIs send.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)

SLACK_PATH = "/slack/services/T00000000/B00000000/demo"
NEW_RELIC_PATH = "/newrelic"
_MAX_BODY = 1024 * 1024
_LOGGED_CHARS = 500


class _Handler(BaseHTTPRequestHandler):
    server_version = "ButlerDemoReceiver"

    def do_POST(self) -> None:
        length = min(int(self.headers.get("Content-Length") or 0), _MAX_BODY)
        body = self.rfile.read(length)
        log.info("Demo receiver got POST %s: %s", self.path, _summary(body))
        if self.path.startswith(NEW_RELIC_PATH):
            self._answer(202, json.dumps({"success": True}).encode(), "application/json")
        else:
            self._answer(200, b"ok", "text/plain; charset=utf-8")

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """The posts are logged above; http.server's access lines would only repeat them."""


def _summary(body: bytes) -> str:
    """The body on one line (the log formatter escapes what is left), cut to a readable size."""
    try:
        text = json.dumps(json.loads(body), ensure_ascii=False)
    except ValueError:
        text = body.decode("utf-8", errors="replace")
    return text if len(text) <= _LOGGED_CHARS else text[:_LOGGED_CHARS] + "..."


class WebhookReceiver:
    """A local HTTP server on a free loopback port, in a background thread."""

    def __init__(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="demo-webhook-receiver", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
