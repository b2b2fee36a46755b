"""pika ``AsyncioConnection`` on the running event loop: confirms, acks, recovery.

No pika call here blocks; every broker round trip is a callback turned into a future.
The client keeps one publishing channel in confirm mode with a window of unconfirmed
publishes, and one channel per consumer with its own prefetch. When the connection drops
it reconnects with capped, jittered backoff, re-declares the topology, re-registers the
consumers and resends every publish that was not yet confirmed and whose caller is still
waiting. Deliveries of a dead channel are never acked (the broker redelivers them).

The publishing side (properties, confirm tags) is in :mod:`gateway.broker.confirms`, the
consuming side (handlers, acks sent in contiguous runs) in :mod:`gateway.broker.consuming`;
this module owns the connection, its channels and their recovery.

Before declaring anything it checks that the broker is RabbitMQ 3.10 or newer, and refuses
to run with a clear message otherwise.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import pika
from pika.adapters.asyncio_connection import AsyncioConnection

from gateway.broker.confirms import Confirms, Expired, Pending, expire
from gateway.broker.consuming import Consumer, Handler, Settler, run_handler
from gateway.broker.messages import Delivery, Message
from gateway.broker.topology import Topology
from gateway.broker.version import check_server
from gateway.errors import BrokerTooOld, BrokerUnavailable, ConfigurationError
from gateway.logs import get_logger

log = get_logger(__name__)

__all__ = ["BrokerClient", "Handler"]

# A handler that fails because the store or the broker is briefly away is run again in
# place, the delivery held unacked, after a capped pause: a requeue would count against the
# queue's delivery limit (5) and dead-letter a sound message within milliseconds. The hold
# is bounded far below RabbitMQ's consumer timeout (30 min); past it the delivery is
# requeued as any other failure.
INFRA_PAUSE_SECONDS = (0.25, 5.0)  # first pause, cap (doubling, with jitter)
INFRA_HOLD_SECONDS = 120.0


@dataclass(slots=True)
class _Link:
    """One live connection and its channels; replaced wholesale on reconnect."""

    connection: Any
    generation: int
    confirms: Confirms | None = None  # set once the publisher channel is in confirm mode


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
        self._consumers: list[Consumer] = []
        self._resend: list[Pending] = []
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
        for consumer in self._consumers:
            if consumer.settler is not None:
                consumer.settler.flush()  # the last acks go out before the connection closes
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
        # acquire/release rather than `async with`: two wrapper calls fewer per publish
        await self._window.acquire()
        try:
            if self._fatal is not None or not self._ready.is_set():
                await self._wait_ready(deadline)
            pending = Pending(exchange, routing_key, message, loop.create_future())
            self._send(pending)
            # One timer handle instead of wait_for + shield: the hot path publishes ~30
            # messages per application, and each of those wrappers is a future and a task.
            expiry = loop.call_at(deadline, expire, pending.future)
            try:
                await pending.future
            except asyncio.CancelledError:
                self._forget(pending)  # nobody waits for it: do not resend it after a reconnect
                raise
            except Expired:
                self._forget(pending)
                raise BrokerUnavailable(
                    f"RabbitMQ at {self._where} did not confirm a publish to {exchange!r} "
                    f"within {timeout:.1f} s",
                    code="publish_unconfirmed",
                ) from None
            finally:
                expiry.cancel()
        finally:
            self._window.release()

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

    def _send(self, pending: Pending) -> None:
        confirms = self._link.confirms if self._link is not None else None
        if confirms is None or not confirms.is_open:
            self._resend.append(pending)
            return
        confirms.send(pending)

    def _forget(self, pending: Pending) -> None:
        if pending in self._resend:
            self._resend.remove(pending)
        if self._link is not None and self._link.confirms is not None:
            self._link.confirms.forget(pending)

    # -- consuming ---------------------------------------------------------------------
    async def consume(self, queue: str, handler: Handler, *, prefetch: int) -> None:
        """Deliver messages of ``queue`` to ``handler``, which must settle each one.

        A handler that raises gets its delivery requeued; the queue's delivery limit
        dead-letters a message that keeps failing.
        """
        consumer = Consumer(queue, handler, prefetch)
        self._consumers.append(consumer)
        if self._link is not None and self._ready.is_set():
            await self._start_consumer(self._link, consumer)

    async def _start_consumer(self, link: _Link, consumer: Consumer) -> None:
        channel = await self._open_channel(link)
        await self._call(channel.basic_qos, prefetch_count=consumer.prefetch)
        settler = Settler(channel, lambda: link is self._link)
        consumer.channel, consumer.settler = channel, settler
        consumer.tag = channel.basic_consume(
            consumer.queue, partial(self._on_message, consumer, settler)
        )

    def _on_message(
        self,
        consumer: Consumer,
        settler: Settler,
        _channel: Any,
        method: Any,
        props: Any,
        body: bytes,
    ) -> None:
        tag: int = method.delivery_tag
        settler.received(tag)
        headers = props.headers
        delivery = Delivery(
            body,
            method.exchange,
            method.routing_key,
            props.message_id,
            props.correlation_id,
            props.user_id,
            headers if headers is not None else {},  # pika decodes a fresh dict per message
            props.content_type,
            method.redelivered,
            partial(settler.settle, tag),
        )
        task = asyncio.get_running_loop().create_task(
            run_handler(
                consumer,
                delivery,
                settler,
                self._is_closing,
                self._infra_pause,
                self._infra_hold,
            )
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _is_closing(self) -> bool:
        return self._closing

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
            publisher = await self._open_channel(link)
            confirms = Confirms(publisher)
            await self._call(publisher.confirm_delivery, confirms.on_confirm)
            link.confirms = confirms
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
        for consumer in self._consumers:
            if consumer.channel is channel and consumer.settler is not None:
                consumer.settler.drop()  # its unacked deliveries come again
        expected = code in (0, 200) or self._closing
        setting_up = link.confirms is None  # _setup handles its own failures
        if not expected and not setting_up and link is self._link and link.connection.is_open:
            log.warning("broker_channel_closed", code=code, reason=text)
            link.connection.close()  # start over on a fresh connection

    def _on_lost(self, generation: int, error: BaseException) -> None:
        if generation != self._generation:
            return
        self._ready.clear()
        link, self._link = self._link, None
        if link is not None and link.confirms is not None:
            self._resend.extend(link.confirms.take_unconfirmed())
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


def _resolve(future: asyncio.Future[Any] | None, value: Any) -> None:
    if future is not None and not future.done():
        future.set_result(value)


def _reject(future: asyncio.Future[Any] | None, error: BaseException) -> None:
    if future is not None and not future.done():
        future.set_exception(error)
