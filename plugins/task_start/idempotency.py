"""``Idempotency-Key`` on the start routes: a retried start answers again, starts nothing.

A caller whose connection dropped cannot know whether its reloads started; with a key it
simply sends the same request again. The key and the first answer live in the run store
(SQLite, so they survive a restart) for ``Butler.runs.idempotencyHours``.

What counts as "the same request": the route (PUT and POST are one), the task id in the
URL, the query string and the body, byte for byte. The same key with anything else is a
client bug and answers 422 rather than guessing which of the two the caller meant.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

from butler.endpoints import ApiRequest
from butler.errors import BadRequest, Conflict, Unprocessable
from butler.runs import Runs
from butler.tasks import StartOutcomeUnknown

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255


def idempotency_key(call: ApiRequest) -> str | None:
    """The request's key, or ``None``; 400 for an empty or over-long one."""
    key = call.headers.get(HEADER)
    if key is None:
        return None
    if not key.strip():
        raise BadRequest(f"{HEADER} must not be empty")
    if len(key) > MAX_KEY_LENGTH:
        raise BadRequest(f"{HEADER} must be at most {MAX_KEY_LENGTH} characters")
    return key


def fingerprint(rule: str, call: ApiRequest) -> str:
    digest = hashlib.sha256()
    for part in (rule.encode(), call.path.get("taskId", "").encode(), call.raw_query):
        digest.update(len(part).to_bytes(8, "big") + part)
    digest.update(call.raw_body)
    return digest.hexdigest()


def answer_once(
    runs: Runs,
    key: str,
    print_: str,
    process: Callable[[], tuple[str, dict[str, Any]]],
) -> tuple[str, dict[str, Any], bool]:
    """Process the request under ``key`` once; ``(requestId, answer, replayed)``.

    ``process`` starts the tasks and returns the request id and the answer to keep. A
    request that failed before anything was handed to QRS gives its key back, so a retry
    is processed; one whose start QRS may have taken (504, outcome unknown) keeps it, so
    a retry cannot start the tasks a second time.
    """
    store = runs.store
    now = time.time()
    earlier = store.claim_key(key, print_, now, now - runs.settings.idempotency_hours * 3600)
    if earlier is not None:
        if earlier.fingerprint != print_:
            raise Unprocessable(
                f"{HEADER} {key!r} was used for a different request (route, task id, query "
                "or body differ); use a new key for a new request",
                code="IDEMPOTENCY_KEY_REUSED",
            )
        if earlier.status is None:
            raise Conflict(
                f"The first request with {HEADER} {key!r} is still being processed; retry "
                "in a moment",
                code="IDEMPOTENCY_KEY_IN_PROGRESS",
            )
        if earlier.status != 200:  # only a start whose outcome is unknown is kept (504)
            raise StartOutcomeUnknown(str(earlier.answer))
        return str(earlier.request_id), earlier.answer, True
    try:
        request_id, answer = process()
    except StartOutcomeUnknown as exc:
        store.complete_key(key, None, exc.status, exc.message)
        raise
    except BaseException:
        store.release_key(key)
        raise
    store.complete_key(key, request_id, 200, answer)
    return request_id, answer, False
