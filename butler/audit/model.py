"""One audit record: who changed what through Butler, and how it was answered.

A record names things (routes, namespaces, keys, task and schedule ids), never their
secret values, so the trail can be handed to a SIEM without becoming a leak of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from butler.guid import new_guid
from butler.runs.model import iso


@dataclass(frozen=True)
class AuditRecord:
    """A change and its cause; ``trigger`` is ``None`` for an HTTP request.

    ``route`` is the endpoint rule in OpenAPI form (``/v4/keyvalues/{namespace}``) so
    records of one route group together whatever the path parameters were; those are in
    ``params``. ``trigger`` is ``{"kind": "mqtt" | "schedule" | "chain", "caller": ...}``
    for a change nobody asked for over HTTP.
    """

    time: float
    caller: str
    method: str | None = None
    route: str | None = None
    params: Mapping[str, str] = field(default_factory=dict)
    status: int | None = None
    resources: Mapping[str, Any] = field(default_factory=dict)
    request_id: str | None = None
    trigger: Mapping[str, str] | None = None
    record_id: str = field(default_factory=new_guid)

    def to_api(self) -> dict[str, Any]:
        """The record as ``GET /v4/audit`` and the JSON-lines file show it."""
        return {
            "time": iso(self.time),
            "caller": self.caller,
            "method": self.method,
            "route": self.route,
            "params": dict(self.params),
            "status": self.status,
            "resources": dict(self.resources),
            "requestId": self.request_id,
            "trigger": dict(self.trigger) if self.trigger is not None else None,
        }

    def to_row(self) -> dict[str, Any]:
        """Every field, for the store (``time`` unrounded, so a cursor compares exactly)."""
        return {
            "time": self.time,
            "caller": self.caller,
            "method": self.method,
            "route": self.route,
            "params": dict(self.params),
            "status": self.status,
            "resources": dict(self.resources),
            "request_id": self.request_id,
            "trigger": dict(self.trigger) if self.trigger is not None else None,
            "record_id": self.record_id,
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> AuditRecord:
        return cls(**row)
