"""Timer loops: work that any process with the role repeats (relays, polls, escalation).

The rows they act on are claimed in the store, so any number of processes may run the same
loop; the loop itself only paces the work and keeps going through failures.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from gateway.errors import Retryable
from gateway.logs import get_logger

log = get_logger(__name__)


async def repeat(
    work: Callable[[], Awaitable[object]],
    interval: float,
    stop: asyncio.Event,
    *,
    name: str,
    again_at_once_when_busy: bool = False,
) -> None:
    """Run ``work`` every ``interval`` seconds until ``stop``; a retryable failure is logged
    as deferred, anything else with its traceback, and the loop goes on. With
    ``again_at_once_when_busy``, a pass that returned something truthy (it found work) is
    followed at once by the next, so a backlog drains without waiting."""
    while not stop.is_set():
        try:
            if await work() and again_at_once_when_busy:
                continue
        except Retryable as exc:
            log.warning("periodic_deferred", loop=name, error=str(exc))
        except Exception:
            log.exception("periodic_failed", loop=name)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
