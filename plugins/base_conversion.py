"""Base62 <-> base16 conversion, as Qlik Sense ids are sometimes shown in base62."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields

from butler.config import Config, EnableKey
from butler.endpoints import ApiRequest, Endpoint
from butler.errors import BadRequest
from butler.hookspecs import hookimpl
from butler.services import Services

BASE62 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
BASE16 = "0123456789abcdef"
TAG = "Utilities"


def convert(value: str, source: str, target: str) -> str:
    """Positional conversion between alphabets; leading zeros are not kept (as the original)."""
    base = len(source)
    number = 0
    for char in value:
        digit = source.find(char)
        if digit < 0:
            raise ValueError(char)
        number = number * base + digit
    if number == 0:
        return target[0]
    out: list[str] = []
    while number:
        number, rem = divmod(number, len(target))
        out.append(target[rem])
    return "".join(reversed(out))


class Base62Query(Schema):
    base62 = fields.String(required=True)


class Base16Query(Schema):
    base16 = fields.String(required=True)


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
            responses={200: "Converted value", 400: "Missing parameter or bad character"},
        ),
        Endpoint(
            enable_key="base16ToBase62",
            method="GET",
            rule="/v4/base16tobase62",
            view=to_base62,
            query_schema=Base16Query,
            summary="Converts strings from base16 to base62",
            tag=TAG,
            responses={200: "Converted value", 400: "Missing parameter or bad character"},
        ),
    ]
