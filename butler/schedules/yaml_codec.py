"""A small line-based YAML codec for the schedule file layout Butler itself writes.

Why it exists: existing schedule files must keep loading and keep their comments, so
hand-written files go through ruamel.yaml's round-trip mode. That mode costs about 1.5 ms
per entry, far too slow for thousands of schedules, so files in the plain layout Butler
writes (the js-yaml-like block layout the original wrote) are read and written by this
codec instead. It refuses, with :class:`NotFast`, anything it is not certain about: odd
keys or values, quoting it would have to guess, duplicate keys, any line outside the
layout. The store then takes the ruamel path, so what the codec cannot handle with
certainty costs time, never correctness.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from butler.guid import GUID_PATTERN
from butler.schedules.model import ROOT_KEY, to_plain

_SPECIAL_WORDS = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"})
_INDICATORS = frozenset("-?:,[]{}#&*!|>'\"%@`")
_UNSAFE_CHAR = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\ufeff\ufffe\uffff]")
_INT = re.compile(r"-?(?:0|[1-9][0-9]*)")
_FLOAT = re.compile(r"-?[0-9]+\.[0-9]+(?:e[-+][0-9]+)?")
_CONSTANTS: dict[str, Any] = {"true": True, "false": False, "null": None, "~": None}
_KEY = re.compile(r"([A-Za-z_][A-Za-z0-9_]*):(?: (.*))?")


class NotFast(Exception):
    """The text or value is outside what the fast codec handles with certainty."""


def emit_fast(entries: Iterable[Mapping[str, Any]]) -> str:
    """The js-yaml-like block layout the original wrote; raises NotFast on odd values.

    Most values repeat across entries (zone, cron, state, tags), so each distinct string is
    quoted once per call.
    """
    quoted: dict[str, str] = {}
    keys_ok: set[str] = set()
    out: list[str] = []
    append = out.append
    for entry in entries:
        prefix = "  - "
        for key, value in entry.items():
            if key not in keys_ok:
                if not isinstance(key, str) or not _KEY.fullmatch(key + ":"):
                    raise NotFast
                keys_ok.add(key)
            if type(value) is str:
                text = quoted.get(value)
                if text is None:
                    text = quoted[value] = _emit_str(value)
                append(f"{prefix}{key}: {text}\n")
            elif isinstance(value, list) and value and all(type(v) is str for v in value):
                append(f"{prefix}{key}:\n")
                for item in value:
                    text = quoted.get(item)
                    if text is None:
                        text = quoted[item] = _emit_str(item)
                    append(f"      - {text}\n")
            else:
                append(f"{prefix}{key}: {_emit_scalar(value)}\n")
            prefix = "    "
        if prefix == "  - ":
            raise NotFast
    if not out:
        return f"{ROOT_KEY}: []\n"
    return f"{ROOT_KEY}:\n" + "".join(out)


def parse_fast(text: str) -> list[dict[str, Any]]:
    """Entries of a file in the layout ``emit_fast`` writes; NotFast for anything else.

    Lines repeat across entries, so each distinct line is parsed once per call.
    """
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if lines == [f"{ROOT_KEY}: []"]:
        return []
    if not lines or lines[0] != f"{ROOT_KEY}:" or len(lines) == 1:
        raise NotFast
    seen: dict[str, tuple[int, str, Any, bool]] = {}
    entries: list[dict[str, Any]] = []
    entry: dict[str, Any] = {}
    open_list: list[str] | None = None
    for line in lines[1:]:
        parsed = seen.get(line)
        if parsed is None:
            parsed = _parse_line(line)
            if not parsed[3] or parsed[2] is None:
                seen[line] = parsed
        kind, key, value, container = parsed
        if kind == _ITEM:
            if open_list is None:
                raise NotFast
            open_list.append(value)
            continue
        _close_list(entry, open_list)
        if kind == _FIRST:
            entry = {}
            entries.append(entry)
        elif not entries or key in entry:
            raise NotFast
        if container and value is None:
            open_list = entry[key] = []
        else:
            entry[key] = value
            open_list = None
    _close_list(entry, open_list)
    return entries


# --- emitting ----------------------------------------------------------------------------


def _plain_ok(text: str) -> bool:
    """Whether ``text`` can be written unquoted and reads back as this same string."""
    if not text or text != text.strip() or text[0] in _INDICATORS or _UNSAFE_CHAR.search(text):
        return False
    if ": " in text or " #" in text or text.endswith(":"):
        return False
    if text[0].isalpha():
        return text.lower() not in _SPECIAL_WORDS
    if GUID_PATTERN.fullmatch(text):
        return True
    # Numbers and timestamps never contain these, so digit-led cron expressions stay text.
    return text[0].isdigit() and ("*" in text or "/" in text)


def _emit_str(text: str) -> str:
    if _plain_ok(text):
        return text
    if not _UNSAFE_CHAR.search(text):
        return "'" + text.replace("'", "''") + "'"
    escaped = json.dumps(text, ensure_ascii=False)
    return _UNSAFE_CHAR.sub(lambda m: f"\\u{ord(m.group()):04x}", escaped)


def _emit_float(value: float) -> str:
    if value != value:
        return ".nan"
    if value in (float("inf"), float("-inf")):
        return ".inf" if value > 0 else "-.inf"
    text = repr(value)
    if "e" in text and "." not in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}.0e{exponent}"
    return text


def _emit_scalar(value: Any) -> str:
    if isinstance(value, str):
        return _emit_str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        return _emit_float(value)
    if value is None:
        return "null"
    if isinstance(value, list | dict):
        try:
            text = json.dumps(to_plain(value), ensure_ascii=False, allow_nan=False)
        except ValueError:
            raise NotFast from None
        return _UNSAFE_CHAR.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    raise NotFast


# --- parsing -----------------------------------------------------------------------------

_ITEM, _FIRST, _FIELD = 0, 1, 2


def _parse_line(line: str) -> tuple[int, str, Any, bool]:
    """(kind, key, value, is_container) of one line of the fast layout."""
    if line.startswith("      - "):
        item = _parse_scalar(line[8:])
        if not isinstance(item, str):
            raise NotFast
        return _ITEM, "", item, False
    if line.startswith("  - "):
        kind = _FIRST
    elif line.startswith("    "):
        kind = _FIELD
    else:
        raise NotFast
    match = _KEY.fullmatch(line[4:])
    if match is None:
        raise NotFast
    raw = match.group(2)
    if raw is None:
        return kind, match.group(1), None, True
    value = _parse_scalar(raw)
    return kind, match.group(1), value, isinstance(value, list | dict)


def _parse_scalar(raw: str) -> Any:
    if raw != raw.strip() or not raw:
        raise NotFast
    if raw[0] == "'":
        inner = raw[1:-1]
        if len(raw) < 2 or raw[-1] != "'" or "'" in inner.replace("''", ""):
            raise NotFast
        if _UNSAFE_CHAR.search(inner):
            raise NotFast
        return inner.replace("''", "'")
    if raw[0] in '"[{':
        if any(ch in raw for ch in "\x85\u2028\u2029"):
            raise NotFast
        try:
            value = json.loads(
                raw,
                object_pairs_hook=_no_duplicates,
                parse_float=_strict_float,
                parse_constant=_refuse,
            )
        except (ValueError, NotFast):
            raise NotFast from None
        if raw[0] == '"' and not isinstance(value, str):
            raise NotFast
        return value
    if _plain_ok(raw):
        return raw
    if _INT.fullmatch(raw):
        return int(raw)
    if _FLOAT.fullmatch(raw):
        return float(raw)
    if raw in _CONSTANTS:
        return _CONSTANTS[raw]
    raise NotFast


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise NotFast
    return result


def _strict_float(text: str) -> float:
    if not re.fullmatch(r"-?[0-9]+\.[0-9]+(?:[eE][-+]?[0-9]+)?", text):
        raise NotFast
    return float(text)


def _refuse(_text: str) -> Any:
    raise NotFast


def _close_list(entry: dict[str, Any], items: list[str] | None) -> None:
    """``key:`` with no items below it is null in YAML, not an empty list."""
    if items is not None and not items:
        for key, value in entry.items():
            if value is items:
                entry[key] = None
