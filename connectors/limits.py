"""Per-system concurrency and rate limits, shared by every connector."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class Limiter:
    """At most ``concurrency`` requests in flight and ``rate_per_second`` started per second
    (a token bucket holding one second's worth, so short bursts are smoothed, not refused)."""

    def __init__(self, concurrency: int, rate_per_second: float) -> None:
        self._slots = asyncio.Semaphore(concurrency)
        self._rate = rate_per_second
        self._tokens = max(rate_per_second, 1.0)
        self._capacity = self._tokens
        self._stamp = time.monotonic()
        self._lock = asyncio.Lock()

    async def _token(self) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                self._tokens = min(self._capacity, self._tokens + (now - self._stamp) * self._rate)
                self._stamp = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await asyncio.sleep((1 - self._tokens) / self._rate)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        async with self._slots:
            await self._token()
            yield
