"""Butler's own ids: GUID-shaped, version 7, ordered by creation time."""

from __future__ import annotations

import time
import uuid

from butler.guid import is_guid, new_guid


def test_new_ids_are_lower_case_version_7_guids():
    ids = {new_guid() for _ in range(1000)}
    assert len(ids) == 1000
    for value in ids:
        assert is_guid(value) and value == value.lower()
        parsed = uuid.UUID(value)
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122


def test_ids_carry_their_creation_millisecond_and_sort_by_it():
    before = time.time_ns() // 1_000_000
    first = new_guid()
    deadline = time.monotonic() + 1
    while time.time_ns() // 1_000_000 <= before + 1 and time.monotonic() < deadline:
        pass
    second = new_guid()
    assert before <= uuid.UUID(first).int >> 80 <= time.time_ns() // 1_000_000
    assert first < second
