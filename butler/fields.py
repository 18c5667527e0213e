"""Marshmallow fields that accept what Qlik load scripts send.

Load scripts go through Qlik's REST connector and send booleans and numbers as JSON
strings (``"true"``, ``"3000"``); the original Butler coerced them, so callers rely on it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from marshmallow import ValidationError, fields

from butler.runs.model import parse_iso

_TRUE = frozenset({"true"})
_FALSE = frozenset({"false"})


def _unwrap(value: Any) -> Any:
    """A one-element list stands for its element, as the original's validator allowed."""
    return value[0] if isinstance(value, list) and len(value) == 1 else value


def coerce_bool(value: Any) -> bool:
    """Accept JSON booleans, 1/0 and the texts true/false in any case; refuse the rest."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    raise ValidationError("must be boolean")


class LoadScriptBoolean(fields.Field):
    """Boolean that also takes ``"true"``/``"True"``/``"TRUE"``/``"false"`` and 1/0."""

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> bool:
        return coerce_bool(_unwrap(value))


class LoadScriptString(fields.String):
    """String that also takes numbers (stringified, as the original did), never booleans.

    A boolean where a text belongs is a caller's mistake, not a load-script habit: taken as
    ``"false"`` it created a folder named ``false``.
    """

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> Any:
        value = _unwrap(value)
        if isinstance(value, bool):
            raise ValidationError("must be string")
        if isinstance(value, int | float):
            value = str(value)
        return super()._deserialize(value, attr, data, **kwargs)


class LoadScriptNumber(fields.Float):
    """Number that also takes numeric strings such as ``"3000"`` or ``" 30"``."""

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> Any:
        value = _unwrap(value)
        if isinstance(value, bool):
            raise ValidationError("must be number")
        if isinstance(value, str):
            value = value.strip()
            if not value:
                raise ValidationError("must be number")
        try:
            number = float(value)
        except (TypeError, ValueError) as exc:
            raise ValidationError("must be number") from exc
        if not math.isfinite(number):  # "NaN" and "inf" parse, but mean no amount of anything
            raise ValidationError("must be number")
        return number


class LoadScriptInteger(LoadScriptNumber):
    """Integer that also takes integral numeric strings such as ``"1"``."""

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> Any:
        number = super()._deserialize(value, attr, data, **kwargs)
        if not float(number).is_integer():
            raise ValidationError("must be integer")
        return int(number)


class StringList(fields.List):
    """List of strings where a single scalar becomes a one-element list."""

    def __init__(self, **kwargs: Any):
        super().__init__(LoadScriptString(), **kwargs)

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> Any:
        if not isinstance(value, list):
            value = [value]
        return super()._deserialize(value, attr, data, **kwargs)


class IsoTime(LoadScriptString):
    """An ISO 8601 time (``Z``, an offset, or none for UTC) as epoch seconds: the
    ``since``/``until`` of every history route (runs, audit), so all read times alike."""

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> Any:
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            return parse_iso(text)
        except ValueError:
            raise ValidationError("must be an ISO 8601 time, e.g. 2026-12-01T00:00:00Z") from None
