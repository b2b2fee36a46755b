"""AMQP intake on gw.intake against the real RabbitMQ: same validation and idempotency."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from gateway.errors import StoreUnavailable
from gateway.runtime import Gateway
from gateway.settings import PortalConfig, Settings
from gateway.store import ApplicationStatus, DeadLetterRecord
from tests.conftest import INTAKE_ROLES
from tests.support.portal import example
from tests.support.rabbit import Rabbit
from tests.support.waiting import eventually

pytestmark = pytest.mark.broker


async def letters(gw: Gateway) -> list[DeadLetterRecord]:
    assert gw.store is not None
    return list(await gw.store.list_dead_letters())


def publish_as_portal(rabbit: Rabbit, body: bytes, message_id: str | None, **props: Any):  # type: ignore[no-untyped-def]
    props.setdefault("user_id", "guest")
    return rabbit.apublish(
        "gw.intake", "window", body, message_id=message_id, content_type="application/json", **props
    )


async def test_valid_message_is_accepted_and_forwarded(gateway: Gateway, rabbit: Rabbit) -> None:
    await publish_as_portal(rabbit, example("retirement-online"), "amqp-1")
    assert gateway.store is not None
    app = await eventually(lambda: gateway.store.find_application("window", "amqp-1"))  # type: ignore[union-attr]
    assert app is not None and app.channel == "amqp"
    [msg] = await rabbit.aget_all("gw.accepted", wait=5, at_least=1)
    assert msg.properties.correlation_id == app.id and msg.routing_key == "retirement"
    final = await gateway.store.get_application(app.id)
    assert final is not None and final.status is ApplicationStatus.ACCEPTED


async def test_the_same_message_id_twice_makes_one_application(
    gateway: Gateway, rabbit: Rabbit
) -> None:
    body = example("newborn-yizhang-window")
    await publish_as_portal(rabbit, body, "amqp-dup")
    await publish_as_portal(rabbit, body, "amqp-dup")
    delivered = await rabbit.aget_all("gw.accepted", wait=3, at_least=2)
    assert gateway.store is not None
    assert len(await gateway.store.list_applications()) == 1
    assert len({m.properties.correlation_id for m in delivered}) == 1
    assert await eventually(lambda: asyncio.to_thread(lambda: rabbit.depth("gw.intake") == 0))


async def test_invalid_message_is_parked_with_its_reason_and_the_portal_told(
    gateway: Gateway, rabbit: Rabbit
) -> None:
    events = await asyncio.to_thread(rabbit.bind_test_queue, "gw.events", "window.#")
    body = example("multiple-errors", "invalid")
    await publish_as_portal(rabbit, body, "amqp-bad")
    [letter] = await eventually(lambda: letters(gateway))
    stored = letter.letter
    assert stored.error_kind == "permanent" and stored.portal_id == "window"
    assert stored.exchange == "gw.intake" and stored.routing_key == "window"
    assert stored.body == body  # the original, byte for byte, for replay
    assert "subjects.child.weight_g" in stored.reason and "channel.clerk_id" in stored.reason

    [event] = await rabbit.aget_all(events, wait=5, at_least=1)
    assert event.routing_key == "window.newborn.application.rejected"
    payload = event.json()
    assert payload["event"] == "application.rejected"
    assert payload["data"]["idempotency_key"] == "amqp-bad"
    assert {e["loc"] for e in payload["data"]["errors"]} >= {"subjects.child.weight_g"}

    # the portal sends it again: same dead letter, same event id (consumers dedupe)
    await publish_as_portal(rabbit, body, "amqp-bad")
    [again] = await rabbit.aget_all(events, wait=5, at_least=1)
    assert again.json()["event_id"] == payload["event_id"]
    assert len(await letters(gateway)) == 1
    assert gateway.store is not None
    assert await gateway.store.list_applications() == []


async def test_garbage_never_stalls_the_consumer(gateway: Gateway, rabbit: Rabbit) -> None:
    await publish_as_portal(rabbit, b"\x00\xff not json {{{", "garbage-1")
    await publish_as_portal(rabbit, b"[1, 2, 3]", "garbage-2")
    await publish_as_portal(rabbit, example("newborn-minimal-online"), "after-garbage")
    assert gateway.store is not None
    app = await eventually(lambda: gateway.store.find_application("window", "after-garbage"))  # type: ignore[union-attr]
    assert app is not None
    parked = await eventually(lambda: _at_least(letters(gateway), 2))
    assert {d.letter.message_id for d in parked} == {
        "intake:window:garbage-1",
        "intake:window:garbage-2",
    }


async def test_message_without_user_id_or_message_id_is_parked(
    gateway: Gateway, rabbit: Rabbit
) -> None:
    body = example("newborn-minimal-online")
    await rabbit.apublish("gw.intake", "window", body, message_id="no-user")
    await publish_as_portal(rabbit, body, None)
    parked = await eventually(lambda: _at_least(letters(gateway), 2))
    reasons = sorted(d.letter.reason for d in parked)
    assert any("user_id" in r for r in reasons)
    assert any("message_id" in r for r in reasons)
    assert gateway.store is not None
    assert await gateway.store.list_applications() == []


async def test_a_broker_user_that_is_no_portal_is_parked(
    settings_for: Callable[..., Settings], rabbit: Rabbit
) -> None:
    settings = settings_for(portals={"window": PortalConfig(secret="s" * 20)})  # type: ignore[arg-type]
    async with Gateway(settings, roles=INTAKE_ROLES) as gw:
        await publish_as_portal(rabbit, example("newborn-minimal-online"), "stranger")
        [letter] = await eventually(lambda: letters(gw))
        assert "'guest' is not a configured portal" in letter.letter.reason
        assert letter.letter.portal_id is None


async def _at_least(probe: Awaitable[list[Any]], n: int) -> list[Any] | None:
    found = await probe
    return found if len(found) >= n else None


async def test_a_store_outage_holds_the_message_instead_of_dead_lettering_it(
    settings_for: Callable[..., Settings], rabbit: Rabbit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a delivery limit of 1, a single requeue would dead-letter the application."""
    settings = settings_for(broker={"delivery_limit": 1})
    async with Gateway(settings, roles=INTAKE_ROLES) as gw:
        assert gw.store is not None
        real = gw.store.admit  # claims the key and stores the application in one step
        failures = {"left": 3}

        async def flaky(*args: Any, **kwargs: Any) -> Any:
            if failures["left"]:
                failures["left"] -= 1
                raise StoreUnavailable("database is locked")
            return await real(*args, **kwargs)

        monkeypatch.setattr(gw.store, "admit", flaky)
        await publish_as_portal(rabbit, example("newborn-minimal-online"), "during-outage")
        store = gw.store
        app = await eventually(lambda: store.find_application("window", "during-outage"))
        assert app is not None
        assert failures["left"] == 0
        assert await letters(gw) == []
