"""The store goes away under load (PostgreSQL, through a TCP proxy the gateway's processes
use): every store connection is reset and new ones refused, while applications arrive and
results come back. The PostgreSQL server itself keeps running (others use it).

The orchestrator's and connectors' deliveries that meet the outage are held and run again in
place (``handler_paused``), never requeued into the queue's delivery limit; the outage lasts
until the gateway has paused more times than that limit allows (5). Then the store comes
back, and every application completes, each effect applied once, nothing dead-lettered.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest

from tests.faults.harness import CONNECTORS, CORE, World
from tests.faults.ledger_check import read_store
from tests.support.proxy import TcpProxy
from tests.support.rabbit import Rabbit, with_port
from tests.support.waiting import eventually

pytestmark = [pytest.mark.broker, pytest.mark.postgres]

N = 16
PAUSES = 8  # more than the delivery limit (5): a requeue per failure would dead-letter


@pytest.fixture
async def pg_world(
    rabbit: Rabbit, amqp_vhost: tuple[str, str], tmp_path: Path, postgres_url: str
) -> AsyncIterator[tuple[World, TcpProxy]]:
    parts = urlsplit(postgres_url)
    pg = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await pg.start()
    world = World(tmp_path, rabbit, amqp_vhost[0], postgres_url)
    try:
        async with aiohttp.ClientSession() as session:
            world.session = session
            yield world, pg
    finally:
        await world.close()
        await pg.close()


def _paused(world: World) -> int:
    """Deliveries that met the outage: held in place, or (without the hold) requeued."""
    logs = [p.log_path.read_text(errors="replace") for p in world.processes if p.log_path.exists()]
    return sum(t.count('"handler_paused"') + t.count('"handler_failed"') for t in logs)


async def test_the_store_away_under_load_costs_no_application(
    pg_world: tuple[World, TcpProxy],
) -> None:
    w, pg = pg_world
    config = w.config("gw")
    direct = w.database_url
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace(direct, with_port(direct, pg.port)), encoding="utf-8")
    assert with_port(direct, pg.port) in config.read_text(encoding="utf-8")
    front = w.process("front", CORE, config=config)
    back = w.process("back", CONNECTORS, config=config)
    await front.start()
    await back.start()
    await w.start_departments()
    # the portal outlasts the outage (held until PAUSES deliveries met it: up to 120 s on a
    # loaded machine): it keeps retrying through the intake's 503s, as a portal does
    portal = asyncio.create_task(w.submit(N, patient=True, within=300))

    async def effects(n: int) -> bool:
        return len(await w.ledger.effects()) >= n

    assert await eventually(lambda: effects(4), within=90)
    await pg.refuse()  # every store connection reset, new ones refused
    held = await eventually(lambda: _true(_paused(w) >= PAUSES), within=120)
    await pg.restore()
    assert held, f"only {_paused(w)} deliveries met the outage"
    await portal

    report = await w.check("store away under load")
    report.assert_sound(completed=N)
    letters = await asyncio.to_thread(read_store, direct, "SELECT reason FROM dead_letters")
    assert letters == []  # the outage dead-lettered nothing


async def _true(value: bool) -> bool:
    return value
