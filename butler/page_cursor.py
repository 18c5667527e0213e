"""The ``cursor`` of a newest-first page (``/v4/runs``, ``/v4/audit``): where the last row was.

A cursor is the last row's (time, id), so a page's continuation is exact however many rows
arrive meanwhile; it is opaque to callers and checked on the way back in, so a forged one
is a 400, never a query on whatever it decodes to.
"""

from __future__ import annotations

import base64
import binascii
import json
import math

from butler.errors import BadRequest


class BadCursor(BadRequest):
    """A ``cursor`` that no page handed out: the caller's mistake, so a 400."""


def encode_cursor(time: float, row_id: str) -> str:
    raw = json.dumps([time, row_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, route: str) -> tuple[float, str]:
    """The (time, id) a cursor of ``route`` holds; :class:`BadCursor` otherwise."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        time, row_id = json.loads(raw)
        if isinstance(time, bool) or not isinstance(time, int | float):
            raise ValueError
        if not math.isfinite(time) or not isinstance(row_id, str):
            raise ValueError
    except (ValueError, TypeError, binascii.Error):
        raise BadCursor(f"cursor is not one a page of {route} handed out") from None
    return float(time), row_id
