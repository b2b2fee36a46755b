"""The outbox deletes published rows in shared statements: flushes that come while one
DELETE runs go together in the next; a failed DELETE leaves its rows for the relay."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import cast

from gateway.broker.messages import Message
from gateway.errors import StoreUnavailable
from gateway.metrics import Metrics
from gateway.orchestration.outbox import Outbox
from gateway.orchestration.records import Outgoing
from gateway.store.cases import CaseStore, OutboxRow


class FakeCases:
    """``delete_outbox`` only: records each call; the first waits for ``release``."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.release = asyncio.Event()
        self.fail_next = False

    async def delete_outbox(self, ids: Sequence[int]) -> None:
        self.calls.append(list(ids))
        if len(self.calls) == 1:
            await self.release.wait()
        if self.fail_next:
            self.fail_next = False
            raise StoreUnavailable("store away", system="store")


async def publish(_exchange: str, _key: str, _message: Message) -> None:
    return None


def rows(*ids: int) -> list[OutboxRow]:
    return [OutboxRow(i, Outgoing("gw.events", "k", Message(body=b"{}"))) for i in ids]


async def settle() -> None:
    """Let the flushes publish and queue their rows (a few loop turns, no time)."""
    for _ in range(10):
        await asyncio.sleep(0)


def outbox(cases: FakeCases) -> Outbox:
    return Outbox(cast(CaseStore, cases), publish, Metrics())


async def test_flushes_during_a_delete_share_the_next_one() -> None:
    cases = FakeCases()
    box = outbox(cases)
    first = asyncio.create_task(box.flush(rows(1, 2)))
    await settle()  # the first DELETE is running and waits
    later = [asyncio.create_task(box.flush(rows(i))) for i in (3, 4, 5)]
    await settle()
    assert not any(t.done() for t in [first, *later])  # nobody returns before its rows go
    cases.release.set()
    await asyncio.gather(first, *later)
    assert cases.calls == [[1, 2], [3, 4, 5]]


async def test_a_failed_delete_fails_its_waiters_and_the_rows_go_with_the_next() -> None:
    cases = FakeCases()
    cases.fail_next = True
    box = outbox(cases)
    first = asyncio.create_task(box.flush(rows(1)))
    await settle()
    second = asyncio.create_task(box.flush(rows(2)))
    await settle()
    cases.release.set()
    results = await asyncio.gather(first, second, return_exceptions=True)
    assert all(isinstance(r, StoreUnavailable) for r in results)  # their handlers run again
    await box.flush(rows(3))
    assert cases.calls == [[1], [1, 2, 3]]  # nothing left behind: all go with the next flush


async def test_nothing_published_deletes_nothing() -> None:
    cases = FakeCases()
    await outbox(cases).flush([])
    assert cases.calls == []
