"""timeit for one operation, sync or async: calibrated batches, the median of several runs.

Like ``timeit.Timer.autorange``, the batch size doubles until one batch takes at least the
target time; then ``runs`` batches are timed and each gives a per-operation figure. The
median of those is reported (robust to one disturbed run), with the spread beside it.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from gateway.bench.stats import median

MAX_BATCH = 1 << 20


@dataclass(frozen=True, slots=True)
class Timing:
    median_us: float
    min_us: float
    max_us: float
    runs: int
    batch: int  # operations per run


def measure(fn: Callable[[], Any], *, target_seconds: float, runs: int) -> Timing:
    """Per-operation cost of ``fn()`` in µs."""

    def batch(n: int) -> float:
        started = time.perf_counter()
        for _ in range(n):
            fn()
        return time.perf_counter() - started

    return _measure(batch, target_seconds, runs)


async def measure_async(
    fn: Callable[[], Awaitable[Any]], *, target_seconds: float, runs: int
) -> Timing:
    """Per-operation cost of ``await fn()`` in µs (the event loop's own overhead included)."""
    n = 1
    while True:
        took = await _async_batch(fn, n)
        if took >= target_seconds or n >= MAX_BATCH:
            break
        n *= 2
    seconds = [await _async_batch(fn, n) for _ in range(runs)]
    return _timing(seconds, n)


async def _async_batch(fn: Callable[[], Awaitable[Any]], n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        await fn()
    return time.perf_counter() - started


def _measure(batch: Callable[[int], float], target_seconds: float, runs: int) -> Timing:
    n = 1
    while True:
        took = batch(n)
        if took >= target_seconds or n >= MAX_BATCH:
            break
        n *= 2
    enabled = gc.isenabled()
    gc.disable()  # as timeit does: a collection inside one run is noise, not the cost
    try:
        seconds = [batch(n) for _ in range(runs)]
    finally:
        if enabled:
            gc.enable()
    return _timing(seconds, n)


def _timing(seconds: list[float], n: int) -> Timing:
    per_op = [s / n * 1e6 for s in seconds]
    return Timing(median(per_op), min(per_op), max(per_op), len(per_op), n)
