"""The internal push: newborn applications through the whole gateway and the simulators.

Every role runs in this process, as in ``gateway demo``, with a fresh SQLite store, against
the four department simulators (``Fleet``, every decision at once). A watcher binds a
temporary queue to ``gw.events`` for ``<bench portal>.newborn.application.completed`` and
stamps each arrival; the load generator (a process of its own) stamps each 202 on the same
wall clock, so latency is 202 → ``application.completed``.

    burst   ``burst`` newborns sent as fast as intake takes them; completed applications
            per second = burst ÷ (last completion − first 202): the maximum rate
    steady  open loop at half that rate for ``seconds``: latency p50/p95/p99

Departments still on a polling path (hukou decisions are polled by the gateway; the hospital
result folder is scanned) add their intervals to the latency; the figures say so.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.bench.amqp import AmqpLink, queue_counts, take_back
from gateway.bench.components import NEWBORN, examples
from gateway.bench.loadgen import LoadResult, LoadSpec, run_load
from gateway.bench.report import Row
from gateway.bench.stats import hop_efficiency, percentile, rate
from gateway.broker.messages import Message
from gateway.broker.topology import DEFAULT_SYSTEMS, EVENTS, WEBHOOKS, build_topology
from gateway.runtime import Gateway
from gateway.settings import PortalConfig, Settings
from gateway.simulators.fleet import Fleet, local_systems
from gateway.simulators.ledger import EffectLedger

SECTION = "internal push (newborn, every role in one process, simulators deciding at once)"
POLL_SECONDS = 0.2  # the gateway's polling of hukou decisions
BURST_CONNECTIONS = 8
COMPLETION_TIMEOUT = 60.0
LEGACY_WEBHOOKS = WEBHOOKS  # the one queue for every portal's events, before per-portal queues

Progress = Callable[[str], None]


@dataclass
class Phase:
    submitted: int = 0
    completed: int = 0
    seconds: float = 0.0  # first 202 → last completion
    latency_ms: list[float] = field(default_factory=list)
    load: LoadResult | None = None

    @property
    def per_second(self) -> float:
        return rate(self.completed, self.seconds)

    def p(self, q: float) -> float | None:
        return percentile(self.latency_ms, q) if self.latency_ms else None


@dataclass
class PushResult:
    burst: Phase | None = None
    steady: Phase | None = None
    steady_rate: float = 0.0
    published: dict[str, int] = field(default_factory=dict)  # by exchange, whole run
    applications: int = 0  # 202s over the whole run
    cpu_seconds: float = 0.0  # this process (gateway + simulators), whole run
    skipped: str | None = None
    portal_id: str = ""

    def hop_efficiency(self, raw_hop_per_second: float) -> float | None:
        if self.burst is None:
            return None
        return hop_efficiency(self.burst.per_second, raw_hop_per_second)

    def rows(self) -> list[Row]:
        if self.skipped or self.burst is None:
            return [Row(SECTION, "completed", None, "apps/s", f"not measured: {self.skipped}")]
        b = self.burst
        apps = max(self.applications, 1)
        rows = [
            Row(SECTION, f"burst of {b.submitted}: completed", b.per_second, "apps/s",
                f"{b.completed}/{b.submitted} completed in {b.seconds:.1f} s"),
            Row(SECTION, "burst: latency p50", b.p(50), "ms",
                f"p95 {_ms(b.p(95))}, p99 {_ms(b.p(99))} (queueing included)"),
        ]  # fmt: skip
        if self.steady is not None:
            s = self.steady
            rows += [
                Row(SECTION, f"steady {self.steady_rate:.1f}/s offered (50 %): completed",
                    rate(s.completed, s.load.window_seconds if s.load else 0.0), "apps/s",
                    f"{s.completed}/{s.submitted} completed"),
                Row(SECTION, "steady: latency p50", s.p(50), "ms",
                    f"p95 {_ms(s.p(95))}, p99 {_ms(s.p(99))}; target p99 ≤ 100 ms; on the "
                    f"path: hospital result scan (1 s), hukou polling ({POLL_SECONDS} s)"),
            ]  # fmt: skip
        total = sum(self.published.values())
        detail = ", ".join(f"{k} {v / apps:.1f}" for k, v in sorted(self.published.items()))
        rows += [
            Row(SECTION, "gateway publishes per application", total / apps, "msg",
                f"{detail} (department-side queue messages not included)"),
            Row(SECTION, "CPU per application (gateway + simulators)",
                self.cpu_seconds / apps * 1e3, "ms", "one process; load generator apart"),
        ]  # fmt: skip
        if b.load is not None:
            rows.append(Row(SECTION, "load generator CPU per application",
                            b.load.cpu_seconds / max(b.load.sent, 1) * 1e3, "ms"))  # fmt: skip
        return rows


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f} ms"


class _CountingGateway(Gateway):
    """The gateway, counting what it publishes (confirmed) per exchange."""

    counts: Counter[str]

    async def publish(self, exchange: str, routing_key: str, message: Message) -> None:
        await super().publish(exchange, routing_key, message)
        self.counts[exchange or "(default)"] += 1


class _Watcher:
    """Stamps ``application.completed`` events of one portal as they arrive."""

    def __init__(self) -> None:
        self.completed: dict[str, float] = {}
        self.changed = asyncio.Event()

    async def start(self, link: AmqpLink, portal_id: str) -> None:
        channel = await link.channel()
        frame = await link.call(channel.queue_declare, "", exclusive=True, auto_delete=True)
        queue = frame.method.queue
        key = f"{portal_id}.newborn.application.completed"
        await link.call(channel.queue_bind, queue, EVENTS, routing_key=key)
        channel.basic_consume(queue, self._on_message, auto_ack=True)

    def _on_message(self, _ch: Any, _method: Any, props: Any, _body: bytes) -> None:
        if props.correlation_id and props.correlation_id not in self.completed:
            self.completed[props.correlation_id] = time.time()
            self.changed.set()

    async def wait_for(self, ids: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while any(i not in self.completed for i in ids) and time.monotonic() < deadline:
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), 0.5)

    def phase(self, load: LoadResult) -> Phase:
        return phase_of(load, self.completed)


def phase_of(load: LoadResult, completed: Mapping[str, float]) -> Phase:
    """What one load did: 202s matched with their completions (wall-clock seconds)."""
    done = [(t, completed[a]) for a, t in load.accepted if a in completed]
    phase = Phase(submitted=len(load.accepted), completed=len(done), load=load)
    if done:
        first = min(t for _, t in load.accepted)
        phase.seconds = max(c for _, c in done) - first
        phase.latency_ms = [(c - t) * 1000 for t, c in done]
    return phase


async def run_push(base: Settings, *, burst: int, seconds: float, progress: Progress) -> PushResult:
    link = await AmqpLink.open(base.amqp_url, "gateway-bench-push-watch")
    try:
        busy = await _busy_queues(link)
        if busy:
            reason = f"the gateway's queues are in use on this vhost ({busy})"
            progress(f"push: skipped — {reason}")
            return PushResult(skipped=reason)
        legacy = await queue_counts(link, LEGACY_WEBHOOKS)
        with tempfile.TemporaryDirectory(prefix="gateway-bench-push-") as tmp:
            result = await _run(base, Path(tmp), link, burst, seconds, progress)
        if legacy is not None:  # still bound to every event: take the bench's back out
            after = await queue_counts(link, LEGACY_WEBHOOKS)
            extra = (after[0] if after else 0) - legacy[0]
            taken = await take_back(
                link,
                LEGACY_WEBHOOKS,
                lambda method, _props: str(method.routing_key).startswith(f"{result.portal_id}."),
                expected=max(extra, 0),
                idle_seconds=1.0,
            )
            if taken:
                progress(
                    f"push: {taken} bench events taken back from {LEGACY_WEBHOOKS}, a queue "
                    "the topology no longer declares but the broker still binds to gw.events"
                )
        return result
    finally:
        await link.close()


async def _run(
    base: Settings, tmp: Path, link: AmqpLink, burst: int, seconds: float, progress: Progress
) -> PushResult:
    portal_id, secret = f"bench-{os.urandom(3).hex()}", os.urandom(16).hex()
    settings = base.model_copy(
        update={
            "portals": {portal_id: PortalConfig(secret=secret)},
            "database_url": f"sqlite:///{tmp / 'gateway.sqlite3'}",
            "http_host": "127.0.0.1",
            "http_port": 0,
            "systems": local_systems(tmp / "departments", poll_seconds=POLL_SECONDS),
        }
    )
    body = dict(examples())[NEWBORN].decode()
    ledger = EffectLedger(tmp / "ledger.sqlite3")
    watcher = _Watcher()
    result = PushResult(portal_id=portal_id)
    gw = _CountingGateway(settings, name="gateway-bench-push")
    gw.counts = Counter()
    cpu0 = time.process_time()
    await gw.start()  # declares gw.events before the watcher binds to it
    fleet = Fleet(settings, ledger, callback_base_url=f"http://127.0.0.1:{gw.http_port}")
    try:
        await watcher.start(link, portal_id)
        await fleet.start()
        url = f"http://127.0.0.1:{gw.http_port}"
        progress(f"push: burst of {burst} newborns ({BURST_CONNECTIONS} connections)")
        load = await run_load(
            LoadSpec(url, portal_id, secret, body, BURST_CONNECTIONS, seconds=3600.0,
                     warm_up_seconds=0.0, keep_accepted=True, rate=None, count=burst)
        )  # fmt: skip
        await watcher.wait_for([a for a, _ in load.accepted], COMPLETION_TIMEOUT)
        result.burst = watcher.phase(load)
        progress(f"push: burst {result.burst.per_second:.1f} completed/s "
                 f"({result.burst.completed}/{result.burst.submitted})")  # fmt: skip
        if result.burst.completed and seconds > 0:
            result.steady_rate = max(1.0, result.burst.per_second / 2)
            progress(f"push: steady {result.steady_rate:.1f}/s open loop for {seconds:.0f} s")
            load = await run_load(
                LoadSpec(url, portal_id, secret, body, 64, seconds, warm_up_seconds=0.0,
                         rate=result.steady_rate, keep_accepted=True)
            )  # fmt: skip
            await watcher.wait_for([a for a, _ in load.accepted], COMPLETION_TIMEOUT)
            result.steady = watcher.phase(load)
            progress(f"push: steady p99 {_ms(result.steady.p(99))}")
        result.applications = sum(p.submitted for p in (result.burst, result.steady) if p)
    finally:
        await fleet.stop()
        await gw.stop()
        ledger.close()
    result.cpu_seconds = time.process_time() - cpu0
    result.published = dict(gw.counts)
    return result


async def _busy_queues(link: AmqpLink) -> str:
    """The gateway's queues (as its topology declares them) that hold or hand out messages."""
    busy = []
    for queue in (q.name for q in build_topology(DEFAULT_SYSTEMS).queues):
        counts = await queue_counts(link, queue)
        if counts is not None and (counts[0] or counts[1]):
            busy.append(f"{queue}: {counts[0]} messages, {counts[1]} consumers")
    return "; ".join(busy)
