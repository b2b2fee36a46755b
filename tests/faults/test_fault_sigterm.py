"""SIGTERM under load: the process drains in-flight work and exits 0 within a bound, and
after a restart nothing is lost and nothing applied twice.

The bound is generous (a shared, slow machine): it proves the shutdown is bounded, not fast.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.faults.harness import CONNECTORS, CORE, World
from tests.support.waiting import eventually

pytestmark = pytest.mark.broker

N = 24
BOUND_SECONDS = 30.0


async def test_sigterm_drains_within_a_bounded_time(world_on: World) -> None:
    w = world_on
    gw = w.process("gw", (*CORE, *CONNECTORS))
    await gw.start()
    await w.start_departments()
    portal = asyncio.create_task(w.submit(N, patient=True))

    async def under_way() -> bool:
        return len(await w.ledger.effects()) >= 10

    assert await eventually(under_way, within=90)
    code, seconds = await gw.terminate(within=BOUND_SECONDS)
    print(f"SIGTERM: exit {code} after {seconds:.1f} s")
    assert code == 0, gw.tail()
    assert list(gw.events("gateway_draining")) and list(gw.events("gateway_stopped"))
    await gw.start()
    await portal
    report = await w.check("SIGTERM under load")
    report.assert_sound(completed=N)
