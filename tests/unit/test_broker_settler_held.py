"""A delivery held long while hundreds behind it are acked: the settler trims its order of
deliveries (so it stays small) and never lets a multiple ack reach the held one."""

from __future__ import annotations

import asyncio

from gateway.broker.consuming import Settler
from tests.unit.test_broker_settler import BrokerChannel


async def test_a_long_held_delivery_is_never_acked_by_a_run_behind_it() -> None:
    ch = BrokerChannel()
    settler = Settler(ch, lambda: True)
    for tag in range(1, 3):
        ch.deliver(tag)
        settler.received(tag)
    settler.settle(1, "ack")
    await asyncio.sleep(0)  # tag 1 goes; tag 2 stays in its handler
    for tag in range(3, 503):  # many behind it, each acked, some rejected
        ch.deliver(tag)
        settler.received(tag)
        settler.settle(tag, "reject" if tag % 7 == 0 else "ack")
        if tag % 50 == 0:
            await asyncio.sleep(0)
            assert 2 in ch.unacked, "the held delivery was acked by someone else's ack"
    await asyncio.sleep(0)
    assert ch.unacked == {2}
    assert len(settler._order) <= 2 * settler.outstanding + 64  # trimmed, not 500 long
    settler.settle(2, "ack")
    await asyncio.sleep(0)
    assert ch.unacked == set()
    assert settler.outstanding == 0
