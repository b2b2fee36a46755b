"""A department down for longer than its retry budget, then back: the dead letters are
replayed by an operator (``gateway dlq replay``) and every application completes, each
registration applied once.

The police system answers every submission with a SOAP ``Server`` fault (an outage window);
with a small budget (three tries, a short delay queue) each hukou task is dead-lettered with
"retry budget spent" and its application blocked with that reason. Then the outage ends and
the operator replays every parked hukou letter from a shell, as the runbook says.
"""

from __future__ import annotations

import asyncio
import sys
import time

import pytest

from tests.faults.harness import CONNECTORS, CORE, World
from tests.faults.ledger_check import read_store

pytestmark = pytest.mark.broker

N = 6
BUDGET = {
    "attempts": 3,
    "quick_attempts": 1,
    "initial_seconds": 0.2,
    "max_seconds": 0.5,
    "ladder": [0.5],
}


async def test_department_down_past_the_retry_budget_then_replayed(world: World) -> None:
    w = world
    config = w.config("gw", retry={"hukou": BUDGET})
    gw = w.process("gw", (*CORE, *CONNECTORS), config=config)
    await gw.start()
    police = w.fleet.behaviour("hukou")
    police.outages = [(time.time(), time.time() + 3600)]
    await w.start_departments()
    ids = await w.submit(N)

    down = await w.check("department down past the retry budget (before replay)")
    down.assert_sound(completed=0, blocked=ids)
    assert all("budget" in reason for reason in down.blocked.values()), down.blocked
    attempts = await asyncio.to_thread(
        read_store, w.database_url, "SELECT attempts FROM dead_letters WHERE system = 'hukou'"
    )
    assert [a for (a,) in attempts] == [BUDGET["attempts"]] * N  # the budget, no more

    police.outages = []  # the police system is back
    replay = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "--config", str(config),
        "dlq", "replay", "--system", "hukou", "--reason", "police system back after outage",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await replay.communicate()
    print(output.decode())
    assert replay.returncode == 0, output.decode()

    report = await w.check("department down past the retry budget, then back, replayed")
    report.assert_sound(completed=N)
    assert report.effects == N * 5
