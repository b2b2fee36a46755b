"""Two orchestrator processes racing on the same applications.

After the birth certificate a newborn's hukou and vaccination results arrive together, and
the provincial platform decides both of its tasks at the same instant: with two
orchestrators consuming ``gw.results``, results of one application are applied by both
processes at once. Every state change must be recorded exactly once and none lost.
"""

from __future__ import annotations

import pytest

from tests.faults.harness import CONNECTORS, FRONT, World

pytestmark = pytest.mark.broker

N = 30


async def test_two_orchestrators_racing_on_one_application(world_on: World) -> None:
    w = world_on
    front = w.process("front", (*FRONT, "scheduler", *CONNECTORS))
    one = w.process("orchestrator-1", ("orchestrator",))
    two = w.process("orchestrator-2", ("orchestrator",))
    await front.start()
    await one.start()
    await two.start()
    await w.start_departments()
    await w.submit(N)

    report = await w.check("two orchestrators racing")
    report.assert_sound(completed=N)
    by_one = {e["application_id"] for e in one.events("result_applied")}
    by_two = {e["application_id"] for e in two.events("result_applied")}
    shared = by_one & by_two
    print(f"RACE applications with results applied by both orchestrators: {len(shared)}/{N}")
    assert shared  # the race happened: both processes changed the same applications
