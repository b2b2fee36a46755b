"""Waiting for something asynchronous to become true, without timing assertions."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any


async def eventually(probe: Callable[[], Awaitable[Any]], within: float = 15.0) -> Any:
    """Poll ``probe`` until it returns something truthy or ``within`` seconds pass; return
    its last value (the caller asserts on it, so a timeout fails with the real value)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = await probe()
        if value or loop.time() > deadline:
            return value
        await asyncio.sleep(0.05)


async def true(value: bool) -> bool:
    """Adapter for ``eventually(lambda: true(condition))``."""
    return value
