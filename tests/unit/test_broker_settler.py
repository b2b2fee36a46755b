"""Acks in contiguous runs, against a channel that settles tags as RabbitMQ does.

The fake channel keeps the broker's view of one channel: the unacked tags. A multiple ack
settles every unacked tag up to N; acking or rejecting a tag that is not unacked is the
broker's "unknown delivery tag" channel error. Each test also checks that no tag still in
its handler was ever settled by someone else's ack.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from gateway.broker.consuming import Settler


class BrokerChannel:
    def __init__(self) -> None:
        self.is_open = True
        self.unacked: set[int] = set()
        self.acked: set[int] = set()
        self.rejected: dict[int, bool] = {}  # tag -> requeue
        self.frames: list[tuple[str, int, bool]] = []

    def deliver(self, tag: int) -> None:
        self.unacked.add(tag)

    def basic_ack(self, tag: int, multiple: bool = False) -> None:
        assert self.is_open, "ack on a closed channel"
        self.frames.append(("ack", tag, multiple))
        covered = {t for t in self.unacked if t <= tag} if multiple else {tag}
        assert tag in self.unacked and covered <= self.unacked, f"unknown delivery tag {tag}"
        self.unacked -= covered
        self.acked |= covered

    def basic_reject(self, tag: int, requeue: bool) -> None:
        assert self.is_open, "reject on a closed channel"
        self.frames.append(("reject", tag, requeue))
        assert tag in self.unacked, f"unknown delivery tag {tag}"
        self.unacked.discard(tag)
        self.rejected[tag] = requeue


def _settler(channel: BrokerChannel, tags: range) -> Settler:
    settler = Settler(channel, lambda: True)
    for tag in tags:
        channel.deliver(tag)
        settler.received(tag)
    return settler


async def _next_iteration() -> None:
    await asyncio.sleep(0)


async def test_acks_of_one_iteration_in_delivery_order_go_as_one_multiple_ack() -> None:
    ch = BrokerChannel()
    settler = _settler(ch, range(1, 11))
    for tag in range(1, 11):
        settler.settle(tag, "ack")
    assert ch.frames == []  # nothing before the flush
    await _next_iteration()
    assert ch.frames == [("ack", 10, True)]
    assert ch.acked == set(range(1, 11)) and not ch.unacked
    assert settler.outstanding == 0


async def test_a_delivery_still_in_hand_is_never_covered_and_the_others_do_not_wait() -> None:
    ch = BrokerChannel()
    settler = _settler(ch, range(1, 7))
    for tag in (2, 3, 5):  # 1 and 4 still in their handlers
        settler.settle(tag, "ack")
    await _next_iteration()
    assert ch.frames == [("ack", 2, False), ("ack", 3, False), ("ack", 5, False)]
    assert ch.unacked == {1, 4, 6}
    settler.settle(1, "ack")  # the head completes: the run is 1 alone (2, 3 already acked)
    settler.settle(6, "ack")
    await _next_iteration()
    assert ch.frames[3:] == [("ack", 1, False), ("ack", 6, False)]
    settler.settle(4, "ack")
    await _next_iteration()
    assert ch.frames[5:] == [("ack", 4, False)]
    assert not ch.unacked and ch.acked == set(range(1, 7))


async def test_a_reject_between_acks_goes_at_once_and_is_not_swept_by_the_run() -> None:
    ch = BrokerChannel()
    settler = _settler(ch, range(1, 5))
    settler.settle(1, "ack")
    settler.settle(2, "reject")  # dead-letter
    assert ch.frames == [("reject", 2, False)]  # immediate, before any ack
    settler.settle(3, "requeue")
    settler.settle(4, "ack")
    await _next_iteration()
    assert ch.frames == [("reject", 2, False), ("reject", 3, True), ("ack", 4, True)]
    assert ch.rejected == {2: False, 3: True}
    assert ch.acked == {1, 4}  # the multiple ack settled only what was still unacked


async def test_a_closed_channel_drops_its_pending_acks() -> None:
    ch = BrokerChannel()
    settler = _settler(ch, range(1, 4))
    settler.settle(1, "ack")
    settler.settle(2, "ack")
    ch.is_open = False  # the connection dropped before the flush
    await _next_iteration()
    assert ch.frames == []  # the broker redelivers 1, 2 and 3
    settler.settle(3, "ack")
    settler.settle(3, "reject")
    await _next_iteration()
    assert ch.frames == []
    assert settler.outstanding == 0


async def test_a_replaced_connection_drops_pending_acks_even_if_the_channel_looks_open() -> None:
    ch = BrokerChannel()
    current = [True]
    settler = Settler(ch, lambda: current[0])
    ch.deliver(1)
    settler.received(1)
    settler.settle(1, "ack")
    current[0] = False
    await _next_iteration()
    assert ch.frames == []


@pytest.mark.parametrize("seed", range(20))
async def test_random_completion_orders_settle_each_tag_once_as_its_handler_said(
    seed: int,
) -> None:
    rnd = random.Random(seed)
    ch = BrokerChannel()
    settler = Settler(ch, lambda: True)
    next_tag, in_hand, wanted = 1, [], {}
    for _ in range(60):  # iterations: deliveries arrive, some handlers finish, flush
        for _ in range(rnd.randrange(0, 6)):
            ch.deliver(next_tag)
            settler.received(next_tag)
            in_hand.append(next_tag)
            next_tag += 1
        rnd.shuffle(in_hand)
        for _ in range(rnd.randrange(0, len(in_hand) + 1)):
            tag = in_hand.pop()
            how = rnd.choice(["ack", "ack", "ack", "requeue", "reject"])
            wanted[tag] = how
            settler.settle(tag, how)
        await _next_iteration()
        assert set(in_hand) <= ch.unacked  # no ack reached a delivery still in hand
    for tag in in_hand:
        wanted[tag] = "ack"
        settler.settle(tag, "ack")
    await _next_iteration()
    assert not ch.unacked
    assert ch.acked == {t for t, how in wanted.items() if how == "ack"}
    assert ch.rejected == {t: how == "requeue" for t, how in wanted.items() if how != "ack"}
    assert settler.outstanding == 0
    acks = sum(1 for kind, *_ in ch.frames if kind == "ack")
    assert acks <= len(ch.acked)
