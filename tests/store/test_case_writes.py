"""A transition writes each table in one statement, in order, on both databases: the
timeline keeps its entries' order and every outbox row keeps its own message."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypeVar, cast

from gateway.broker.messages import Message
from gateway.orchestration import planner
from gateway.orchestration.records import CaseState, Outgoing, TimelineEntry, Transition
from gateway.store import Store
from gateway.store.cases import CaseStore
from gateway.store.sql import Database, Dialect, Params, Row, SqlStore, Tx, Work
from tests.store.test_cases import accepted, ctx

T = TypeVar("T")


class CountingTx:
    def __init__(self, tx: Tx, seen: list[str]) -> None:
        self._tx = tx
        self._seen = seen

    async def execute(self, sql: str, params: Params = ()) -> int:
        self._seen.append(sql)
        return await self._tx.execute(sql, params)

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        self._seen.append(sql)
        return await self._tx.fetchone(sql, params)

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        self._seen.append(sql)
        return await self._tx.fetchall(sql, params)


class CountingDatabase:
    """The real database, recording every statement it runs."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.seen: list[str] = []

    @property
    def dialect(self) -> Dialect:
        return self._db.dialect

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        async with self._db.transaction() as tx:
            yield CountingTx(tx, self.seen)

    async def run(self, work: Work[T]) -> T:
        return await self._db.run(lambda tx: work(CountingTx(tx, self.seen)))

    async def close(self) -> None:
        await self._db.close()


def counted(store: Store) -> tuple[CaseStore, CountingDatabase]:
    db = CountingDatabase(cast(SqlStore, store).database)
    return CaseStore(db), db


def statements(db: CountingDatabase, head: str) -> int:
    return sum(1 for s in db.seen if s.startswith(head))


async def test_a_start_inserts_its_tasks_timeline_and_outbox_in_one_statement_each(
    store: Store,
) -> None:
    await accepted(store)
    cases, db = counted(store)
    tr, rows = await cases.transition("app1", lambda s: planner.start(s, ctx()), 1.0)
    assert len(tr.tasks) == 5 and len(tr.outbox) >= 2 and len(tr.timeline) >= 2
    assert statements(db, "INSERT INTO tasks") == 1
    assert statements(db, "INSERT INTO timeline") == 1
    assert statements(db, "INSERT INTO outbox") == 1
    state = await store.cases.load("app1")
    assert state is not None
    assert [t.step for t in state.tasks] == [t.step for t in tr.tasks]  # positions kept
    assert [r.outgoing for r in rows] == tr.outbox


async def test_timeline_order_and_outbox_ids_pair_with_their_messages(store: Store) -> None:
    await accepted(store)
    cases, db = counted(store)
    messages = [Message(body=f'{{"n": {i}}}'.encode()) for i in range(6)]

    def plan(_state: CaseState) -> Transition:
        return Transition(
            timeline=[TimelineEntry(1.0, f"test.entry_{i}", detail={"i": i}) for i in range(7)],
            outbox=[Outgoing("gw.events", f"key.{i}", m) for i, m in enumerate(messages)],
        )

    _, rows = await cases.transition("app1", plan, 1.0)
    assert [r.outgoing.message for r in rows] == messages
    assert [r.id for r in rows] == sorted(r.id for r in rows)
    assert statements(db, "INSERT INTO timeline") == 1
    kinds = [e.kind for e in await store.cases.timeline("app1")]
    assert kinds == [f"test.entry_{i}" for i in range(7)]
    # what the relay would read back under each id is the message written under it
    stored = {r.id: r.outgoing for r in await store.cases.claim_outbox(1e12, 30, 100)}
    assert {r.id: (r.outgoing.routing_key, r.outgoing.message.body) for r in rows} == {
        i: (o.routing_key, o.message.body) for i, o in stored.items()
    }


async def test_a_case_is_read_whole_before_and_after_its_start(store: Store) -> None:
    await accepted(store)
    cases, db = counted(store)
    before = await cases.load("app1")
    assert before is not None and before.tasks == () and before.application.id == "app1"
    tr, _ = await cases.transition("app1", lambda s: planner.start(s, ctx()), 1.0)
    after = await cases.load("app1")
    assert after is not None and after.catalogue_version == tr.catalogue_version
    assert after.tasks == tuple(tr.tasks)  # every column, in position order
    assert after.application.version == before.application.version + 1
    assert await cases.load("nobody") is None
    # SQLite reads the case in one statement (it holds the write lock from BEGIN); a row
    # lock (PostgreSQL) reads the tasks in a statement of their own, once the lock is held
    reads = statements(db, "SELECT")
    assert reads == (4 if store.dialect == "sqlite" else 7)
