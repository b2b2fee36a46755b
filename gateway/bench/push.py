"""The internal push: newborn applications through the whole gateway and the simulators.

Every gateway role runs in this process, as in ``gateway demo``, with a fresh store (SQLite
in its scratch folder, or PostgreSQL in a fresh schema); the four department simulators
(every decision at once) run in a process of their own (``simulators``), so that each side's
CPU is measured apart and neither takes the other's thread pool or GIL. A watcher binds a
temporary queue to ``gw.events`` for ``<bench portal>.newborn.application.completed`` and
stamps each arrival; the load generator (a process of its own too) stamps each 202 on the
same wall clock, so latency is 202 → ``application.completed``.

    burst    ``burst`` newborns sent as fast as intake takes them; completed applications
             per second over the middle 80 % of the completions (the first and last 10 %
             dropped: ramp-up and ramp-down): the maximum rate
    levels   open loop at 25 %, 50 % and 75 % of that rate, ``level_seconds`` each: latency
             p50/p95/p99 at each (issue 6's target: p99 ≤ 100 ms at 50 %)
    steady   open loop at 50 % for ``steady_seconds`` (10 minutes in the full plan), every
             process's RSS sampled: its peak and its growth, the mean of the first minute
             against the mean of the last (issue 6: RSS ≤ 200 MB and flat)
    backlog  the gateway stopped; ``backlog`` newborns (5 tasks each) accepted by intake
             alone pile up on ``gw.accepted``; then every role starts again and drains them:
             completed/s from the restart's completion to the last completion ÷ the burst
             rate (target ≥ 0.8)

CPU seconds per application and peak RSS are given per process (``push_figures``): the
gateway, the simulators, the load generator, and RabbitMQ when it runs on this host; so are
the messages published per application, counted by the gateway and by the broker
(``observe``). What is sent and how the departments are tuned is ``newborns``; the push's
files live in a scratch folder of its own (``scratch``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from connectors.amqp import reply_queue
from gateway.bench.amqp import AmqpLink, queue_counts, take_back
from gateway.bench.components import NEWBORN, examples
from gateway.bench.loadgen import LoadResult, LoadSpec, run_load
from gateway.bench.newborns import (
    BIRTH_DAYS,
    FOLDER_SCAN_SECONDS,
    HUKOU_POLL_SECONDS,
    newborn_bodies,
    tuned,
)
from gateway.bench.observe import (
    CountingGateway,
    Published,
    Watcher,
    broker_received,
    busy_queues,
    waiting_messages,
)
from gateway.bench.processes import (
    Usage,
    broker_pid,
    peak_rss_kb,
    process_usage,
    reset_peak_rss,
    self_usage,
)
from gateway.bench.push_figures import (
    BROKER,
    GATEWAY,
    LOAD_GENERATOR,
    SIMULATORS,
    TASKS_PER_NEWBORN,
    Level,
    Phase,
    ProcessCost,
    PushResult,
    Steady,
    drain_of,
)
from gateway.bench.raw import RAW_BODY_BYTES
from gateway.bench.scratch import scratch_folder
from gateway.bench.simulators import FleetSpec, SimulatorProcess, running_simulators, system_fields
from gateway.bench.stores import postgres_schema
from gateway.broker.topology import WEBHOOKS
from gateway.runtime import freeze_startup_heap
from gateway.settings import PortalConfig, Settings
from gateway.simulators.fleet import free_port, local_systems

__all__ = ["PushPlan", "run_push"]

LEVELS = (0.25, 0.5, 0.75)  # shares of the burst rate offered open loop
STEADY_SHARE = 0.5
BURST_CONNECTIONS = 8
BACKLOG_CONNECTIONS = 16
COMPLETION_TIMEOUT = 60.0
SETTLE_SECONDS = 15.0  # after the last phase, at most this long for the queues to empty
SETTLE_QUIET_SECONDS = 1.0
LEGACY_WEBHOOKS = WEBHOOKS  # the one queue for every portal's events, before per-portal queues
SCRATCH_ROOT = Path(tempfile.gettempdir()) / "gateway-bench-push"  # without scratch_root

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class PushPlan:
    burst: int  # newborns in the burst
    level_seconds: float  # each of the 25 %, 50 %, 75 % open-loop levels (0: none)
    steady_seconds: float = 0.0  # the steady run at 50 % (0: none)
    steady_sample_seconds: float = 10.0  # RSS of every process sampled this often
    steady_window_seconds: float = 60.0  # growth: the last window's mean over the first's
    backlog: int = 0  # newborns piled up on gw.accepted, then drained (0: none)


async def run_push(
    base: Settings,
    plan: PushPlan,
    *,
    postgres_url: str | None = None,
    progress: Progress,
    simulators_log: Path | None = None,
    scratch_root: Path = SCRATCH_ROOT,
) -> PushResult:
    """The push on a fresh SQLite store, or in a fresh schema at ``postgres_url``; the
    simulators' log (warnings and worse) goes to ``simulators_log`` (default: thrown away
    with the push's scratch folder, made under ``scratch_root``)."""
    store = "postgresql" if postgres_url else "sqlite"
    link = await AmqpLink.open(base.amqp_url, "gateway-bench-push-watch")
    try:
        busy = await busy_queues(link)
        if busy:
            reason = f"the gateway's queues are in use on this vhost ({busy})"
            progress(f"push ({store}): skipped — {reason}")
            return PushResult(store=store, skipped=reason)
        legacy = await queue_counts(link, LEGACY_WEBHOOKS)
        with scratch_folder(scratch_root) as tmp:
            async with _database(tmp, postgres_url) as url:
                run = _Run(base, tmp, url, link, progress, store)
                log = simulators_log or tmp / "simulators.log"
                result = await run.all(plan, log)
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
    """One push: a gateway, the simulators' process and a watcher; phases one by one."""

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
                    name: config.model_copy(update=tuned(config))
                    for name, config in local_systems(
                        tmp / "departments", poll_seconds=HUKOU_POLL_SECONDS
                    ).items()
                },
            }
        )
        self.url = f"http://127.0.0.1:{self.settings.http_port}"
        self.body, *more = newborn_bodies(dict(examples())[NEWBORN].decode(), BIRTH_DAYS)
        self.more_bodies = tuple(more)
        self.tmp = tmp
        self.link = link
        self.progress = progress
        self.store = store
        self.watcher = Watcher()
        self.published = Published()
        self.result = PushResult(
            store=store,
            portal_id=self.portal_id,
            poll_seconds=HUKOU_POLL_SECONDS,
            scan_seconds=FOLDER_SCAN_SECONDS,
        )
        self.loads: list[LoadResult] = []
        self.gw: CountingGateway | None = None
        self.sims: SimulatorProcess | None = None
        self.broker = broker_pid()

    def fleet_spec(self, log: Path) -> FleetSpec:
        return FleetSpec(
            amqp_url=self.settings.amqp_url,
            systems={n: system_fields(c) for n, c in self.settings.systems.items()},
            callback_base_url=self.url,
            ledger_path=str(self.tmp / "ledger.sqlite3"),
            log_path=str(log),
            hospital_scan_seconds=FOLDER_SCAN_SECONDS,  # as the gateway scans its result folder
        )

    async def all(self, plan: PushPlan, log: Path) -> PushResult:
        before, broker_before = self_usage(), _usage(self.broker)
        received_before = await broker_received()
        peak_reset = reset_peak_rss()  # the gateway's peak from here, not the bench's whole life
        try:
            await self._start_gateway(roles=None)  # declares gw.events before the watcher binds
            freeze_startup_heap()  # as `gateway run` does once it has started
            await self.watcher.start(self.link, self.portal_id)
            async with running_simulators(self.fleet_spec(log)) as sims:
                self.sims = sims
                self.progress(f"push ({self.store}): simulators ready (process {sims.pid})")
                await self._phases(plan)
                await self._settle()
                sims_last = sims.usage()
        finally:
            await self._stop_gateway()
        after, broker_after = self_usage(), _usage(self.broker)
        received_after = await broker_received()
        r = self.result
        r.processes = [
            _gateway_cost(after.cpu_seconds - before.cpu_seconds, peak_reset),
            _simulators_cost(sims, sims_last),
            ProcessCost(LOAD_GENERATOR, sum(load.cpu_seconds for load in self.loads),
                        max((load.peak_rss_kb for load in self.loads), default=None),
                        "a process per phase; peak of the largest"),
            _broker_cost(broker_before, broker_after),
        ]  # fmt: skip
        r.published = dict(self.published.by_exchange)
        replies = {reply_queue(n, c) for n, c in self.settings.systems.items() if c.kind == "amqp"}
        r.department_published = {q: n for q, n in self.published.delivered.items() if q in replies}
        r.mean_body_bytes = self.published.mean_body_bytes
        r.raw_body_bytes = RAW_BODY_BYTES
        if received_before is not None and received_after is not None:
            r.broker_received = received_after - received_before
        r.applications = sum(len(load.accepted) for load in self.loads)
        return r

    async def _phases(self, plan: PushPlan) -> None:
        store = self.store
        self.progress(f"push ({store}): burst of {plan.burst} newborns")
        burst = LoadSpec(self.url, self.portal_id, self.secret, self.body, BURST_CONNECTIONS,
                         seconds=3600.0, warm_up_seconds=0.0, keep_accepted=True, rate=None,
                         count=plan.burst, more_bodies=self.more_bodies)  # fmt: skip
        b = await self._phase(burst)
        self.result.burst = b
        rate = self.result.burst_rate
        if rate is None:
            self.progress(f"push ({store}): burst {b.incomplete} completed; the other "
                          "phases need its rate and are not run")  # fmt: skip
            return
        self.progress(f"push ({store}): burst {rate:.1f} completed/s over the middle 80 % "
                      f"({b.completed}/{b.submitted})")  # fmt: skip
        for share in LEVELS if plan.level_seconds > 0 else ():
            offered = max(0.5, rate * share)
            phase = await self._phase(self._open_loop(offered, plan.level_seconds))
            self.result.levels.append(Level(share, offered, phase))
            self.progress(f"push ({store}): {share:.0%} load, {offered:.1f}/s offered: "
                          f"p50 {_ms(phase.p(50))}, p99 {_ms(phase.p(99))}")  # fmt: skip
        if plan.steady_seconds > 0:
            await self._steady(plan, max(0.5, rate * STEADY_SHARE))
        if plan.backlog:
            await self._drain(plan.backlog, rate)

    async def _settle(self) -> None:
        """Wait until the gateway's queues stay empty for ``SETTLE_QUIET_SECONDS``: a
        department's receipt may follow its decision (a callback) and would otherwise be
        published as the gateway stops, left for the next push to find."""
        deadline = time.monotonic() + SETTLE_SECONDS
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            if await waiting_messages(self.link):
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= SETTLE_QUIET_SECONDS:
                return
            await asyncio.sleep(0.25)
        self.progress(f"push ({self.store}): the gateway's queues did not settle in "
                      f"{SETTLE_SECONDS:g} s; stopping it anyway")  # fmt: skip

    def _open_loop(self, rate: float, seconds: float) -> LoadSpec:
        return LoadSpec(self.url, self.portal_id, self.secret, self.body, 64, seconds,
                        warm_up_seconds=0.0, rate=rate, keep_accepted=True,
                        more_bodies=self.more_bodies)  # fmt: skip

    async def _steady(self, plan: PushPlan, offered: float) -> None:
        self.progress(
            f"push ({self.store}): steady {STEADY_SHARE:.0%} load, {offered:.1f}/s offered for "
            f"{plan.steady_seconds:g} s; RSS sampled every {plan.steady_sample_seconds:g} s"
        )
        samples: dict[str, list[tuple[float, int]]] = {}
        sampler = asyncio.create_task(self._sample_rss(samples, plan.steady_sample_seconds))
        try:
            phase = await self._phase(self._open_loop(offered, plan.steady_seconds))
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
        self.result.steady = Steady(STEADY_SHARE, offered, phase, plan.steady_window_seconds,
                                    plan.steady_sample_seconds, samples)  # fmt: skip
        self.progress(f"push ({self.store}): steady p50 {_ms(phase.p(50))}, "
                      f"p99 {_ms(phase.p(99))}")  # fmt: skip

    def _rss_now(self) -> dict[str, int | None]:
        """Resident memory (kB) of each process of the push that can be read now."""
        sims = self.sims.usage() if self.sims is not None else None
        broker = _usage(self.broker)
        return {
            GATEWAY: self_usage().rss_kb,
            SIMULATORS: sims.rss_kb if sims else None,
            BROKER: broker.rss_kb if broker else None,
        }

    async def _sample_rss(self, into: dict[str, list[tuple[float, int]]], every: float) -> None:
        started = time.monotonic()
        while True:
            at = time.monotonic() - started
            for name, kb in self._rss_now().items():
                if kb is not None:
                    into.setdefault(name, []).append((at, kb))
            await asyncio.sleep(every)

    def _note_rss(self) -> None:
        for name, kb in self._rss_now().items():
            if name != BROKER and kb is not None:
                self.result.rss_kb.setdefault(name, []).append(kb)

    async def _start_gateway(self, roles: list[str] | None) -> None:
        gw = CountingGateway(self.settings, roles=roles, name="gateway-bench-push")
        gw.published = self.published
        self.gw = gw
        await gw.start()

    async def _stop_gateway(self) -> None:
        gw, self.gw = self.gw, None
        if gw is not None:
            await gw.stop()

    async def _phase(self, spec: LoadSpec) -> Phase:
        load = await run_load(spec)
        self.loads.append(load)
        await self.watcher.wait_for([a for a, _ in load.accepted], COMPLETION_TIMEOUT)
        self._note_rss()
        return self.watcher.phase(load)

    async def _drain(self, backlog: int, burst_rate: float) -> None:
        """Intake alone piles ``backlog`` applications up; every role then drains them."""
        store = self.store
        await self._stop_gateway()
        self.progress(f"push ({store}): backlog of {backlog:,} newborns "
                      f"({backlog * TASKS_PER_NEWBORN:,} tasks), intake role only")  # fmt: skip
        await self._start_gateway(roles=["intake"])
        try:
            load = await run_load(
                LoadSpec(self.url, self.portal_id, self.secret, self.body, BACKLOG_CONNECTIONS,
                         seconds=86_400.0, warm_up_seconds=0.0, keep_accepted=True, count=backlog,
                         more_bodies=self.more_bodies)
            )  # fmt: skip
            self.loads.append(load)
        finally:
            await self._stop_gateway()
        self.progress(f"push ({store}): {len(load.accepted)} accepted; every role drains them")
        await self._start_gateway(roles=None)
        started = time.time()  # every role runs again: draining can begin
        ids = [a for a, _ in load.accepted]
        await self.watcher.wait_for(ids, COMPLETION_TIMEOUT + len(ids) / max(burst_rate / 2, 1))
        self._note_rss()
        self.result.backlog = drain_of(ids, self.watcher.completed, started)
        k = self.result.backlog
        done = f"{k.per_second:.1f}/s" if k.complete else f"{k.incomplete} (timed out)"
        self.progress(f"push ({store}): backlog drained: {done}")


