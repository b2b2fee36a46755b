"""Reading a dead-lettered delivery into a record, for both ways a message gets here."""

from __future__ import annotations

import json
from typing import Any

from gateway.broker.messages import Delivery
from gateway.deadletters import dead_letter_from


def delivery(headers: dict[str, Any], **kw: Any) -> Delivery:
    base: dict[str, Any] = {
        "body": b'{"a": 1}',
        "exchange": "gw.dlx",
        "routing_key": "hukou.newborn.hukou",
        "message_id": "m-1",
        "correlation_id": "app-1",
        "user_id": None,
        "headers": headers,
        "content_type": "application/json",
        "redelivered": False,
    }
    base.update(kw)
    return Delivery(**base, _settle=lambda how: None)


def test_broker_dead_lettered_after_the_delivery_limit() -> None:
    d = delivery(
        {
            "x-attempt": 3,
            "x-death": [
                {
                    "reason": b"delivery_limit",
                    "exchange": b"gw.tasks",
                    "routing-keys": [b"hukou.newborn.hukou"],
                    "count": 99,
                    "queue": b"q",
                }
            ],
        }
    )
    dl = dead_letter_from(d, now=1000.0)
    assert dl.reason == "dead-lettered by RabbitMQ: delivery_limit"
    assert (dl.error_kind, dl.exchange, dl.routing_key) == (
        "delivery_limit",
        "gw.tasks",
        "hukou.newborn.hukou",
    )
    assert (dl.system, dl.matter, dl.application_id) == ("hukou", "newborn", "app-1")
    assert dl.attempts == 3  # our own header, never x-death's count
    assert json.loads(dl.headers_json)["x-death"][0]["reason"] == "delivery_limit"


def test_parked_by_the_gateway_with_its_reason() -> None:
    d = delivery(
        {
            "x-reason": "Invalid application envelope: …",
            "x-error-kind": "permanent",
            "x-original-exchange": "gw.intake",
            "x-original-routing-key": "window",
            "x-portal-id": "window",
            "x-first-failed-at": 1_700_000_000_000,
        },
        routing_key="window",
        correlation_id=None,
    )
    dl = dead_letter_from(d, now=1_700_000_100.0)
    assert (dl.reason, dl.error_kind) == ("Invalid application envelope: …", "permanent")
    assert (dl.exchange, dl.routing_key, dl.portal_id) == ("gw.intake", "window", "window")
    assert (dl.first_failed_at, dl.last_failed_at) == (1_700_000_000.0, 1_700_000_100.0)
    assert dl.system is None and dl.attempts == 1


def test_a_message_without_id_gets_a_stable_one() -> None:
    headers = {"x-death": [{"reason": "rejected", "time": 5}]}
    first = dead_letter_from(delivery(headers, message_id=None), now=1.0)
    again = dead_letter_from(delivery(headers, message_id=None), now=2.0)
    other = dead_letter_from(delivery(headers, message_id=None, body=b"other"), now=1.0)
    assert first.message_id == again.message_id != other.message_id
