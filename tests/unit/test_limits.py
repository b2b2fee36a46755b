"""Per-system limits: never more requests in flight than the concurrency, and requests
spaced by the rate once the one-second burst is spent (sleeps recorded, not timed)."""

from __future__ import annotations

import asyncio

import pytest

from connectors.limits import Limiter


async def test_never_more_in_flight_than_the_concurrency() -> None:
    limiter = Limiter(concurrency=3, rate_per_second=10_000)
    active = peak = 0

    async def call() -> None:
        nonlocal active, peak
        async with limiter.slot():
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(0.01)
            active -= 1

    await asyncio.gather(*(call() for _ in range(20)))
    assert peak == 3


async def test_the_rate_spaces_requests_after_the_burst() -> None:
    now = [1000.0]
    waits: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    limiter = Limiter(concurrency=100, rate_per_second=5, clock=lambda: now[0], sleep=fake_sleep)
    for _ in range(15):
        async with limiter.slot():
            pass
    assert waits[:1] == [pytest.approx(0.2)]  # the 6th request waits one token's time
    assert sum(waits) == pytest.approx(2.0)  # 15 requests at 5/s after a burst of 5
