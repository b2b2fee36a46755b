"""The bench's run: the parts in order, progress, the final table and the JSON file."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import platform
import re
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from gateway.bench.components import run_cpu_components, run_store_components
from gateway.bench.intake import IntakeResult, run_intake
from gateway.bench.push import PushPlan, run_push
from gateway.bench.push_figures import PushResult
from gateway.bench.raw import RawResult, run_raw
from gateway.bench.report import Progress, Row, figures, render_table
from gateway.bench.stores import postgres_unreachable, without_password
from gateway.logs import configure_logging
from gateway.settings import Settings

__all__ = [
    "FULL",
    "PLANS",
    "QUICK",
    "SMOKE",
    "STORES",
    "Plan",
    "bench",
    "prune_logs",
    "push_stores",
]

T = TypeVar("T")
RATIOS = "ratios"
DEFAULT_TEST_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
VAR = Path("var")
KEEP_LOGS = 5  # runs whose logs stay in var/ (the gateway's log of a full run is ~150 MB)
LOG_NAME = re.compile(r"bench-(\d{8}-\d{6})(\.[\w-]+)?\.log")  # the run's log and its siblings


STORES = ("sqlite", "postgresql")


@dataclass(frozen=True, slots=True)
class Plan:
    raw_messages: int
    hop_seconds: float
    component_target_seconds: float  # per timed batch
    component_runs: int
    intake_seconds: float  # per side
    intake_connections: int
    push_burst: int
    push_level_seconds: float  # each of the 25 %, 50 %, 75 % open-loop levels
    push_backlog: int  # newborns (5 tasks each) piled up on gw.accepted, then drained
    steady_seconds: float  # open loop at 50 % of the burst rate, every process's RSS sampled
    steady_sample_seconds: float
    steady_window_seconds: float  # RSS growth: the last window's mean over the first's

    def push(self) -> PushPlan:
        return PushPlan(
            burst=self.push_burst,
            level_seconds=self.push_level_seconds,
            steady_seconds=self.steady_seconds,
            steady_sample_seconds=self.steady_sample_seconds,
            steady_window_seconds=self.steady_window_seconds,
            backlog=self.push_backlog,
        )


QUICK = Plan(
    raw_messages=20_000,
    hop_seconds=4.0,
    component_target_seconds=0.02,
    component_runs=5,
    intake_seconds=4.0,
    intake_connections=32,
    push_burst=200,  # fewer completions cluster, and their middle 80 % overstates the rate
    push_level_seconds=2.5,
    push_backlog=40,
    steady_seconds=10.0,  # the code path exercised, not a verdict on memory
    steady_sample_seconds=1.0,
    steady_window_seconds=3.0,
)
# The CLI's whole path in well under a minute, for its test (``--plan smoke``, not in --help):
# no open-loop levels, no steady run, no backlog; figures too short to mean anything.
SMOKE = Plan(
    raw_messages=2_000,
    hop_seconds=1.0,
    component_target_seconds=0.002,
    component_runs=1,
    intake_seconds=1.0,
    intake_connections=4,
    push_burst=10,
    push_level_seconds=0.0,
    push_backlog=0,
    steady_seconds=0.0,
    steady_sample_seconds=1.0,
    steady_window_seconds=1.0,
)
# Issue 6: "a backlog of 50,000 tasks drains at ≥ 0.8 × the steady rate" — a newborn is
# 5 tasks, so 10,000 newborns; RSS "flat over a 10-minute run", sampled every 10 s.
FULL = Plan(
    raw_messages=100_000,
    hop_seconds=15.0,
    component_target_seconds=0.2,
    component_runs=7,
    intake_seconds=20.0,
    intake_connections=32,
    push_burst=500,
    push_level_seconds=30.0,
    push_backlog=10_000,
    steady_seconds=600.0,
    steady_sample_seconds=10.0,
    steady_window_seconds=60.0,
)
PLANS = {"quick": QUICK, "full": FULL, "smoke": SMOKE}


async def bench(
    settings: Settings,
    *,
    quick: bool,
    json_path: Path | None,
    postgres_url: str | None = None,
    store: str = "both",
    plan_name: str | None = None,
) -> int:
    """``gateway.bench.run_bench``, documented there."""
    plan_name = plan_name or ("quick" if quick else "full")
    plan = PLANS[plan_name]
    stores = push_stores(store)
    pg = (postgres_url or _postgres_url(settings)) if "postgresql" in stores else None
    if pg is not None:  # before the run, not after the SQLite push
        why = await postgres_unreachable(pg)
        if why is not None:
            print(postgres_error(pg, why), file=sys.stderr)
            return 2
    progress = Progress()
    started = time.time()
    load_before = os.getloadavg()
    log_path = VAR / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    pruned = prune_logs(VAR, KEEP_LOGS - 1)
    level = logging.getLogger().level
    failures: list[str] = []

    async def part(name: str, work: Callable[[], Awaitable[T]]) -> T | None:
        try:
            return await work()
        except Exception as exc:  # one failed part must not hide the others
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
            progress(f"{name}: FAILED — {type(exc).__name__}: {exc}")
            traceback.print_exc(file=sys.stderr)
            return None

    progress(f"gateway bench ({plan_name}); gateway logs → {log_path}")
    if pruned:
        progress(f"{len(pruned)} older bench logs deleted: the last {KEEP_LOGS} runs' are kept")
    with log_path.open("w", encoding="utf-8") as log_file:
        configure_logging("json", stream=log_file, level=logging.INFO)
        try:
            raw = await part("raw", lambda: run_raw(
                settings.amqp_url, messages=plan.raw_messages, hop_seconds=plan.hop_seconds,
                progress=progress))  # fmt: skip
            if raw is not None and raw.noise:
                progress("NOISY: " + "; ".join(raw.noise))
            costs = await part("components", lambda: _components(plan, pg, progress))
            intake = await part("intake", lambda: run_intake(
                settings, seconds=plan.intake_seconds, connections=plan.intake_connections,
                progress=progress))  # fmt: skip
            if intake is not None and intake.skipped:
                failures.append(f"intake: skipped — {intake.skipped}")
            push: list[PushResult] = []
            for name in stores:
                url = pg if name == "postgresql" else None
                log = log_path.with_suffix(f".simulators-{name}.log")
                done = await part(f"push ({name})", _push(settings, plan, url, progress, log))
                push += [done] if done is not None else []
                failures += done.failures() if done is not None else []
        finally:
            configure_logging(settings.log_format, level=level or logging.INFO)
    rows = _rows(raw, costs, intake, push, failures)
    print()
    print(render_table(rows))
    reasons = raw.noise if raw else ["raw baseline not measured"]
    meta = {
        "command": "gateway bench"
        + {"quick": " --quick", "full": ""}.get(plan_name, f" --plan {plan_name}")
        + ("" if store == "both" else f" --store {store}"),
        "stores": list(stores),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "seconds": round(time.time() - started, 1),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "rabbitmq": raw.server_version if raw else None,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "noisy": bool(reasons),
        "noise_reasons": reasons,
        "failures": failures,
        "plan": asdict(plan),
        "gateway_log": str(log_path),
    }
    noisy = "NOISY: " + "; ".join(reasons) if reasons else "not noisy"
    print(f"\n{noisy}. Took {meta['seconds']} s; load average {_load(load_before)} → "
          f"{_load(os.getloadavg())} on {meta['cpus']} CPUs.")  # fmt: skip
    if json_path is not None:
        document = figures(rows, meta)
        document["detail"] = _detail(raw, intake, push)
        text = json.dumps(document, ensure_ascii=False, indent=2) + "\n"
        await asyncio.to_thread(json_path.write_text, text, "utf-8")
        print(f"Figures written to {json_path}")
    return 1 if failures else 0


def postgres_error(url: str, why: str) -> str:
    return (
        f"gateway bench: PostgreSQL at {without_password(url)} cannot be reached ({why}). "
        "Start it, name another with --postgres URL, or leave PostgreSQL out with "
        "--store sqlite."
    )


def prune_logs(folder: Path, keep: int) -> list[Path]:
    """Delete the logs of all but the newest ``keep`` bench runs in ``folder`` (a run's
    ``bench-<time>.log`` and its ``bench-<time>.<part>.log`` siblings); return them."""
    runs: dict[str, list[Path]] = {}
    for path in folder.glob("bench-*.log"):
        match = LOG_NAME.fullmatch(path.name)
        if match:
            runs.setdefault(match.group(1), []).append(path)
    old = sorted(runs)[: max(len(runs) - keep, 0)]
    gone = [path for stamp in old for path in runs[stamp]]
    for path in gone:
        path.unlink(missing_ok=True)
    return gone


def push_stores(store: str) -> tuple[str, ...]:
    """The stores a run pushes through: ``sqlite``, ``postgresql`` or ``both``."""
    if store == "both":
        return STORES
    if store not in STORES:
        raise ValueError(f"unknown store {store!r}; choose sqlite, postgresql or both")
    return (store,)


async def _components(
    plan: Plan, postgres_url: str | None, progress: Callable[[str], None]
) -> list[Row]:
    rows = run_cpu_components(
        target_seconds=plan.component_target_seconds, runs=plan.component_runs, progress=progress
    )
    rows += await run_store_components(
        postgres_url,
        target_seconds=plan.component_target_seconds,
        runs=plan.component_runs,
        progress=progress,
    )
    return rows


def _push(
    settings: Settings,
    plan: Plan,
    postgres_url: str | None,
    progress: Callable[[str], None],
    simulators_log: Path,
) -> Callable[[], Awaitable[PushResult]]:
    return lambda: run_push(
        settings,
        plan.push(),
        postgres_url=postgres_url,
        progress=progress,
        simulators_log=simulators_log,
        scratch_root=VAR / "bench-push",  # a killed run's folder is cleaned by the next
    )


def _postgres_url(settings: Settings) -> str:
    if settings.database_url.startswith(("postgresql:", "postgres:")):
        return settings.database_url
    # The bench times PostgreSQL even when the gateway runs on SQLite: `--postgres URL`
    # names another server; this is the local default the test suite uses too.
    return DEFAULT_TEST_POSTGRES


def _rows(
    raw: RawResult | None,
    costs: list[Row] | None,
    intake: IntakeResult | None,
    push: list[PushResult],
    failures: list[str],
) -> list[Row]:
    rows: list[Row] = []
    if raw is not None:
        rows += raw.rows()
    rows += costs or []
    if intake is not None:
        rows += intake.rows()
    hop = raw.hop_per_second if raw is not None else None
    for p in push:
        rows += p.rows()
    rows += [
        Row(RATIOS, f"hop efficiency ({p.store})", p.hop_efficiency(hop) if hop else None,
            "ratio", "(newborn apps/s × 10) ÷ raw one-hop msg/s; target ≥ 0.5")
        for p in push
    ]  # fmt: skip
    rows += [
        Row(RATIOS, f"backlog drain ÷ burst rate ({p.store})", p.drain_ratio, "ratio",
            "target ≥ 0.8")
        for p in push
    ]  # fmt: skip
    rows += [
        Row(RATIOS, "intake efficiency", intake.efficiency if intake else None, "ratio",
            "accepted/s ÷ bare requests/s; target ≥ 0.5"),
    ]  # fmt: skip
    rows += [Row("failed parts", f, None, "") for f in failures]
    return rows


def _detail(
    raw: RawResult | None, intake: IntakeResult | None, push: list[PushResult]
) -> dict[str, Any]:
    """Measured values beyond the table (no per-request lists: they would dwarf the file)."""
    out: dict[str, Any] = {}
    if raw is not None:
        out["raw"] = asdict(raw)
    if intake is not None:
        out["intake"] = {
            name: None if side is None else {
                "per_second": side.load.ok_per_second, "sent": side.load.sent,
                "statuses": side.load.statuses, "errors": side.load.errors,
                "server_cpu_seconds": side.server_cpu_seconds,
                "load_generator_cpu_seconds": side.load.cpu_seconds,
                "load_generator_peak_rss_kb": side.load.peak_rss_kb,
                "load_generator_wall_seconds": side.wall_seconds,
                "bounded_by_load_generator": side.bounded_by_load_generator,
            }
            for name, side in (("bare", intake.bare), ("gateway", intake.gateway))
        } | {"drained": intake.drained, "skipped": intake.skipped}  # fmt: skip
    for p in push:
        out[f"push_{p.store}"] = push_detail(p)
    return out


def push_detail(p: PushResult) -> dict[str, Any]:
    """One push's JSON: per-process costs, memory samples and each phase's figures."""
    key = {c.name: c.name.split(" (")[0].replace(" ", "_").lower() for c in p.processes}
    cpu = {key[c.name]: c.cpu_seconds for c in p.processes}
    gateway, simulators = cpu.get("gateway"), cpu.get("simulators")
    if gateway is not None and simulators is not None:  # the one figure runs before had
        cpu["gateway_and_simulators"] = gateway + simulators
    detail: dict[str, Any] = {
        "published_by_exchange": p.published,
        "department_published_by_queue": p.department_published,
        "broker_received": p.broker_received,
        "mean_body_bytes": p.mean_body_bytes,
        "raw_body_bytes": p.raw_body_bytes,
        "applications": p.applications,
        "cpu_seconds": cpu,
        "peak_rss_kb": {key[c.name]: c.peak_rss_kb for c in p.processes},
        "rss_kb_after_each_phase": {key.get(n, n): v for n, v in p.rss_kb.items()},
        "skipped": p.skipped,
    }
    phases = [("burst", p.burst), ("backlog", p.backlog)]
    phases += [(f"open_loop_{level.share:.0%}", level.phase) for level in p.levels]
    if p.steady is not None:
        phases.append(("steady", p.steady.phase))
        detail["steady_rss_kb_samples"] = {
            key.get(n, n.lower()): v for n, v in p.steady.samples.items()
        }
    for name, phase in phases:
        if phase is not None:
            done = phase.complete  # an incomplete phase's figures would hide its timeouts
            detail[name] = {
                "submitted": phase.submitted, "completed": phase.completed,
                "complete": done, "samples": len(phase.latency_ms),
                "seconds": phase.seconds, "per_second": phase.per_second if done else None,
                "p50_ms": phase.p(50) if done else None, "p95_ms": phase.p(95) if done else None,
                "p99_ms": phase.p(99) if done else None,
            }  # fmt: skip
    detail["burst_rate_middle_80"] = p.burst_rate
    return detail


def _load(values: tuple[float, float, float]) -> str:
    return "/".join(f"{v:.2f}" for v in values)
