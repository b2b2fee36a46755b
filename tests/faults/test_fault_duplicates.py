"""Every task message published twice: each department still applies each task once.

A test queue bound to ``gw.tasks`` receives a copy of every task message; a pump publishes
each copy straight back into ``gw.tasks`` with the same routing key, message id, correlation
and headers — a duplicate as a publisher's resend would make it, arriving while the
original is in flight or just after.
"""

from __future__ import annotations

import asyncio

import pytest

from gateway.broker.topology import TASKS
from tests.faults.harness import CONNECTORS, CORE, World
from tests.support.rabbit import Got

pytestmark = pytest.mark.broker

N = 10
TASKS_PER_NEWBORN = 5
COPY = "x-test-duplicate"  # marks the copy for the pump only; the gateway ignores it


async def test_duplicated_task_messages_apply_once(world: World) -> None:
    w = world
    gw = w.process("gw", (*CORE, *CONNECTORS))
    await gw.start()
    await w.start_departments()
    copies = await asyncio.to_thread(w.rabbit.bind_test_queue, TASKS, "#")
    duplicated: list[Got] = []

    async def pump() -> None:
        while len(duplicated) < N * TASKS_PER_NEWBORN:
            for got in await w.rabbit.aget_all(copies, wait=0.5, at_least=1):
                p = got.properties
                if COPY in (p.headers or {}):
                    continue  # our own duplicate, seen by the copy queue too
                await w.rabbit.apublish(
                    TASKS,
                    got.routing_key,
                    got.body,
                    message_id=p.message_id,
                    correlation_id=p.correlation_id,
                    headers={**(p.headers or {}), COPY: 1},
                    content_type=p.content_type,
                )
                duplicated.append(got)

    pumping = asyncio.create_task(pump())
    await w.submit(N)
    await asyncio.wait_for(pumping, 120)

    report = await w.check("duplicated task message")
    report.assert_sound(completed=N)
    assert len(duplicated) == N * TASKS_PER_NEWBORN
    handed = len(list(gw.events("task_handed_over")))
    superseded = len(list(gw.events("task_superseded")))
    print(f"DUPLICATES published={len(duplicated)} handed_over={handed} superseded={superseded}")
    # every delivery, original or copy, was either handed to the department (which is
    # idempotent on the request id) or recognised as done already
    assert handed + superseded >= 2 * N * TASKS_PER_NEWBORN - 1
