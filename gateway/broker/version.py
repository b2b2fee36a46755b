"""The broker the gateway relies on: RabbitMQ 3.10 or newer, said clearly when it is not."""

from __future__ import annotations

import re
from typing import Any

from gateway.errors import BrokerTooOld

MIN_VERSION = (3, 10)


def parse_version(text: str) -> tuple[int, ...]:
    """``"3.12.0-rc.1"`` → ``(3, 12, 0)``: the numeric release, pre-release tags ignored."""
    parts: list[int] = []
    for piece in text.split("."):
        digits = re.match(r"\d+", piece)
        if digits is None:
            break
        parts.append(int(digits.group()))
        if digits.end() < len(piece):
            break
    return tuple(parts)


def check_server(properties: dict[str, Any] | None) -> str:
    """Return the broker version, or raise ``BrokerTooOld`` for anything but RabbitMQ ≥ 3.10."""
    props = properties or {}
    product = _text(props.get("product")) or "unknown"
    version = _text(props.get("version")) or "0"
    if product != "RabbitMQ" or parse_version(version) < MIN_VERSION:
        raise BrokerTooOld(
            f"the broker is {product} {version}; the gateway needs RabbitMQ 3.10 or newer "
            "(quorum-queue delivery limits and at-least-once dead-lettering). Upgrade it, or "
            "start the pinned one with `docker compose -f deploy/compose.yaml up -d`",
            code="broker_too_old",
        )
    return version


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return None if value is None else str(value)
