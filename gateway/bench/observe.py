"""What the push sees of the gateway from outside, and what it counts:

Watcher           stamps ``application.completed`` events of the bench's portal as they
                  arrive (a temporary queue bound to ``gw.events``)
CountingGateway   the gateway, counting every publish its broker client has confirmed,
                  by exchange, and their bodies' bytes: its own exchanges and the cdc
                  connector's requests (default exchange) alike; and each message it is
                  handed for the first time (not a redelivery), by queue: on a department's
                  reply queue, that is a message the department side published
broker_received   the broker's own count of messages received from publishers, read with
                  ``rabbitmqctl`` (RabbitMQ's global counters, 3.9+; no management plugin
                  needed): broker-wide, so every client's publishes, the simulators'
                  replies among them
busy_queues,      the gateway's queues (as its topology declares them) that hold or hand
waiting_messages  out messages, and how many wait in them
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections import Counter
from typing import Any

from gateway.bench.amqp import AmqpLink, queue_counts
from gateway.bench.loadgen import LoadResult
from gateway.bench.push_figures import Phase, phase_of
from gateway.broker.client import BrokerClient, Handler
from gateway.broker.messages import Delivery, Message
from gateway.broker.topology import DEFAULT_SYSTEMS, EVENTS, build_topology
from gateway.runtime import Gateway

__all__ = [
    "BROKER_COUNTER",
    "CountingGateway",
    "Published",
    "Watcher",
    "broker_received",
    "busy_queues",
    "waiting_messages",
]

# RabbitMQ's global counter of messages received from AMQP 0-9-1 publishers (every vhost).
BROKER_COUNTER = (
    "maps:get(messages_received_total, "
    "maps:get([{protocol,amqp091}], rabbit_global_counters:overview()))."
)
RABBITMQCTL_TIMEOUT = 30.0


class Published:
    """Confirmed publishes by exchange (``(default)`` for the default one) and body bytes;
    first deliveries by queue."""

    def __init__(self) -> None:
        self.by_exchange: Counter[str] = Counter()
        self.body_bytes = 0
        self.delivered: Counter[str] = Counter()

    def add(self, exchange: str, message: Message) -> None:
        self.by_exchange[exchange or "(default)"] += 1
        self.body_bytes += len(message.body)

    @property
    def mean_body_bytes(self) -> float | None:
        total = sum(self.by_exchange.values())
        return self.body_bytes / total if total else None


class CountingGateway(Gateway):
    """The gateway, its broker client's confirmed publishes and first deliveries counted in
    ``published``.

    The count sits on the broker client, not on ``Gateway.publish``: the cdc connector
    publishes its requests through the client directly. ``start`` makes the client and
    assigns it to ``broker``; this class wraps it there, before anything can use it."""

    published: Published
    _broker: BrokerClient | None = None

    @property  # a data descriptor: it takes over Gateway's plain attribute
    def broker(self) -> BrokerClient | None:
        return self._broker

    @broker.setter
    def broker(self, client: BrokerClient | None) -> None:
        if client is not None:
            _count(client, self.published)
        self._broker = client


def _count(broker: BrokerClient, published: Published) -> None:
    inner_publish, inner_consume = broker.publish, broker.consume

    async def publish(exchange: str, routing_key: str, message: Message, **kw: Any) -> None:
        await inner_publish(exchange, routing_key, message, **kw)
        published.add(exchange, message)  # once confirmed, as the broker counts it

    async def consume(queue: str, handler: Handler, **kw: Any) -> None:
        async def counted(delivery: Delivery) -> None:
            if not delivery.redelivered:
                published.delivered[queue] += 1
            await handler(delivery)

        await inner_consume(queue, counted, **kw)

    # Instance attributes shadow the methods for this client only.
    broker.publish = publish  # type: ignore[method-assign]
    broker.consume = consume  # type: ignore[method-assign]


class Watcher:
    """Stamps ``application.completed`` events of one portal as they arrive."""

    def __init__(self) -> None:
        self.completed: dict[str, float] = {}
        self.changed = asyncio.Event()

    async def start(self, link: AmqpLink, portal_id: str) -> None:
        channel = await link.channel()
        frame = await link.call(channel.queue_declare, "", exclusive=True, auto_delete=True)
        queue = frame.method.queue
        key = f"{portal_id}.newborn.application.completed"
        await link.call(channel.queue_bind, queue, EVENTS, routing_key=key)
        channel.basic_consume(queue, self._on_message, auto_ack=True)

    def _on_message(self, _ch: Any, _method: Any, props: Any, _body: bytes) -> None:
        if props.correlation_id and props.correlation_id not in self.completed:
            self.completed[props.correlation_id] = time.time()
            self.changed.set()

    async def wait_for(self, ids: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while any(i not in self.completed for i in ids) and time.monotonic() < deadline:
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), 0.5)

    def phase(self, load: LoadResult) -> Phase:
        return phase_of(load, self.completed)


async def broker_received() -> int | None:
    """RabbitMQ's own count of messages received from publishers so far (every vhost and
    client), or None where ``rabbitmqctl`` is missing, cannot reach the node or answers
    something else (a broker on another host, no access to its cookie)."""
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        return None
    try:
        child = await asyncio.create_subprocess_exec(
            ctl, "-q", "eval", BROKER_COUNTER,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
    except OSError:
        return None
    try:
        out, _ = await asyncio.wait_for(child.communicate(), RABBITMQCTL_TIMEOUT)
    except TimeoutError:
        child.kill()
        await child.wait()
        return None
    text = out.decode(errors="replace").strip()
    return int(text) if child.returncode == 0 and text.isdigit() else None


async def waiting_messages(link: AmqpLink) -> int:
    """Ready messages in the gateway's queues (as its topology declares them)."""
    total = 0
    for queue in (q.name for q in build_topology(DEFAULT_SYSTEMS).queues):
        counts = await queue_counts(link, queue)
        total += counts[0] if counts is not None else 0
    return total


async def busy_queues(link: AmqpLink) -> str:
    """The gateway's queues (as its topology declares them) that hold or hand out messages."""
    busy = []
    for queue in (q.name for q in build_topology(DEFAULT_SYSTEMS).queues):
        counts = await queue_counts(link, queue)
        if counts is not None and (counts[0] or counts[1]):
            busy.append(f"{queue}: {counts[0]} messages, {counts[1]} consumers")
    return "; ".join(busy)
