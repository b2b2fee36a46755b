"""The world every fault case runs in: real RabbitMQ (the session's vhost), a real store,
the four department simulators in this process with their effect ledger on disk, gateway
roles as OS processes (``gateway run --role …``) that a case kills, and a portal submitting
over signed HTTP.

A case builds the processes it needs (``world.process(name, roles)``), breaks something,
and ends with ``await world.check(case)`` → ``LedgerReport.assert_sound(...)``.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from gateway.settings import Settings, SystemConfig
from gateway.simulators.fleet import Fleet, free_port, local_systems
from gateway.simulators.ledger import EffectLedger
from tests.conftest import WINDOW_SECRET, make_settings
from tests.faults.ledger_check import LedgerReport, ledger_check
from tests.faults.processes import GatewayProcess
from tests.support.portal import Portal, example_json
from tests.support.proxy import TcpProxy
from tests.support.rabbit import Rabbit, with_port

SYSTEMS = ("cdc", "hospital", "hukou", "provincial")
CONNECTORS = tuple(f"connector:{s}" for s in SYSTEMS)
FRONT = ("intake", "relay", "deadletters")
CORE = (*FRONT, "orchestrator", "scheduler")
NAMES = "一二三四五六七八九十"


def toml_value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


@dataclass
class World:
    tmp: Path
    rabbit: Rabbit
    vhost: str
    database_url: str
    proxy: TcpProxy | None = None
    http_port: int = field(default_factory=free_port)
    systems: dict[str, SystemConfig] = field(init=False)
    settings: Settings = field(init=False)
    ledger_path: Path = field(init=False)
    ledger: EffectLedger = field(init=False)
    fleet: Fleet = field(init=False)
    processes: list[GatewayProcess] = field(default_factory=list)
    answered: list[str] = field(default_factory=list)  # application ids answered 202
    session: aiohttp.ClientSession | None = None

    def __post_init__(self) -> None:
        self.systems = local_systems(self.tmp / "sim", poll_seconds=0.3)
        self.settings = make_settings(
            self.rabbit.url, self.database_url, http_port=self.http_port, systems=self.systems
        )
        self.ledger_path = self.tmp / "ledger.sqlite3"
        self.ledger = EffectLedger(self.ledger_path)
        base = f"http://127.0.0.1:{self.http_port}"
        self.fleet = Fleet(self.settings, self.ledger, callback_base_url=base)

    # -- configuration and processes -------------------------------------------------
    def config(self, name: str, *, via_proxy: bool = False, broker: dict[str, Any] | None = None,
               intake: dict[str, Any] | None = None,
               retry: dict[str, dict[str, Any]] | None = None) -> Path:  # fmt: skip
        """A settings file as an operator writes it; ``via_proxy`` sends AMQP through the
        test's TCP proxy; ``retry`` gives ``[systems.<name>.retry]`` tables."""
        url = self.rabbit.url
        if via_proxy:
            assert self.proxy is not None, "this world has no proxy"
            url = with_port(url, self.proxy.port)
        tables = {
            "broker": {"reconnect_max_seconds": 1.0, **(broker or {})},
            "intake": {
                "relay_interval_seconds": 0.3,
                "relay_grace_seconds": 1.0,
                **(intake or {}),
            },
            "portals.window": {"secret": WINDOW_SECRET, "amqp_user": "guest"},
        }
        lines = [
            f"amqp_url = {toml_value(url)}",
            f"database_url = {toml_value(self.database_url)}",
            f"http_port = {self.http_port}",
            'log_format = "json"',
        ]
        for table, values in tables.items():
            lines += [f"[{table}]", *(f"{k} = {toml_value(v)}" for k, v in values.items())]
        for system, cfg in self.systems.items():
            data = cfg.model_dump(mode="json", exclude_none=True, exclude={"retry"})
            if cfg.secret is not None:
                data["secret"] = cfg.secret.get_secret_value()
            lines += [f"[systems.{system}]", *(f"{k} = {toml_value(v)}" for k, v in data.items())]
            if policy := (retry or {}).get(system):
                lines += [f"[systems.{system}.retry]"]
                lines += [f"{k} = {toml_value(v)}" for k, v in policy.items()]
        path = self.tmp / f"{name}.toml"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    def process(self, name: str, roles: tuple[str, ...], config: Path | None = None,
                **config_kw: Any) -> GatewayProcess:  # fmt: skip
        proc = GatewayProcess(
            name, config or self.config(name, **config_kw), roles, self.tmp / f"{name}.log"
        )
        self.processes.append(proc)
        return proc

    async def start_departments(self) -> None:
        """After a gateway process has declared the topology (the CDC consumes our queue)."""
        await self.fleet.start()

    # -- the portal ---------------------------------------------------------------------
    @property
    def portal(self) -> Portal:
        assert self.session is not None
        return Portal(f"http://127.0.0.1:{self.http_port}", "window", WINDOW_SECRET, self.session)

    async def submit(self, n: int, *, patient: bool = False, within: float = 120.0) -> list[str]:
        """Submit ``n`` newborn applications one after another; each id answered 202 is
        remembered. ``patient``: retry (same idempotency key) through 503s, 409s and refused
        connections, as a portal does while the gateway restarts."""
        ids = []
        for _ in range(n):
            ids.append(await self.submit_one(patient=patient, within=within))
        return ids

    async def submit_one(self, *, patient: bool = False, within: float = 120.0) -> str:
        i = len(self.answered)
        envelope = example_json("newborn-yizhang-window")
        envelope["subjects"]["child"]["name"] = f"王{NAMES[i % 10]}{NAMES[(i // 10) % 10]}"
        body = json.dumps(envelope, ensure_ascii=False).encode()
        key = f"fault-{uuid.uuid4()}"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            try:
                answer = await self.portal.submit(body, key=key)
            except aiohttp.ClientError:
                if not patient or loop.time() > deadline:
                    raise
                await asyncio.sleep(0.3)
                continue
            if answer.status == 202:
                app_id = str(answer.json()["application_id"])
                self.answered.append(app_id)
                return app_id
            assert patient and answer.status in (409, 503), (answer.status, answer.body[:300])
            assert loop.time() < deadline, "the gateway never took the application"
            await asyncio.sleep(0.3)

    # -- the end of every case ----------------------------------------------------------
    async def check(self, case: str, *, within: float = 150.0) -> LedgerReport:
        return await ledger_check(
            case, self.database_url, self.ledger_path, self.vhost, self.answered, within=within
        )

    async def close(self) -> None:
        for proc in reversed(self.processes):
            await proc.stop()
        await self.fleet.stop()
        self.ledger.close()
