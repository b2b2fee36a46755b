"""A ``gw.accepted`` message that dies (rejected, or past its delivery limit) blocks its
application with the reason, instead of leaving it ``accepted`` for ever with nothing to
say why; replaying the letter starts it, and it completes.

Only the front roles run while three applications are accepted; their ``gw.accepted``
messages are taken off the queue and rejected without requeue, so RabbitMQ dead-letters
them (``x-death`` only, as after a delivery limit). The dead-letter store blocks each
application; then the orchestrator and connectors start and an operator replays every
parked letter from a shell.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import pytest

from gateway.broker.topology import ACCEPTED
from tests.faults.harness import CONNECTORS, FRONT, World
from tests.faults.ledger_check import read_store
from tests.support.waiting import eventually

pytestmark = pytest.mark.broker
N = 3


def _reject_all(ch: Any) -> int:
    rejected = 0
    while True:
        method, _props, _body = ch.basic_get(ACCEPTED)
        if method is None:
            return rejected
        ch.basic_reject(method.delivery_tag, requeue=False)
        rejected += 1


async def test_a_dead_accepted_message_blocks_its_application_then_replay_starts_it(
    world: World,
) -> None:
    w = world
    config = w.config("gw")
    front = w.process("front", FRONT, config=config)
    await front.start()
    await w.start_departments()
    ids = await w.submit(N)

    async def queued() -> bool:
        return await asyncio.to_thread(w.rabbit.depth, ACCEPTED) == N

    assert await eventually(queued, within=60)
    assert await asyncio.to_thread(w.rabbit._run, _reject_all) == N

    async def blocked() -> list[tuple[Any, ...]]:
        rows = await asyncio.to_thread(
            read_store, w.database_url,
            "SELECT a.id, t.detail_json FROM applications a JOIN timeline t "
            "ON t.application_id = a.id AND t.kind = 'application.blocked' "
            "WHERE a.status = 'blocked'",
        )  # fmt: skip
        return rows if len(rows) == N else []

    rows = await eventually(blocked, within=60)
    assert {r[0] for r in rows} == set(ids)
    for _, detail in rows:
        assert "dead-lettered by RabbitMQ: rejected" in json.loads(detail)["reason"]
    for app_id in ids:  # the portal's status view says why, though no task exists yet
        shown = await w.portal.show(app_id)
        assert shown.status == 200, shown.body
        view = shown.json()
        assert view["status"] == "blocked" and view["tasks"] == []
        assert "dead-lettered by RabbitMQ: rejected" in view["blocked_reason"]

    core = w.process("core", ("orchestrator", "scheduler", *CONNECTORS), config=config)
    await core.start()
    replay = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "--config", str(config),
        "dlq", "replay", "--all", "--reason", "orchestrator back",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await replay.communicate()
    assert replay.returncode == 0, output.decode()

    report = await w.check("gw.accepted dead-lettered, blocked, replayed")
    report.assert_sound(completed=N)
