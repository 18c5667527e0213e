"""The schedule file: original format, comments kept, refusal of bad files, atomic writes."""

from __future__ import annotations

import io
import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from butler.config import ConfigError
from butler.errors import Conflict
from butler.schedules import ScheduleFileError, ScheduleStore
from butler.schedules.yaml_codec import emit_fast, parse_fast
from tests.scheduler.conftest import TASK_A, TEMPLATE, entry, write_schedules


def read_yaml(text: str) -> Any:
    return YAML(typ="safe", pure=True).load(io.StringIO(text))


@pytest.fixture
def template(tmp_path: Path) -> Path:
    path = tmp_path / "schedule.yaml"
    shutil.copyfile(TEMPLATE, path)
    return path


def new_entry(schedule_id: str = "new-1") -> dict[str, Any]:
    return {**entry(schedule_id, "0 6 * * *"), "lastKnownState": "started"}


def test_the_original_template_loads_with_free_text_ids(template: Path) -> None:
    store = ScheduleStore(template)
    assert store.ids() == ["task-1", "task-2", "Manually-added-schedule-1"]
    manual = store.get("Manually-added-schedule-1")
    assert manual is not None
    assert manual["name"].startswith("Every 5th minute from 0 through 30 past every hour")
    assert manual["name"].endswith("on every day-of-week from Monday through Friday")
    assert store.get("task-1") == {
        "id": "task-1",
        "name": "Every 30 sec",
        "cronSchedule": "*/30 * * * * *",
        "timezone": "Europe/Stockholm",
        "qlikSenseTaskId": TASK_A,
        "startupState": "started",
        "tags": ["Sales", "abc 123 åäö", "Transform"],
        "lastKnownState": "started",
    }


def test_writes_keep_comments_styles_and_key_order_of_hand_written_entries(
    template: Path,
) -> None:
    before = template.read_text(encoding="utf-8")
    store = ScheduleStore(template)
    store.add(new_entry())
    after = template.read_text(encoding="utf-8")
    # Every original line is still there, in order, and the new entry follows them.
    assert after.startswith(before)
    assert "# A six-field expression: the leftmost field is seconds." in after
    assert "    name: >-\n" in after
    assert read_yaml(after)["butlerSchedule"][-1]["id"] == "new-1"


def test_last_known_state_is_recomputed_from_startup_state_at_load(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    write_schedules(
        path,
        [
            {**entry("a", "* * * * *", state="stop"), "lastKnownState": "started"},
            {**entry("b", "* * * * *", state="start"), "lastKnownState": "stopped"},
        ],
    )
    store = ScheduleStore(path)
    assert [e["lastKnownState"] for e in store.entries()] == ["stopped", "started"]


def test_numeric_ids_are_addressable_as_text_and_stay_numbers_in_the_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "butlerSchedule:\n"
        "  - id: 7\n"
        "    name: Numbered\n"
        "    cronSchedule: 0 7 * * *\n"
        "    timezone: UTC\n"
        f"    qlikSenseTaskId: {TASK_A}\n"
        "    startupState: started\n",
        encoding="utf-8",
    )
    store = ScheduleStore(path)
    assert store.ids() == ["7"]
    found = store.get("7")
    assert found is not None and found["id"] == "7"
    store.set_known_state(["7"], "stopped")
    assert read_yaml(path.read_text(encoding="utf-8"))["butlerSchedule"][0]["id"] == 7


def test_a_missing_file_means_no_schedules_and_is_created_on_first_write(
    tmp_path: Path,
) -> None:
    path = tmp_path / "not" / "yet" / "schedule.yaml"
    store = ScheduleStore(path)
    assert store.entries() == []
    assert not path.exists()
    store.add(new_entry())
    assert [e["id"] for e in read_yaml(path.read_text(encoding="utf-8"))["butlerSchedule"]] == [
        "new-1"
    ]


