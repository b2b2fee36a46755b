"""The intake process SIGKILLed between storing an application and the broker's confirm.

The intake talks to RabbitMQ through the test's TCP proxy. The proxy holds every byte (the
broker has gone silent: no confirm comes back) while eight portal requests are in flight;
once the store holds the eight ``received`` rows the intake is SIGKILLed, the held bytes
are dropped with the connection, and the intake starts again. The relay must republish
the rows a crash left ``received``; the portal, retrying with the same keys, must be told
the same application ids — nothing lost, nothing created twice.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.faults.harness import CONNECTORS, FRONT, World
from tests.faults.ledger_check import read_store
from tests.support.waiting import eventually

pytestmark = pytest.mark.broker

BEFORE, HELD = 5, 8


async def test_intake_killed_between_store_and_confirm(world_on: World) -> None:
    w = world_on
    assert w.proxy is not None
    front = w.process(
        "front",
        FRONT,
        via_proxy=True,
        broker={"publish_timeout_seconds": 120.0},  # the publish waits: the kill comes first
        intake={"idempotency_lease_seconds": 3.0},  # the portal's retry may take the key back
    )
    back = w.process("back", ("orchestrator", "scheduler", *CONNECTORS))
    await back.start()
    await front.start()
    await w.start_departments()
    await w.submit(BEFORE)

    w.proxy.hold()
    held = [asyncio.create_task(w.submit_one(patient=True)) for _ in range(HELD)]

    async def stored_unconfirmed() -> list[str]:
        rows = await asyncio.to_thread(
            read_store, w.database_url, "SELECT id FROM applications WHERE status = 'received'"
        )
        ids = [str(r[0]) for r in rows]
        return ids if len(ids) == HELD else []

    unconfirmed = await eventually(stored_unconfirmed, within=60)
    assert len(unconfirmed) == HELD
    await front.kill()  # SIGKILL between the store and the confirm
    await w.proxy.cut()  # what the dead process had sent never reaches the broker
    w.proxy.release()
    await front.start()

    retried = await asyncio.gather(*held)
    assert sorted(retried) == sorted(unconfirmed)  # the same application for the same key
    # each row the crash left was published again: by the relay, or by the intake serving
    # the portal's retry once the dead request's lease ran out — whichever came first
    relayed = {str(e["application_id"]) for e in front.events("relay_republished")}
    print(f"INTAKE relay republished {len(relayed & set(unconfirmed))} of {HELD} rows")
    report = await w.check("intake killed between store and confirm")
    report.assert_sound(completed=BEFORE + HELD)
