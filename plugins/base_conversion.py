"""Base62 <-> base16 conversion, as Qlik Sense ids are sometimes shown in base62."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from butler.config import Config, EnableKey
from butler.endpoints import ApiRequest, Endpoint, Reply
from butler.errors import BadRequest
from butler.hookspecs import hookimpl
from butler.services import Services

BASE62 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
BASE16 = "0123456789abcdef"
TAG = "Utilities"


MAX_DIGITS = 400
"""Qlik ids are about 25 base62 characters; a cap keeps one request from costing seconds."""
_CHUNK = 10
"""Digits folded into one machine-sized integer before touching the big number."""


def _to_int(value: str, alphabet: str) -> int:
    digits = {char: index for index, char in enumerate(alphabet)}
    for char in value:
        if char not in digits:
            raise ValueError(char)
    base = len(alphabet)
    number = 0
    for start in range(0, len(value), _CHUNK):
        chunk = value[start : start + _CHUNK]
        part = 0
        for char in chunk:
            part = part * base + digits[char]
        number = number * base ** len(chunk) + part
    return number


def _from_int(number: int, alphabet: str) -> str:
    base = len(alphabet)
    step = base**_CHUNK
    chunks: list[int] = []
    while number:
        number, chunk = divmod(number, step)
        chunks.append(chunk)
    out: list[str] = []
    for chunk in chunks:
        for _ in range(_CHUNK):
            chunk, rem = divmod(chunk, base)
            out.append(alphabet[rem])
    text = "".join(reversed(out)).lstrip(alphabet[0])
    return text or alphabet[0]


def convert(value: str, source: str, target: str) -> str:
    """Positional conversion between alphabets; leading zeros are not kept (as the original).

    Digits are handled ten at a time, so the big-number work is a tenth of a digit-by-digit
    loop; with inputs capped at ``MAX_DIGITS`` a call costs microseconds.
    """
    return _from_int(_to_int(value, source), target)


_LENGTH = validate.Length(max=MAX_DIGITS, error="must NOT have more than {max} characters")


class Base62Query(Schema):
    base62 = fields.String(required=True, validate=_LENGTH)


class Base16Query(Schema):
    base16 = fields.String(required=True, validate=_LENGTH)


class Conversion(Schema):
    """Both spellings of the value: the one sent, as sent, and the converted one."""

    base62 = fields.String(required=True)
    base16 = fields.String(required=True)


_ERRORS = {400: "Missing parameter or bad character"}


@hookimpl
def butler_enable_keys() -> list[EnableKey]:
    return [EnableKey("base62ToBase16"), EnableKey("base16ToBase62")]


@hookimpl
def butler_endpoints(config: Config, services: Services) -> list[Endpoint]:
    def to_base16(call: ApiRequest) -> Any:
        value = call.query["base62"]
        try:
            result = convert(value, BASE62, BASE16)
        except ValueError as exc:
            raise BadRequest(f"Not a base62 character: '{exc.args[0]}'") from None
        return {"base62": value, "base16": result}

    def to_base62(call: ApiRequest) -> Any:
        value = call.query["base16"]
        try:
            result = convert(value.lower(), BASE16, BASE62)
        except ValueError as exc:
            raise BadRequest(f"Not a hexadecimal character: '{exc.args[0]}'") from None
        return {"base16": value, "base62": result}

    return [
        Endpoint(
            enable_key="base62ToBase16",
            method="GET",
            rule="/v4/base62tobase16",
            view=to_base16,
            query_schema=Base62Query,
            summary="Converts strings from base62 to base16",
            tag=TAG,
            responses={
                200: Reply(
                    "Converted value",
                    Conversion,
                    example={"base62": "NKIdk1R6R0AZFcJl", "base16": "7b9c8a2e44d14f6a9cd0e5b3"},
                ),
                **_ERRORS,
            },
        ),
        Endpoint(
            enable_key="base16ToBase62",
            method="GET",
            rule="/v4/base16tobase62",
            view=to_base62,
            query_schema=Base16Query,
            summary="Converts strings from base16 to base62",
            tag=TAG,
            responses={
                200: Reply(
                    "Converted value",
                    Conversion,
                    example={"base16": "7b9c8a2e44d14f6a9cd0e5b3", "base62": "NKIdk1R6R0AZFcJl"},
                ),
                **_ERRORS,
            },
        ),
    ]
