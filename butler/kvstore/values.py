"""What the key-value store holds and how callers' values are read into it.

Kept apart from the store so the rules for TTLs and value texts (the original's
load-script conventions) can be read, and tested, without SQLite.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from butler.errors import ApiError, BadRequest

# About 31,700 years: keeps the expiry time a finite float whatever number a caller sends.
MAX_TTL_MS = 10**15
MAX_NAMESPACE_LENGTH = 255
MAX_KEY_LENGTH = 1024
"""Namespaces and keys are names a load script types; values are bounded by the request
body limit (``restServerConfig.maxBodyBytes``) only, as they may carry JSON documents."""


class KvStoreError(RuntimeError):
    """The store file cannot be opened or has an unknown layout; start-up must stop."""


class StorageError(ApiError):
    """A write could not be committed; nothing was changed."""

    status = 500


@dataclass(frozen=True)
class KvEntry:
    """One live key as seen at read time.

    ``ttl`` is the time left before expiry in whole milliseconds (rounded up), or 0 when
    the key never expires.
    """

    namespace: str
    key: str
    value: str
    ttl: int


def parse_ttl(ttl: object) -> int:
    """Turn whatever a caller sent as TTL into whole milliseconds, as the original did.

    Load scripts send numbers as text (``"3000"``, or ``""`` when no TTL is wanted), so
    numeric text counts; anything that is not a finite number means "no TTL" (0), just as
    the original's ``parseInt`` yielded ``NaN``. The integer part is kept, capped at
    about 31,700 years either way so the expiry stays a finite time and an echo stays short;
    values <= 0 mean "never expires".
    """
    if isinstance(ttl, bool) or ttl is None:
        return 0
    if isinstance(ttl, int):
        return max(-MAX_TTL_MS, min(ttl, MAX_TTL_MS))
    if isinstance(ttl, str):
        try:
            number = float(ttl.strip())
        except ValueError:
            return 0
    elif isinstance(ttl, float):
        number = ttl
    else:
        return 0
    return max(-MAX_TTL_MS, min(int(number), MAX_TTL_MS)) if math.isfinite(number) else 0


def value_text(value: object) -> str:
    """Store strings as they are and anything else as compact JSON text.

    Task-start items may carry numbers or objects; the original stored them raw and read
    them back as ``"[object Object]"``. JSON text keeps them readable and round-trippable.
    """
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def check_text(name: str, text: str, limit: int) -> None:
    """A namespace or key: present, at most ``limit`` characters, encodable."""
    if text == "":
        raise BadRequest(f"Required parameter is missing: {name}")
    if len(text) > limit:
        raise BadRequest(f"{name} must NOT have more than {limit} characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BadRequest(f"{name} is not valid Unicode text") from exc