def _gateway_cost(cpu_seconds: float, peak_reset: bool) -> ProcessCost:
    """This process over the push; its peak RSS since the push's start where ``VmHWM`` could
    be reset, else ``ru_maxrss`` over the bench's whole life (earlier parts included)."""
    if peak_reset:
        return ProcessCost(GATEWAY, cpu_seconds, peak_rss_kb(),
                           "this process; peak RSS (VmHWM) since this push started")  # fmt: skip
    return ProcessCost(GATEWAY, cpu_seconds, self_usage().peak_rss_kb,
                       "this process; peak RSS over the bench's whole life (VmHWM could not "
                       "be reset: /proc/self/clear_refs not writable)")  # fmt: skip


def _simulators_cost(sims: SimulatorProcess, last: Usage | None) -> ProcessCost:
    """The child's own account as it exited; else what ``/proc`` last showed."""
    if sims.exit_usage is not None:
        usage = sims.exit_usage
        return ProcessCost(SIMULATORS, usage.cpu_seconds, usage.peak_rss_kb,
                           f"a process of its own (exit status {sims.returncode})")  # fmt: skip
    return ProcessCost(
        SIMULATORS,
        last.cpu_seconds if last else None,
        last.peak_rss_kb if last else None,
        f"it did not report as it exited (status {sims.returncode}): CPU since its start",
    )


def _broker_cost(before: Usage | None, after: Usage | None) -> ProcessCost:
    if before is None or after is None:
        return ProcessCost(BROKER, None, None, "RabbitMQ not on this host")
    return ProcessCost(BROKER, after.cpu_seconds - before.cpu_seconds, after.peak_rss_kb,
                       "the whole broker process: other clients' work included; peak RSS "
                       "since it started")  # fmt: skip


def _usage(pid: int | None) -> Usage | None:
    return None if pid is None else process_usage(pid)


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f} ms"
