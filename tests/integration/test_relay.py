"""The outbox relay: applications a crash left 'received' are republished, once each."""

from __future__ import annotations

import asyncio
import time

import pytest

from gateway.intake.relay import Relay
from gateway.metrics import Metrics
from gateway.runtime import Gateway
from gateway.store import ApplicationStatus, NewApplication, Store
from tests.support.portal import example
from tests.support.rabbit import Rabbit

pytestmark = pytest.mark.broker


async def stored_but_never_published(store: Store, n: int, age: float = 60.0) -> list[str]:
    """What a crash between the store write and the broker confirm leaves behind."""
    ids = []
    for i in range(n):
        app = NewApplication(
            id=f"01a2217c-0000-7000-8000-{i:012d}",
            portal_id="window",
            idempotency_key=f"crashed-{i}",
            channel="http",
            matter="newborn",
            schema_version="1.0",
            envelope_json=example("newborn-minimal-online").decode(),
            fingerprint="0" * 64,
            created_at=time.time() - age,
        )
        await store.claim_idempotency(
            "window", app.idempotency_key, app.fingerprint, time.time() - age, 30
        )
        await store.create_application(app)
        ids.append(app.id)
    return ids


async def test_two_relays_republish_each_stranded_application_exactly_once(
    gateway: Gateway, rabbit: Rabbit
) -> None:
    assert gateway.store is not None
    ids = await stored_but_never_published(gateway.store, 20)
    metrics = Metrics()
    relays = [Relay(gateway.store, gateway.publish, metrics, grace_seconds=10) for _ in range(2)]
    counts = await asyncio.gather(*(r.run_once() for r in relays))
    assert sum(counts) == 20
    delivered = await rabbit.aget_all("gw.accepted", wait=5, at_least=20)
    assert sorted(m.properties.correlation_id for m in delivered) == ids
    for app_id in ids:
        record = await gateway.store.get_application(app_id)
        assert record is not None and record.status is ApplicationStatus.ACCEPTED
    assert sum(await asyncio.gather(*(r.run_once() for r in relays))) == 0  # nothing left


async def test_a_fresh_received_row_is_left_to_its_own_request(
    gateway: Gateway, rabbit: Rabbit
) -> None:
    assert gateway.store is not None
    await stored_but_never_published(gateway.store, 1, age=0.0)
    relay = Relay(gateway.store, gateway.publish, Metrics(), grace_seconds=10)
    assert await relay.run_once() == 0  # still within the request's own grace period
