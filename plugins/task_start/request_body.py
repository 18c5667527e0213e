"""What callers send to start tasks: REST bodies in every accepted form, and MQTT payloads.

Accepted REST bodies: none, ``{}``, Butler 16's typed-item array, and seed 001's object
form. Load scripts and hand-written JSON get the original's error wording (``body/0/type
must be ...``), so a failing script's log says which item is wrong.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from butler.errors import BadRequest, ValidationFailed
from butler.tasks import KvItem, StartRequest

ITEM_TYPES = ("keyvaluestore", "starttaskid", "starttasktag", "starttaskcustomproperty")


def parse_start_body(body: Any, url_task_id: str | None = None) -> StartRequest:
    """Turn any accepted body form into a :class:`StartRequest`.

    Accepted: no body, ``{}``, the original's typed-item array, and seed 001's object form
    ``{"taskId": [...], "tag": [...], "customProperty": [{"name", "value"}]}``.
    """
    request = StartRequest()
    if url_task_id is not None and url_task_id != "-":
        request.task_ids.append(url_task_id)
    if body is None:
        return request
    if isinstance(body, list):
        for index, item in enumerate(body):
            _add_typed_item(request, item, f"body/{index}")
        return request
    if isinstance(body, dict):
        for task_id in _as_list(body.get("taskId")):
            request.task_ids.append(task_id)
        for tag in _as_list(body.get("tag")):
            request.tags.append(_text(tag, "body/tag"))
        for index, cp in enumerate(_as_list(body.get("customProperty"))):
            request.custom_properties.append(_cp_pair(cp, f"body/customProperty/{index}"))
        return request
    raise ValidationFailed("body must be array or object")


def _add_typed_item(request: StartRequest, item: Any, where: str) -> None:
    if not isinstance(item, dict):
        raise ValidationFailed(f"{where} must be object")
    kind = item.get("type")
    if kind is None:
        return
    if kind not in ITEM_TYPES:
        raise ValidationFailed(f"{where}/type must be equal to one of the allowed values")
    payload = item.get("payload")
    if not isinstance(payload, dict):
        raise ValidationFailed(f"{where}/payload must be object (it is required for {kind})")
    if kind == "starttaskid":
        request.task_ids.append(payload.get("taskId"))
    elif kind == "starttasktag":
        request.tags.append(_text(payload.get("tag"), f"{where}/payload/tag"))
    elif kind == "starttaskcustomproperty":
        request.custom_properties.append(
            (
                _text(payload.get("customPropertyName"), f"{where}/payload/customPropertyName"),
                _text(payload.get("customPropertyValue"), f"{where}/payload/customPropertyValue"),
            )
        )
    else:
        request.kv_items.append(_kv_item(payload, f"{where}/payload"))


def _kv_item(payload: Mapping[str, Any], where: str) -> KvItem:
    namespace = _text(payload.get("namespace"), f"{where}/namespace")
    key = _text(payload.get("key"), f"{where}/key")
    if "value" not in payload or payload["value"] is None:
        raise BadRequest(f"{where}/value is required for a keyvaluestore item")
    return KvItem(namespace, key, payload["value"], payload.get("ttl"))


def _cp_pair(cp: Any, where: str) -> tuple[str, str]:
    if not isinstance(cp, dict):
        raise ValidationFailed(f"{where} must be object with name and value")
    return _text(cp.get("name"), f"{where}/name"), _text(cp.get("value"), f"{where}/value")


def _text(value: Any, where: str) -> str:
    if isinstance(value, bool) or value is None or isinstance(value, dict | list):
        raise BadRequest(f"{where} is required and must be a string")
    text = str(value)
    if not text:
        raise BadRequest(f"{where} must not be empty")
    return text


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def parse_mqtt_payload(payload: bytes) -> StartRequest:
    """An MQTT task-start message: a bare task id (original), or JSON in any body form."""
    text = payload.decode("utf-8", errors="replace").strip()
    if text.startswith(("[", "{")):
        try:
            body = json.loads(text)
        except ValueError:
            raise BadRequest("MQTT task-start payload is not valid JSON") from None
        return parse_start_body(body)
    return StartRequest(task_ids=[text])
