"""SIGTERM drains in-flight work within a bounded time.

The police simulator tells the test when it has taken a request and before it answers; the
test sends SIGTERM to the ``connector:hukou`` process right then, so a department call is
in flight for certain. The process must finish that call (receipt published, delivery
acked), exit 0 within the bound, and — started again — let everything complete with
nothing applied twice. The bound is generous (a shared, slow machine): it proves the
shutdown is bounded, not fast. A second case sends SIGTERM to a process running every role
under load.
"""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from gateway.simulators.behaviour import Moment
from tests.faults.harness import CONNECTORS, CORE, World
from tests.support.waiting import eventually

pytestmark = pytest.mark.broker

N = 20
BOUND_SECONDS = 30.0


async def test_sigterm_mid_call_drains_the_call_and_exits_in_bounded_time(
    world_on: World,
) -> None:
    w = world_on
    others = ("connector:hospital", "connector:provincial", "connector:cdc")
    core = w.process("core", (*CORE, *others))
    worker = w.process("hukou-worker", ("connector:hukou",))
    await core.start()
    await worker.start()
    await w.start_departments()
    victim: list[str] = []

    def terminate_mid_call(moment: Moment, application_id: str, task: str) -> None:
        if moment == "taken" and not victim:
            victim.append(application_id)
            os.kill(worker.pid, signal.SIGTERM)  # the answer is not sent yet

    w.fleet.behaviour("hukou").on_request = terminate_mid_call
    portal = asyncio.create_task(w.submit(N))
    assert await eventually(lambda: _true(bool(victim)), within=90)
    code, seconds = await worker.exit_within(BOUND_SECONDS)
    print(f"SIGTERM mid-call: exit {code} after {seconds:.1f} s (bound {BOUND_SECONDS:g} s)")
    assert code == 0, worker.tail()
    assert list(worker.events("gateway_draining")) and list(worker.events("gateway_stopped"))
    await worker.start()
    await portal

    report = await w.check("SIGTERM mid-call")
    report.assert_sound(completed=N)
    hukou = [d for d in await w.ledger.deliveries(victim[0]) if d[0] == "hukou"]
    assert len(hukou) == 1, hukou  # drained: acked once, never delivered again


async def test_sigterm_under_load_exits_in_bounded_time(world: World) -> None:
    w = world
    gw = w.process("gw", (*CORE, *CONNECTORS))
    await gw.start()
    await w.start_departments()
    portal = asyncio.create_task(w.submit(N, patient=True))

    async def under_way() -> bool:
        return len(await w.ledger.effects()) >= 10

    assert await eventually(under_way, within=90)
    code, seconds = await gw.terminate(within=BOUND_SECONDS)
    print(f"SIGTERM all roles: exit {code} after {seconds:.1f} s (bound {BOUND_SECONDS:g} s)")
    assert code == 0, gw.tail()
    await gw.start()
    await portal
    report = await w.check("SIGTERM under load")
    report.assert_sound(completed=N)


async def _true(value: bool) -> bool:
    return value
