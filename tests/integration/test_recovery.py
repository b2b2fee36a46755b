"""The internal push survives a killed gateway, and never holds a delivery while it waits.

The gateway runs as a real process (``gateway run``) that the test kills with SIGKILL and
starts again; the departments are the simulators, in this process, with their ledger.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.settings import Settings, SystemConfig
from gateway.simulators.fleet import Fleet, free_port, local_systems
from gateway.simulators.ledger import EffectLedger
from tests.conftest import WINDOW_SECRET, make_settings
from tests.support.portal import Portal, example_json
from tests.support.rabbit import Rabbit, rabbitmqctl
from tests.support.waiting import eventually

pytestmark = pytest.mark.broker


def toml_systems(systems: dict[str, SystemConfig]) -> str:
    out = []
    for name, cfg in systems.items():
        data = cfg.model_dump(mode="json", exclude_none=True, exclude={"retry"})
        if cfg.secret is not None:
            data["secret"] = cfg.secret.get_secret_value()
        out += [f"[systems.{name}]", *(f"{k} = {json.dumps(v)}" for k, v in data.items())]
    return "\n".join(out) + "\n"


class Process:
    """``gateway run`` as an operator would start it."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, port: int) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway.cli",
            "--config",
            str(self.config),
            "run",
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                try:
                    async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.1)
        pytest.fail("gateway run never became ready")

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()


@pytest.fixture
async def world(rabbit: Rabbit, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    port = free_port()
    systems = local_systems(tmp_path / "sim", poll_seconds=0.3)
    settings: Settings = make_settings(
        rabbit.url, f"sqlite:///{tmp_path / 'gw.sqlite3'}", http_port=port, systems=systems
    )
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'amqp_url = "{rabbit.url}"\ndatabase_url = "{settings.database_url}"\n'
        f'http_port = {port}\nlog_format = "json"\n[intake]\nrelay_interval_seconds = 0.5\n'
        f'[portals.window]\nsecret = "{WINDOW_SECRET}"\namqp_user = "guest"\n'
        + toml_systems(systems),
        encoding="utf-8",
    )
    ledger = EffectLedger(tmp_path / "ledger.sqlite3")
    fleet = Fleet(settings, ledger, callback_base_url=f"http://127.0.0.1:{port}")
    process = Process(config)
    await process.start(port)
    await fleet.start()
    async with aiohttp.ClientSession() as session:
        portal = Portal(f"http://127.0.0.1:{port}", "window", WINDOW_SECRET, session)
        yield {"port": port, "fleet": fleet, "ledger": ledger, "process": process, "portal": portal}
    await process.stop()
    await fleet.stop()
    ledger.close()


async def submit_all(portal: Portal, n: int) -> list[str]:
    ids = []
    for i in range(n):
        envelope = example_json("newborn-yizhang-window")
        envelope["subjects"]["child"]["name"] = f"王{'一二三四五六七八九十'[i % 10]}"
        answer = await portal.submit(json.dumps(envelope, ensure_ascii=False).encode())
        assert answer.status == 202
        ids.append(answer.json()["application_id"])
    return ids


async def all_completed(portal: Portal, ids: list[str]) -> bool:
    views = [(await portal.show(i)).json() for i in ids]
    return all(v["status"] == "completed" for v in views)


async def test_a_gateway_killed_mid_flight_resumes_with_no_double_effect(
    world: dict[str, Any],
) -> None:
    fleet: Fleet = world["fleet"]
    fleet.behaviour("hukou").decision_delay_seconds = 1.0
    portal: Portal = world["portal"]
    ids = await submit_all(portal, 12)
    ledger: EffectLedger = world["ledger"]
    await eventually(lambda: _at_least(ledger, 12), within=20)  # well under way
    await world["process"].kill()  # SIGKILL: no drain, no goodbye
    await asyncio.sleep(1.5)  # departments keep deciding while the gateway is down
    await world["process"].start(world["port"])
    assert await eventually(lambda: all_completed(portal, ids), within=60)
    assert await ledger.double_effects() == []
    effects = await ledger.effects()
    assert len({(e.application_id, e.task) for e in effects}) == len(ids) * 5


async def _at_least(ledger: EffectLedger, n: int) -> bool:
    return len(await ledger.effects()) >= n


async def test_no_delivery_is_held_while_departments_decide(
    world: dict[str, Any], rabbit: Rabbit, amqp_vhost: tuple[str, str]
) -> None:
    """Decisions take longer than a consumer timeout would allow; nothing stays unacked."""
    vhost = amqp_vhost[0]
    if not vhost:
        pytest.skip("needs rabbitmqctl and a vhost of its own")
    fleet: Fleet = world["fleet"]
    for name in ("hospital", "hukou", "provincial", "cdc"):
        fleet.behaviour(name).decision_delay_seconds = 3.0
    portal: Portal = world["portal"]
    ids = await submit_all(portal, 5)
    await asyncio.sleep(1.5)  # every bundle is waiting on a department's decision
    unacked = await asyncio.to_thread(
        rabbitmqctl,
        "list_queues",
        "-p",
        vhost,
        "-q",
        "--no-table-headers",
        "name",
        "messages_unacknowledged",
    )
    pending = [
        t["status"]
        for i in ids
        for t in (await portal.show(i)).json()["tasks"]
        if t["status"] in ("dispatched", "submitted", "in_progress")
    ]
    assert pending  # departments are still deciding while we look
    held = {
        line.split()[0]: int(line.split()[1])
        for line in unacked.splitlines()
        if line.strip() and line.split()[0].startswith(("gw.", "dept."))
    }
    assert held and all(n == 0 for n in held.values()), held
    assert await eventually(lambda: all_completed(portal, ids), within=60)
