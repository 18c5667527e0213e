"""Key-value store endpoints (``keyValueStore``): the seven routes of the original.

Paths, field names and load-script request forms are the original's; unknown namespaces and
keys answer 404 (not 400), a full namespace 409, and every body is ``application/json``.
Reads also report ``ttl`` (milliseconds left, 0 = never expires), which the load-script
helper ``ExistsKeyValue`` asks for.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Response
from marshmallow import EXCLUDE, Schema, fields, validate

from butler.config import Config, CoreService, EnableKey
from butler.endpoints import ApiRequest, Endpoint, Reply
from butler.errors import BadRequest, FeatureUnavailable
from butler.fields import LoadScriptNumber, LoadScriptString
from butler.hookspecs import hookimpl
from butler.kvstore import KvEntry, KvStore, parse_ttl
from butler.services import Services

TAG = "Key-value store"
ENABLE_KEY = "keyValueStore"
NOT_FOUND = "Namespace or key not found"
PATH_EXAMPLES = {"namespace": "Sales ETL", "key": "Last extract timestamp"}


class TtlField(LoadScriptNumber):
    """TTL in ms: a number or numeric text; ``null`` means "no TTL".

    ``""`` is refused here as the original refuses it (``body/ttl must be number``); only
    the key-value items of a task start take an empty ``ttl`` as "no expiry", as there.
    """

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> Any:
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        return super()._deserialize(value, attr, data, **kwargs)


class NullableString(LoadScriptString):
    """String where JSON ``null`` reads as ``""``, as the original's coercion did."""

    def deserialize(
        self, value: Any, attr: str | None = None, data: Any = None, **kwargs: Any
    ) -> Any:
        return "" if value is None else super().deserialize(value, attr, data, **kwargs)


class KeyQuery(Schema):
    class Meta:
        unknown = EXCLUDE

    key = LoadScriptString(required=True, metadata={"description": "Key name"})


class SetBody(Schema):
    class Meta:
        unknown = EXCLUDE

    key = NullableString(metadata={"description": "Key to set (required)"})
    value = LoadScriptString(metadata={"description": "Value to store (required, not null)"})
    ttl = TtlField(
        allow_none=True,
        metadata={"description": "Time to live in ms; 0, empty or absent = never expires"},
    )


class KeyValue(Schema):
    namespace = fields.String(required=True)
    key = fields.String(required=True)
    value = fields.String(required=True, metadata={"description": "Non-text values as JSON text"})
    ttl = fields.Integer(required=True, metadata={"description": "Milliseconds; 0 = never"})


class KeyFound(Schema):
    keyExists = fields.Boolean(required=True, validate=validate.Equal(True))
    keyValue = fields.Nested(KeyValue, required=True)


class NothingFound(Schema):
    """An empty object: the original's ``keyValue`` of a key that does not exist."""


class KeyMissing(Schema):
    keyExists = fields.Boolean(required=True, validate=validate.Equal(False))
    keyValue = fields.Nested(NothingFound, required=True)


class KeyName(Schema):
    key = fields.String(required=True)


class KeyList(Schema):
    namespace = fields.String(required=True)
    keys = fields.List(fields.Nested(KeyName), required=True)


EXAMPLE_ENTRY = {
    "namespace": "Sales ETL",
    "key": "Last extract timestamp",
    "value": "2026-03-02 05:40:12",
    "ttl": 58210,
}


def _entry_json(entry: KvEntry) -> dict[str, Any]:
    return {"namespace": entry.namespace, "key": entry.key, "value": entry.value, "ttl": entry.ttl}


def _no_content() -> Response:
    return Response(status=204)


@hookimpl
def butler_enable_keys() -> list[EnableKey]:
    return [EnableKey(ENABLE_KEY, needs=frozenset({CoreService.KV_STORE}))]


