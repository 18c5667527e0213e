"""The route contract between the core and API-area plugins.

A plugin describes each route as an :class:`Endpoint`; the core decides whether to mount it
(its ``enable_key`` in ``restServerEndpointsEnable``), validates the query string and body
with the given marshmallow schemas, and documents it in the OpenAPI document. Views never
touch Flask's request object for input, so the same validation and error shape applies to
every route.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flask.typing import ResponseReturnValue
from marshmallow import Schema
from marshmallow.fields import Field
from werkzeug.routing import BaseConverter, Map

from butler.auth.callers import Caller


@dataclass
class AuditNote:
    """What a call touched, for its audit record: the view fills it in as it acts.

    ``resources`` takes the record's ``resources`` keys (``tasksStarted``, ``namespace``,
    ``key``, ``paths``, ``scheduleId``...); ``request_id`` links the record to the runs.
    Names and ids only: never a value that could be a secret.
    """

    resources: dict[str, Any] = field(default_factory=dict)
    request_id: str | None = None


@dataclass(frozen=True)
class ApiRequest:
    """Validated input of one call, who made it, plus what a view needs to recognise a
    repeated call.

    ``caller`` says what the caller may touch beyond the route itself (the core has
    already checked the route's scope): views check resource scopes with it. ``raw_query``
    and ``raw_body`` are the bytes as sent and ``headers`` the request's headers (names
    case-insensitive): for the few views that fingerprint a request (``Idempotency-Key``);
    every value a view acts on comes from ``query`` and ``body``.
    """

    path: Mapping[str, str]
    query: Mapping[str, Any]
    body: Any
    client: str
    caller: Caller
    headers: Mapping[str, str] = field(default_factory=dict)
    raw_query: bytes = b""
    raw_body: bytes = b""
    audit: AuditNote = field(default_factory=AuditNote)


View = Callable[[ApiRequest], ResponseReturnValue]

JSON_TYPE = "application/json"

SchemaLike = type[Schema] | Schema
"""A marshmallow schema, as a class or an instance (``Schedule(many=True)`` for a list)."""

AnswerSchema = SchemaLike | Field | tuple[SchemaLike | Field, ...]
"""What a success body is: a schema for an object (or, with ``many=True``, a list of them),
a marshmallow field for anything else (``fields.List(fields.String())``, or
``fields.String()`` for text), or a tuple of those when the body is one of several shapes
depending on the request (documented as ``oneOf``)."""


@dataclass(frozen=True)
class Reply:
    """One documented answer of an endpoint: what it means, and the body it carries.

    ``schema`` and ``example`` describe a success body (``media_type`` says its type).
    Error answers (4xx, 5xx) normally take a description only: the core renders every
    ``ApiError``, so their body is the core's ``Error`` shape and the document says so by
    itself. A schema on an error status means the view returns that body itself with that
    status (the readiness report's 503); 204 has no body.
    """

    description: str
    schema: AnswerSchema | None = None
    example: Any = None
    media_type: str = JSON_TYPE

    def check(self, status: int) -> None:
        """Refuse a body where there can be none, so the document cannot promise one."""
        if self.schema is None and self.example is None:
            return
        if status >= 400 and self.schema is None:
            raise ValueError(f"{status}: an error example needs the schema of its own body")
        if status == 204:
            raise ValueError("204: a No Content answer has no body")


@dataclass(frozen=True)
class Endpoint:
    """One method + path that a plugin offers.

    ``rule`` uses Flask syntax (``/v4/schedules/<scheduleId>/start``). ``body_schema`` is
    applied to a JSON object body; leave it ``None`` for routes that accept several body
    shapes and check the raw body themselves (``ApiRequest.body`` is then the parsed JSON,
    or ``None`` when the request has no body). A schema may be a class or an instance
    (``ScheduleBody(partial=True)`` for an update).

    ``responses`` maps each status the route answers to a :class:`Reply` (description,
    body schema, example) or to a plain description (no body documented). The document
    adds the statuses the core answers by itself (400 and 413 on every route, 404 where a
    path parameter may not match, 415 with a body, 429 when calls are refused for load) and
    the ``Error`` body of every 4xx and 5xx, so list the route's own outcomes only.
    """

    enable_key: str
    method: str
    rule: str
    view: View
    summary: str
    tag: str
    query_schema: SchemaLike | None = None
    body_schema: SchemaLike | None = None
    body_example: Any = None
    path_examples: Mapping[str, str] = field(default_factory=dict)
    """An example value per path parameter, for the document's "Try it out"."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """Optional request headers the view reads (``ApiRequest.headers``): name -> what it
    does, for the document."""
    responses: Mapping[int, str | Reply] = field(default_factory=dict)
    description: str = ""
    waits: bool = False
    """The route may hold its worker for an upstream (QRS, Engine, a webhook) or a wait;
    such routes run on the ``restServerConfig.maxWaiting`` workers kept for them, so the
    ``threads`` workers stay for quick ones."""
    audited: bool | None = None
    """Whether each call writes an audit record; by default every method but GET does
    (it changes or starts something). ``False`` for a POST that only computes."""

    @property
    def writes_audit(self) -> bool:
        return self.method != "GET" if self.audited is None else self.audited

    def __post_init__(self) -> None:
        for status, reply in self.responses.items():
            if isinstance(reply, Reply):
                reply.check(status)

    def replies(self) -> dict[int, Reply]:
        """``responses`` with plain descriptions as body-less replies; 200 when none given."""
        given = self.responses or {200: "Success"}
        return {
            status: reply if isinstance(reply, Reply) else Reply(reply)
            for status, reply in given.items()
        }


def schema_instance(schema: SchemaLike | None) -> Schema | None:
    """The schema object to validate with (classes are instantiated once, at app build)."""
    if schema is None or isinstance(schema, Schema):
        return schema
    return schema()


class SegmentExceptConverter(BaseConverter):
    """``<except(startall,stopall):scheduleId>``: one path segment, but not the words given.

    Without it ``/v4/schedules/<scheduleId>`` also matches ``/v4/schedules/startall`` for
    the methods ``startall`` lacks, so ``DELETE /v4/schedules/startall`` looked for a
    schedule named "startall" and ``OPTIONS`` advertised methods the path does not have.
    """

    def __init__(self, url_map: Map, *words: str):
        super().__init__(url_map)
        taken = "|".join(re.escape(word) for word in words)
        self.regex = f"(?!(?:{taken})(?:/|$))[^/]+"


CONVERTERS: Mapping[str, type[BaseConverter]] = {"except": SegmentExceptConverter}
"""Converters the core adds to Flask's for endpoint rules (see docs/plugins.md)."""
