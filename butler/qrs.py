"""Client for the Qlik Sense Repository Service (QRS) REST API.

The original opened a new TLS connection (and read the certificates again) for every single
QRS call and looked tasks up one at a time. This client keeps ONE pooled, kept-alive session
for the process lifetime, batches id lookups into one filtered query, starts many tasks with
one call, and turns every failure into a typed error that the HTTP layer renders as 502/504,
so a caller is never told "started" for something QRS refused.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import string
import threading
import time
import warnings
from collections.abc import Iterable, Sequence
from http.cookiejar import DefaultCookiePolicy
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import InsecureRequestWarning

from butler import __version__
from butler.errors import ApiError, UpstreamError, UpstreamTimeout
from butler.events import Events, route_template
from butler.guid import normalise_guid

__all__ = [
    "DEFAULT_STATIC_HEADERS",
    "QrsClient",
    "QrsError",
    "QrsHttpError",
    "QrsTimeout",
    "QrsUnavailable",
    "filter_chunks",
    "new_xrfkey",
    "quote_filter_value",
]

_log = logging.getLogger(__name__)

DEFAULT_STATIC_HEADERS: tuple[tuple[str, str], ...] = (
    ("X-Qlik-User", "UserDirectory=Internal;UserId=sa_repository"),
)
_XRFKEY_ALPHABET = string.ascii_letters + string.digits
# Keep the URL under the 8 KB that proxies in front of QRS commonly allow (http.sys itself
# takes 16 KB): with 7,000 filter characters, 111 ``executionID eq <guid>`` clauses (one
# poll of 100 open runs) fit one request.
_MAX_ENCODED_FILTER = 7000
_BODY_LOG_LIMIT = 2000


class QrsError(ApiError):
    """Any failure talking to QRS; the concrete class decides the HTTP status (502 or 504)."""


class QrsUnavailable(QrsError, UpstreamError):
    """QRS could not be reached (refused, reset, TLS handshake failed): 502."""


class QrsTimeout(QrsError, UpstreamTimeout):
    """QRS did not accept the connection or answer in time: 504."""


class QrsHttpError(QrsError, UpstreamError):
    """QRS answered with a status we did not expect (or an unreadable body): 502.

    ``qrs_status`` and ``body`` keep QRS's answer for logs and for callers that treat some
    statuses specially (404 = unknown task); ``status`` stays 502 for Butler's own caller.
    """

    def __init__(self, qrs_status: int, body: str, *, method: str, path: str, reason: str = ""):
        self.qrs_status = qrs_status
        self.body = body[:_BODY_LOG_LIMIT]
        self.method = method
        self.path = path
        detail = reason or f"HTTP {qrs_status}"
        super().__init__(f"Qlik Sense repository (QRS) answered {method} {path} with {detail}")


def quote_filter_value(value: str) -> str:
    """A QRS filter string literal: single-quoted, every ``'`` doubled (``It's`` -> ``'It''s'``).

    Percent-encoding of ``&``, ``#``, ``%`` and spaces happens when the query string is built,
    so any tag or custom-property value can be matched (the original broke on ``&`` and ``#``).
    """
    return "'" + value.replace("'", "''") + "'"


def new_xrfkey() -> str:
    """A fresh 16-character anti-CSRF key; QRS demands the same value in header and query.

    Each character comes from one random byte below 248 (4 x 62), so all 62 are equally
    likely, as with ``secrets.choice``, from one ``os.urandom`` call instead of 16.
    """
    chars: list[str] = []
    while len(chars) < 16:
        chars += [_XRFKEY_ALPHABET[b % 62] for b in secrets.token_bytes(24) if b < 248]
    return "".join(chars[:16])


class QrsClient:
    """One long-lived, thread-safe QRS session with client certificates and a connection pool.

    ``pool_size`` bounds the concurrent connections to QRS; callers beyond it wait for a free
    connection instead of opening (and throwing away) extra TLS connections. With
    ``reject_unauthorized`` the server certificate is verified against ``ca_cert`` (or the
    system store when no CA is given); without it the server is not verified and urllib3's
    warning is silenced for this QRS host only.
    """

    def __init__(
        self,
        host: str,
        port: int,
        use_ssl: bool = True,
        client_cert: Path | str | None = None,
        client_key: Path | str | None = None,
        ca_cert: Path | str | None = None,
        reject_unauthorized: bool = False,
        static_headers: Sequence[tuple[str, str]] | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        pool_size: int = 32,
        events: Events | None = None,
    ):
        self._events = events or Events()
        bare_host = host.strip("[]")
        url_host = f"[{bare_host}]" if ":" in bare_host else bare_host
        self.base_url = f"{'https' if use_ssl else 'http'}://{url_host}:{port}/qrs"
        self._where = f"{url_host}:{port}"
        self._timeout = (connect_timeout, read_timeout)
        self._verify: bool | str = False
        session = requests.Session()
        # QRS is an internal peer: proxy variables, netrc and REQUESTS_CA_BUNDLE from the
        # environment must not reroute it or replace the configured CA.
        session.trust_env = False
        session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
        session.headers.clear()
        session.headers.update(
            {
                "Content-Type": "application/json",
                "Accept": "application/json",
                "Accept-Encoding": "gzip, deflate",
                "User-Agent": f"butler-py/{__version__}",
            }
        )
        for name, value in static_headers or DEFAULT_STATIC_HEADERS:
            session.headers[name] = value
        adapter = HTTPAdapter(
            pool_connections=1, pool_maxsize=pool_size, pool_block=True, max_retries=0
        )
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        if use_ssl:
            session.cert = _client_cert(client_cert, client_key)
            if reject_unauthorized:
                self._verify = str(_existing(ca_cert, "CA certificate")) if ca_cert else True
            else:
                _quiet_unverified_warning(bare_host)
        session.verify = self._verify
        self._session = session
        _log.info(
            "QRS client for %s (client certificate: %s, server verified: %s, pool: %d)",
            self.base_url,
            client_cert or "none",
            "yes" if self._verify else "no",
            pool_size,
        )

    # ----------------------------------------------------------------- public API

    def about(self) -> dict[str, Any]:
        """``GET /qrs/about``: a cheap call that proves connectivity and certificates."""
        data = self._json("GET", "/about")
        if not isinstance(data, dict):
            raise self._unexpected("GET", "/about", data)
        return data

    def get_tasks(self, filter: str | None = None, *, full: bool = True) -> list[dict[str, Any]]:
        """``GET /qrs/task/full`` (or the condensed ``/qrs/task``) with an optional filter.

        The condensed form carries id and name only, which is all a lookup for starting
        needs; it is several times smaller to send and parse for large result sets.
        """
        path = "/task/full" if full else "/task"
        data = self._json("GET", path, filter=filter)
        if not isinstance(data, list):
            raise self._unexpected("GET", path, data)
        return data

    def find_tasks_by_ids(self, ids: Iterable[str]) -> list[dict[str, Any]]:
        """The tasks that exist among ``ids``, found with one filtered query (chunked if long).

        Ids are matched case-insensitively and sent in lower case; a value that is not
        GUID-shaped raises ``ValueError`` because it would change the meaning of the filter.
        """
        unique = _guids(ids)
        found: list[dict[str, Any]] = []
        for chunk in _chunks(unique):
            found.extend(
                self.get_tasks(" or ".join(f"id eq {task_id}" for task_id in chunk), full=False)
            )
        return found

    def find_tasks_by_tag(self, tag: str) -> list[dict[str, Any]]:
        """Tasks carrying ``tag`` (QRS compares names case-insensitively)."""
        return self.get_tasks(f"tags.name eq {quote_filter_value(str(tag))}", full=False)

    def find_tasks_by_custom_property(self, name: str, value: str) -> list[dict[str, Any]]:
        """Tasks whose custom property ``name`` has ``value``.

        QRS cannot say "the same property has this name and this value" in one filter, so
        the query narrows by both and the result is checked here: a task with ``taskGroup=x``
        and ``other=tasks1`` is not a match for ``taskGroup=tasks1``.
        """
        name, value = str(name), str(value)
        tasks = self.get_tasks(
            f"(customProperties.definition.name eq {quote_filter_value(name)})"
            f" and (customProperties.value eq {quote_filter_value(value)})"
        )
        return [task for task in tasks if _has_custom_property(task, name, value)]

    def start_tasks(self, ids: Iterable[str]) -> None:
        """Start all ``ids`` with one ``POST /qrs/task/start/many``.

        QRS validates the whole list first, so a refusal (``QrsHttpError``, 404 for an unknown
        id) means none of them was started.
        """
        unique = _guids(ids)
        if unique:
            self._call("POST", "/task/start/many", body=unique)

    def start_task(self, task_id: str) -> None:
        """Start one task with ``POST /qrs/task/{id}/start``; raises on any refusal."""
        (guid,) = _guids([task_id])
        self._call("POST", f"/task/{guid}/start", body={})

    def execution_results(self, clauses: Sequence[str]) -> list[dict[str, Any]]:
        """``GET /qrs/executionresult/full`` for any of ``clauses`` (QRS filter expressions),
        in as few requests as the URL length allows (111 ``executionID eq`` ids to one)."""
        found: list[dict[str, Any]] = []
        for chunk in filter_chunks(clauses):
            data = self._json("GET", "/executionresult/full", filter=" or ".join(chunk))
            if not isinstance(data, list):
                raise self._unexpected("GET", "/executionresult/full", data)
            found.extend(data)
        return found

    def script_log(self, task_id: str, result_id: str, file_reference_id: str) -> str:
        """The script log of one finished reload execution, as text.

        QRS hands out a one-off download reference first: ``scriptlogfile?executionResultId=``
        since May 2025, ``scriptlog?fileReferenceId=`` before; the older form is tried when
        the newer one is unknown (404).
        """
        guid = normalise_guid(task_id)
        try:
            reference = self._json(
                "GET",
                f"/reloadtask/{guid}/scriptlogfile",
                params=[("executionResultId", result_id)],
            )
        except QrsHttpError as exc:
            if exc.qrs_status != 404:
                raise
            reference = self._json(
                "GET",
                f"/reloadtask/{guid}/scriptlog",
                params=[("fileReferenceId", file_reference_id)],
            )
        if not isinstance(reference, dict) or not isinstance(reference.get("value"), str):
            raise self._unexpected("GET", f"/reloadtask/{guid}/scriptlog", reference)
        ref = quote(reference["value"], safe="")
        return self._call("GET", f"/download/reloadtask/{ref}/scriptlog.txt").text

    def close(self) -> None:
        """Close the pooled connections; the client must not be used afterwards."""
        self._session.close()

    def __enter__(self) -> QrsClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ----------------------------------------------------------------- transport

    def _json(
        self,
        method: str,
        path: str,
        *,
        filter: str | None = None,
        params: Sequence[tuple[str, str]] = (),
    ) -> Any:
        response = self._call(method, path, filter=filter, params=params)
        try:
            return response.json()
        except ValueError as exc:
            raise QrsHttpError(
                response.status_code,
                response.text,
                method=method,
                path=path,
                reason="a body that is not JSON",
            ) from exc

    def _call(
        self,
        method: str,
        path: str,
        *,
        filter: str | None = None,
        body: Any = None,
        params: Sequence[tuple[str, str]] = (),
    ) -> requests.Response:
        xrfkey = new_xrfkey()
        query = [*params, ("filter", filter)] if filter is not None else [*params]
        query.append(("xrfkey", xrfkey))
        url = f"{self.base_url}{path}?{urlencode(query, quote_via=quote, safe='')}"
        data = json.dumps(body).encode("utf-8") if body is not None else None
        started = time.perf_counter()
        try:
            response = self._session.request(
                method,
                url,
                data=data,
                headers={"X-Qlik-Xrfkey": xrfkey},
                timeout=self._timeout,
                verify=self._verify,
                allow_redirects=False,
            )
        except requests.Timeout as exc:
            self._observe(path, "timeout", started)
            _log.warning("QRS %s %s timed out: %s", method, path, exc)
            raise QrsTimeout(
                f"Qlik Sense repository (QRS) at {self._where} did not answer {method} {path} "
                "in time"
            ) from exc
        except requests.exceptions.SSLError as exc:
            self._observe(path, "tls", started)
            _log.warning("QRS %s %s: TLS failure: %s", method, path, exc)
            raise QrsUnavailable(
                f"TLS connection to Qlik Sense repository (QRS) at {self._where} failed; "
                "check the certificates"
            ) from exc
        except requests.RequestException as exc:
            self._observe(path, "unreachable", started)
            _log.warning("QRS %s %s failed: %s", method, path, exc)
            raise QrsUnavailable(
                f"Qlik Sense repository (QRS) at {self._where} is unreachable"
            ) from exc
        elapsed_ms = self._observe(path, str(response.status_code), started) * 1000
        _log.debug("QRS %s %s -> %d in %.1f ms", method, path, response.status_code, elapsed_ms)
        if not 200 <= response.status_code < 300:
            error = QrsHttpError(response.status_code, response.text, method=method, path=path)
            _log.warning("%s; body: %s", error.message, error.body)
            raise error
        return response

    def _observe(self, path: str, status: str, started: float) -> float:
        """Report the call to the observers; its duration in seconds."""
        seconds = time.perf_counter() - started
        self._events.qrs_request(f"/qrs{route_template(path)}", status, seconds)
        return seconds

    def _unexpected(self, method: str, path: str, data: Any) -> QrsHttpError:
        return QrsHttpError(
            200,
            json.dumps(data)[:_BODY_LOG_LIMIT],
            method=method,
            path=path,
            reason="an unexpected JSON shape",
        )


def _guids(ids: Iterable[str]) -> list[str]:
    unique: dict[str, None] = {}
    for task_id in ids:
        try:
            unique[normalise_guid(task_id)] = None
        except ValueError:
            raise ValueError(f"not a task id (GUID): {task_id!r}") from None
    return list(unique)


_quieted_hosts: set[str] = set()
_quieted_lock = threading.Lock()


def _quiet_unverified_warning(host: str) -> None:
    """Silence urllib3's per-request warning for a QRS host the config says not to verify.

    The start-up log already says the server is not verified; one filter per host (not
    per client) keeps the process-wide warning filter list from growing.
    """
    with _quieted_lock:
        if host in _quieted_hosts:
            return
        _quieted_hosts.add(host)
        warnings.filterwarnings(
            "ignore",
            message=f"Unverified HTTPS request .* host '{re.escape(host)}'",
            category=InsecureRequestWarning,
        )


def _chunks(ids: list[str]) -> Iterable[list[str]]:
    """Split ids so each ``id eq a or id eq b ...`` filter stays under the URL budget."""
    clauses = {f"id eq {task_id}": task_id for task_id in ids}
    for chunk in filter_chunks(list(clauses)):
        yield [clauses[clause] for clause in chunk]


def filter_chunks(clauses: Sequence[str]) -> Iterable[list[str]]:
    """Group filter clauses so each ``a or b or ...`` filter, percent-encoded, fits the URL
    budget: as few QRS requests as the URL length allows."""
    separator = len(quote(" or ", safe=""))
    chunk: list[str] = []
    size = 0
    for clause in clauses:
        cost = len(quote(clause, safe="")) + (separator if chunk else 0)
        if chunk and size + cost > _MAX_ENCODED_FILTER:
            yield chunk
            chunk, size = [], 0
            cost -= separator
        chunk.append(clause)
        size += cost
    if chunk:
        yield chunk


def _has_custom_property(task: dict[str, Any], name: str, value: str) -> bool:
    wanted_name, wanted_value = name.casefold(), value.casefold()
    for prop in task.get("customProperties") or []:
        definition = prop.get("definition") or {}
        if (
            str(definition.get("name", "")).casefold() == wanted_name
            and str(prop.get("value", "")).casefold() == wanted_value
        ):
            return True
    return False


def _existing(path: Path | str, what: str) -> Path:
    resolved = Path(path)
    if not resolved.is_file():
        raise ValueError(f"QRS {what} file not found: {resolved}")
    return resolved


def _client_cert(cert: Path | str | None, key: Path | str | None) -> tuple[str, str] | None:
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise ValueError("QRS client certificate and key must be configured together")
    return (
        str(_existing(cert, "client certificate")),
        str(_existing(key, "client certificate key")),
    )