def test_writes_use_the_original_layout(tmp_path: Path) -> None:
    path = tmp_path / "schedule.yaml"
    store = ScheduleStore(path)
    store.add(
        {
            **entry("fb9b16f1-e2cf-4291-8036-24ef90efa300", "*/5 * * * * *"),
            "tags": ["tag 1", "abc 123 åäö"],
            "created": "2020-10-16T15:23:36.957Z",
            "lastKnownState": "started",
        }
    )
    assert path.read_text(encoding="utf-8") == (
        "butlerSchedule:\n"
        "  - id: fb9b16f1-e2cf-4291-8036-24ef90efa300\n"
        "    name: Schedule fb9b16f1-e2cf-4291-8036-24ef90efa300\n"
        "    cronSchedule: '*/5 * * * * *'\n"
        "    timezone: Europe/Stockholm\n"
        f"    qlikSenseTaskId: {TASK_A}\n"
        "    startupState: started\n"
        "    tags:\n"
        "      - tag 1\n"
        "      - abc 123 åäö\n"
        "    created: '2020-10-16T15:23:36.957Z'\n"
        "    lastKnownState: started\n"
    )


def test_extra_fields_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "schedule.yaml"
    store = ScheduleStore(path)
    extra = {"owner": "Sales ops", "meta": {"ticket": 42, "ratio": 0.5, "list": [1, "x"]}}
    store.add({**new_entry(), **extra})
    reloaded = ScheduleStore(path).get("new-1")
    assert reloaded is not None
    assert reloaded["owner"] == "Sales ops" and reloaded["meta"] == extra["meta"]


def test_a_file_without_dst_is_written_back_byte_for_byte(template: Path) -> None:
    original = template.read_bytes()
    store = ScheduleStore(template)
    first = store.ids()[0]
    store.update(first, {"name": store.get(first)["name"]})  # type: ignore[index]
    assert template.read_bytes() == original
    assert all("dst" not in item for item in store.entries())


def test_dst_is_kept_where_given_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "schedule.yaml"
    store = ScheduleStore(path)
    store.add({**new_entry(), "dst": "both"})
    assert "    dst: both\n" in path.read_text(encoding="utf-8")
    reloaded = ScheduleStore(path).get("new-1")
    assert reloaded is not None and reloaded["dst"] == "both"


def test_overlap_is_written_only_where_set(tmp_path: Path) -> None:
    path = tmp_path / "schedule.yaml"
    store = ScheduleStore(path)
    store.add({**new_entry(), "overlap": "forbid"})
    store.add(new_entry("new-2"))
    text = path.read_text(encoding="utf-8")
    assert text.count("overlap") == 1 and "    overlap: forbid\n" in text
    reloaded = ScheduleStore(path)
    assert reloaded.get("new-1")["overlap"] == "forbid"  # type: ignore[index]
    assert "overlap" not in reloaded.get("new-2")  # type: ignore[operator]


BAD_FILES = [
    ("butlerSchedule: [\n", "not valid YAML"),
    ("- just a list\n", "top level must be a mapping"),
    ("butlerSchedule: 5\n", "butlerSchedule must be a list"),
    ("butlerSchedule:\n  - 5\n", "entry 1: must be a mapping"),
]


