"""Outbound HTTP to third parties (webhooks, SaaS APIs) over one pooled session.

Plugins that call out share this session instead of opening their own. Webhook URLs and
API keys are credentials, and urllib3 prints request paths in its debug lines, so the
session scrubs the secrets it is told about from those lines while it is open; callers
never log ``requests`` exception texts (they contain the URL), only the failure kind.
"""

from __future__ import annotations

import logging

import requests
from requests.adapters import HTTPAdapter

from butler import __version__

URLLIB3_LOGGERS = ("urllib3.connectionpool", "urllib3.util.retry")
_ANSWER_CHARS = 200


class _RedactSecrets(logging.Filter):
    """Replaces registered secrets in a log line with ``<redacted>``."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        text = record.getMessage()
        if any(secret in text for secret in self.secrets):
            for secret in self.secrets:
                text = text.replace(secret, "<redacted>")
            record.msg, record.args = text, None
        return True


class OutboundSession(requests.Session):
    """A pooled session that identifies Butler and keeps its secrets out of urllib3's log.

    The redacting filter sits on urllib3's loggers from construction to :meth:`close`.
    """

    def __init__(self, pool_size: int = 16):
        super().__init__()
        adapter = HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size)
        self.mount("https://", adapter)
        self.mount("http://", adapter)
        self.headers["User-Agent"] = f"butler-py/{__version__}"
        self._redactor = _RedactSecrets()
        for name in URLLIB3_LOGGERS:
            logging.getLogger(name).addFilter(self._redactor)

    def add_secret(self, secret: str) -> None:
        """Never show ``secret`` (a URL path, a query, a key) in urllib3's log lines."""
        if len(secret) > 1:
            self._redactor.secrets.add(secret)

    def redact(self, text: str) -> str:
        """``text`` with every registered secret replaced by ``<redacted>``."""
        for secret in self._redactor.secrets:
            text = text.replace(secret, "<redacted>")
        return text

    def answer_of(self, response: requests.Response) -> str:
        """An upstream answer for callers and logs: one line, at most 200 characters, redacted.

        An error page may echo the request (a webhook path, an API key); this is the one
        place every outbound error text passes through.
        """
        text = " ".join(self.redact(response.text).split())
        return text if len(text) <= _ANSWER_CHARS else text[: _ANSWER_CHARS - 1] + "…"

    def close(self) -> None:
        super().close()
        for name in URLLIB3_LOGGERS:
            logging.getLogger(name).removeFilter(self._redactor)


def new_session(pool_size: int = 16) -> OutboundSession:
    """The session the core puts in ``services.http``."""
    return OutboundSession(pool_size)


def failure_kind(exc: requests.RequestException) -> str:
    """What went wrong, without the exception text (which contains the URL)."""
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if isinstance(exc, requests.ConnectionError):
        return "connection failed"
    return f"request failed ({type(exc).__name__})"
