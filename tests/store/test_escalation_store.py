"""Escalation on both databases: the candidate query and two schedulers at once."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace

from gateway.orchestration import escalation, planner
from gateway.orchestration.messages import ResultMessage
from gateway.orchestration.records import TaskStatus
from gateway.store import Store, open_store
from tests.store.test_cases import accepted, ctx


async def started(store: Store) -> tuple[float, float]:
    """An application with its first task dispatched: (clock start, due) of that task."""
    await accepted(store)
    await store.cases.transition("app1", lambda s: planner.start(s, ctx()), 1.0)
    task = await store.cases.task("app1.birth_certificate")
    assert task is not None and task.clock_started_at and task.due_at
    return task.clock_started_at, task.due_at


async def test_candidates_follow_the_thresholds(store: Store) -> None:
    start, due = await started(store)
    soon = start + 0.8 * (due - start)
    assert await store.cases.deadline_tasks(soon - 1, 0.8, 10) == []
    [found] = await store.cases.deadline_tasks(soon + 1, 0.8, 10)
    assert found.id == "app1.birth_certificate" and found.escalated is None
    assert [t.id for t in await store.cases.deadline_tasks(soon + 1, 0.8, 10, pending=False)] == [
        found.id
    ]
    at = replace(ctx(), now=soon + 1)
    await store.cases.transition(
        "app1", lambda s: escalation.on_deadline(s, at, found.id), soon + 1
    )
    assert await store.cases.deadline_tasks(soon + 2, 0.8, 10) == []  # raised already
    listed = await store.cases.deadline_tasks(soon + 2, 0.8, 10, pending=False)
    assert [t.escalated for t in listed] == ["due_soon"]  # still on the operator's list
    [late] = await store.cases.deadline_tasks(due + 1, 0.8, 10)
    assert late.escalated == "due_soon"


async def test_two_schedulers_at_once_raise_one_event(store: Store, store_url: str) -> None:
    _, due = await started(store)
    late = replace(ctx(), now=due + 60)
    other = await open_store(store_url)
    try:

        async def escalate(s: Store) -> int:
            _, rows = await s.cases.transition(
                "app1",
                lambda state: escalation.on_deadline(state, late, "app1.birth_certificate"),
                time.time(),
            )
            return len(rows)

        written = await asyncio.gather(escalate(store), escalate(other), escalate(store))
    finally:
        await other.close()
    assert sorted(written) == [0, 0, 1]
    rows = await store.cases.claim_outbox(time.time() + 60, 30, 50)
    events = [
        json.loads(r.outgoing.message.body) for r in rows if r.outgoing.exchange == "gw.events"
    ]
    assert [e["event"] for e in events if e["event"].startswith("task.o")] == ["task.overdue"]
    kinds = [e.kind for e in await store.cases.timeline("app1")]
    assert kinds.count("task.overdue") == 1
    task = await store.cases.task("app1.birth_certificate")
    assert task is not None and task.escalated == "overdue"


async def test_a_stopped_clock_still_carrying_a_threshold_is_picked_to_forget_it(
    store: Store,
) -> None:
    _, due = await started(store)
    task_id = "app1.birth_certificate"
    late = replace(ctx(), now=due + 60)
    await store.cases.transition("app1", lambda s: escalation.on_deadline(s, late, task_id), due)
    suspended = ResultMessage(task_id, "app1", "hospital", "decision", 1, outcome="suspended")
    stop = replace(ctx(), now=due + 120)
    await store.cases.transition("app1", lambda s: planner.on_result(s, stop, suspended), due)
    [found] = await store.cases.deadline_tasks(due + 180, 0.8, 10)
    assert (found.id, found.status, found.escalated) == (task_id, TaskStatus.SUSPENDED, "overdue")
    forget = replace(ctx(), now=due + 180)
    await store.cases.transition("app1", lambda s: escalation.on_deadline(s, forget, task_id), due)
    assert await store.cases.deadline_tasks(due + 240, 0.8, 10) == []
    task = await store.cases.task(task_id)
    assert task is not None and task.escalated is None
