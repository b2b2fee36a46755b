"""pika ``AsyncioConnection`` on the running event loop: confirms, acks, recovery.

No pika call here blocks; every broker round trip is a callback turned into a future.
The client keeps one publishing channel in confirm mode with a window of unconfirmed
publishes, and one channel per consumer with its own prefetch. When the connection drops
it reconnects with capped, jittered backoff, re-declares the topology, re-registers the
consumers and resends every publish that was not yet confirmed and whose caller is still
waiting. Deliveries of a dead channel are never acked (the broker redelivers them).

Before declaring anything it checks that the broker is RabbitMQ 3.10 or newer, and refuses
to run with a clear message otherwise.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pika
from pika.adapters.asyncio_connection import AsyncioConnection

from gateway.broker.messages import Delivery, Message
from gateway.broker.topology import Topology
from gateway.broker.version import check_server
from gateway.errors import (
    BrokerTooOld,
    BrokerUnavailable,
    ConfigurationError,
    StoreUnavailable,
)
from gateway.logs import get_logger

log = get_logger(__name__)

Handler = Callable[[Delivery], Awaitable[None]]
# A handler that fails because the store or the broker is briefly away is run again in
# place, the delivery held unacked, after a capped pause: a requeue would count against the
# queue's delivery limit (5) and dead-letter a sound message within milliseconds. The hold
# is bounded far below RabbitMQ's consumer timeout (30 min); past it the delivery is
# requeued as any other failure.
INFRA_PAUSE_SECONDS = (0.25, 5.0)  # first pause, cap (doubling, with jitter)
INFRA_HOLD_SECONDS = 120.0


@dataclass(slots=True)
class _Pending:
    exchange: str
    routing_key: str
    message: Message
    future: asyncio.Future[None]


@dataclass(slots=True)
class _Consumer:
    queue: str
    handler: Handler
    prefetch: int
    channel: Any = None
    tag: str | None = None


@dataclass(slots=True)
class _Link:
    """One live connection and its channels; replaced wholesale on reconnect."""

    connection: Any
    generation: int
    publisher: Any = None
    next_tag: int = 0
    unconfirmed: dict[int, _Pending] = field(default_factory=dict)


class BrokerClient:
    """One AMQP connection per process role set, shared by publishers and consumers."""

    def __init__(
        self,
        url: str,
        topology: Topology,
        *,
        name: str = "gateway",
        confirm_window: int = 1000,
        reconnect_max_seconds: float = 15.0,
        infra_pause_seconds: tuple[float, float] = INFRA_PAUSE_SECONDS,
        infra_hold_seconds: float = INFRA_HOLD_SECONDS,
    ) -> None:
        self._params = pika.URLParameters(url)
        self._params.client_properties = {"connection_name": name}
        self._where = f"{urlsplit(url).hostname}:{urlsplit(url).port or 5672}"
        self._topology = topology
        self._window = asyncio.Semaphore(confirm_window)
        self._reconnect_max = reconnect_max_seconds
        self._infra_pause = infra_pause_seconds
        self._infra_hold = infra_hold_seconds
        self._consumers: list[_Consumer] = []
        self._resend: list[_Pending] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._rpcs: dict[int, set[asyncio.Future[Any]]] = {}
        self._ready = asyncio.Event()
        self._link: _Link | None = None
        self._generation = 0
        self._closing = False
        self._fatal: BaseException | None = None
        self._failures = 0
        self._first_open: asyncio.Future[None] | None = None
        self.server_version: str | None = None
        self.reconnects = 0

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self, timeout: float = 10.0) -> None:
        """Connect and declare the topology; keep reconnecting in the background after.

        Raises ``BrokerTooOld`` / ``ConfigurationError`` at once, and ``BrokerUnavailable``
        if the broker does not answer within ``timeout`` seconds.
        """
        self._first_open = asyncio.get_running_loop().create_future()
        self._connect()
        try:
            await asyncio.wait_for(asyncio.shield(self._first_open), timeout)
        except TimeoutError:
            await self.close()
            raise BrokerUnavailable(
                f"no RabbitMQ answered at {self._where} within {timeout:.0f} s; start it "
                "(`rabbitmq-server -detached`, or `docker compose -f deploy/compose.yaml up -d`)"
                " or set GATEWAY_AMQP_URL",
                code="broker_unreachable",
            ) from None

    @property
    def connected(self) -> bool:
        return self._ready.is_set()

    async def close(self, drain_seconds: float = 10.0) -> None:
        """Stop consuming, let running handlers finish (bounded), then close."""
        self._closing = True
        link = self._link
        for consumer in self._consumers:
            if consumer.channel is not None and consumer.channel.is_open and consumer.tag:
                consumer.channel.basic_cancel(consumer.tag)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=drain_seconds)
        for task in list(self._tasks):
            task.cancel()
        self._ready.clear()
        if link is not None and link.connection.is_open:
            closed = asyncio.get_running_loop().create_future()
            link.connection.add_on_close_callback(lambda *_: _resolve(closed, None))
            link.connection.close()
            try:
                await asyncio.wait_for(closed, 5)
            except TimeoutError:
                log.warning("broker_close_timeout", broker=self._where)
        self._fail_rpcs(BrokerUnavailable("broker client closed"))

    # -- publishing --------------------------------------------------------------------
    async def publish(
        self, exchange: str, routing_key: str, message: Message, *, timeout: float = 5.0
    ) -> None:
        """Publish persistently and wait for the broker's confirm.

        Raises ``BrokerUnavailable`` when not connected within ``timeout``, when the broker
        nacks (a full queue rejects publishes) or when no confirm arrives in time.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with self._window:
            await self._wait_ready(deadline)
            pending = _Pending(exchange, routing_key, message, loop.create_future())
            self._send(pending)
            # One timer handle instead of wait_for + shield: the hot path publishes ~30
            # messages per application, and each of those wrappers is a future and a task.
            expiry = loop.call_at(deadline, _expire, pending.future)
            try:
                await pending.future
            except asyncio.CancelledError:
                self._forget(pending)  # nobody waits for it: do not resend it after a reconnect
                raise
            except _Expired:
                self._forget(pending)
                raise BrokerUnavailable(
                    f"RabbitMQ at {self._where} did not confirm a publish to {exchange!r} "
                    f"within {timeout:.1f} s",
                    code="publish_unconfirmed",
                ) from None
            finally:
                expiry.cancel()

    async def _wait_ready(self, deadline: float) -> None:
        if self._fatal is not None:
            raise self._fatal
        if self._ready.is_set():
            return
        remaining = deadline - asyncio.get_running_loop().time()
        try:
            await asyncio.wait_for(self._ready.wait(), max(remaining, 0))
        except TimeoutError:
            raise BrokerUnavailable(
                f"not connected to RabbitMQ at {self._where}", code="broker_unreachable"
            ) from None

    def _send(self, pending: _Pending) -> None:
        link = self._link
        if link is None or link.publisher is None or not link.publisher.is_open:
            self._resend.append(pending)
            return
        m = pending.message
        props = pika.BasicProperties(
            content_type=m.content_type,
            delivery_mode=2,
            message_id=m.message_id,
            correlation_id=m.correlation_id,
            headers=dict(m.headers),
            type=m.type,
        )
        try:
            link.publisher.basic_publish(pending.exchange, pending.routing_key, m.body, props)
        except pika.exceptions.UnsupportedAMQPFieldException:
            raise ValueError(
                f"a header of the message to {pending.exchange!r} has a type AMQP cannot "
                "carry (use str, int, bool, bytes, lists or dicts of these)"
            ) from None
        # Encoding happens inside basic_publish: only now is the frame on its way.
        link.next_tag += 1
        link.unconfirmed[link.next_tag] = pending

    def _forget(self, pending: _Pending) -> None:
        if pending in self._resend:
            self._resend.remove(pending)
        if self._link is not None:
            for tag, entry in list(self._link.unconfirmed.items()):
                if entry is pending:
                    del self._link.unconfirmed[tag]

    def _on_confirm(self, link: _Link, frame: Any) -> None:
        method = frame.method
        tag: int = method.delivery_tag
        if method.multiple:  # tags are inserted in increasing order: stop at the first later one
            tags = list(itertools.takewhile(lambda t: t <= tag, link.unconfirmed))
        else:
            tags = [tag]
        nack = isinstance(method, pika.spec.Basic.Nack)
        for t in tags:
            entry = link.unconfirmed.pop(t, None)
            if entry is None or entry.future.done():
                continue
            if nack:
                entry.future.set_exception(
                    BrokerUnavailable(
                        f"RabbitMQ refused a publish to {entry.exchange!r} "
                        f"(routing key {entry.routing_key!r}); a queue may be full",
                        code="publish_nacked",
                    )
                )
            else:
                entry.future.set_result(None)

    # -- consuming ---------------------------------------------------------------------
    async def consume(self, queue: str, handler: Handler, *, prefetch: int) -> None:
        """Deliver messages of ``queue`` to ``handler``, which must settle each one.

        A handler that raises gets its delivery requeued; the queue's delivery limit
        dead-letters a message that keeps failing.
        """
        consumer = _Consumer(queue, handler, prefetch)
        self._consumers.append(consumer)
        if self._link is not None and self._ready.is_set():
            await self._start_consumer(self._link, consumer)

    async def _start_consumer(self, link: _Link, consumer: _Consumer) -> None:
        channel = await self._open_channel(link)
        await self._call(channel.basic_qos, prefetch_count=consumer.prefetch)
        consumer.channel = channel
        consumer.tag = channel.basic_consume(
            consumer.queue,
            lambda ch, method, props, body: self._on_message(
                link, consumer, ch, method, props, body
            ),
        )

    def _on_message(
        self, link: _Link, consumer: _Consumer, channel: Any, method: Any, props: Any, body: bytes
    ) -> None:
        tag = method.delivery_tag

        def settle(how: str) -> None:
            if link is not self._link or not channel.is_open:
                return  # the channel is gone; the broker will redeliver
            if how == "ack":
                channel.basic_ack(tag)
            else:
                channel.basic_reject(tag, requeue=(how == "requeue"))

        delivery = Delivery(
            body=body,
            exchange=method.exchange,
            routing_key=method.routing_key,
            message_id=props.message_id,
            correlation_id=props.correlation_id,
            user_id=props.user_id,
            headers=dict(props.headers or {}),
            content_type=props.content_type,
            redelivered=bool(method.redelivered),
            _settle=settle,
        )
        task = asyncio.get_running_loop().create_task(
            self._handle(consumer, delivery, lambda: link is self._link and channel.is_open)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(
        self, consumer: _Consumer, delivery: Delivery, alive: Callable[[], bool] = lambda: True
    ) -> None:
        pause, held = self._infra_pause[0], 0.0
        while True:
            try:
                await consumer.handler(delivery)
            except (StoreUnavailable, BrokerUnavailable) as exc:
                if (
                    delivery.settled is None
                    and alive()
                    and not self._closing
                    and held + pause <= self._infra_hold
                ):
                    wait = pause * random.uniform(0.5, 1.0)  # noqa: S311  # jitter
                    log.warning(
                        "handler_paused",
                        queue=consumer.queue,
                        message_id=delivery.message_id,
                        error=str(exc),
                        pause=round(wait, 3),
                    )
                    await asyncio.sleep(wait)
                    held += wait
                    pause = min(pause * 2, self._infra_pause[1])
                    continue  # the same delivery, still unacked: no delivery is counted
                log.warning("handler_failed", queue=consumer.queue, error=str(exc), held=held)
                if delivery.settled is None:
                    delivery.reject(requeue=True)
            except Exception:
                log.exception(
                    "handler_failed", queue=consumer.queue, message_id=delivery.message_id
                )
                if delivery.settled is None:
                    delivery.reject(requeue=True)
            else:
                if delivery.settled is None:
                    log.error("handler_left_unsettled", queue=consumer.queue)
                    delivery.reject(requeue=True)
            return

    # -- connection management ---------------------------------------------------------
    def _connect(self) -> None:
        self._generation += 1
        generation = self._generation
        AsyncioConnection(
            self._params,
            on_open_callback=lambda conn: self._on_open(conn, generation),
            on_open_error_callback=lambda _conn, err: self._on_lost(generation, err),
            on_close_callback=lambda _conn, err: self._on_lost(generation, err),
            custom_ioloop=asyncio.get_running_loop(),
        )

    def _on_open(self, connection: Any, generation: int) -> None:
        link = _Link(connection, generation)
        self._link = link
        task = asyncio.get_running_loop().create_task(self._setup(link))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _setup(self, link: _Link) -> None:
        try:
            self.server_version = check_server(link.connection.server_properties)
            await self._declare(link)
            link.publisher = await self._open_channel(link)
            await self._call(link.publisher.confirm_delivery, lambda f: self._on_confirm(link, f))
            for consumer in self._consumers:
                await self._start_consumer(link, consumer)
        except (BrokerTooOld, ConfigurationError) as exc:
            self._fatal = exc
            log.error("broker_refused", reason=str(exc))
            _reject(self._first_open, exc)
            self._closing = True
            link.connection.close()
            return
        except Exception as exc:  # a channel died under us: start over
            log.warning("broker_setup_failed", error=repr(exc))
            if link.connection.is_open:
                link.connection.close()
            return
        self._failures = 0
        resend, self._resend = self._resend, []
        for pending in resend:
            if not pending.future.done():
                self._send(pending)
        self._ready.set()
        _resolve(self._first_open, None)
        log.info(
            "broker_ready",
            broker=self._where,
            version=self.server_version,
            resent=len(resend),
            reconnects=self.reconnects,
        )

    async def _declare(self, link: _Link) -> None:
        channel = await self._open_channel(link)
        for ex in self._topology.exchanges:
            await self._call(
                channel.exchange_declare, exchange=ex.name, exchange_type=ex.type, durable=True
            )
        for q in self._topology.queues:
            try:
                await self._call(
                    channel.queue_declare, queue=q.name, durable=True, arguments=dict(q.arguments)
                )
            except _ChannelClosed as exc:
                if exc.code == 406:
                    raise ConfigurationError(
                        f"queue {q.name!r} exists with other arguments than the gateway "
                        f"declares ({exc.text}); queue arguments cannot change in place: "
                        f"drain and delete the queue, then start again",
                        code="queue_arguments_mismatch",
                    ) from None
                raise
        for b in self._topology.bindings:
            await self._call(
                channel.queue_bind, queue=b.queue, exchange=b.exchange, routing_key=b.routing_key
            )
        channel.close()

    async def _open_channel(self, link: _Link) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._track(future)
        channel = link.connection.channel(on_open_callback=lambda ch: _resolve(future, ch))
        channel.add_on_close_callback(lambda ch, reason: self._on_channel_closed(link, ch, reason))
        return await future

    def _on_channel_closed(self, link: _Link, channel: Any, reason: BaseException) -> None:
        code = getattr(reason, "reply_code", 0)
        text = getattr(reason, "reply_text", str(reason))
        self._fail_rpcs(_ChannelClosed(code, text), channel)
        self._rpcs.pop(id(channel), None)
        expected = code in (0, 200) or self._closing
        setting_up = link.publisher is None  # _setup handles its own failures
        if not expected and not setting_up and link is self._link and link.connection.is_open:
            log.warning("broker_channel_closed", code=code, reason=text)
            link.connection.close()  # start over on a fresh connection

    def _on_lost(self, generation: int, error: BaseException) -> None:
        if generation != self._generation:
            return
        self._ready.clear()
        link, self._link = self._link, None
        if link is not None:
            self._resend.extend(p for p in link.unconfirmed.values() if not p.future.done())
            link.unconfirmed.clear()
        self._fail_rpcs(BrokerUnavailable(f"connection lost: {error!r}"))
        if self._closing:
            return
        self._failures += 1
        self.reconnects += 1
        delay = min(self._reconnect_max, 0.25 * 2 ** min(self._failures, 10))
        delay *= random.uniform(0.5, 1.0)  # noqa: S311  # jitter, not cryptography
        log.warning(
            "broker_connection_lost",
            broker=self._where,
            error=repr(error),
            retry_in=round(delay, 2),
            attempt=self._failures,
        )
        asyncio.get_running_loop().call_later(delay, self._reconnect)

    def _reconnect(self) -> None:
        if not self._closing:
            self._connect()

    # -- callback plumbing -------------------------------------------------------------
    def _call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        """Call a pika channel method and return a future for its reply frame.

        The future fails when the method's channel (``method.__self__``) or the connection
        closes before the reply arrives.
        """
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._track(future, getattr(method, "__self__", None))
        method(*args, callback=lambda frame=None: _resolve(future, frame), **kwargs)
        return future

    def _track(self, future: asyncio.Future[Any], channel: Any = None) -> None:
        key = id(channel)
        waiting = self._rpcs.setdefault(key, set())
        waiting.add(future)
        future.add_done_callback(waiting.discard)

    def _fail_rpcs(self, error: BaseException, channel: Any = None) -> None:
        """Fail the calls waiting on ``channel``, or on anything when it is None."""
        groups = (
            [self._rpcs.get(id(channel), set())]
            if channel is not None
            else list(self._rpcs.values())
        )
        for waiting in groups:
            for future in list(waiting):
                _reject(future, error)


class _ChannelClosed(Exception):
    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"{code} {text}")
        self.code = code
        self.text = text


class _Expired(Exception):
    """No confirm came before the publish's deadline."""


def _expire(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_exception(_Expired())


def _resolve(future: asyncio.Future[Any] | None, value: Any) -> None:
    if future is not None and not future.done():
        future.set_result(value)


def _reject(future: asyncio.Future[Any] | None, error: BaseException) -> None:
    if future is not None and not future.done():
        future.set_exception(error)
