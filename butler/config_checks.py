"""Checks that keep a loaded config from meaning something other than what Butler will do.

The schemas check types; these catch what types cannot: a misspelled enable key (which would
leave its route a 404), a placeholder from the original's template left in a setting that an
enabled feature reads, and features the original had that this version lacks. Errors are
returned as text for :mod:`butler.config` to raise, so this module needs nothing from it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from butler.unsupported import RESERVED_ENABLE_KEYS, UNSUPPORTED

ENABLE_SECTION = "restServerEndpointsEnable"

_PLACEHOLDER = re.compile(r"<[^<>]+>")
"""The original's template marks what to fill in as ``<Path to folder ...>``."""


def is_on(value: Any) -> bool:
    """A switch as hand-edited files write it: YAML true or the text ``true``."""
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def unknown_enable_key(key: str, declared: Iterable[str]) -> str | None:
    """The error for an enable key that neither a loaded plugin nor the plan knows.

    The nearest known key is suggested, because the usual cause is a typo
    (``butlerpnig``) or the original's older spelling (``apiListEnbledEndpoints``).
    """
    known = {*declared, *RESERVED_ENABLE_KEYS}
    if key in known:
        return None
    by_lower = {name.lower(): name for name in sorted(known)}
    near = difflib.get_close_matches(key.lower(), list(by_lower), n=1, cutoff=0.6)
    hint = f"; did you mean {by_lower[near[0]]}?" if near else ""
    return f"Butler.{ENABLE_SECTION}.{key}: unknown enable key (no loaded plugin declares it){hint}"


def reserved_key_warnings(enabled: Iterable[str], declared: Collection[str]) -> list[str]:
    """One warning per planned enable key switched on while no loaded plugin declares it."""
    return [
        f"Butler.{ENABLE_SECTION}.{key} is true, but that feature is not available in this "
        "version (no loaded plugin declares it); the key is ignored"
        for key in enabled
        if key in RESERVED_ENABLE_KEYS and key not in declared
    ]


def unsupported_warnings(
    butler: Mapping[str, Any],
    declared: Collection[str],
    enabled: Collection[str],
    claimed: Collection[str],
) -> list[str]:
    """One warning per switched-on feature of the original that this version lacks.

    A feature whose section a loaded plugin claims (``claimed``: the contract's section
    paths) is that plugin's now, so it is not named: a third-party ``heartbeat`` plugin
    silences the warning for ``heartbeat.enable``.
    """
    warnings = []
    for item in UNSUPPORTED:
        section = item.path.rpartition(".")[0]
        if section in claimed or not _switched_on(butler, item.path):
            continue
        text = f"Butler.{item.path} is on, but this version has no {item.feature}"
        if item.instead_key is None:
            text += f"; {item.instead}" if item.instead else ""
        elif item.instead_key in declared:
            text += f"; {item.instead}"
            if item.instead_key not in enabled:
                text += f", which needs Butler.{ENABLE_SECTION}.{item.instead_key}: true"
        warnings.append(text)
    return warnings


def find_placeholder(value: Any, path: str) -> tuple[str, str] | None:
    """The first ``<...>`` template placeholder under ``value``, as (dotted path, text).

    A mapping whose own ``enable`` is off is skipped: its settings are not read, so the
    template's placeholders may stay there (``mqttConfig.azureEventGrid`` in a plain-broker
    set-up).
    """
    if isinstance(value, str):
        return (path, value) if _PLACEHOLDER.fullmatch(value.strip()) else None
    children: Iterable[tuple[Any, Any]]
    if isinstance(value, Mapping):
        if "enable" in value and not is_on(value["enable"]):
            return None
        children = value.items()
    elif isinstance(value, list):
        children = enumerate(value)
    else:
        return None
    for key, child in children:
        found = find_placeholder(child, f"{path}.{key}")
        if found is not None:
            return found
    return None


def _switched_on(butler: Mapping[str, Any], path: str) -> bool:
    """Whether the switch at ``path`` and every enclosing section's ``enable`` are on."""
    node: Any = butler
    *parents, leaf = path.split(".")
    for depth, part in enumerate(parents, start=1):
        node = node.get(part)
        if not isinstance(node, Mapping):
            return False
        own_switch = depth == len(parents) and leaf == "enable"
        if not own_switch and "enable" in node and not is_on(node["enable"]):
            return False
    return is_on(node.get(leaf))
