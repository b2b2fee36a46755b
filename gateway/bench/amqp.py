"""A bare pika ``AsyncioConnection`` for the bench: futures instead of callbacks, no more.

The raw baseline must measure what pika and RabbitMQ can do without the gateway's client in
between, so it talks to pika directly through this helper; the intake and push benches use
it too, to count, drain and watch the gateway's own queues from outside the gateway.

A channel that closes (a passive declare of a missing queue, a refused argument) fails
every call still waiting on it with ``ChannelGone``; a lost connection fails them all.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import pika
from pika.adapters.asyncio_connection import AsyncioConnection


class ChannelGone(Exception):
    """The channel or connection closed while a call waited on it."""


class AmqpLink:
    """One connection; ``channel()`` opens channels, ``call`` awaits a channel method."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self._waiting: dict[int, set[asyncio.Future[Any]]] = {}
        self._closed = asyncio.get_running_loop().create_future()

    @classmethod
    async def open(cls, url: str, name: str, timeout: float = 10.0) -> AmqpLink:
        loop = asyncio.get_running_loop()
        opened: asyncio.Future[Any] = loop.create_future()
        holder: list[AmqpLink] = []
        params = pika.URLParameters(url)
        params.client_properties = {"connection_name": name}

        def on_close(_conn: Any, error: BaseException) -> None:
            _fail(opened, ChannelGone(f"connection refused or lost: {error!r}"))
            if holder:
                holder[0]._on_connection_closed(error)

        AsyncioConnection(
            params,
            on_open_callback=lambda conn: _settle(opened, conn),
            on_open_error_callback=on_close,
            on_close_callback=on_close,
            custom_ioloop=loop,
        )
        connection = await asyncio.wait_for(opened, timeout)
        link = cls(connection)
        holder.append(link)
        return link

    @property
    def server_version(self) -> str:
        props = self.connection.server_properties or {}
        version = props.get("version", b"?")
        return version.decode() if isinstance(version, bytes) else str(version)

    async def channel(self) -> Any:
        opened: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        channel = self.connection.channel(on_open_callback=lambda ch: _settle(opened, ch))
        channel.add_on_close_callback(self._on_channel_closed)
        self._track(opened, channel)
        return await opened

    def call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        """Call a channel method that takes ``callback=``; the future gets its reply frame."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._track(future, getattr(method, "__self__", None))
        method(*args, callback=lambda frame=None: _settle(future, frame), **kwargs)
        return future

    async def close(self) -> None:
        if self.connection.is_open:
            self.connection.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._closed), 5)

    def _track(self, future: asyncio.Future[Any], channel: Any) -> None:
        waiting = self._waiting.setdefault(id(channel), set())
        waiting.add(future)
        future.add_done_callback(waiting.discard)

    def _on_channel_closed(self, channel: Any, reason: BaseException) -> None:
        text = getattr(reason, "reply_text", str(reason))
        code = getattr(reason, "reply_code", 0)
        for future in list(self._waiting.pop(id(channel), ())):
            _fail(future, ChannelGone(f"channel closed: {code} {text}"))

    def _on_connection_closed(self, error: BaseException) -> None:
        for waiting in self._waiting.values():
            for future in list(waiting):
                _fail(future, ChannelGone(f"connection lost: {error!r}"))
        _settle(self._closed, None)


async def queue_counts(link: AmqpLink, queue: str) -> tuple[int, int] | None:
    """(messages ready, consumers) of ``queue``, or None when it does not exist.

    A passive declare of a missing queue closes its channel, so it gets one of its own.
    """
    channel = await link.channel()
    try:
        frame = await link.call(channel.queue_declare, queue, passive=True)
    except ChannelGone:
        return None
    channel.close()
    return int(frame.method.message_count), int(frame.method.consumer_count)


async def take_back(
    link: AmqpLink,
    queue: str,
    mine: Callable[[Any, Any], bool],
    *,
    expected: int | None = None,
    idle_seconds: float = 3.0,
) -> int:
    """Consume ``queue`` and ack the messages ``mine(method, properties)`` claims, until
    ``expected`` are taken or nothing arrived for ``idle_seconds``. Others go back at once,
    unacked, for their owner. Returns how many were taken."""
    if expected == 0:
        return 0
    channel = await link.channel()
    await link.call(channel.basic_qos, prefetch_count=500)
    loop = asyncio.get_running_loop()
    taken = 0
    last = loop.time()
    done = asyncio.Event()

    def on_message(ch: Any, method: Any, props: Any, _body: bytes) -> None:
        nonlocal taken, last
        last = loop.time()
        if not mine(method, props):
            ch.basic_nack(method.delivery_tag, requeue=True)
            return
        ch.basic_ack(method.delivery_tag)
        taken += 1
        if expected is not None and taken >= expected:
            done.set()

    tag = channel.basic_consume(queue, on_message)
    while not done.is_set() and loop.time() - last < idle_seconds:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), 0.25)
    channel.basic_cancel(tag)
    channel.close()
    return taken


def _settle(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _fail(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