@hookimpl
def butler_endpoints(config: Config, services: Services) -> list[Endpoint]:
    def store() -> KvStore:
        kv: KvStore | None = services.kv_store
        if kv is None:
            raise FeatureUnavailable(
                "The key-value store is not available: check Butler.keyValueStore"
            )
        return kv

    def namespace(call: ApiRequest) -> str:
        """The call's namespace, once the caller's ``kvNamespaces`` scope allows it."""
        name = call.path["namespace"]
        call.caller.require_namespace(name)
        call.audit.resources["namespace"] = name
        return name

    def list_namespaces(call: ApiRequest) -> Any:
        return [name for name in store().namespaces() if call.caller.allows_namespace(name)]

    def get_value(call: ApiRequest) -> Any:
        return _entry_json(store().get(namespace(call), call.query["key"]))

    def key_exists(call: ApiRequest) -> Any:
        entry = store().find(namespace(call), call.query["key"])
        if entry is None:
            return {"keyExists": False, "keyValue": {}}
        return {"keyExists": True, "keyValue": _entry_json(entry)}

    def set_value(call: ApiRequest) -> Any:
        body = call.body
        if not body.get("key"):
            raise BadRequest("Required parameter is missing")
        if "value" not in body:
            raise BadRequest("Required parameter is missing: value")
        name = namespace(call)
        call.audit.resources["key"] = body["key"]
        entry = store().set(name, body["key"], body["value"], body.get("ttl"))
        answer = _entry_json(entry)
        answer["ttl"] = parse_ttl(body.get("ttl"))
        return answer, 201

    def delete_key(call: ApiRequest) -> Any:
        name = namespace(call)
        call.audit.resources["key"] = call.path["key"]
        store().delete_key(name, call.path["key"])
        return _no_content()

    def delete_namespace(call: ApiRequest) -> Any:
        store().delete_namespace(namespace(call))
        return _no_content()

    def list_keys(call: ApiRequest) -> Any:
        name = namespace(call)
        return {"namespace": name, "keys": [{"key": k} for k in store().keys(name)]}

    def endpoint(method: str, rule: str, view: Any, summary: str, **extra: Any) -> Endpoint:
        return Endpoint(
            enable_key=ENABLE_KEY,
            method=method,
            rule=rule,
            view=view,
            summary=summary,
            tag=TAG,
            path_examples=PATH_EXAMPLES,
            **extra,
        )

    return [
        endpoint(
            "GET",
            "/v4/keyvaluesnamespaces",
            list_namespaces,
            "List all currently defined namespaces",
            description="Namespaces in creation order, including empty ones.",
            responses={
                200: Reply(
                    "Array of namespace names",
                    fields.List(fields.String()),
                    example=["Sales ETL", "Finance"],
                )
            },
        ),
        endpoint(
            "GET",
            "/v4/keyvalues/<namespace>",
            get_value,
            "Get the value associated with a key, in a specific namespace",
            query_schema=KeyQuery,
            responses={
                200: Reply(
                    "namespace, key, value and ttl (ms left, 0 = never expires)",
                    KeyValue,
                    example=EXAMPLE_ENTRY,
                ),
                400: "Query parameter key missing",
                404: NOT_FOUND,
            },
        ),
        endpoint(
            "GET",
            "/v4/keyvalues/<namespace>/keyexists",
            key_exists,
            "Checks if a key exists in a namespace",
            query_schema=KeyQuery,
            responses={
                200: Reply(
                    "keyExists flag, and keyValue (namespace, key, value, ttl) when it exists, "
                    "else {}",
                    (KeyFound, KeyMissing),
                    example={"keyExists": True, "keyValue": EXAMPLE_ENTRY},
                ),
                400: "Query parameter key missing",
                404: "Namespace not found",
            },
        ),
        endpoint(
            "POST",
            "/v4/keyvalues/<namespace>",
            set_value,
            "Create or overwrite a key-value pair in the specified namespace",
            description=(
                "The namespace is created on first use. An existing key is overwritten and "
                "its TTL replaced (no TTL = never expires). The write is on disk before the "
                "answer is sent."
            ),
            body_schema=SetBody,
            body_example={"key": "Last extract timestamp", "value": "2020-09-29", "ttl": 60000},
            responses={
                201: Reply(
                    "Key stored; echoes namespace, key, value and ttl as sent (0 = none)",
                    KeyValue,
                    example={
                        "namespace": "Sales ETL",
                        "key": "Last extract timestamp",
                        "value": "2020-09-29",
                        "ttl": 60000,
                    },
                ),
                400: "key or value missing, or ttl not a number",
                409: "Namespace already holds maxKeysPerNamespace keys",
            },
        ),
        endpoint(
            "DELETE",
            "/v4/keyvalues/<namespace>/<path:key>",
            delete_key,
            "Delete a key-value pair in a specific namespace",
            responses={204: "Deleted", 404: NOT_FOUND},
        ),
        endpoint(
            "DELETE",
            "/v4/keyvalues/<namespace>",
            delete_namespace,
            "Delete a namespace and all key-value pairs in it",
            responses={204: "Deleted", 404: "Namespace not found"},
        ),
        endpoint(
            "GET",
            "/v4/keylist/<namespace>",
            list_keys,
            "Retrieve a list of all keys present in the specified namespace",
            responses={
                200: Reply(
                    "namespace and keys[].key in insertion order",
                    KeyList,
                    example={
                        "namespace": "Sales ETL",
                        "keys": [{"key": "Last extract timestamp"}, {"key": "Rows loaded"}],
                    },
                ),
                404: "Namespace not found",
            },
        ),
    ]
