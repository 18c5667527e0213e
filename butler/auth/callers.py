"""Who is calling, and what that caller may do.

A :class:`Caller` is settled once per request, before the view runs: the key's name, the
certificate's caller, or (with auth off) the client address with every right. Endpoint
scopes name ``restServerEndpointsEnable`` keys (wildcards allowed: ``scheduler.*``), plus
``read`` for every GET except the audit trail and ``*`` for everything. Resource scopes
narrow what an allowed endpoint may touch; ``None`` means no narrowing, so an auth-off
caller and a key without resource scopes behave exactly as before.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Literal

from butler.errors import Forbidden

CallerKind = Literal["address", "apiKey", "certificate"]

READ_SCOPE = "read"
ALL_SCOPE = "*"
AUDIT_KEY = "audit"
"""The audit trail's enable key: the one GET ``read`` does not open."""


@dataclass(frozen=True)
class TaskScope:
    """A caller's ``tasks`` allow-lists, the shape of ``startTaskFilter.allowTask``.

    As with the filter, a request by id is checked against the ids, one by tag against the
    tags and one by custom property against the pairs, so a key that may start tasks tagged
    ``finance`` starts nothing by id (an id is not known to carry the tag until QRS says so,
    and then the start would already be underway).
    """

    task_ids: frozenset[str] = frozenset()
    tags: frozenset[str] = frozenset()
    custom_properties: frozenset[tuple[str, str]] = frozenset()

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> TaskScope:
        return cls(
            task_ids=frozenset(str(t).strip().lower() for t in section.get("taskId") or []),
            tags=frozenset(str(t) for t in section.get("tag") or []),
            custom_properties=frozenset(
                (str(cp["name"]), str(cp["value"])) for cp in section.get("customProperty") or []
            ),
        )

    def allows_id(self, task_id: object) -> bool:
        """Whether a task id (any case, blanks around it) is one the scope lists."""
        return str(task_id).strip().lower() in self.task_ids


@dataclass(frozen=True)
class Caller:
    """One request's caller: a name for logs and the audit trail, and its rights."""

    name: str
    kind: CallerKind
    scopes: frozenset[str] = frozenset({ALL_SCOPE})
    tasks: TaskScope | None = None
    kv_namespaces: tuple[str, ...] | None = None
    """Globs (``finance_*``) of the namespaces the caller may read and write."""
    file_directories: tuple[str, ...] | None = None
    """Folders (inside the approved ones) the caller's file operations must stay in."""
    schedules: frozenset[str] | None = None
    """Schedule ids or tags the caller may see and change."""
    _allowed: dict[tuple[str, str], bool] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @classmethod
    def unrestricted(cls, address: str) -> Caller:
        """The caller when auth is off: named by its address, allowed everything."""
        return cls(name=address, kind="address")

    def allows_endpoint(self, enable_key: str, method: str) -> bool:
        """Whether an endpoint scope covers this route (cached: a key's routes are few)."""
        known = self._allowed.get((enable_key, method))
        if known is None:
            known = _covers(self.scopes, enable_key, method)
            self._allowed[(enable_key, method)] = known
        return known

    def require_endpoint(self, enable_key: str, method: str) -> None:
        if not self.allows_endpoint(enable_key, method):
            raise Forbidden(
                f"Caller '{self.name}' lacks the scope '{enable_key}' for this route",
                code="MISSING_SCOPE",
            )

    def allows_namespace(self, namespace: str) -> bool:
        return self.kv_namespaces is None or any(
            fnmatchcase(namespace, pattern) for pattern in self.kv_namespaces
        )

    def require_namespace(self, namespace: str) -> None:
        if not self.allows_namespace(namespace):
            raise Forbidden(
                f"Caller '{self.name}' may not use key-value namespace '{namespace}' "
                "(kvNamespaces scope)",
                code="MISSING_SCOPE",
            )

    def allows_schedule(self, schedule_id: str, tags: Iterable[str]) -> bool:
        if self.schedules is None:
            return True
        return schedule_id in self.schedules or not self.schedules.isdisjoint(tags)

    def require_schedule(self, schedule_id: str, tags: Iterable[str]) -> None:
        if not self.allows_schedule(schedule_id, tags):
            raise Forbidden(
                f"Caller '{self.name}' may not use schedule '{schedule_id}' (schedules scope)",
                code="MISSING_SCOPE",
            )


def _covers(scopes: Collection[str], enable_key: str, method: str) -> bool:
    if ALL_SCOPE in scopes:
        return True
    if method == "GET" and READ_SCOPE in scopes and enable_key != AUDIT_KEY:
        return True
    return any(fnmatchcase(enable_key, pattern) for pattern in scopes)


def unknown_scopes(scopes: Iterable[str], enable_keys: Collection[str]) -> list[str]:
    """Scopes that can never match a declared enable key: most likely typos."""
    return [
        scope
        for scope in scopes
        if scope not in (ALL_SCOPE, READ_SCOPE)
        and not any(fnmatchcase(key, scope) for key in enable_keys)
    ]
