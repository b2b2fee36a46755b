"""Acks in contiguous runs against the real RabbitMQ: what the broker ends up settling.

Each test ends by closing the client and looking at the queues: a delivery that was
wrongly acked is gone, one whose ack was lost is back (ready) in its queue.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pika.channel
import pytest

from gateway.broker.client import BrokerClient
from gateway.broker.messages import Delivery, Message
from gateway.broker.topology import DEAD_LETTERS, build_topology
from tests.support.rabbit import Rabbit
from tests.support.waiting import eventually, true

pytestmark = pytest.mark.broker
QUEUE = "gw.accepted"


def client(url: str) -> BrokerClient:
    return BrokerClient(url, build_topology(), reconnect_max_seconds=0.5)


async def _publish(c: BrokerClient, count: int) -> None:
    await asyncio.gather(
        *(c.publish(QUEUE, "newborn", Message(f"m{i}".encode())) for i in range(count))
    )


def _count_acks(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, bool]]:
    sent: list[tuple[int, bool]] = []
    original = pika.channel.Channel.basic_ack

    def basic_ack(self: Any, delivery_tag: int = 0, multiple: bool = False) -> None:
        sent.append((delivery_tag, multiple))
        original(self, delivery_tag, multiple)

    monkeypatch.setattr(pika.channel.Channel, "basic_ack", basic_ack)
    return sent


async def test_acks_in_delivery_order_take_fewer_frames_and_settle_every_message(
    rabbit: Rabbit, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = _count_acks(monkeypatch)
    c = client(rabbit.url)
    got: list[bytes] = []

    async def handler(d: Delivery) -> None:
        got.append(d.body)
        d.ack()

    await c.start()
    try:
        await _publish(c, 300)
        await c.consume(QUEUE, handler, prefetch=100)
        assert await eventually(lambda: true(len(got) == 300))
    finally:
        await c.close()
    assert await asyncio.to_thread(rabbit.depth, QUEUE) == 0  # all acked, none came back
    assert any(multiple for _, multiple in sent)
    assert len(sent) < 300


async def test_a_delivery_held_by_its_handler_is_not_acked_by_its_neighbours(
    rabbit: Rabbit, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = _count_acks(monkeypatch)
    c = client(rabbit.url)
    first = asyncio.Event()
    seen: list[bytes] = []

    async def handler(d: Delivery) -> None:
        seen.append(d.body)
        if d.body == b"m0":
            await first.wait()  # the head of the run stays in hand; never set
        else:
            await asyncio.sleep(0.001 * (len(seen) % 7))  # the others finish out of order
        d.ack()

    await c.start()
    try:
        await _publish(c, 40)
        await c.consume(QUEUE, handler, prefetch=50)
        assert await eventually(lambda: true(len(seen) == 40))
        await asyncio.sleep(0.2)  # every other handler done, its ack sent
    finally:
        await c.close(drain_seconds=0.1)  # m0's handler is cancelled: never settled
    assert len(sent) == 39
    back = await rabbit.aget_all(QUEUE, wait=5, at_least=1)
    assert [m.body for m in back] == [b"m0"]  # only the held one comes back


async def test_a_reject_between_acks_dead_letters_that_message_only(rabbit: Rabbit) -> None:
    c = client(rabbit.url)
    seen: list[bytes] = []

    async def handler(d: Delivery) -> None:
        seen.append(d.body)
        if d.body == b"m1":
            d.reject(requeue=False)  # between two acks of the same iteration
        else:
            d.ack()

    await c.start()
    try:
        await _publish(c, 3)
        await c.consume(QUEUE, handler, prefetch=10)
        assert await eventually(lambda: true(len(seen) == 3))
        dead = await rabbit.aget_all(DEAD_LETTERS, wait=5, at_least=1)
    finally:
        await c.close()
    assert sorted(seen) == [b"m0", b"m1", b"m2"]  # each delivered once: no channel error
    assert [m.body for m in dead] == [b"m1"]
    assert await asyncio.to_thread(rabbit.depth, QUEUE) == 0


async def test_acks_pending_when_the_channel_closes_are_dropped_and_redelivered(
    rabbit: Rabbit,
) -> None:
    c = client(rabbit.url)
    seen: list[bytes] = []
    errors: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: errors.append(ctx))
    channels: list[Any] = []
    all_seen = asyncio.Event()
    acked: list[bytes] = []

    async def handler(d: Delivery) -> None:
        seen.append(d.body)
        if len(seen) == 5:
            all_seen.set()  # the other four wake together in the next iteration
        else:
            await all_seen.wait()
        d.ack()  # noted, to go out in the loop iteration after the last of these
        acked.append(d.body)
        if len(acked) == 5:
            channels[0].close()  # ... but the channel is gone before that

    await c.start()
    try:
        await _publish(c, 5)
        await c.consume(QUEUE, handler, prefetch=5)
        channels.append(c._consumers[0].channel)
        assert await eventually(lambda: true(len(seen) == 5))
        assert await eventually(lambda: true(not channels[0].is_open))
    finally:
        await c.close()
    assert errors == []  # no ack tried on the closed channel
    back = await rabbit.aget_all(QUEUE, wait=5, at_least=5)
    assert sorted(m.body for m in back) == [f"m{i}".encode() for i in range(5)]
