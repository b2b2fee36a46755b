"""Intake alone: accepted envelopes per second through a real gateway, against a bare
aiohttp handler on the same machine.

The gateway runs in this process with the ``intake`` role only, a fresh SQLite store in a
temporary folder and its fixed queue names on the broker of ``settings.amqp_url``; nothing
consumes ``gw.accepted`` meanwhile. The bare handler reads the body and answers 202. Both
get the same load: the newborn example, signed, from ``connections`` concurrent connections
of a load generator in a process of its own (``loadgen``), closed loop.

Afterwards the bench takes back what it published: it consumes ``gw.accepted`` and acks the
messages of its own portal until the queue holds what it held before. It runs only when
``gw.accepted`` is empty and unconsumed at the start, so that nothing else is touched.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway.bench.amqp import AmqpLink, queue_counts, take_back
from gateway.bench.components import NEWBORN, examples
from gateway.bench.loadgen import LoadResult, LoadSpec, run_load
from gateway.bench.report import Row
from gateway.bench.stats import intake_efficiency, percentile
from gateway.broker.topology import ACCEPTED, HEADER_PORTAL
from gateway.runtime import Gateway, freeze_startup_heap
from gateway.settings import PortalConfig, Settings

LOADGEN_BOUND = 0.9  # load generator CPU ÷ its wall time from which it is the bottleneck
SECTION = "intake alone (HTTP, signed newborn envelope, closed loop)"

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Side:
    load: LoadResult
    server_cpu_seconds: float  # this process while the load ran
    wall_seconds: float = 0.0  # the load generator's process, start to exit

    @property
    def bounded_by_load_generator(self) -> bool:
        """The load generator used ≥ ``LOADGEN_BOUND`` of a CPU over its life: the side's
        figure is the client's limit, not the server's."""
        return self.wall_seconds > 0 and self.load.cpu_seconds >= LOADGEN_BOUND * self.wall_seconds


@dataclass(frozen=True, slots=True)
class IntakeResult:
    connections: int
    seconds: float
    bare: Side | None
    gateway: Side | None
    drained: int
    skipped: str | None = None

    @property
    def efficiency(self) -> float | None:
        if self.bare is None or self.gateway is None:
            return None
        return intake_efficiency(self.gateway.load.ok_per_second, self.bare.load.ok_per_second)

    def rows(self) -> list[Row]:
        if self.skipped:
            return [Row(SECTION, "accepted", None, "/s", f"not measured: {self.skipped}")]
        rows: list[Row] = []
        for label, side in (("bare aiohttp handler", self.bare), ("gateway intake", self.gateway)):
            if side is None:
                continue
            load = side.load
            per = max(load.sent, 1)
            bound = (
                f"; bounded by the load generator ({load.cpu_seconds:.2f} s CPU in "
                f"{side.wall_seconds:.2f} s)"
                if side.bounded_by_load_generator
                else ""
            )
            rows += [
                Row(SECTION, f"{label}: 202 answers", load.ok_per_second, "/s",
                    f"{self.connections} connections; other answers: {_others(load)}{bound}"),
                Row(SECTION, f"{label}: latency p50 / p99", _p(load, 50), "ms",
                    f"p99 {_p(load, 99):.1f} ms; n={len(load.latency_ms)}"),
                Row(SECTION, f"{label}: server CPU per request",
                    side.server_cpu_seconds / per * 1e6, "µs",
                    f"{side.server_cpu_seconds:.2f} s in all"),
                Row(SECTION, f"{label}: load generator CPU", load.cpu_seconds, "s",
                    f"{load.cpu_seconds / per * 1e6:.0f} µs per request"),
            ]  # fmt: skip
        return rows


def _p(load: LoadResult, q: float) -> float:
    return percentile(load.latency_ms, q) if load.latency_ms else 0.0


def _others(load: LoadResult) -> str:
    other = {k: v for k, v in load.statuses.items() if k != "202"}
    return ", ".join(f"{k}×{v}" for k, v in sorted(other.items())) or "none"


async def run_intake(
    settings: Settings, *, seconds: float, connections: int, progress: Progress
) -> IntakeResult:
    link = await AmqpLink.open(settings.amqp_url, "gateway-bench-intake-watch")
    try:
        before = await queue_counts(link, ACCEPTED)
        if before is not None and (before[0] or before[1]):
            reason = (
                f"{ACCEPTED} holds {before[0]} message(s) and has {before[1]} consumer(s) at "
                f"{_where(settings)}; the bench would mix with them (drain it, stop the gateway)"
            )
            progress(f"intake: skipped — {reason}")
            return IntakeResult(connections, seconds, None, None, 0, reason)
        body = dict(examples())[NEWBORN].decode()
        progress(f"intake: bare aiohttp handler, {connections} connections, {seconds:.0f} s")
        bare = await _bare(body, seconds, connections)
        progress(f"intake: bare handler {bare.load.ok_per_second:,.0f} req/s")
        progress(f"intake: gateway (intake role, SQLite), {connections} connections, "
                 f"{seconds:.0f} s")  # fmt: skip
        gateway, portal_id = await _gateway(settings, body, seconds, connections)
        progress(f"intake: gateway {gateway.load.ok_per_second:,.0f} accepted/s; "
                 f"taking the bench's messages back from {ACCEPTED}")  # fmt: skip
        after = await queue_counts(link, ACCEPTED)
        published = after[0] if after is not None else 0  # it held none before
        drained = await take_back(
            link, ACCEPTED, lambda _m, props: _portal_of(props) == portal_id, expected=published
        )
        left = await queue_counts(link, ACCEPTED)
        progress(f"intake: {drained:,} of the {published:,} bench messages removed from "
                 f"{ACCEPTED}; it holds {left[0] if left else 0} now")  # fmt: skip
        return IntakeResult(connections, seconds, bare, gateway, drained)
    finally:
        await link.close()


async def _bare(body: str, seconds: float, connections: int) -> Side:
    async def accept(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=202)

    app = web.Application()
    app.router.add_post("/v1/applications", accept)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = int(runner.addresses[0][1])
        spec = LoadSpec(f"http://127.0.0.1:{port}", "bench", "x" * 32, body, connections, seconds)
        return await _timed(spec)
    finally:
        await runner.cleanup()


async def _gateway(base: Settings, body: str, seconds: float, connections: int) -> tuple[Side, str]:
    portal_id = f"bench-{os.urandom(3).hex()}"
    secret = os.urandom(16).hex()
    with tempfile.TemporaryDirectory(prefix="gateway-bench-intake-") as tmp:
        settings = base.model_copy(
            update={
                "portals": {portal_id: PortalConfig(secret=secret)},
                "database_url": f"sqlite:///{Path(tmp) / 'gateway.sqlite3'}",
                "http_host": "127.0.0.1",
                "http_port": 0,
                "systems": {},
            }
        )
        async with Gateway(settings, roles=["intake"], name="gateway-bench-intake") as gw:
            url = f"http://127.0.0.1:{gw.http_port}"
            freeze_startup_heap()  # as `gateway run` does once it has started
            side = await _timed(LoadSpec(url, portal_id, secret, body, connections, seconds))
    return side, portal_id


async def _timed(spec: LoadSpec) -> Side:
    cpu0, wall0 = time.process_time(), time.monotonic()
    load = await run_load(spec)
    return Side(load, time.process_time() - cpu0, time.monotonic() - wall0)


def _portal_of(props: Any) -> object:
    return (props.headers or {}).get(HEADER_PORTAL)


def _where(settings: Settings) -> str:
    return settings.amqp_url.rsplit("@", 1)[-1]
