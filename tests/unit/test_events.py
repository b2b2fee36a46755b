"""Event ids are UUIDv5 over the event and its subject: stable across gateway versions,
since portals dedupe on them."""

from __future__ import annotations

import uuid

import pytest

from gateway.events import _NAMESPACE, event_id


@pytest.mark.parametrize(
    "subject",
    [(), ("app1",), ("app1.hukou", "2"), ("0192f0c1-7e3a-7c4b-9a1d-1f2e3d4c5b6a", "", "出生")],
)
def test_event_id_is_the_uuid5_of_the_event_and_its_subject(subject: tuple[str, ...]) -> None:
    expected = uuid.uuid5(_NAMESPACE, "|".join(("task.dispatched", *subject)))
    assert event_id("task.dispatched", *subject) == str(expected)
    assert uuid.UUID(event_id("task.dispatched", *subject)).version == 5


def test_event_id_is_pinned() -> None:
    # a value computed once: a change here changes every event id portals have seen
    assert event_id("application.accepted", "app1") == "078e904f-44ec-5766-9323-20e2d3f7d25f"
