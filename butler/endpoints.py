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
from werkzeug.routing import BaseConverter, Map


@dataclass(frozen=True)
class ApiRequest:
    """Validated input of one call."""

    path: Mapping[str, str]
    query: Mapping[str, Any]
    body: Any
    client: str


View = Callable[[ApiRequest], ResponseReturnValue]


@dataclass(frozen=True)
class Endpoint:
    """One method + path that a plugin offers.

    ``rule`` uses Flask syntax (``/v4/schedules/<scheduleId>/start``). ``body_schema`` is
    applied to a JSON object body; leave it ``None`` for routes that accept several body
    shapes and check the raw body themselves (``ApiRequest.body`` is then the parsed JSON,
    or ``None`` when the request has no body). A schema may be a class or an instance
    (``ScheduleBody(partial=True)`` for an update). ``responses`` maps status codes to short
    descriptions for the OpenAPI document.
    """

    enable_key: str
    method: str
    rule: str
    view: View
    summary: str
    tag: str
    query_schema: type[Schema] | Schema | None = None
    body_schema: type[Schema] | Schema | None = None
    body_example: Any = None
    responses: Mapping[int, str] = field(default_factory=dict)
    description: str = ""
    waits: bool = False
    """The route may hold its worker for an upstream (QRS, Engine, a webhook) or a wait;
    such routes share ``restServerConfig.maxWaiting`` workers, the rest stay for quick ones."""


def schema_instance(schema: type[Schema] | Schema | None) -> Schema | None:
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
