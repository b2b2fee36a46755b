"""Publishing what a transition wrote to the outbox: at once by the writer, later by the
relay for rows a crash left behind. Delivery is at least once; consumers dedupe (task ids,
event ids)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from gateway.broker.messages import Message
from gateway.errors import Retryable
from gateway.logs import get_logger
from gateway.metrics import Metrics
from gateway.periodic import repeat
from gateway.store.cases import CaseStore, OutboxRow

log = get_logger(__name__)
Publish = Callable[[str, str, Message], Awaitable[None]]
DELETE_CHUNK = 500  # ids per DELETE statement, far below any database's parameter limit


@dataclass
class _Batch:
    """Rows deleted together, and the future their flushes wait on."""

    done: asyncio.Future[None]
    ids: list[int] = field(default_factory=list)


class Outbox:
    def __init__(
        self,
        cases: CaseStore,
        publish: Publish,
        metrics: Metrics,
        *,
        lease_seconds: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._cases = cases
        self._publish = publish
        self._metrics = metrics
        self._lease = lease_seconds
        self._clock = clock
        self._next: _Batch | None = None  # published rows waiting for the next DELETE
        self._undeleted: list[int] = []  # rows of a failed DELETE: they go with the next
        self._deleter: asyncio.Future[None] | None = None

    async def flush(self, rows: Sequence[OutboxRow]) -> None:
        """Publish the rows (confirmed) and delete them. A failure leaves them for the relay."""
        if not rows:
            return
        results = await asyncio.gather(
            *(
                self._publish(r.outgoing.exchange, r.outgoing.routing_key, r.outgoing.message)
                for r in rows
            ),
            return_exceptions=True,
        )
        sent = [r.id for r, res in zip(rows, results, strict=True) if res is None]
        for r, res in zip(rows, results, strict=True):
            if res is None:
                self._metrics.published.labels(r.outgoing.exchange).inc()
            elif not isinstance(res, Retryable):
                log.error("outbox_publish_failed", exchange=r.outgoing.exchange, error=repr(res))
        await self._delete(sent)
        if len(sent) < len(rows):
            log.warning("outbox_deferred", unsent=len(rows) - len(sent))

    async def _delete(self, ids: list[int]) -> None:
        """Delete published rows, coalesced: the rows of every flush that comes while one
        DELETE runs go in the next batch, so concurrent writers share one statement and one
        store transaction (one per ``DELETE_CHUNK`` ids). Returns once ``ids`` are gone,
        waiting for their own batch only. A failed batch fails its own waiters (their
        handlers run again) and its rows go with the next batch; later batches are still
        tried. Should the process stop first, the relay publishes the rows again after
        their lease (delivery is at least once)."""
        if not ids:
            return
        if self._next is None:
            self._next = _Batch(asyncio.get_running_loop().create_future())
        batch = self._next
        batch.ids.extend(ids)
        if self._deleter is None or self._deleter.done():
            self._deleter = asyncio.ensure_future(self._delete_batches())
        await asyncio.shield(batch.done)

    async def _delete_batches(self) -> None:
        while (batch := self._next) is not None:
            self._next = None
            ids = list(dict.fromkeys([*self._undeleted, *batch.ids]))
            self._undeleted = []
            gone = 0
            try:
                for gone in range(0, len(ids), DELETE_CHUNK):
                    await self._cases.delete_outbox(ids[gone : gone + DELETE_CHUNK])
            except Exception as exc:
                self._undeleted = ids[gone:]
                batch.done.set_exception(exc)
            except BaseException:  # cancelled: nobody is left to delete for the waiters
                self._undeleted = ids[gone:]
                batch.done.cancel()
                if self._next is not None:
                    self._next.done.cancel()
                    self._undeleted.extend(self._next.ids)
                    self._next = None
                raise
            else:
                batch.done.set_result(None)

    async def relay_once(self) -> int:
        rows = await self._cases.claim_outbox(self._clock(), self._lease, 500)
        await self.flush(rows)
        return len(rows)

    async def run(self, interval: float, stop: asyncio.Event) -> None:
        await repeat(
            self.relay_once, interval, stop, name="outbox_relay", again_at_once_when_busy=True
        )
