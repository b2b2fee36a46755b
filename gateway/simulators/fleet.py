"""All department simulators of a configuration, started and stopped together.

``gateway simulate`` runs them as a process of their own; the demo and the end-to-end
tests run them beside the gateway. Each simulator takes its endpoint, folders or queues from
``[systems.<name>]``, so the real system can replace it by configuration alone.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from gateway.errors import ConfigurationError
from gateway.settings import Settings, SystemConfig
from gateway.simulators.behaviour import Behaviour
from gateway.simulators.ledger import EffectLedger


class Simulator(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass
class Fleet:
    settings: Settings
    ledger: EffectLedger
    callback_base_url: str | None = None  # where the gateway takes callbacks
    own_process: bool = False  # True: no gateway shares this event loop (``gateway simulate``)
    behaviours: dict[str, Behaviour] = field(default_factory=dict)
    running: dict[str, Simulator] = field(default_factory=dict)

    def behaviour(self, system: str) -> Behaviour:
        return self.behaviours.setdefault(system, Behaviour())

    async def start(self, only: set[str] | None = None) -> None:
        for name, config in sorted(self.settings.systems.items()):
            if only is not None and name not in only:
                continue
            sim = self._build(name, config)
            await sim.start()
            self.running[name] = sim

    def _build(self, name: str, config: SystemConfig) -> Simulator:
        behaviour = self.behaviour(name)
        if config.kind == "soap":
            from gateway.simulators.hukou import HukouSimulator

            return HukouSimulator(config, behaviour, self.ledger, own_process=self.own_process)
        if config.kind == "rest":
            from gateway.simulators.provincial import ProvincialSimulator

            callback = (
                f"{self.callback_base_url}/v1/callbacks/{name}" if self.callback_base_url else None
            )
            return ProvincialSimulator(config, behaviour, self.ledger, callback)
        if config.kind == "filedrop":
            from gateway.simulators.hospital import HospitalSimulator

            return HospitalSimulator(config, behaviour, self.ledger)
        from gateway.simulators.cdc import CdcSimulator

        return CdcSimulator(self.settings.amqp_url, config, behaviour, self.ledger)

    async def stop(self) -> None:
        for sim in reversed(list(self.running.values())):
            await sim.stop()
        self.running.clear()


def free_port() -> int:
    """A port free now on 127.0.0.1, for a simulator to listen on later. Taken below the
    kernel's ephemeral range where possible: between this check and the bind, an outgoing
    connection (the gateway's own, to RabbitMQ or PostgreSQL) may be given any ephemeral
    port, and one was (a simulator failed with "address already in use")."""
    low = _ephemeral_low()
    for port in random.sample(range(10_000, low), min(64, max(low - 10_000, 0))):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:  # nothing free below the range: any port the kernel picks
        s.bind(("127.0.0.1", 0))
        chosen: int = s.getsockname()[1]
        return chosen


def _ephemeral_low() -> int:
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return 10_000  # unknown: leave the choice to the kernel


def local_systems(
    root: Path | None = None, *, poll_seconds: float = 0.5
) -> dict[str, SystemConfig]:
    """The four DESIGN systems on this machine: free ports, folders under ``root``, a fresh
    signing secret shared by the gateway and the provincial simulator."""
    base = root or Path(tempfile.mkdtemp(prefix="gateway-sim-"))
    secret = os.urandom(16).hex()
    hospital = base / "hospital"
    folders = {k: hospital / k for k in ("in", "out", "archive", "error")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    return {
        "hospital": SystemConfig(
            kind="filedrop",
            outbox=folders["in"],
            inbox=folders["out"],
            archive=folders["archive"],
            error=folders["error"],
        ),
        "hukou": SystemConfig(
            kind="soap", url=f"http://127.0.0.1:{free_port()}/hukou", poll_seconds=poll_seconds
        ),
        "provincial": SystemConfig(
            kind="rest",
            url=f"http://127.0.0.1:{free_port()}/api",
            secret=secret,
            poll_seconds=max(poll_seconds, 5.0),
        ),
        "cdc": SystemConfig(
            kind="amqp", inbox_queue="dept.cdc.inbox", reply_queue="dept.cdc.replies"
        ),
    }


async def serve_fleet(
    settings: Settings, ledger_path: Path, systems: set[str], *, delay: float
) -> None:
    """``gateway simulate``: the configured departments until SIGTERM or SIGINT."""
    unknown = systems - set(settings.systems)
    if unknown or not systems:
        raise ConfigurationError(
            f"no [systems.*] table for {', '.join(sorted(unknown)) or 'any system'}; "
            "configure the systems to simulate (see deploy/gateway.example.toml)"
        )
    ledger_path.parent.mkdir(parents=True, exist_ok=True)
    ledger = EffectLedger(ledger_path)
    base = settings.public_base_url or f"http://{settings.http_host}:{settings.http_port}"
    fleet = Fleet(settings, ledger, callback_base_url=base, own_process=True)
    for name in systems:
        fleet.behaviour(name).decision_delay_seconds = delay
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await fleet.start(only=systems)
    try:
        await stop.wait()
    finally:
        await fleet.stop()
        ledger.close()
