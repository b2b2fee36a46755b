"""Per-system concurrency and rate limits, shared by every connector."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager


class Limiter:
    """At most ``concurrency`` requests in flight and ``rate_per_second`` started per second
    (a token bucket holding one second's worth, so short bursts are smoothed, not refused)."""

    def __init__(
        self,
        concurrency: int,
        rate_per_second: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._slots = asyncio.Semaphore(concurrency)
        self._rate = rate_per_second
        self._tokens = max(rate_per_second, 1.0)
        self._capacity = self._tokens
        self._stamp = clock()
        self._lock = asyncio.Lock()

    async def _token(self) -> None:
        async with self._lock:
            while True:
                now = self._clock()
                self._tokens = min(self._capacity, self._tokens + (now - self._stamp) * self._rate)
                self._stamp = now
                if self._tokens >= 1 - 1e-9:  # float rounding must not spin
                    self._tokens -= 1
                    return
                await self._sleep((1 - self._tokens) / self._rate)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        async with self._slots:
            await self._token()
            yield
