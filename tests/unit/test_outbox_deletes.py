"""The outbox deletes published rows in shared statements: flushes that come while one
DELETE runs go together in the next; a failed DELETE fails only its own flushes and leaves
its rows for the next DELETE (or the relay)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import cast

from gateway.broker.messages import Message
from gateway.errors import StoreUnavailable
from gateway.metrics import Metrics
from gateway.orchestration.outbox import DELETE_CHUNK, Outbox
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
    r1, r2 = await asyncio.gather(first, second, return_exceptions=True)
    assert isinstance(r1, StoreUnavailable)  # its handler runs again
    assert r2 is None  # the next batch is still tried, and succeeds
    assert cases.calls == [[1], [1, 2]]  # nothing left behind: row 1 goes with the next
    await box.flush(rows(3))
    assert cases.calls[-1] == [3]


class FailSecond(FakeCases):
    """The first DELETE commits (once released); every later one fails."""

    async def delete_outbox(self, ids: Sequence[int]) -> None:
        self.calls.append(list(ids))
        if len(self.calls) == 1:
            await self.release.wait()
            return
        raise StoreUnavailable("store away", system="store")


async def test_a_flush_whose_rows_were_deleted_does_not_fail_with_a_later_batch() -> None:
    cases = FailSecond()
    box = outbox(cases)
    first = asyncio.create_task(box.flush(rows(1)))
    await settle()
    second = asyncio.create_task(box.flush(rows(2)))
    await settle()
    cases.release.set()
    r1, r2 = await asyncio.gather(first, second, return_exceptions=True)
    assert cases.calls == [[1], [2]]
    assert isinstance(r2, StoreUnavailable)
    assert r1 is None, f"flush of row 1 failed although its DELETE committed: {r1!r}"


class EachHeld(FakeCases):
    """Every DELETE waits for its own gate: ``gates[n]`` releases call ``n``."""

    def __init__(self) -> None:
        super().__init__()
        self.gates = [asyncio.Event() for _ in range(4)]

    async def delete_outbox(self, ids: Sequence[int]) -> None:
        self.calls.append(list(ids))
        await self.gates[len(self.calls) - 1].wait()


async def test_a_flush_does_not_wait_for_later_batches() -> None:
    cases = EachHeld()
    box = outbox(cases)
    first = asyncio.create_task(box.flush(rows(1)))
    await settle()
    second = asyncio.create_task(box.flush(rows(2)))
    await settle()
    cases.gates[0].set()
    await settle()
    assert cases.calls == [[1], [2]]  # row 2's DELETE runs and waits
    assert first.done() and first.exception() is None  # row 1 is gone: no need to wait
    assert not second.done()
    cases.gates[1].set()
    await second


async def test_large_deletes_go_in_chunks() -> None:
    cases = FakeCases()
    cases.release.set()
    ids = list(range(1, 2 * DELETE_CHUNK + 2))
    await outbox(cases).flush(rows(*ids))
    assert [len(c) for c in cases.calls] == [DELETE_CHUNK, DELETE_CHUNK, 1]
    assert [i for c in cases.calls for i in c] == ids


async def test_nothing_published_deletes_nothing() -> None:
    cases = FakeCases()
    await outbox(cases).flush([])
    assert cases.calls == []
