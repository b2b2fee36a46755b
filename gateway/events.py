"""Events to portals on ``gw.events`` (routing key ``<portal_id>.<matter>.<event>``).

Delivery is at least once, so every event carries a stable ``event_id``: the same event
about the same thing always has the same id, and a consumer dedupes on it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Mapping
from typing import Any

from gateway.broker.messages import Message, new_traceparent
from gateway.broker.topology import HEADER_ATTEMPT, HEADER_TASK_ID, HEADER_TRACEPARENT

_NAMESPACE = uuid.UUID("0f6c6a52-8f5e-4c1e-9c4e-3b7f3b1a9d20")
_NAMESPACE_BYTES = _NAMESPACE.bytes
# Built once (``json.dumps`` with options builds an encoder per call). Keys in the order
# written: a JSON object's key order carries no meaning (contracts/asyncapi).
_ENCODE = json.JSONEncoder(ensure_ascii=False).encode

EVENT_NAMES = (
    "application.accepted",
    "application.correction_requested",
    "application.blocked",
    "application.completed",
    "application.delivered",
    "application.rejected",
    "application.withdrawn",
    "task.dispatched",
    "task.completed",
    "task.due_soon",
    "task.overdue",
    "task.dead_lettered",
)


def event_id(event: str, *subject: str) -> str:
    """Stable id: the same event about the same subject always gets the same id.

    ``str(uuid.uuid5(_NAMESPACE, name))``, written out: a transition writes several events,
    and the ``UUID`` object in between costs more than the hash."""
    name = "|".join((event, *subject)).encode()
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name, usedforsecurity=False).digest())
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest[:16].hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def routing_key(portal_id: str, matter: str, event: str) -> str:
    return f"{portal_id}.{matter}.{event}"


def event_message(
    event: str,
    *,
    portal_id: str,
    matter: str,
    subject: tuple[str, ...],
    application_id: str | None,
    data: Mapping[str, Any],
    occurred_at: float,
    traceparent: str | None = None,
) -> Message:
    if event not in EVENT_NAMES:
        raise ValueError(f"unknown event {event!r}; known: {', '.join(EVENT_NAMES)}")
    eid = event_id(event, *subject)
    body = {
        "event_id": eid,
        "event": event,
        "portal_id": portal_id,
        "matter": matter,
        "application_id": application_id,
        "occurred_at": dt.datetime.fromtimestamp(occurred_at, dt.UTC).isoformat(),
        "data": dict(data),
    }
    return Message(
        body=_ENCODE(body).encode(),
        correlation_id=application_id,
        type=event,
        headers={
            "event_id": eid,
            HEADER_TASK_ID: "",
            HEADER_ATTEMPT: 1,
            HEADER_TRACEPARENT: traceparent or new_traceparent(),
        },
    )
