"""The raw baseline: what pika and RabbitMQ do on this machine, with no gateway in between.

Measured the way DESIGN's "Measured on this machine class" table was: pika's
``AsyncioConnection`` on the running event loop, persistent messages of the gateway's size
(``RAW_BODY_BYTES``: the mean body of the messages a push publishes), one quorum queue
of its own (``bench.raw.<random>``, deleted afterwards), publishes kept in flight with a
confirm window of 1000, consumption with prefetch 300 and one ``multiple`` ack every 64
deliveries. Three figures:

    publish   N messages into the empty queue, until the last is confirmed
    consume   the same N messages out of it, until the last is delivered
    one hop   a publisher and a consumer on two connections, together, flat out for a
              fixed time; the consumer's rate is the hop's
"""

from __future__ import annotations

import asyncio
import collections
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pika

from gateway.bench.amqp import AmqpLink
from gateway.bench.report import Row
from gateway.bench.stats import DESIGN_CONSUME, DESIGN_PUBLISH, noise_reasons, rate

# Issue 6: "same message size and persistence as the gateway's messages". The mean body of
# the messages the gateway publishes in a push (its exchanges and the cdc connector's
# requests, weighted by count): 515 B over a burst of 200 newborns, 30 messages each (the
# largest, on gw.tasks and gw.results, carry the task; the events are small). Each push
# prints its own mean beside this ("gateway message body, mean") and says when they part.
RAW_BODY_BYTES = 515
CONFIRM_WINDOW = 1000
PREFETCH = 300
ACK_EVERY = 64
WARM_UP_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class RawResult:
    messages: int
    body_bytes: int
    publish_per_second: float
    consume_per_second: float
    hop_seconds: float
    hop_per_second: float  # delivered to the consumer while both ran
    hop_publish_per_second: float  # confirmed to the publisher meanwhile
    server_version: str
    nacked: int

    @property
    def noise(self) -> list[str]:
        return noise_reasons(self.publish_per_second, self.consume_per_second, self.hop_per_second)

    def rows(self) -> list[Row]:
        s = (f"raw baseline (pika AsyncioConnection, quorum queue, persistent "
             f"{self.body_bytes:,} B bodies: the gateway's mean)")  # fmt: skip
        return [
            Row(s, "publish, confirm window 1000", self.publish_per_second, "msg/s",
                f"DESIGN ~{DESIGN_PUBLISH:,.0f}"),
            Row(s, "consume, prefetch 300, ack/64", self.consume_per_second, "msg/s",
                f"DESIGN ~{DESIGN_CONSUME:,.0f}"),
            Row(s, "one hop, both together", self.hop_per_second, "msg/s", "DESIGN ~7–9k"),
        ]  # fmt: skip


class Confirms:
    """Publisher confirms counted in O(1) per confirm, ``multiple`` or not."""

    def __init__(self) -> None:
        self.sent = 0
        self.confirmed = 0
        self.nacked = 0
        self._tags: collections.deque[int] = collections.deque()
        self._single: set[int] = set()
        self.wake = asyncio.Event()

    def published(self) -> None:
        self.sent += 1
        self._tags.append(self.sent)

    def on_confirm(self, frame: Any) -> None:
        method = frame.method
        tag: int = method.delivery_tag
        settled = 0
        if method.multiple:
            while self._tags and self._tags[0] <= tag:
                head = self._tags.popleft()
                if head in self._single:
                    self._single.discard(head)
                else:
                    settled += 1
        else:
            settled = 1
            self._single.add(tag)
            while self._tags and self._tags[0] in self._single:
                self._single.discard(self._tags.popleft())
        self.confirmed += settled
        if isinstance(method, pika.spec.Basic.Nack):
            self.nacked += settled
        self.wake.set()

    @property
    def in_flight(self) -> int:
        return self.sent - self.confirmed


class _Publisher:
    def __init__(self, link: AmqpLink, channel: Any, queue: str, body_bytes: int) -> None:
        self.link, self.channel, self.queue = link, channel, queue
        self.confirms = Confirms()
        self._body = os.urandom(body_bytes)
        self._props = pika.BasicProperties(delivery_mode=2, content_type="application/octet-stream")

    @classmethod
    async def open(cls, link: AmqpLink, queue: str, body_bytes: int) -> _Publisher:
        channel = await link.channel()
        publisher = cls(link, channel, queue, body_bytes)
        await link.call(channel.confirm_delivery, publisher.confirms.on_confirm)
        return publisher

    async def run(
        self, *, count: int | None = None, until: Callable[[], bool] | None = None
    ) -> None:
        """Publish ``count`` messages, or until ``until()``; return when all are confirmed."""
        c = self.confirms
        target = count if count is not None else 1 << 62
        stop = until or (lambda: False)
        while c.sent < target and not stop():
            while c.sent < target and c.in_flight < CONFIRM_WINDOW:
                self.channel.basic_publish("", self.queue, self._body, self._props)
                c.published()
            c.wake.clear()
            await c.wake.wait()
        while c.in_flight > 0:
            c.wake.clear()
            await c.wake.wait()


