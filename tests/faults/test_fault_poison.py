"""Poison messages: a task message the connector cannot parse, and one that crashes the
connector process every time it is delivered.

The ``connector:hukou`` process is not running while the three applications' hukou tasks
queue up; the test takes them out of ``gw.tasks.hukou`` and puts them back — one unchanged,
one with its body mangled, one unchanged but with the police simulator told to SIGKILL the
connector whenever that request arrives. A supervisor restarts the connector after each
crash. The mangled one is parked at once, the crashing one dead-lettered by RabbitMQ after
the delivery limit; both applications end ``blocked`` with a dead letter and its reason,
and the healthy one completes.
"""

from __future__ import annotations

import asyncio

import pytest

from gateway.broker.topology import TASKS
from gateway.simulators.behaviour import Moment
from tests.faults.harness import CORE, World
from tests.faults.ledger_check import read_store
from tests.support.rabbit import Got
from tests.support.waiting import eventually

pytestmark = pytest.mark.broker

DELIVERY_LIMIT = 2  # RabbitMQ delivers 3 times, then dead-letters (delivery_limit)
HUKOU_QUEUE = f"{TASKS}.hukou"


async def _status(w: World, app: str) -> str:
    rows = await asyncio.to_thread(
        read_store,
        w.database_url,
        f"SELECT status FROM applications WHERE id = '{app}'",  # noqa: S608
    )
    return str(rows[0][0])


async def _put_back(w: World, got: Got, body: bytes | None = None) -> None:
    p = got.properties
    await w.rabbit.apublish(
        TASKS,
        got.routing_key,
        got.body if body is None else body,
        message_id=p.message_id,
        correlation_id=p.correlation_id,
        headers=p.headers,
        content_type=p.content_type,
    )


async def test_poison_task_messages_end_blocked_with_a_reason(world: World) -> None:
    w = world
    limit = {"delivery_limit": DELIVERY_LIMIT}
    others = ("connector:hospital", "connector:provincial", "connector:cdc")
    core = w.process("core", (*CORE, *others), broker=limit)
    worker = w.process("hukou-worker", ("connector:hukou",), broker=limit)
    await core.start()
    await w.start_departments()
    healthy, mangled, crashing = await w.submit(3)

    async def queued() -> bool:
        return await asyncio.to_thread(w.rabbit.depth, HUKOU_QUEUE) == 3

    assert await eventually(queued, within=60)
    tasks = {g.properties.correlation_id: g for g in await w.rabbit.aget_all(HUKOU_QUEUE)}
    assert set(tasks) == {healthy, mangled, crashing}
    await _put_back(w, tasks[healthy])
    await _put_back(w, tasks[mangled], body=tasks[mangled].body[:40] + b"\xff")

    def crash(moment: Moment, application_id: str, task: str) -> None:
        if moment == "arrived" and application_id == crashing:
            worker.kill_now()

    w.fleet.behaviour("hukou").on_request = crash
    await worker.start()
    worker.supervise()

    async def healthy_done_and_mangled_blocked() -> bool:
        return (await _status(w, healthy), await _status(w, mangled)) == ("completed", "blocked")

    # nothing else in flight (no delivery, no poll) when the crashing one goes back
    assert await eventually(healthy_done_and_mangled_blocked, within=90)
    await _put_back(w, tasks[crashing])  # alone in the queue: no innocent bystander requeued

    report = await w.check("poison messages")
    report.assert_sound(completed=1, blocked={mangled, crashing})
    assert "malformed" in report.blocked[mangled]
    assert "delivery_limit" in report.blocked[crashing]
    assert worker.kills == DELIVERY_LIMIT + 1
    arrived = [d for d in await w.ledger.deliveries(crashing) if d[0] == "hukou"]
    assert len(arrived) == DELIVERY_LIMIT + 1  # it reached the police each time; a server
    # does not stop when its caller dies, so the police may have registered it — once
    registered = [e for e in await w.ledger.effects(crashing) if e.system == "hukou"]
    assert len(registered) <= 1
