"""One JSON-RPC 2.0 session with the Engine, and how Engine answers become Butler errors.

The Engine ties open documents to a session, so every Butler operation opens its own
session and closes it when done; a session is therefore used by one thread at a time and
needs no locking. :meth:`Session.call_many` pipelines: every independent request is sent
before the answers are read, so an app with hundreds of objects costs a handful of round
trips, not hundreds. Engine errors come back in place of answers so the caller decides which
ones matter; transport failures and timeouts raise ``UpstreamError`` / ``UpstreamTimeout``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from websockets.exceptions import WebSocketException

from butler.engine.transport import Closed, WebSocket
from butler.errors import UpstreamError, UpstreamTimeout


class EngineError(UpstreamError):
    """The Engine answered a call with a JSON-RPC error object."""

    def __init__(self, method: str, engine_code: int | None, engine_message: str, parameter: str):
        detail = f"{engine_message} ({parameter})" if parameter else engine_message
        super().__init__(f"Qlik Sense Engine refused {method}: {detail}")
        self.method = method
        self.engine_code = engine_code
        self.engine_message = engine_message
        self.parameter = parameter


class Session:
    """One Engine WebSocket session with its request-id bookkeeping.

    Used by one thread at a time. Answers are matched to requests by id, and unsolicited
    notifications (``OnConnected``, ``OnAuthenticationInformation``...) are skipped.
    """

    def __init__(self, ws: WebSocket, label: str, call_timeout: float | None):
        self._ws = ws
        self._label = label
        self._call_timeout = call_timeout
        self._next_id = 0

    def call(
        self,
        handle: int,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        timeout: float | Literal["default"] | None = "default",
    ) -> dict[str, Any]:
        """One request and its answer; an Engine error is raised as :class:`EngineError`."""
        (result,) = self.call_many([(handle, method, params)], timeout=timeout)
        if isinstance(result, EngineError):
            raise result
        return result

    def call_many(
        self,
        calls: Sequence[tuple[int, str, Mapping[str, Any] | None]],
        *,
        timeout: float | Literal["default"] | None = "default",
    ) -> list[dict[str, Any] | EngineError]:
        """Send every request, then collect every answer (in request order).

        Engine errors are returned in place so the caller decides which ones matter;
        transport failures and timeouts raise.
        """
        limit = self._call_timeout if timeout == "default" else timeout
        pending: dict[int, str] = {}
        order: list[int] = []
        try:
            for handle, method, params in calls:
                self._next_id += 1
                request_id = self._next_id
                message = {
                    "jsonrpc": "2.0",
                    "id": request_id,
                    "handle": handle,
                    "method": method,
                    "params": dict(params or {}),
                }
                pending[request_id] = method
                order.append(request_id)
                self._ws.send(json.dumps(message))
            answers = self._collect(pending, limit)
        except TimeoutError:
            within = "in time" if limit is None else f"within {limit:g} s"
            raise UpstreamTimeout(
                f"{self._label} did not answer {_names(pending)} {within}"
            ) from None
        except (Closed, OSError, ValueError, WebSocketException):
            raise UpstreamError(
                f"{self._label} closed the connection during {_names(pending)}"
            ) from None
        return [answers[request_id] for request_id in order]

    def _collect(
        self, pending: dict[int, str], limit: float | None
    ) -> dict[int, dict[str, Any] | EngineError]:
        deadline = None if limit is None else time.monotonic() + limit
        answers: dict[int, dict[str, Any] | EngineError] = {}
        while pending:
            raw = self._ws.recv(deadline)
            try:
                message = json.loads(raw)
            except ValueError:
                raise UpstreamError(f"{self._label} sent a message that is not JSON") from None
            if not isinstance(message, dict):
                continue
            request_id = message.get("id")
            if not isinstance(request_id, int) or request_id not in pending:
                continue
            method = pending.pop(request_id)
            error = message.get("error")
            if error is not None:
                answers[request_id] = _engine_error(method, error)
            else:
                result = message.get("result")
                answers[request_id] = result if isinstance(result, dict) else {}
        return answers

    def close(self) -> None:
        self._ws.close()

    def abort(self) -> None:
        self._ws.abort()


def _names(pending: Mapping[int, str]) -> str:
    return ", ".join(sorted(set(pending.values()))) or "the call"


def _engine_error(method: str, error: Any) -> EngineError:
    if not isinstance(error, dict):
        return EngineError(method, None, str(error), "")
    code = error.get("code")
    return EngineError(
        method,
        code if isinstance(code, int) else None,
        str(error.get("message") or "unknown error"),
        str(error.get("parameter") or ""),
    )


def field(result: Mapping[str, Any] | EngineError, key: str, method: str) -> Any:
    """``key`` of an answer from :meth:`Session.call_many`; an Engine error is raised here."""
    if isinstance(result, EngineError):
        raise result
    if key not in result:
        raise UpstreamError(f"Qlik Sense Engine answered {method} without {key}")
    return result[key]


def handle_of(result: Mapping[str, Any] | EngineError, method: str, what: str) -> int:
    """The handle an answer returns; the Engine answers a null handle for an unknown id."""
    handle = field(result, "qReturn", method)
    value = handle.get("qHandle") if isinstance(handle, dict) else None
    if not isinstance(value, int):
        raise UpstreamError(f"Qlik Sense Engine found no {what}")
    return value