class _Consumer:
    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self.received = 0
        self.target: int | None = None
        self.done = asyncio.Event()
        self._last_tag = 0
        self._acked = 0

    def on_message(self, channel: Any, method: Any, _props: Any, _body: bytes) -> None:
        self.received += 1
        self._last_tag = method.delivery_tag
        if self.received % ACK_EVERY == 0:
            channel.basic_ack(self._last_tag, multiple=True)
            self._acked = self._last_tag
        if self.target is not None and self.received >= self.target:
            self.done.set()

    def flush(self) -> None:
        if self._last_tag > self._acked and self.channel.is_open:
            self.channel.basic_ack(self._last_tag, multiple=True)
            self._acked = self._last_tag


async def run_raw(
    amqp_url: str,
    *,
    messages: int,
    hop_seconds: float,
    progress: Callable[[str], None],
    body_bytes: int = RAW_BODY_BYTES,
) -> RawResult:
    queue = f"bench.raw.{os.urandom(4).hex()}"
    pub_link = await AmqpLink.open(amqp_url, "gateway-bench-raw-publisher")
    sub_link = await AmqpLink.open(amqp_url, "gateway-bench-raw-consumer")
    admin = await pub_link.channel()
    try:
        await pub_link.call(
            admin.queue_declare, queue, durable=True, arguments={"x-queue-type": "quorum"}
        )
        publisher = await _Publisher.open(pub_link, queue, body_bytes)
        progress(
            f"raw: publishing {messages:,} × {body_bytes:,} B persistent (the gateway's mean "
            f"message body) to quorum queue {queue}"
        )
        started = time.perf_counter()
        await publisher.run(count=messages)
        publish_rate = rate(messages, time.perf_counter() - started)
        progress(f"raw: publish {publish_rate:,.0f} msg/s; consuming them")

        channel = await sub_link.channel()
        await sub_link.call(channel.basic_qos, prefetch_count=PREFETCH)
        consumer = _Consumer(channel)
        consumer.target = messages
        started = time.perf_counter()
        channel.basic_consume(queue, consumer.on_message)
        await consumer.done.wait()
        consume_rate = rate(messages, time.perf_counter() - started)
        consumer.flush()
        progress(f"raw: consume {consume_rate:,.0f} msg/s; one hop for {hop_seconds:.0f} s")

        hop, hop_publish, nacked = await _one_hop(publisher, consumer, hop_seconds)
        progress(f"raw: one hop {hop:,.0f} msg/s (publisher confirmed {hop_publish:,.0f}/s)")
        return RawResult(
            messages=messages,
            body_bytes=body_bytes,
            publish_per_second=publish_rate,
            consume_per_second=consume_rate,
            hop_seconds=hop_seconds,
            hop_per_second=hop,
            hop_publish_per_second=hop_publish,
            server_version=pub_link.server_version,
            nacked=nacked + publisher.confirms.nacked,
        )
    finally:
        try:
            await pub_link.call(admin.queue_delete, queue)
        finally:
            await sub_link.close()
            await pub_link.close()


async def _one_hop(
    publisher: _Publisher, consumer: _Consumer, seconds: float
) -> tuple[float, float, int]:
    """(delivered/s, confirmed/s, nacks) over the run after a short warm-up."""
    consumer.target = None
    loop = asyncio.get_running_loop()
    start = loop.time()
    stop_at = start + WARM_UP_SECONDS + seconds
    marks: dict[str, tuple[float, int, int]] = {}

    def mark(name: str) -> None:
        marks[name] = (time.perf_counter(), consumer.received, publisher.confirms.confirmed)

    loop.call_at(start + WARM_UP_SECONDS, mark, "from")
    loop.call_at(stop_at, mark, "to")
    await publisher.run(until=lambda: loop.time() >= stop_at)
    consumer.flush()
    t0, got0, conf0 = marks["from"]
    t1, got1, conf1 = marks["to"]
    return rate(got1 - got0, t1 - t0), rate(conf1 - conf0, t1 - t0), publisher.confirms.nacked
