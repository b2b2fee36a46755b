"""The outbox relay: republish applications a crash left ``received``.

It runs as a timer in whichever process has the ``relay`` role; the store hands each row to
one relay at a time (a lease on the row), so any number of relays may run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from gateway.broker.messages import Message
from gateway.broker.topology import ACCEPTED
from gateway.intake.service import accepted_message
from gateway.logs import get_logger
from gateway.metrics import Metrics
from gateway.periodic import repeat
from gateway.store import Store

log = get_logger(__name__)

Publish = Callable[[str, str, Message], Awaitable[None]]


class Relay:
    def __init__(
        self,
        store: Store,
        publish: Publish,
        metrics: Metrics,
        *,
        grace_seconds: float,
        lease_seconds: float = 30.0,
        batch: int = 100,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._publish = publish
        self._metrics = metrics
        self._grace = grace_seconds
        self._lease = lease_seconds
        self._batch = batch
        self._clock = clock

    async def run_once(self) -> int:
        """Republish every stale ``received`` row this relay could claim; return how many."""
        rows = await self._store.claim_unpublished(
            self._clock(), self._grace, self._lease, self._batch
        )
        done = 0
        for app in rows:
            await self._publish(ACCEPTED, app.matter, accepted_message(app))
            if await self._store.mark_accepted(app.id, self._clock()):
                done += 1
                self._metrics.relayed.inc()
                log.info("relay_republished", application_id=app.id, matter=app.matter)
        return done

    async def run(self, interval: float, stop: asyncio.Event) -> None:
        await repeat(self.run_once, interval, stop, name="relay")
