"""The publishing side of one connection: persistent publishes and the broker's confirms.

The publisher channel is in confirm mode: RabbitMQ numbers the publishes of the channel
from 1 and confirms (``Basic.Ack``) or refuses (``Basic.Nack``) each, one by one or many
at once (``multiple``). ``Confirms`` keeps the publishes it has sent and not yet seen
confirmed, in tag order, and settles each caller's future when its confirm arrives. When
the connection drops, ``take_unconfirmed`` hands back the ones whose callers still wait,
to be sent again on the next connection.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pika

from gateway.broker.messages import Message
from gateway.errors import BrokerUnavailable


@dataclass(slots=True)
class Pending:
    """A publish whose caller waits for its confirm."""

    exchange: str
    routing_key: str
    message: Message
    future: asyncio.Future[None]


class Confirms:
    """The confirm-mode publisher channel of one connection and its unconfirmed publishes."""

    __slots__ = ("_next_tag", "_unconfirmed", "channel")

    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self._next_tag = 0
        self._unconfirmed: dict[int, Pending] = {}  # insertion order is tag order

    @property
    def is_open(self) -> bool:
        return bool(self.channel.is_open)

    def send(self, pending: Pending) -> None:
        """Publish ``pending`` on the channel; its future settles with the confirm.

        Raises ``ValueError`` (and sends nothing) when a header cannot travel over AMQP.
        """
        m = pending.message
        props = pika.BasicProperties(
            content_type=m.content_type,
            delivery_mode=2,
            message_id=m.message_id,
            correlation_id=m.correlation_id,
            # pika encodes the table inside basic_publish: no copy needed, the caller's
            # mapping is only read.
            headers=m.headers,
            type=m.type,
        )
        try:
            self.channel.basic_publish(pending.exchange, pending.routing_key, m.body, props)
        except pika.exceptions.UnsupportedAMQPFieldException:
            raise ValueError(
                f"a header of the message to {pending.exchange!r} has a type AMQP cannot "
                "carry (use str, int, bool, bytes, lists or dicts of these)"
            ) from None
        # Encoding happens inside basic_publish: only now is the frame on its way.
        self._next_tag += 1
        self._unconfirmed[self._next_tag] = pending

    def forget(self, pending: Pending) -> None:
        """Stop tracking ``pending`` (its caller gave up); a later confirm is ignored."""
        for tag, entry in list(self._unconfirmed.items()):
            if entry is pending:
                del self._unconfirmed[tag]

    def on_confirm(self, frame: Any) -> None:
        """pika's callback for ``Basic.Ack`` / ``Basic.Nack`` on the publisher channel."""
        method = frame.method
        tag: int = method.delivery_tag
        unconfirmed = self._unconfirmed
        if method.multiple:  # tags are kept in increasing order: stop at the first later one
            tags = []
            for t in unconfirmed:
                if t > tag:
                    break
                tags.append(t)
        else:
            tags = [tag]
        nack = isinstance(method, pika.spec.Basic.Nack)
        for t in tags:
            entry = unconfirmed.pop(t, None)
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

    def take_unconfirmed(self) -> list[Pending]:
        """The publishes still waiting for a confirm whose callers still wait; forgets all."""
        waiting = [p for p in self._unconfirmed.values() if not p.future.done()]
        self._unconfirmed.clear()
        return waiting


class Expired(Exception):
    """No confirm came before the publish's deadline."""


def expire(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_exception(Expired())
