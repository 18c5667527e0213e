"""The Engine client Butler's endpoints use: list apps, dump an app, reload in the background.

Butler needs three things from the Engine: the list of apps, a JSON dump of one app, and a
reload that keeps running after the HTTP caller got its answer. Each operation opens its own
session (the Engine ties open documents to a session) and closes it when done. A reload runs
in a thread the client owns, so :meth:`EngineClient.stop` can abort it at shutdown and the
outcome reaches the caller's callback exactly once.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from websockets.exceptions import InvalidStatus, WebSocketException

from butler.engine.dump import dump_open_app
from butler.engine.session import EngineError, Session, field, handle_of
from butler.engine.transport import WebSocket, ssl_context
from butler.errors import (
    ApiError,
    FeatureUnavailable,
    NotFound,
    UpstreamError,
    UpstreamTimeout,
)

log = logging.getLogger(__name__)

GLOBAL_HANDLE = -1
GLOBAL_PATH = "/app/engineData"

# NxLocalizedErrorCode values the client reacts to.
LOCERR_APP_NOT_FOUND = 1003

ReloadResult = Literal["success", "failure", "aborted"]


@dataclass(frozen=True)
class ReloadOutcome:
    """How a background reload ended.

    ``success``: DoReload returned true and the app was saved. ``failure``: the Engine said
    the reload failed, or the reload or save could not be completed (``message`` says which).
    ``aborted``: Butler stopped before the reload finished; no task chain should run.
    """

    app_id: str
    result: ReloadResult
    message: str

    @property
    def success(self) -> bool:
        return self.result == "success"


ReloadCallback = Callable[[ReloadOutcome], None]


class EngineClient:
    """Talks to one Qlik Sense Engine (``Butler.configEngine``) with Butler's certificate.

    The constructor raises ``ValueError`` when a certificate file cannot be loaded. Every
    operation raises :class:`~butler.errors.ApiError` subclasses: ``UpstreamError``
    (502) when the Engine is unreachable or refuses, ``UpstreamTimeout`` (504) when it does
    not answer in time, ``NotFound`` (404) for an unknown app. Reloads run in background
    threads owned by the client; :meth:`stop` aborts them.
    """

    def __init__(
        self,
        host: str,
        port: int,
        use_ssl: bool = True,
        client_cert: Path | None = None,
        client_key: Path | None = None,
        ca_cert: Path | None = None,
        reject_unauthorized: bool = True,
        static_headers: Mapping[str, str] | None = None,
        connect_timeout: float = 10,
        call_timeout: float = 60,
        reload_timeout: float | None = 6 * 3600,
        keepalive_interval: float = 20,
    ):
        self._host = host
        self._port = port
        self._scheme = "wss" if use_ssl else "ws"
        self._ssl = (
            ssl_context(client_cert, client_key, ca_cert, reject_unauthorized) if use_ssl else None
        )
        self._headers = dict(static_headers or {})
        self._connect_timeout = connect_timeout
        self._call_timeout = call_timeout
        self._reload_timeout = reload_timeout
        self._keepalive_interval = keepalive_interval
        self._label = f"Qlik Sense Engine at {host}:{port}"
        self._lock = threading.Lock()
        self._reloads: dict[threading.Thread, Session] = {}
        self._stopping = False

    @property
    def url(self) -> str:
        """Base WebSocket URL, without a path."""
        return f"{self._scheme}://{self._host}:{self._port}"

    def start(self) -> None:
        """Accept reloads (again, after :meth:`stop`)."""
        with self._lock:
            self._stopping = False

    def stop(self, timeout: float = 10) -> None:
        """Abort running reloads (closing their sessions) and wait for their threads."""
        with self._lock:
            self._stopping = True
            running = dict(self._reloads)
        for session in running.values():
            session.abort()
        deadline = time.monotonic() + timeout
        for thread in running:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _global_call(self, method: str, answer: str) -> Any:
        """One parameterless call on the Global handle, in a session of its own."""
        session = self._open(GLOBAL_PATH)
        try:
            result = session.call(GLOBAL_HANDLE, method)
        finally:
            session.close()
        return field(result, answer, method)

    def engine_version(self) -> str:
        """The Engine's component version, e.g. ``12.612.0``."""
        version = self._global_call("EngineVersion", "qVersion")
        return str(version.get("qComponentVersion", "")) if isinstance(version, dict) else ""

    def list_apps(self) -> list[dict[str, str]]:
        """Every app the Engine user may see, as ``[{"id", "name"}]`` in Engine order."""
        docs = self._global_call("GetDocList", "qDocList")
        return [
            {"id": str(doc.get("qDocId", "")), "name": str(doc.get("qDocName", ""))}
            for doc in docs or []
            if isinstance(doc, dict)
        ]

    def dump_app(self, app_id: str) -> dict[str, Any]:
        """The app's properties, script, objects and metadata (keys in :data:`DUMP_KEYS`)."""
        session = self._open(GLOBAL_PATH)
        try:
            doc = self._open_doc(session, app_id, no_data=True)
            return dump_open_app(session, doc, app_id)
        finally:
            session.close()

    def reload_app(
        self,
        app_id: str,
        reload_mode: int = 0,
        partial: bool = False,
        on_done: ReloadCallback | None = None,
    ) -> None:
        """Open the app, then reload and save it in a background thread.

        Returns once the app is open, so an unknown app or an unreachable Engine raises
        here; how the reload ended is passed to ``on_done`` (always called exactly once).
        """
        self._refuse_when_stopping()
        session = self._open(f"/app/{quote(app_id, safe='')}")
        try:
            version = session.call(GLOBAL_HANDLE, "EngineVersion")
            log.debug("Engine version for reload of %s: %s", app_id, version.get("qVersion"))
            doc = self._open_doc(session, app_id, no_data=False)
            thread = threading.Thread(
                target=self._run_reload,
                args=(session, doc, app_id, reload_mode, partial, on_done),
                name=f"engine-reload-{app_id}",
                daemon=True,
            )
            with self._lock:
                self._refuse_when_stopping()
                self._reloads[thread] = session
        except BaseException:
            session.close()
            raise
        thread.start()

    def _refuse_when_stopping(self) -> None:
        if self._stopping:
            raise FeatureUnavailable("Butler is shutting down; no new reloads")

    def _run_reload(
        self,
        session: Session,
        doc: int,
        app_id: str,
        reload_mode: int,
        partial: bool,
        on_done: ReloadCallback | None,
    ) -> None:
        stage = "reload"
        try:
            result = session.call(
                doc,
                "DoReload",
                {"qMode": reload_mode, "qPartial": partial, "qDebug": False},
                timeout=self._reload_timeout,
            )
            if result.get("qReturn") is True:
                stage = "save"
                session.call(doc, "DoSave", {})
                outcome = ReloadOutcome(app_id, "success", "App reloaded and saved")
            else:
                outcome = ReloadOutcome(app_id, "failure", "The Engine reported the reload failed")
        except ApiError as exc:
            outcome = self._interrupted(app_id, stage, exc.message)
        except Exception as exc:
            log.exception("Unexpected error while reloading app %s", app_id)
            outcome = self._interrupted(app_id, stage, type(exc).__name__)
        finally:
            session.close()
            with self._lock:
                self._reloads.pop(threading.current_thread(), None)
        log.log(
            logging.INFO if outcome.result == "success" else logging.WARNING,
            "Reload of app %s: %s (%s)",
            app_id,
            outcome.result,
            outcome.message,
        )
        if on_done is not None:
            try:
                on_done(outcome)
            except Exception:
                log.exception("Reload completion handler failed for app %s", app_id)

    def _interrupted(self, app_id: str, stage: str, message: str) -> ReloadOutcome:
        with self._lock:
            stopping = self._stopping
        if stopping:
            return ReloadOutcome(app_id, "aborted", "Butler stopped before the reload finished")
        if stage == "save":
            return ReloadOutcome(app_id, "failure", f"App reloaded but not saved: {message}")
        return ReloadOutcome(app_id, "failure", f"Reload did not complete: {message}")

    def _open(self, path: str) -> Session:
        try:
            ws = WebSocket(
                f"{self.url}{path}",
                self._ssl,
                self._headers,
                self._connect_timeout,
                io_timeout=self._call_timeout,
                ping_interval=self._keepalive_interval,
            )
        except TimeoutError:
            raise UpstreamTimeout(
                f"{self._label} did not accept a connection within {self._connect_timeout:g} s"
            ) from None
        except ssl.SSLError as exc:
            raise UpstreamError(f"TLS handshake with {self._label} failed: {exc.reason}") from None
        except InvalidStatus as exc:
            raise UpstreamError(
                f"{self._label} refused the WebSocket with HTTP {exc.response.status_code}"
            ) from None
        except (OSError, WebSocketException) as exc:
            raise UpstreamError(f"{self._label} is unreachable: {exc}") from None
        return Session(ws, self._label, self._call_timeout)

    @staticmethod
    def _open_doc(session: Session, app_id: str, *, no_data: bool) -> int:
        try:
            result = session.call(
                GLOBAL_HANDLE,
                "OpenDoc",
                {
                    "qDocName": app_id,
                    "qUserName": "",
                    "qPassword": "",
                    "qSerial": "",
                    "qNoData": no_data,
                },
            )
        except EngineError as exc:
            if exc.engine_code == LOCERR_APP_NOT_FOUND:
                raise NotFound(f"App {app_id} not found") from None
            raise
        return handle_of(result, "OpenDoc", f"app {app_id}")
