"""new_id(): UUIDv7 strings that sort in creation order and carry their creation time."""

from __future__ import annotations

import time
import uuid

from wework.persistence.ids import is_valid_id, new_id


def test_ids_are_canonical_version_7_uuids():
    value = new_id()
    parsed = uuid.UUID(value)
    assert is_valid_id(value) and str(parsed) == value
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122


def test_many_ids_in_the_same_milliseconds_are_distinct_and_sort_in_creation_order():
    before = time.time()
    ids = [new_id() for _ in range(20_000)]
    after = time.time()
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    # The timestamp stays the creation time under load: a generator that moved it one
    # millisecond ahead per id within a millisecond would be seconds in the future here.
    stamps = [int(value.replace("-", "")[:12], 16) / 1000 for value in (ids[0], ids[-1])]
    assert before - 0.002 <= stamps[0] <= stamps[1] <= after + 0.002
