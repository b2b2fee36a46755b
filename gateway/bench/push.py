"""The internal push: newborn applications through the whole gateway and the simulators.

Every role runs in this process, as in ``gateway demo``, with a fresh store (SQLite in a
temporary folder, or PostgreSQL in a fresh schema), against the four department simulators
(``Fleet``, every decision at once). A watcher binds a temporary queue to ``gw.events`` for
``<bench portal>.newborn.application.completed`` and stamps each arrival; the load generator
(a process of its own) stamps each 202 on the same wall clock, so latency is 202 →
``application.completed``.

    burst    ``burst`` newborns sent as fast as intake takes them; completed applications
             per second = burst ÷ (last completion − first 202): the maximum rate
    levels   open loop at 25 %, 50 % and 75 % of that rate, ``seconds`` each: latency
             p50/p95/p99 at each (issue 6's target: p99 ≤ 100 ms at 50 %)
    backlog  the gateway stopped; ``backlog`` newborns accepted by intake alone pile up on
             ``gw.accepted``; then every role starts again and drains them: completed/s
             over the drain ÷ the burst rate (target ≥ 0.8)

CPU seconds per application are split by process: this one (gateway and simulators), the
load generator, and RabbitMQ when it runs on this host (``processes``); with the peak
resident memory of each. Two departments have no callback, so polling stays on the latency
path, at short intervals here: the hospital's result folder (and the hospital simulator's
in-tray) is scanned and hukou decisions are polled every ``POLL_SECONDS``; the rows say so.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.bench.amqp import AmqpLink, queue_counts, take_back
from gateway.bench.components import NEWBORN, examples
from gateway.bench.loadgen import LoadResult, LoadSpec, run_load
from gateway.bench.processes import Usage, broker_pid, process_usage, self_usage
from gateway.bench.report import Row
from gateway.bench.stats import hop_efficiency, percentile, rate
from gateway.bench.stores import postgres_schema
from gateway.broker.messages import Message
from gateway.broker.topology import DEFAULT_SYSTEMS, EVENTS, WEBHOOKS, build_topology
from gateway.runtime import Gateway
from gateway.settings import PortalConfig, Settings, SystemConfig
from gateway.simulators.fleet import Fleet, free_port, local_systems
from gateway.simulators.hospital import HospitalSimulator
from gateway.simulators.ledger import EffectLedger

SECTION = "internal push (newborn, every role in one process, simulators deciding at once)"
POLL_SECONDS = 0.02  # the gateway's polling of hukou decisions (its SOAP has no callback)
CONCURRENCY = 16  # requests in flight per department system (the default is 4)
LEVELS = (0.25, 0.5, 0.75)  # shares of the burst rate offered open loop
BURST_CONNECTIONS = 8
BACKLOG_CONNECTIONS = 16
RSS_SAMPLE_SECONDS = 10.0  # this process's resident memory, sampled through the push
COMPLETION_TIMEOUT = 60.0
LEGACY_WEBHOOKS = WEBHOOKS  # the one queue for every portal's events, before per-portal queues

Progress = Callable[[str], None]


@dataclass
class Phase:
    submitted: int = 0
    completed: int = 0
    seconds: float = 0.0  # first 202 (or the drain's start) → last completion
    latency_ms: list[float] = field(default_factory=list)
    load: LoadResult | None = None

    @property
    def per_second(self) -> float:
        return rate(self.completed, self.seconds)

    def p(self, q: float) -> float | None:
        return percentile(self.latency_ms, q) if self.latency_ms else None


@dataclass(frozen=True, slots=True)
class Level:
    share: float  # of the burst rate
    offered: float  # applications/s
    phase: Phase


@dataclass
class PushResult:
    store: str = "sqlite"
    burst: Phase | None = None
    levels: list[Level] = field(default_factory=list)
    backlog: Phase | None = None
    published: dict[str, int] = field(default_factory=dict)  # by exchange, whole run
    applications: int = 0  # 202s over the whole run
    cpu_seconds: float = 0.0  # this process (gateway + simulators), whole run
    load_cpu_seconds: float = 0.0  # the load generators, whole run
    load_peak_rss_kb: int = 0
    broker_cpu_seconds: float | None = None  # RabbitMQ on this host, whole run
    broker_peak_rss_kb: int | None = None
    peak_rss_kb: int | None = None  # this process (the bench's whole life)
    rss_kb: list[int] = field(default_factory=list)  # this process after each phase
    rss_samples: list[tuple[float, int]] = field(default_factory=list)  # (s into the push, kB)
    skipped: str | None = None
    portal_id: str = ""

    def hop_efficiency(self, raw_hop_per_second: float) -> float | None:
        if self.burst is None:
            return None
        return hop_efficiency(self.burst.per_second, raw_hop_per_second)

    @property
    def drain_ratio(self) -> float | None:
        if self.backlog is None or self.burst is None or not self.burst.per_second:
            return None
        return self.backlog.per_second / self.burst.per_second

    def rows(self) -> list[Row]:
        section = f"{SECTION}, {self.store}"
        if self.skipped or self.burst is None:
            return [Row(section, "completed", None, "apps/s", f"not measured: {self.skipped}")]
        b = self.burst
        rows = [
            Row(section, f"burst of {b.submitted}: completed", b.per_second, "apps/s",
                f"{b.completed}/{b.submitted} completed in {b.seconds:.1f} s"),
            Row(section, "burst: latency p50", b.p(50), "ms",
                f"p95 {_ms(b.p(95))}, p99 {_ms(b.p(99))} (queueing included)"),
        ]  # fmt: skip
        for level in self.levels:
            s = level.phase
            window = s.load.window_seconds if s.load else 0.0
            target = "; target p99 ≤ 100 ms" if level.share == 0.5 else ""
            rows += [
                Row(section, f"{level.share:.0%} load ({level.offered:.1f}/s offered): p99",
                    s.p(99), "ms",
                    f"p50 {_ms(s.p(50))}, p95 {_ms(s.p(95))}; {s.completed}/{s.submitted} "
                    f"completed, {rate(s.completed, window):.1f}/s{target}"),
            ]  # fmt: skip
        if self.levels:
            rows.append(Row(section, "on the latency path", None, "",
                            f"hospital result folder scanned and hukou polled every "
                            f"{POLL_SECONDS:g} s, the hospital simulator's in-tray too; the "
                            "other simulators answer in the reply or by callback"))  # fmt: skip
        if self.backlog is not None:
            k = self.backlog
            note = (
                f"{k.completed}/{k.submitted} in {k.seconds:.1f} s; "
                f"÷ burst rate = {_ratio(self.drain_ratio)} (target ≥ 0.8)"
            )
            rows.append(
                Row(section, f"backlog of {k.submitted}: drained", k.per_second, "apps/s", note)
            )
        rows += self._cost_rows(section)
        return rows

    def _cost_rows(self, section: str) -> list[Row]:
        apps = max(self.applications, 1)
        total = sum(self.published.values())
        detail = ", ".join(f"{k} {v / apps:.1f}" for k, v in sorted(self.published.items()))
        broker_note = "RabbitMQ not on this host" if self.broker_cpu_seconds is None else ""
        return [
            Row(section, "gateway publishes per application", total / apps, "msg",
                f"{detail} (department-side queue messages not included)"),
            Row(section, "CPU per application: gateway + simulators",
                self.cpu_seconds / apps * 1e3, "ms", f"one process; {apps} applications"),
            Row(section, "CPU per application: load generator",
                self.load_cpu_seconds / apps * 1e3, "ms"),
            Row(section, "CPU per application: RabbitMQ",
                None if self.broker_cpu_seconds is None
                else self.broker_cpu_seconds / apps * 1e3, "ms",
                broker_note or "the whole broker process: other clients' work included"),
            Row(section, "peak RSS: gateway + simulators", _mb(self.peak_rss_kb), "MB",
                "RSS after each phase: " + ", ".join(f"{_mb(r):.0f}" for r in self.rss_kb)
                + " MB; target ≤ 200 MB and flat"),
            Row(section, "RSS growth over the push", _mb(rss_growth(self.rss_samples)), "MB",
                _samples_note(self.rss_samples)),
            Row(section, "peak RSS: load generator", _mb(self.load_peak_rss_kb), "MB"),
            Row(section, "peak RSS: RabbitMQ", _mb(self.broker_peak_rss_kb), "MB",
                broker_note or "since the broker started"),
        ]  # fmt: skip


def rss_growth(samples: list[tuple[float, int]]) -> int | None:
    """Last sample minus the lowest of the first half: what a leak would add (None with
    fewer than two samples)."""
    if len(samples) < 2:
        return None
    first_half = samples[: max(1, len(samples) // 2)]
    return samples[-1][1] - min(kb for _, kb in first_half)


def _samples_note(samples: list[tuple[float, int]]) -> str:
    if len(samples) < 2:
        return "too short a push to sample"
    span = samples[-1][0] - samples[0][0]
    return (
        f"{len(samples)} samples over {span / 60:.1f} min, {_mb(min(kb for _, kb in samples)):.0f}"
        f"–{_mb(max(kb for _, kb in samples)):.0f} MB; target flat over 10 min"
    )


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f} ms"


def _mb(kb: int | None) -> float | None:
    return None if kb is None else kb / 1024


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


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


async def run_push(
    base: Settings,
    *,
    burst: int,
    seconds: float,
    backlog: int = 0,
    postgres_url: str | None = None,
    progress: Progress,
) -> PushResult:
    """The push on a fresh SQLite store, or in a fresh schema at ``postgres_url``."""
    store = "postgresql" if postgres_url else "sqlite"
    link = await AmqpLink.open(base.amqp_url, "gateway-bench-push-watch")
    try:
        busy = await _busy_queues(link)
        if busy:
            reason = f"the gateway's queues are in use on this vhost ({busy})"
            progress(f"push ({store}): skipped — {reason}")
            return PushResult(store=store, skipped=reason)
        legacy = await queue_counts(link, LEGACY_WEBHOOKS)
        with tempfile.TemporaryDirectory(prefix="gateway-bench-push-") as tmp:
            async with _database(Path(tmp), postgres_url) as url:
                run = _Run(base, Path(tmp), url, link, progress, store)
                result = await run.all(burst, seconds, backlog)
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


@contextlib.asynccontextmanager
async def _database(tmp: Path, postgres_url: str | None) -> AsyncIterator[str]:
    if postgres_url is None:
        yield f"sqlite:///{tmp / 'gateway.sqlite3'}"
    else:
        async with postgres_schema(postgres_url) as url:
            yield url


class _Run:
    """One push: a gateway, the simulators and a watcher; phases one after the other."""

    def __init__(
        self,
        base: Settings,
        tmp: Path,
        database_url: str,
        link: AmqpLink,
        progress: Progress,
        store: str,
    ) -> None:
        self.portal_id, self.secret = f"bench-{os.urandom(3).hex()}", os.urandom(16).hex()
        self.settings = base.model_copy(
            update={
                "portals": {self.portal_id: PortalConfig(secret=self.secret)},
                "database_url": database_url,
                "http_host": "127.0.0.1",
                "http_port": free_port(),  # kept across restarts: the simulators call back
                "systems": {
                    name: config.model_copy(update=_tuned(config))
                    for name, config in local_systems(
                        tmp / "departments", poll_seconds=POLL_SECONDS
                    ).items()
                },
            }
        )
        self.url = f"http://127.0.0.1:{self.settings.http_port}"
        self.body = dict(examples())[NEWBORN].decode()
        self.tmp = tmp
        self.link = link
        self.progress = progress
        self.watcher = _Watcher()
        self.counts: Counter[str] = Counter()
        self.result = PushResult(store=store, portal_id=self.portal_id)
        self.loads: list[LoadResult] = []

    async def all(self, burst: int, seconds: float, backlog: int) -> PushResult:
        store = self.result.store
        ledger = EffectLedger(self.tmp / "ledger.sqlite3")
        fleet = Fleet(self.settings, ledger, callback_base_url=self.url)
        broker = broker_pid()
        before, broker_before = self_usage(), _usage(broker)
        gw = await self._gateway(roles=None)  # declares gw.events before the watcher binds
        sampler = asyncio.create_task(self._sample_rss())
        try:
            await self.watcher.start(self.link, self.portal_id)
            await fleet.start()
            for sim in fleet.running.values():  # its in-tray scanned as often as hukou is polled
                if isinstance(sim, HospitalSimulator):
                    sim.scan_seconds = POLL_SECONDS
            self.progress(f"push ({store}): burst of {burst} newborns")
            b = await self._phase(LoadSpec(self.url, self.portal_id, self.secret, self.body,
                                           BURST_CONNECTIONS, seconds=3600.0, warm_up_seconds=0.0,
                                           keep_accepted=True, rate=None, count=burst))  # fmt: skip
            self.result.burst = b
            self.progress(f"push ({store}): burst {b.per_second:.1f} completed/s "
                          f"({b.completed}/{b.submitted})")  # fmt: skip
            for share in LEVELS if b.completed and seconds > 0 else ():
                offered = max(0.5, b.per_second * share)
                phase = await self._phase(LoadSpec(self.url, self.portal_id, self.secret,
                                                   self.body, 64, seconds, warm_up_seconds=0.0,
                                                   rate=offered, keep_accepted=True))  # fmt: skip
                self.result.levels.append(Level(share, offered, phase))
                self.progress(f"push ({store}): {share:.0%} load, {offered:.1f}/s offered: "
                              f"p50 {_ms(phase.p(50))}, p99 {_ms(phase.p(99))}")  # fmt: skip
            if backlog and b.completed:
                await gw.stop()
                gw = await self._drain(backlog, b.per_second)
        finally:
            sampler.cancel()
            await fleet.stop()
            await gw.stop()
            ledger.close()
        after, broker_after = self_usage(), _usage(broker)
        r = self.result
        r.cpu_seconds = after.cpu_seconds - before.cpu_seconds
        r.peak_rss_kb = after.peak_rss_kb
        r.load_cpu_seconds = sum(load.cpu_seconds for load in self.loads)
        r.load_peak_rss_kb = max((load.peak_rss_kb for load in self.loads), default=0)
        if broker_before is not None and broker_after is not None:
            r.broker_cpu_seconds = broker_after.cpu_seconds - broker_before.cpu_seconds
            r.broker_peak_rss_kb = broker_after.peak_rss_kb
        r.published = dict(self.counts)
        r.applications = sum(len(load.accepted) for load in self.loads)
        return r

    async def _sample_rss(self) -> None:
        started = time.monotonic()
        while True:
            rss = self_usage().rss_kb
            if rss is not None:
                self.result.rss_samples.append((time.monotonic() - started, rss))
            await asyncio.sleep(RSS_SAMPLE_SECONDS)

    async def _gateway(self, roles: list[str] | None) -> Gateway:
        gw = _CountingGateway(self.settings, roles=roles, name="gateway-bench-push")
        gw.counts = self.counts
        await gw.start()
        return gw

    async def _phase(self, spec: LoadSpec) -> Phase:
        load = await run_load(spec)
        self.loads.append(load)
        await self.watcher.wait_for([a for a, _ in load.accepted], COMPLETION_TIMEOUT)
        self.result.rss_kb.append(self_usage().rss_kb or 0)
        return self.watcher.phase(load)

    async def _drain(self, backlog: int, burst_rate: float) -> Gateway:
        """Intake alone piles ``backlog`` applications up; every role then drains them."""
        store = self.result.store
        self.progress(f"push ({store}): backlog of {backlog} newborns, intake role only")
        intake = await self._gateway(roles=["intake"])
        try:
            load = await run_load(
                LoadSpec(self.url, self.portal_id, self.secret, self.body, BACKLOG_CONNECTIONS,
                         seconds=86_400.0, warm_up_seconds=0.0, keep_accepted=True, count=backlog)
            )  # fmt: skip
            self.loads.append(load)
        finally:
            await intake.stop()
        self.progress(f"push ({store}): {len(load.accepted)} accepted; every role drains them")
        started = time.time()
        gw = await self._gateway(roles=None)
        ids = [a for a, _ in load.accepted]
        await self.watcher.wait_for(ids, COMPLETION_TIMEOUT + len(ids) / max(burst_rate / 2, 1))
        self.result.rss_kb.append(self_usage().rss_kb or 0)
        self.result.backlog = drain_of(ids, self.watcher.completed, started)
        self.progress(f"push ({store}): backlog drained at "
                      f"{self.result.backlog.per_second:.1f}/s")  # fmt: skip
        return gw


def _tuned(config: SystemConfig) -> dict[str, Any]:
    """More requests in flight; a file drop's result folder scanned as often as hukou is
    polled (``local_systems`` leaves it at the default, one scan a second)."""
    update: dict[str, Any] = {"concurrency": CONCURRENCY}
    if config.kind == "filedrop":
        update["poll_seconds"] = POLL_SECONDS
    return update


def _usage(pid: int | None) -> Usage | None:
    return None if pid is None else process_usage(pid)


def drain_of(ids: list[str], completed: Mapping[str, float], started: float) -> Phase:
    """A backlog's drain: applications completed since ``started`` (wall clock)."""
    done = [completed[a] for a in ids if a in completed]
    phase = Phase(submitted=len(ids), completed=len(done))
    if done:
        phase.seconds = max(done) - started
    return phase


async def _busy_queues(link: AmqpLink) -> str:
    """The gateway's queues (as its topology declares them) that hold or hand out messages."""
    busy = []
    for queue in (q.name for q in build_topology(DEFAULT_SYSTEMS).queues):
        counts = await queue_counts(link, queue)
        if counts is not None and (counts[0] or counts[1]):
            busy.append(f"{queue}: {counts[0]} messages, {counts[1]} consumers")
    return "; ".join(busy)
