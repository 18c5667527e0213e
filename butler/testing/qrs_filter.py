"""Parser and evaluator for the Qlik Sense Repository Service ``filter`` query language.

The simulator must answer the same filters the real QRS answers, or tests would pass against
a simulator that accepts what Qlik Sense rejects (and the other way round). Grammar::

    expr       := or_expr
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := unary ("and" unary)*
    unary      := "not" unary | "(" expr ")" | comparison
    comparison := path OPERATOR value
    path       := name ("." name)*
    value      := 'quoted string' | GUID | number | true | false | null

Operators: ``eq ne gt ge lt le sw ew so`` (``so`` = "substring of": the property contains
the value). Keywords and operators are case-insensitive, so are string comparisons (QRS
compares with the database's case-insensitive collation). Inside a quoted string ``''`` is
one quote. A path that crosses a list matches when *any* element matches, as QRS's
``tags.name eq 'x'`` does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["FilterError", "FilterExpr", "filter_items", "parse_filter"]

_OPERATORS = ("eq", "ne", "gt", "ge", "lt", "le", "sw", "ew", "so")
_PATH_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_GUID_RE = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
_NUMBER_RE = re.compile(r"-?\d+(\.\d+)?")
_MISSING = object()


class FilterError(ValueError):
    """The filter text is not valid QRS filter syntax, or names an unknown property."""


@dataclass(frozen=True)
class _Token:
    kind: str  # "(", ")", "string" or "word"
    text: str
    pos: int


class FilterExpr:
    """A parsed filter; ``matches`` tells whether one repository object satisfies it."""

    def __init__(self, predicate: Callable[[Mapping[str, Any]], bool], source: str):
        self._predicate = predicate
        self.source = source

    def matches(self, item: Mapping[str, Any]) -> bool:
        return self._predicate(item)

    def __repr__(self) -> str:
        return f"FilterExpr({self.source!r})"


def parse_filter(text: str) -> FilterExpr:
    """Parse ``text`` once so it can be applied to many objects; raises ``FilterError``."""
    tokens = _tokenize(text)
    if not tokens:
        raise FilterError("filter is empty")
    parser = _Parser(tokens, text)
    predicate = parser.parse_or()
    if parser.pos < len(tokens):
        token = tokens[parser.pos]
        raise FilterError(f"unexpected {token.text!r} at position {token.pos}")
    return FilterExpr(predicate, text)


def filter_items(items: Iterable[Mapping[str, Any]], text: str | None) -> list[Any]:
    """The items matching ``text`` (all items when there is no filter), in input order."""
    if text is None or not text.strip():
        return list(items)
    expr = parse_filter(text)
    return [item for item in items if expr.matches(item)]


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        char = text[pos]
        if char.isspace():
            pos += 1
        elif char in "()":
            tokens.append(_Token(char, char, pos))
            pos += 1
        elif char == "'":
            value, pos = _read_string(text, pos)
            tokens.append(value)
        else:
            start = pos
            while pos < len(text) and not text[pos].isspace() and text[pos] not in "()'":
                pos += 1
            tokens.append(_Token("word", text[start:pos], start))
    return tokens


def _read_string(text: str, start: int) -> tuple[_Token, int]:
    chars: list[str] = []
    pos = start + 1
    while pos < len(text):
        if text[pos] == "'":
            if text.startswith("''", pos):
                chars.append("'")
                pos += 2
                continue
            return _Token("string", "".join(chars), start), pos + 1
        chars.append(text[pos])
        pos += 1
    raise FilterError(f"unterminated string starting at position {start}")


class _Parser:
    def __init__(self, tokens: list[_Token], source: str):
        self.tokens = tokens
        self.source = source
        self.pos = 0

    def _peek(self) -> _Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _next(self, expected: str) -> _Token:
        token = self._peek()
        if token is None:
            raise FilterError(f"filter ends where {expected} was expected")
        self.pos += 1
        return token

    def _at_keyword(self, keyword: str) -> bool:
        token = self._peek()
        return token is not None and token.kind == "word" and token.text.lower() == keyword

    def parse_or(self) -> Callable[[Mapping[str, Any]], bool]:
        terms = [self.parse_and()]
        while self._at_keyword("or"):
            self.pos += 1
            terms.append(self.parse_and())
        if len(terms) == 1:
            return terms[0]
        return _one_of(terms) or (lambda item: any(term(item) for term in terms))

    def parse_and(self) -> Callable[[Mapping[str, Any]], bool]:
        terms = [self.parse_unary()]
        while self._at_keyword("and"):
            self.pos += 1
            terms.append(self.parse_unary())
        if len(terms) == 1:
            return terms[0]
        return lambda item: all(term(item) for term in terms)

    def parse_unary(self) -> Callable[[Mapping[str, Any]], bool]:
        if self._at_keyword("not"):
            self.pos += 1
            inner = self.parse_unary()
            return lambda item: not inner(item)
        token = self._peek()
        if token is not None and token.kind == "(":
            self.pos += 1
            inner = self.parse_or()
            closing = self._next("')'")
            if closing.kind != ")":
                raise FilterError(f"expected ')' at position {closing.pos}, found {closing.text!r}")
            return inner
        return self.parse_comparison()

    def parse_comparison(self) -> _Comparison:
        path_token = self._next("a property name")
        if path_token.kind != "word" or not _PATH_RE.fullmatch(path_token.text):
            raise FilterError(
                f"expected a property name at position {path_token.pos}, found {path_token.text!r}"
            )
        if path_token.text.lower() in ("and", "or", "not"):
            raise FilterError(f"expected a property name at position {path_token.pos}")
        op_token = self._next("an operator")
        operator = op_token.text.lower()
        if op_token.kind != "word" or operator not in _OPERATORS:
            raise FilterError(
                f"unknown operator {op_token.text!r} at position {op_token.pos} "
                f"(expected one of {', '.join(_OPERATORS)})"
            )
        value = _literal(self._next("a value"))
        return _Comparison(path_token.text.split("."), operator, value)


def _literal(token: _Token) -> Any:
    if token.kind == "string":
        return token.text
    if token.kind != "word":
        raise FilterError(f"expected a value at position {token.pos}, found {token.text!r}")
    text = token.text
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "null":
        return None
    if _GUID_RE.fullmatch(text):
        return text
    if _NUMBER_RE.fullmatch(text):
        return float(text) if "." in text else int(text)
    raise FilterError(
        f"unquoted value {text!r} at position {token.pos}: strings must be in single quotes"
    )


class _Comparison:
    """``path operator value`` with the value normalised once, not once per object."""

    def __init__(self, path: list[str], operator: str, value: Any):
        self.path = path
        self.operator = operator
        self.value = value
        self.text = None if value is None else _as_text(value)
        self._test = _TESTS[operator]

    def __call__(self, item: Mapping[str, Any]) -> bool:
        test = self._test
        return any(test(found, self) for found in _resolve(item, self.path))


class _OneOf:
    """``p eq 'a' or p eq 'b' or ...`` as one set lookup: id batches of hundreds stay cheap."""

    def __init__(self, path: list[str], texts: set[str]):
        self.path = path
        self.texts = texts

    def __call__(self, item: Mapping[str, Any]) -> bool:
        texts = self.texts
        return any(
            found is not None and _as_text(found) in texts for found in _resolve(item, self.path)
        )


def _one_of(terms: list[Callable[[Mapping[str, Any]], bool]]) -> _OneOf | None:
    """A set lookup equivalent to ``terms`` when all are ``eq`` on one path with text values."""
    first = terms[0]
    if not isinstance(first, _Comparison):
        return None
    path = [name.lower() for name in first.path]
    texts: set[str] = set()
    for term in terms:
        if not (
            isinstance(term, _Comparison)
            and term.operator == "eq"
            and isinstance(term.value, str)
            and term.text is not None
            and [name.lower() for name in term.path] == path
        ):
            return None
        texts.add(term.text)
    return _OneOf(first.path, texts)


def _resolve(item: Any, path: list[str]) -> list[Any]:
    """Every value at ``path``, flattening lists on the way (the "any element" semantics)."""
    if len(path) == 1 and isinstance(item, dict) and path[0] in item:
        value = item[path[0]]
        return value if isinstance(value, list) else [value]
    current = [item]
    for name in path:
        following: list[Any] = []
        for node in current:
            if node is None:
                following.append(None)
                continue
            if not isinstance(node, Mapping):
                raise FilterError(f"property {name!r} does not exist")
            value = _lookup(node, name)
            if value is _MISSING:
                raise FilterError(f"unknown property {'.'.join(path)!r}")
            if isinstance(value, list):
                following.extend(value)
            else:
                following.append(value)
        current = following
    return current


def _lookup(node: Mapping[str, Any], name: str) -> Any:
    if name in node:
        return node[name]
    lowered = name.lower()
    for key, value in node.items():
        if key.lower() == lowered:
            return value
    return _MISSING


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).casefold()


def _equal(found: Any, wanted: _Comparison) -> bool:
    if found is None or wanted.value is None:
        return found is wanted.value
    if _is_number(found) and _is_number(wanted.value):
        return bool(found == wanted.value)
    return _as_text(found) == wanted.text


def _ordered(test: Callable[[Any, Any], bool]) -> Callable[[Any, _Comparison], bool]:
    def compare(found: Any, wanted: _Comparison) -> bool:
        if found is None or wanted.value is None:
            return False
        if _is_number(found) and _is_number(wanted.value):
            return test(found, wanted.value)
        return test(_as_text(found), wanted.text)

    return compare


def _textual(test: Callable[[str, str], bool]) -> Callable[[Any, _Comparison], bool]:
    def compare(found: Any, wanted: _Comparison) -> bool:
        if found is None or wanted.text is None:
            return False
        return test(_as_text(found), wanted.text)

    return compare


_TESTS: dict[str, Callable[[Any, _Comparison], bool]] = {
    "eq": _equal,
    "ne": lambda found, wanted: not _equal(found, wanted),
    "gt": _ordered(lambda a, b: a > b),
    "ge": _ordered(lambda a, b: a >= b),
    "lt": _ordered(lambda a, b: a < b),
    "le": _ordered(lambda a, b: a <= b),
    "sw": _textual(str.startswith),
    "ew": _textual(str.endswith),
    "so": _textual(lambda found, wanted: wanted in found),
}
