"""Event ids are UUIDv5 over the event and its subject: stable across gateway versions,
since portals dedupe on them."""

from __future__ import annotations

import json
import uuid

import pytest

from gateway.events import _NAMESPACE, event_id, event_message


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


def test_an_event_body_is_the_json_of_its_fields_unescaped() -> None:
    message = event_message(
        "task.completed",
        portal_id="p1",
        matter="newborn",
        subject=("app1.hukou",),
        application_id="app1",
        data={"step": "hukou", "certificate": "户口-1", "due_at": 1.5, "gaps": []},
        occurred_at=1_764_000_000.25,
    )
    body = message.body.decode()
    assert "户口-1" in body  # not \\u-escaped
    assert json.loads(body) == {
        "event_id": event_id("task.completed", "app1.hukou"),
        "event": "task.completed",
        "portal_id": "p1",
        "matter": "newborn",
        "application_id": "app1",
        "occurred_at": "2025-11-24T16:00:00.250000+00:00",
        "data": {"step": "hukou", "certificate": "户口-1", "due_at": 1.5, "gaps": []},
    }
