"""Wiring: one process running the roles it was asked to run.

``gateway run`` starts all roles; ``--role`` runs a subset. Every role may run in several
processes at once: state lives in the store and the broker, never only in memory here.
SIGTERM stops consuming, lets in-flight work finish within a bounded time, then exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import zoneinfo
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from aiohttp import web

from gateway.broker.client import BrokerClient
from gateway.broker.messages import Message
from gateway.broker.topology import DEAD_LETTERS, DEFAULT_SYSTEMS, INTAKE, build_topology
from gateway.deadletters import DeadLetterSink
from gateway.intake.amqp import AmqpIntake
from gateway.intake.auth import PortalAuth
from gateway.intake.http import IntakeApi, Readiness, build_app
from gateway.intake.relay import Relay
from gateway.intake.service import IntakeService
from gateway.logs import get_logger
from gateway.metrics import Metrics
from gateway.settings import ALL_ROLES, Role, Settings
from gateway.store import Store, open_store

log = get_logger(__name__)


@dataclass
class Gateway:
    """A running gateway process. Use ``async with Gateway(settings):`` or start/stop."""

    settings: Settings
    roles: Iterable[Role] = ALL_ROLES
    clock: Callable[[], float] = time.time
    name: str = "gateway"
    metrics: Metrics = field(default_factory=Metrics)
    store: Store | None = None
    broker: BrokerClient | None = None
    http_port: int | None = None
    _runner: web.AppRunner | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _background: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self) -> None:
        s = self.settings
        roles = set(self.roles)
        self.store = await open_store(s.database_url)
        topology = build_topology(
            list(s.systems) or DEFAULT_SYSTEMS,
            delivery_limit=s.broker.delivery_limit,
            max_length=s.broker.max_queue_length,
        )
        self.broker = BrokerClient(
            s.amqp_url,
            topology,
            name=f"{self.name}[{','.join(sorted(roles))}]",
            confirm_window=s.broker.confirm_window,
            reconnect_max_seconds=s.broker.reconnect_max_seconds,
        )
        broker = self.broker
        self.metrics.broker_connected.set_function(lambda: 1.0 if broker.connected else 0.0)
        try:
            await self.broker.start()
        except Exception:
            await self.store.close()
            raise
        service = IntakeService(
            self.store,
            self.publish,
            self.metrics,
            lease_seconds=s.intake.idempotency_lease_seconds,
            location_prefix=s.public_base_url or "",
            clock=self.clock,
        )
        if "intake" in roles:
            auth = PortalAuth(
                s.portals, self.store, skew_seconds=s.intake.clock_skew_seconds, clock=self.clock
            )
            api = IntakeApi(
                service,
                auth,
                self.store,
                self.metrics,
                Readiness(lambda: self.broker is not None and self.broker.connected),
                timezone=zoneinfo.ZoneInfo(s.timezone),
            )
            app = build_app(api, max_body_bytes=s.intake.max_body_bytes)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, s.http_host, s.http_port)
            await site.start()
            self.http_port = int(self._runner.addresses[0][1])  # the bound port, for port 0
            amqp = AmqpIntake(service, s, self.publish, clock=self.clock)
            await self.broker.consume(INTAKE, amqp.handle, prefetch=s.broker.prefetch_intake)
            log.info("http_listening", host=s.http_host, port=self.http_port)
        if "relay" in roles:
            relay = Relay(
                self.store,
                self.publish,
                self.metrics,
                grace_seconds=s.intake.relay_grace_seconds,
                lease_seconds=s.intake.idempotency_lease_seconds,
                clock=self.clock,
            )
            self._background.append(
                asyncio.create_task(relay.run(s.intake.relay_interval_seconds, self._stop))
            )
        if "deadletters" in roles:
            sink = DeadLetterSink(self.store, self.metrics, clock=self.clock)
            await self.broker.consume(
                DEAD_LETTERS, sink.handle, prefetch=s.broker.prefetch_deadletters
            )
        log.info(
            "gateway_started",
            roles=sorted(roles),
            broker_version=self.broker.server_version,
            store=self.store.dialect,
        )

    async def publish(self, exchange: str, routing_key: str, message: Message) -> None:
        assert self.broker is not None, "start() the gateway first"
        await self.broker.publish(
            exchange, routing_key, message, timeout=self.settings.broker.publish_timeout_seconds
        )

    async def stop(self, drain_seconds: float = 10.0) -> None:
        self._stop.set()
        if self._runner is not None:
            await self._runner.cleanup()
        if self.broker is not None:
            await self.broker.close(drain_seconds)
        for task in self._background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.store is not None:
            await self.store.close()
        log.info("gateway_stopped")

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()


async def serve(settings: Settings, roles: Iterable[Role], drain_seconds: float = 20.0) -> None:
    """Run until SIGTERM or SIGINT, then drain and stop."""
    gateway = Gateway(settings, roles)
    await gateway.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("gateway_draining", seconds=drain_seconds)
    await gateway.stop(drain_seconds)
