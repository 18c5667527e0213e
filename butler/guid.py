"""Qlik Sense ids (task, app, ...) are GUIDs; this is the one place that recognises them.

QRS compares ids case-insensitively but answers in lower case, so every id Butler keeps,
compares or sends is the lower-case form given by :func:`normalise_guid`.
"""

from __future__ import annotations

import re
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
    """A fresh random id in the lower-case GUID form Butler uses (runs, requests, schedules)."""
    return str(uuid.uuid4())
