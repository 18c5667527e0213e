"""QRS filter expressions: syntax, precedence, quoting, list paths and error reporting."""

from __future__ import annotations

from typing import Any

import pytest

from butler.testing.qrs_filter import FilterError, filter_items, parse_filter

APP1 = "e3b27f50-b1c0-4879-88fc-c7cdd9c1cf3e"
APP2 = "7552d9fc-d1bb-4975-9a38-18357de531ea"


def task(task_id: str, name: str, tags: list[str], cps: dict[str, str], **extra: Any) -> dict:
    return {
        "id": task_id,
        "name": name,
        "taskType": extra.get("taskType", 0),
        "enabled": extra.get("enabled", True),
        "app": extra.get("app", {"id": task_id, "name": name}),
        "tags": [{"id": f"tag-{t}", "name": t} for t in tags],
        "customProperties": [
            {"definition": {"name": key}, "value": value} for key, value in cps.items()
        ],
    }


TASKS = [
    task(APP1, "Reload task of App1", ["startTask1", "Butler 5.0 demo"], {"taskGroup": "tasks1"}),
    task(APP2, "Reload task of App2", ["Q&A #1: 100% it's done"], {"taskGroup": "tasks2"}),
    task(
        "fb0f317d-da91-4b86-aafa-0174ae1e8c8f",
        "It's a task",
        [],
        {},
        taskType=1,
        enabled=False,
        app=None,
    ),
]


def names(filter_text: str | None) -> list[str]:
    return [item["name"] for item in filter_items(TASKS, filter_text)]


def test_no_filter_returns_everything_in_order() -> None:
    assert names(None) == [t["name"] for t in TASKS]
    assert names("   ") == [t["name"] for t in TASKS]


def test_string_equality_is_case_insensitive() -> None:
    assert names("name eq 'reload task of APP1'") == ["Reload task of App1"]


def test_doubled_quote_is_one_quote() -> None:
    assert names("name eq 'It''s a task'") == ["It's a task"]
    assert parse_filter("name eq ''''").matches({"name": "'"})


def test_unquoted_guid_matches_any_case() -> None:
    assert names(f"id eq {APP1.upper()}") == ["Reload task of App1"]


def test_or_of_ids() -> None:
    assert names(f"id eq {APP1} or id eq {APP2}") == ["Reload task of App1", "Reload task of App2"]


def test_list_path_matches_when_any_element_matches() -> None:
    assert names("tags.name eq 'Butler 5.0 demo'") == ["Reload task of App1"]
    assert names("tags.name eq 'startTask1'") == ["Reload task of App1"]
    assert names("tags.name eq 'nope'") == []


def test_tag_with_special_characters() -> None:
    assert names("tags.name eq 'Q&A #1: 100% it''s done'") == ["Reload task of App2"]


def test_custom_property_paths() -> None:
    text = (
        "(customProperties.definition.name eq 'taskGroup') and (customProperties.value eq 'tasks2')"
    )
    assert names(text) == ["Reload task of App2"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a eq 1 or b eq 1 and c eq 1", True),  # a or (b and c)
        ("(a eq 1 or b eq 1) and c eq 1", False),
        ("not c eq 1 and c eq 1", False),  # (not c) and c, not "not (c and c)"
        ("not (c eq 1 and c eq 1)", True),
        ("not (a eq 1 and b eq 1)", False),
        ("not not a eq 1", True),
        ("a eq 0 or b eq 0 or c eq 0", True),
        ("a eq 1 and b eq 1 and c eq 0", True),
        ("a eq 1 and b eq 1 and c eq 1", False),
    ],
)
def test_precedence_not_then_and_then_or(text: str, expected: bool) -> None:
    assert parse_filter(text).matches({"a": 1, "b": 1, "c": 0}) is expected


def test_keywords_and_property_names_are_case_insensitive() -> None:
    assert names(f"ID EQ {APP1} OR Name Eq 'it''s a task'") == [
        "Reload task of App1",
        "It's a task",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name sw 'reload'", ["Reload task of App1", "Reload task of App2"]),
        ("name ew 'APP2'", ["Reload task of App2"]),
        ("name so 'task of'", ["Reload task of App1", "Reload task of App2"]),
        ("tags.name so '100%'", ["Reload task of App2"]),
        ("taskType eq 1", ["It's a task"]),
        ("enabled eq false", ["It's a task"]),
        ("enabled ne true", ["It's a task"]),
        ("app eq null", ["It's a task"]),
        ("app.name eq 'App1'", []),
        ("app.name eq 'Reload task of App1'", ["Reload task of App1"]),
        ("taskType gt 0", ["It's a task"]),
        ("taskType le 0", ["Reload task of App1", "Reload task of App2"]),
        ("name lt 'Reload'", ["It's a task"]),
        ("name ge 'Reload task of App2'", ["Reload task of App2"]),
    ],
)
def test_operators(text: str, expected: list[str]) -> None:
    assert names(text) == expected


def test_ne_on_a_list_means_some_element_differs() -> None:
    # QRS translates list paths to "any": a task whose only tag is 'x' does not match.
    assert parse_filter("tags.name ne 'x'").matches({"tags": [{"name": "x"}, {"name": "y"}]})
    assert not parse_filter("tags.name ne 'x'").matches({"tags": [{"name": "x"}]})
    assert not parse_filter("tags.name ne 'x'").matches({"tags": []})


def test_decimal_numbers() -> None:
    assert parse_filter("duration gt 1.5").matches({"duration": 2})
    assert not parse_filter("duration gt -1.5").matches({"duration": -2})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("name eq 'open", "unterminated string"),
        ("name like 'x'", "unknown operator 'like'"),
        ("name eq", "value was expected"),
        ("name eq foo", "strings must be in single quotes"),
        ("name eq 'x' 'y'", "unexpected 'y'"),
        ("(name eq 'x'", "')' was expected"),
        ("name eq 'x')", "unexpected ')'"),
        ("'x' eq name", "expected a property name"),
        ("and eq 'x'", "expected a property name"),
        ("name eq (", "expected a value"),
        ("(name eq 'x' name", "expected ')'"),
        ("name eq 'x' and", "property name was expected"),
    ],
)
def test_syntax_errors_are_reported(text: str, message: str) -> None:
    with pytest.raises(FilterError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_filter(text)


def test_unknown_property_is_an_error_when_evaluated() -> None:
    with pytest.raises(FilterError, match="unknown property 'nmae'"):
        filter_items(TASKS, "nmae eq 'x'")
    with pytest.raises(FilterError, match="does not exist"):
        filter_items(TASKS, "name.first eq 'x'")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"id eq {APP1} or ID eq {APP2.upper()}", ["Reload task of App1", "Reload task of App2"]),
        ("taskType eq 1 or taskType eq 0", [t["name"] for t in TASKS]),
        ("app eq null or name eq 'Reload task of App2'", ["Reload task of App2", "It's a task"]),
        (f"id eq {APP1} or name eq 'It''s a task'", ["Reload task of App1", "It's a task"]),
        ("tags.name eq 'startTask1' or tags.name eq 'nope'", ["Reload task of App1"]),
    ],
)
def test_long_or_chains_match_like_single_comparisons(text: str, expected: list[str]) -> None:
    assert names(text) == expected


def test_a_thousand_id_or_chain() -> None:
    items = [{"id": f"{n:08x}-0000-4000-8000-000000000000"} for n in range(1000)]
    wanted = items[::7]
    text = " or ".join(f"id eq {item['id']}" for item in wanted)
    assert filter_items(items, text) == wanted
