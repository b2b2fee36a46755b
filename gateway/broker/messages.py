"""What goes over the broker: an outgoing ``Message`` and an incoming ``Delivery``.

pika's property objects stay in :mod:`gateway.broker.client` and
:mod:`gateway.broker.confirms`; the rest of the gateway sees only these two typed values.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


def uuid7() -> str:
    """A UUIDv7 (RFC 9562): 48-bit unix milliseconds, then random bits; sorts by time."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76  # version 7
    value |= ((rand >> 62) & 0xFFF) << 64  # rand_a, 12 bits
    value |= 0b10 << 62  # RFC 4122 variant
    value |= rand & ((1 << 62) - 1)  # rand_b, 62 bits
    h = f"{value:032x}"  # what str(uuid.UUID(int=value)) gives, without building the object
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def new_traceparent() -> str:
    """A W3C trace context header for a new trace (sampled)."""
    return f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-01"


@dataclass(frozen=True, slots=True)
class Message:
    """A persistent message the gateway publishes. ``message_id`` is unique per publish."""

    body: bytes
    message_id: str = field(default_factory=uuid7)
    correlation_id: str | None = None  # the application id
    headers: Mapping[str, Any] = field(default_factory=dict)
    content_type: str = "application/json"
    type: str | None = None  # event name for events, e.g. "application.rejected"


@dataclass(slots=True)
class Delivery:
    """A message received from a queue. Exactly one of ``ack``/``reject`` must be called."""

    body: bytes
    exchange: str
    routing_key: str
    message_id: str | None
    correlation_id: str | None
    user_id: str | None  # validated by RabbitMQ against the publishing connection's user
    headers: dict[str, Any]
    content_type: str | None
    redelivered: bool
    _settle: Callable[[str], None] = field(repr=False)
    settled: str | None = None

    def ack(self) -> None:
        """Done with it. Ignored if the channel it came on is gone (it will be redelivered)."""
        self._do("ack")

    def reject(self, *, requeue: bool) -> None:
        """``requeue=False`` dead-letters it through the queue's ``gw.dlx``."""
        self._do("requeue" if requeue else "reject")

    def _do(self, how: str) -> None:
        if self.settled is not None:
            raise RuntimeError(f"delivery already settled ({self.settled})")
        self.settled = how
        self._settle(how)

    def header(self, name: str, default: Any = None) -> Any:
        return self.headers.get(name, default)


def header_str(value: Any) -> str | None:
    """Header values may arrive as bytes from other clients; normalise to str."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)
