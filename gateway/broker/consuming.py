"""The consuming side: deliveries handed to handlers, and settled with few frames.

Each consumer has a channel of its own, and each channel a ``Settler``. A handler settles
its delivery with ``ack`` or ``reject``:

- a reject (with or without requeue) goes out at once, one frame per delivery;
- an ack is noted, and once per loop iteration the settler sends one
  ``basic_ack(N, multiple=True)`` for the longest run of outstanding deliveries, in
  delivery order, that are all acked (N the run's last tag), then a single ack for each
  acked delivery behind one still being handled. No ack waits for a slow neighbour: it
  leaves in the next loop iteration either way.

A multiple ack settles every unacked tag up to N on the channel, so the run stops at the
first delivery still in hand; a rejected delivery is already settled when the ack that
spans it arrives (frames of a channel are handled in order), so a run passes over it. A
dead channel's notes are dropped: the broker redelivers what it had not seen acked.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from gateway.broker.messages import Delivery
from gateway.errors import BrokerUnavailable, StoreUnavailable
from gateway.logs import get_logger

log = get_logger(__name__)

Handler = Callable[[Delivery], Awaitable[None]]


@dataclass(slots=True)
class Consumer:
    queue: str
    handler: Handler
    prefetch: int
    channel: Any = None
    tag: str | None = None
    settler: Settler | None = None


class Settler:
    """Acks and rejects of one consumer channel (see the module docstring)."""

    __slots__ = ("_acked", "_channel", "_current", "_flush", "_fresh", "_order")

    def __init__(self, channel: Any, current: Callable[[], bool]) -> None:
        self._channel = channel
        self._current = current  # False once the channel's connection is no longer in use
        self._order: deque[int] = deque()  # tags in delivery order, settled ones trimmed lazily
        self._acked: dict[int, bool] = {}  # outstanding tag -> acked by its handler, not sent
        self._fresh: list[int] = []  # acked since the last flush
        self._flush: asyncio.Handle | None = None

    @property
    def alive(self) -> bool:
        return bool(self._channel.is_open) and self._current()

    @property
    def outstanding(self) -> int:
        """Deliveries the broker still counts as unacked on this channel, as seen here."""
        return len(self._acked)

    def received(self, tag: int) -> None:
        self._order.append(tag)
        self._acked[tag] = False

    def settle(self, tag: int, how: str) -> None:
        """``how``: "ack", "requeue" (reject, requeue) or "reject" (dead-letter)."""
        if tag not in self._acked:
            return  # dropped with its dead channel; the broker redelivers it
        if not self.alive:
            self.drop()
            return
        if how == "ack":
            self._acked[tag] = True
            self._fresh.append(tag)
            if self._flush is None:
                self._flush = asyncio.get_running_loop().call_soon(self.flush)
            return
        del self._acked[tag]
        self._channel.basic_reject(tag, requeue=(how == "requeue"))

    def flush(self) -> None:
        """Send the acks noted so far: the leading run as one frame, the others singly."""
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        fresh, self._fresh = self._fresh, []
        if not fresh:
            return
        if not self.alive:
            self.drop()
            return
        acked, order = self._acked, self._order
        last, run = 0, 0
        while order:
            tag = order[0]
            done = acked.get(tag)  # None: settled already (rejected, or acked singly)
            if done is False:
                break  # still in its handler: a multiple ack must not reach it
            order.popleft()
            if done:
                del acked[tag]
                last, run = tag, run + 1
        if run:
            self._channel.basic_ack(last, multiple=run > 1)
        for tag in fresh:
            if acked.get(tag):  # behind a delivery still in hand
                del acked[tag]
                self._channel.basic_ack(tag)
        if len(order) > 2 * len(acked) + 64:  # a long-held delivery keeps the front
            self._order = deque(t for t in order if t in acked)

    def drop(self) -> None:
        """Forget everything: the channel is gone and its deliveries will come again."""
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        self._order.clear()
        self._acked.clear()
        self._fresh.clear()


async def run_handler(
    consumer: Consumer,
    delivery: Delivery,
    settler: Settler,
    closing: Callable[[], bool],
    pause_seconds: tuple[float, float],
    hold_seconds: float,
) -> None:
    """Run the handler; settle what it left unsettled; hold through brief outages.

    A handler that fails with ``StoreUnavailable`` / ``BrokerUnavailable`` is run again in
    place, its delivery unacked, after a capped, jittered pause, for at most
    ``hold_seconds`` in all; any other failure (or one past the hold) requeues it.
    """
    pause, held = pause_seconds[0], 0.0
    while True:
        try:
            await consumer.handler(delivery)
        except (StoreUnavailable, BrokerUnavailable) as exc:
            if (
                delivery.settled is None
                and settler.alive
                and not closing()
                and held + pause <= hold_seconds
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
                pause = min(pause * 2, pause_seconds[1])
                continue  # the same delivery, still unacked: no delivery is counted
            log.warning("handler_failed", queue=consumer.queue, error=str(exc), held=held)
            if delivery.settled is None:
                delivery.reject(requeue=True)
        except Exception:
            log.exception("handler_failed", queue=consumer.queue, message_id=delivery.message_id)
            if delivery.settled is None:
                delivery.reject(requeue=True)
        else:
            if delivery.settled is None:
                log.error("handler_left_unsettled", queue=consumer.queue)
                delivery.reject(requeue=True)
        return
