"""CaseStore on both databases: guarded transitions, the outbox, timer rows."""

from __future__ import annotations

import asyncio
import json
import time
import zoneinfo

import pytest

from gateway.catalogue.model import load
from gateway.orchestration import planner
from gateway.orchestration.messages import ResultMessage
from gateway.orchestration.records import CaseState, TaskStatus
from gateway.store import NewApplication, Store, open_store
from tests.support.portal import example

TZ = zoneinfo.ZoneInfo("Asia/Shanghai")


def ctx() -> planner.Context:
    return planner.Context(load(), time.time(), TZ, {"hukou": 0.0})


async def accepted(store: Store, app_id: str = "app1") -> None:
    await store.claim_idempotency("window", app_id, "f", time.time(), 30)
    await store.create_application(
        NewApplication(
            id=app_id,
            portal_id="window",
            idempotency_key=app_id,
            channel="http",
            matter="newborn",
            schema_version="1.0",
            envelope_json=example("newborn-yizhang-window").decode(),
            fingerprint="f",
            created_at=time.time(),
        )
    )


async def birth_certificate_issued(store: Store) -> None:
    """Started, and the hospital issued the certificate: police and CDC are next."""
    await store.cases.transition("app1", lambda s: planner.start(s, ctx()), 1.0)
    issued = ResultMessage(
        "app1.birth_certificate",
        "app1",
        "hospital",
        "decision",
        1,
        outcome="completed",
        provides={"birth_certificate_no": "A123456789"},
    )
    await store.cases.transition("app1", lambda s: planner.on_result(s, ctx(), issued), 2.0)


async def test_start_writes_tasks_timeline_and_outbox_in_one_go(store: Store) -> None:
    await accepted(store)
    tr, rows = await store.cases.transition("app1", lambda s: planner.start(s, ctx()), 1.0)
    state = await store.cases.load("app1")
    assert state is not None
    assert state.application.status.value == "in_progress"
    assert state.catalogue_version == "2026.1"
    assert [t.step for t in state.tasks] == [t.step for t in tr.tasks]
    assert state.task("birth_certificate").status is TaskStatus.DISPATCHED
    assert [r.outgoing.exchange for r in rows] == [o.exchange for o in tr.outbox]
    kinds = [e.kind for e in await store.cases.timeline("app1")]
    assert kinds == ["application.accepted", "task.dispatched"]
    # the same event again: nothing written
    again, more = await store.cases.transition("app1", lambda s: planner.start(s, ctx()), 2.0)
    assert not again.changed and more == []


async def test_a_failing_plan_rolls_everything_back(store: Store) -> None:
    await accepted(store)

    def boom(state: CaseState) -> planner.Transition:
        planner.start(state, ctx())
        raise RuntimeError("planner bug")

    with pytest.raises(RuntimeError, match="planner bug"):
        await store.cases.transition("app1", boom, 1.0)
    state = await store.cases.load("app1")
    assert state is not None and state.tasks == () and state.application.status.value == "received"
    assert await store.cases.claim_outbox(time.time() + 60, 30, 10) == []


async def test_concurrent_results_for_one_application_are_serialised(
    store: Store, store_url: str
) -> None:
    """Two orchestrators (two store objects) apply two results at once: both count."""
    await accepted(store)
    await birth_certificate_issued(store)
    other = await open_store(store_url)
    try:
        results = [
            ResultMessage("app1.vaccination", "app1", "cdc", "decision", 1, outcome="completed"),
            ResultMessage(
                "app1.hukou",
                "app1",
                "hukou",
                "decision",
                1,
                outcome="completed",
                provides={"citizen_id": "43102220261120001X"},
            ),
        ]
        await asyncio.gather(
            *(
                s.cases.transition("app1", lambda st, r=r: planner.on_result(st, ctx(), r), 3.0)
                for s, r in zip((store, other), results, strict=True)
            )
        )
    finally:
        await other.close()
    state = await store.cases.load("app1")
    assert state is not None
    assert state.task("vaccination").status is TaskStatus.COMPLETED
    assert state.task("hukou").status is TaskStatus.COMPLETED
    assert state.provided == {
        "birth_certificate_no": "A123456789",
        "citizen_id": "43102220261120001X",
    }
    assert state.task("medical_insurance").status is TaskStatus.DISPATCHED


async def test_outbox_rows_go_to_one_relay_after_their_lease(store: Store) -> None:
    await accepted(store)
    _, rows = await store.cases.transition("app1", lambda s: planner.start(s, ctx()), 100.0)
    assert await store.cases.claim_outbox(100.0 + 1, 30, 10) == []  # the writer's lease
    first, second = await asyncio.gather(
        store.cases.claim_outbox(200.0, 30, 10), store.cases.claim_outbox(200.0, 30, 10)
    )
    assert sorted(r.id for r in first + second) == sorted(r.id for r in rows)
    claimed = first or second
    body = json.loads(claimed[0].outgoing.message.body)
    assert body["event"] == "application.accepted" or body.get("task") == "birth_certificate"
    await store.cases.delete_outbox([r.id for r in rows])
    assert await store.cases.claim_outbox(1e12, 30, 10) == []


async def hukou_receipt(store: Store) -> None:
    """The hukou task submitted (its receipt writes a poll timer)."""
    await accepted(store)
    await birth_certificate_issued(store)
    await store.cases.transition(
        "app1",
        lambda s: planner.on_result(
            s, ctx(), ResultMessage("app1.hukou", "app1", "hukou", "receipt", 1, case_number="P-1")
        ),
        3.0,
    )


async def test_poll_timers_are_claimed_once_and_rescheduled(store: Store) -> None:
    await hukou_receipt(store)
    now = time.time() + 1
    a, b = await asyncio.gather(
        store.cases.claim_timers("hukou", now, 60, 10),
        store.cases.claim_timers("hukou", now, 60, 10),
    )
    assert [t.task_id for t in a + b] == ["app1.hukou"]
    assert await store.cases.claim_timers("hukou", now, 60, 10) == []  # leased
    await store.cases.reschedule_timer("app1.hukou", now + 100)
    assert await store.cases.claim_timers("hukou", now + 50, 60, 10) == []
    assert len(await store.cases.claim_timers("hukou", now + 101, 60, 10)) == 1


async def test_a_poller_drops_or_moves_only_the_timer_row_it_claimed(store: Store) -> None:
    """Between a poller's claim and its delete (or reschedule), a receipt after a
    correction may write the task's timer anew: that row must outlive the stale poll."""
    await hukou_receipt(store)
    now = time.time() + 1
    [claimed] = await store.cases.claim_timers("hukou", now, 60, 10)
    assert claimed.lease_until == now + 60
    await store.cases.reschedule_timer("app1.hukou", now + 5)  # the new receipt's timer
    await store.cases.delete_timer("app1.hukou", claimed.lease_until)  # the stale poll
    await store.cases.reschedule_timer("app1.hukou", now + 999, claimed.lease_until)
    [fresh] = await store.cases.claim_timers("hukou", now + 6, 60, 10)
    assert (fresh.task_id, fresh.due_at) == ("app1.hukou", now + 5)
    await store.cases.delete_timer("app1.hukou", fresh.lease_until)  # its own claim: gone
    assert await store.cases.claim_timers("hukou", 1e12, 60, 10) == []
