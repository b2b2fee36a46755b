"""Message ids: UUIDv7 strings, in the form ``str(uuid.UUID)`` gives, sorting by time."""

from __future__ import annotations

import time
import uuid

from gateway.broker.messages import uuid7


def test_uuid7_is_a_version_7_rfc_uuid_in_canonical_form() -> None:
    for _ in range(500):
        text = uuid7()
        parsed = uuid.UUID(text)
        assert str(parsed) == text  # lower-case hex, dashes at 8-4-4-4-12
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122


def test_uuid7_carries_the_unix_milliseconds_and_ids_differ() -> None:
    before = time.time_ns() // 1_000_000
    ids = [uuid7() for _ in range(200)]
    after = time.time_ns() // 1_000_000
    stamps = [uuid.UUID(i).int >> 80 for i in ids]
    assert all(before <= s <= after for s in stamps)
    assert stamps == sorted(stamps)
    assert len(set(ids)) == len(ids)