@pytest.mark.parametrize("text,message", BAD_FILES)
def test_unparsable_files_stop_start_up_and_stay_untouched(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "schedule.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ScheduleFileError) as info:
        ScheduleStore(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)
    assert path.read_text(encoding="utf-8") == text


BAD_ENTRIES = [
    ({"cronSchedule": None}, "field 'cronSchedule' is required"),
    ({"cronSchedule": "61 * * * *"}, "field 'cronSchedule' is not a valid cron"),
    ({"timezone": "Mars/Olympus"}, "field 'timezone' is not a known IANA time zone"),
    ({"qlikSenseTaskId": "not-a-guid"}, "field 'qlikSenseTaskId' must be a GUID"),
    ({"startupState": "running"}, "field 'startupState' must be equal to one of"),
    ({"tags": {"a": 1}}, "field 'tags' must be array of strings"),
    ({"name": ["x"]}, "field 'name' must be string"),
    ({"dst": "summer"}, "field 'dst' must be equal to one of the allowed values: vixie, skip"),
    ({"dst": None}, "field 'dst' must be equal to one of"),
    ({"overlap": "never"}, "field 'overlap' must be equal to one of the allowed values: allow"),
    ({"overlap": None}, "field 'overlap' must be equal to one of"),
    ({"id": None}, "field 'id' is required"),
    ({"id": "first"}, "field 'id' duplicates an earlier entry"),
]


@pytest.mark.parametrize("change,message", BAD_ENTRIES)
def test_invalid_entries_are_refused_naming_the_entry_and_field(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    path = tmp_path / "schedule.yaml"
    second = {**entry("second", "0 6 * * *"), **change}
    write_schedules(path, [entry("first", "0 5 * * *"), second])
    original = path.read_bytes()
    with pytest.raises(ScheduleFileError) as info:
        ScheduleStore(path)
    text = str(info.value)
    assert "entry 2" in text and message in text
    if change.get("id", "second") is not None:
        assert repr(change.get("id", "second")) in text
    assert isinstance(info.value, ConfigError)
    assert path.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["schedule.yaml"]


@pytest.mark.parametrize("fail_in", ["fsync", "replace"])
def test_a_crash_mid_write_leaves_the_old_file_and_memory_intact(
    template: Path, monkeypatch: pytest.MonkeyPatch, fail_in: str
) -> None:
    store = ScheduleStore(template)
    original = template.read_bytes()

    def crash(*args: Any, **kwargs: Any) -> None:
        raise OSError("simulated crash")

    monkeypatch.setattr(os, fail_in, crash)
    with pytest.raises(OSError, match="simulated crash"):
        store.add(new_entry())
    with pytest.raises(OSError, match="simulated crash"):
        store.set_known_state(["task-1"], "stopped")
    with pytest.raises(OSError, match="simulated crash"):
        store.delete("task-2")
    with pytest.raises(OSError, match="simulated crash"):
        store.update("task-1", {"name": "Renamed", "newField": 1})
    monkeypatch.undo()
    assert template.read_bytes() == original
    assert sorted(p.name for p in template.parent.iterdir()) == ["schedule.yaml"]
    assert store.ids() == ["task-1", "task-2", "Manually-added-schedule-1"]
    task1 = store.get("task-1")
    assert task1 is not None
    assert task1["lastKnownState"] == "started" and task1["name"] == "Every 30 sec"
    assert "newField" not in task1


def test_update_changes_fields_in_place(template: Path) -> None:
    store = ScheduleStore(template)
    store.update("task-2", {"cronSchedule": "0 */3 * * *", "owner": "me"})
    reloaded = ScheduleStore(template)
    assert reloaded.ids() == ["task-1", "task-2", "Manually-added-schedule-1"]
    task2 = reloaded.get("task-2")
    assert task2 is not None
    assert task2["cronSchedule"] == "0 */3 * * *" and task2["owner"] == "me"
    assert list(task2)[:3] == ["id", "name", "cronSchedule"]


def test_delete_removes_the_entry_and_its_run_state(template: Path) -> None:
    store = ScheduleStore(template)
    store.record_results([("task-2", "started")], datetime(2024, 1, 1, tzinfo=UTC))
    store.delete("task-2")
    store.flush_state()
    assert ScheduleStore(template).ids() == ["task-1", "Manually-added-schedule-1"]
    state = json.loads(store.state_path.read_text(encoding="utf-8"))
    assert "task-2" not in state["schedules"]


def test_run_state_lives_in_a_sidecar_and_survives_a_restart(template: Path) -> None:
    store = ScheduleStore(template)
    slot = datetime(2024, 1, 15, 12, 0, 30, tzinfo=UTC)
    store.record_fires(["task-1"], slot.timestamp())
    store.record_results([("task-1", "notFound")], slot)
    store.flush_state()
    assert store.state_path == template.with_name("schedule.state.json")
    reloaded = ScheduleStore(template).run_state("task-1")
    assert reloaded.last_slot == slot.timestamp()
    assert reloaded.last_run == "2024-01-15T12:00:30.000Z"
    assert reloaded.last_result == "notFound"
    assert "lastRun" not in template.read_text(encoding="utf-8")


def test_an_unreadable_sidecar_is_ignored(template: Path) -> None:
    template.with_name("schedule.state.json").write_text("{half", encoding="utf-8")
    store = ScheduleStore(template)
    assert store.run_state("task-1").last_run is None
    assert store.ids() == ["task-1", "task-2", "Manually-added-schedule-1"]


TRICKY = [
    "plain text",
    "",
    " leading",
    "trailing ",
    "yes",
    "No",
    "null",
    "~",
    "123",
    "-5",
    "1.5",
    "1e3",
    "0x1F",
    "2020-10-16",
    "2020-10-16T15:23:36.957Z",
    "a: b",
    "a #b",
    "#x",
    "x:",
    "'quoted'",
    '"double"',
    "it's",
    "line\nbreak",
    "tab\there",
    "next\u2028line",
    "bell\x07",
    "åäö ÅÄÖ",
    "emoji \U0001f600",
    "*/5 * * * * *",
    "0 */2 * * *",
    "- dash",
    "@at",
    "`tick`",
    "{brace}",
    "[bracket]",
    "0FE447A9-BA1F-44A9-AC23-68C3A1D88D8B",
    "=",
    "<<",
    "%percent",
    "!bang",
    "&anchor",
    "? question",
    "|pipe",
    ">fold",
    "back\\slash",
]


@pytest.mark.parametrize("value", TRICKY)
def test_the_fast_layout_reads_back_exactly_and_agrees_with_ruamel(value: str) -> None:
    entries = [{"id": value, "name": value, "tags": [value, "x"], "n": 5, "b": True}]
    text = emit_fast(entries)
    assert read_yaml(text)["butlerSchedule"] == entries
    assert parse_fast(text) == entries


def test_files_in_other_layouts_load_the_same_through_ruamel(tmp_path: Path) -> None:
    path = tmp_path / "schedule.yaml"
    path.write_text(
        "butlerSchedule:\n"
        "- {id: flow, name: Flow style, cronSchedule: 0 5 * * *, timezone: UTC,\n"
        f"   qlikSenseTaskId: {TASK_A}, startupState: stopped, tags: [a, b]}}\n",
        encoding="utf-8",
    )
    store = ScheduleStore(path)
    found = store.get("flow")
    assert found is not None and found["tags"] == ["a", "b"]
    store.set_known_state(["flow"], "started")
    assert parse_fast(path.read_text(encoding="utf-8"))[0]["lastKnownState"] == "started"


def test_edits_made_outside_butler_are_never_overwritten(template: Path) -> None:
    store = ScheduleStore(template)
    store.add(new_entry("first"))
    edited = template.read_text(encoding="utf-8").replace("Every 30 sec", "Every half minute")
    template.write_text(edited + "  # edited by hand\n", encoding="utf-8")
    with pytest.raises(Conflict, match="edited outside Butler"):
        store.add(new_entry("second"))
    assert template.read_text(encoding="utf-8") == edited + "  # edited by hand\n"
    assert ScheduleStore(template).ids()[-1] == "first"


def test_a_file_created_after_start_up_is_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "schedule.yaml"
    store = ScheduleStore(path)
    write_schedules(path, [entry("theirs", "0 5 * * *")])
    with pytest.raises(Conflict):
        store.add(new_entry())
    assert ScheduleStore(path).ids() == ["theirs"]
