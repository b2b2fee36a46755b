"""A connector process SIGKILLed between the department call and its ack.

The police simulator tells the test when it has taken a request (its case is open) and
before it answers; the test SIGKILLs the ``connector:hukou`` process right there, so the
delivery is neither acked nor answered. A supervisor starts the process again, RabbitMQ
redelivers, and the department — idempotent on the request id — must not register twice.
"""

from __future__ import annotations

import pytest

from gateway.simulators.behaviour import Moment
from tests.faults.harness import CORE, World

pytestmark = pytest.mark.broker

N = 20
KILL_AT = (3, 9)  # the 3rd and the 9th request the police take


async def test_worker_killed_between_the_department_call_and_the_ack(world_on: World) -> None:
    w = world_on
    others = ("connector:hospital", "connector:provincial", "connector:cdc")
    core = w.process("core", (*CORE, *others))
    worker = w.process("hukou-worker", ("connector:hukou",))
    await core.start()
    await worker.start()
    await w.start_departments()
    victims: list[str] = []
    taken = 0

    def cut_the_line(moment: Moment, application_id: str, task: str) -> None:
        nonlocal taken
        if moment == "taken":
            taken += 1
            if taken in KILL_AT:
                victims.append(application_id)
                worker.kill_now()  # the department has it; the connector never hears back

    w.fleet.behaviour("hukou").on_request = cut_the_line
    worker.supervise()
    await w.submit(N)

    report = await w.check("worker killed between department call and ack")
    report.assert_sound(completed=N)
    assert worker.kills == len(KILL_AT)
    for app in victims:  # each victim's request reached the police again after the kill
        hukou = [d for d in await w.ledger.deliveries(app) if d[0] == "hukou"]
        assert len(hukou) >= 2, hukou
    assert report.duplicate_deliveries >= len(KILL_AT)
