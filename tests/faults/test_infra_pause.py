"""A handler that fails because the store (or the broker) is briefly away is run again in
place, its delivery held unacked: a requeue would be counted against the queue's delivery
limit (5) and dead-letter a sound message within milliseconds, leaving its application where
it was. Real RabbitMQ; the failures are counted, not timed."""

from __future__ import annotations

import asyncio

import pytest

from gateway.broker.client import BrokerClient
from gateway.broker.messages import Delivery, Message
from gateway.broker.topology import DEAD_LETTERS, build_topology
from gateway.errors import BrokerUnavailable, StoreUnavailable
from tests.support.rabbit import Rabbit
from tests.support.waiting import eventually, true

pytestmark = pytest.mark.broker
FAILURES = 8  # more than the delivery limit (5)


async def _run(rabbit: Rabbit, hold: float) -> tuple[list[bool], list[bytes]]:
    c = BrokerClient(
        rabbit.url,
        build_topology(),
        reconnect_max_seconds=0.5,
        infra_pause_seconds=(0.01, 0.05),
        infra_hold_seconds=hold,
    )
    seen: list[bool] = []  # redelivered flag of each call
    done: list[bytes] = []

    async def handler(d: Delivery) -> None:
        seen.append(d.redelivered)
        if len(seen) <= FAILURES:
            error = StoreUnavailable if len(seen) % 2 else BrokerUnavailable
            raise error("store locked", code="store_down")
        done.append(d.body)
        d.ack()

    await c.start()
    try:
        await c.consume("gw.accepted", handler, prefetch=1)
        await c.publish("gw.accepted", "newborn", Message(b'{"application_id": "a1"}'))
        await eventually(lambda: true(bool(done) or len(seen) > FAILURES + 2))
        await asyncio.sleep(0.3)  # let a dead-lettered copy, if any, reach its queue
    finally:
        await c.close()
    return seen, done


async def test_a_store_outage_holds_the_delivery_instead_of_spending_its_limit(
    rabbit: Rabbit,
) -> None:
    seen, done = await _run(rabbit, hold=60.0)
    assert done == [b'{"application_id": "a1"}']
    assert len(seen) == FAILURES + 1
    assert not any(seen)  # never requeued: the broker counted one delivery
    assert await asyncio.to_thread(rabbit.depth, DEAD_LETTERS) == 0


async def test_past_the_hold_the_delivery_is_requeued_and_the_limit_applies(
    rabbit: Rabbit,
) -> None:
    seen, done = await _run(rabbit, hold=0.0)  # no hold: the old behaviour, bounded
    assert any(seen[1:])  # requeued, so redelivered
    assert done == []  # the delivery limit dead-lettered it before the store came back
    assert await asyncio.to_thread(rabbit.depth, DEAD_LETTERS) == 1
