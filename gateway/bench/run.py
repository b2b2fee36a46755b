"""The bench's run: the parts in order, progress, the final table and the JSON file."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import platform
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from gateway.bench.components import run_cpu_components, run_store_components
from gateway.bench.intake import IntakeResult, run_intake
from gateway.bench.push import PushResult, run_push
from gateway.bench.raw import RawResult, run_raw
from gateway.bench.report import Progress, Row, figures, render_table
from gateway.logs import configure_logging
from gateway.settings import Settings

__all__ = ["FULL", "QUICK", "Plan", "bench"]

T = TypeVar("T")
RATIOS = "ratios"
DEFAULT_TEST_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


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
    push_backlog: int  # applications piled up on gw.accepted, then drained


QUICK = Plan(20_000, 4.0, 0.02, 5, 4.0, 32, 60, 3.0, 60)
FULL = Plan(100_000, 15.0, 0.2, 7, 20.0, 32, 500, 30.0, 50_000)


async def bench(
    settings: Settings,
    *,
    quick: bool,
    json_path: Path | None,
    postgres_url: str | None = None,
) -> int:
    """``gateway.bench.run_bench``, documented there."""
    plan = QUICK if quick else FULL
    progress = Progress()
    started = time.time()
    load_before = os.getloadavg()
    log_path = Path("var") / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
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

    progress(f"gateway bench ({'quick' if quick else 'full'}); gateway logs → {log_path}")
    with log_path.open("w", encoding="utf-8") as log_file:
        configure_logging("json", stream=log_file, level=logging.INFO)
        try:
            raw = await part("raw", lambda: run_raw(
                settings.amqp_url, messages=plan.raw_messages, hop_seconds=plan.hop_seconds,
                progress=progress))  # fmt: skip
            if raw is not None and raw.noise:
                progress("NOISY: " + "; ".join(raw.noise))
            costs = await part("components", lambda: _components(settings, plan, postgres_url,
                                                                  progress))  # fmt: skip
            intake = await part("intake", lambda: run_intake(
                settings, seconds=plan.intake_seconds, connections=plan.intake_connections,
                progress=progress))  # fmt: skip
            push: list[PushResult] = []
            for url in (None, postgres_url or _postgres_url(settings)):
                done = await part(f"push ({'postgresql' if url else 'sqlite'})",
                                  _push(settings, plan, url, progress))  # fmt: skip
                push += [done] if done is not None else []
        finally:
            configure_logging(settings.log_format, level=level or logging.INFO)
    rows = _rows(raw, costs, intake, push, failures)
    print()
    print(render_table(rows))
    reasons = raw.noise if raw else ["raw baseline not measured"]
    meta = {
        "command": "gateway bench" + (" --quick" if quick else ""),
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


async def _components(
    settings: Settings, plan: Plan, postgres_url: str | None, progress: Callable[[str], None]
) -> list[Row]:
    rows = run_cpu_components(
        target_seconds=plan.component_target_seconds, runs=plan.component_runs, progress=progress
    )
    rows += await run_store_components(
        postgres_url or _postgres_url(settings),
        target_seconds=plan.component_target_seconds,
        runs=plan.component_runs,
        progress=progress,
    )
    return rows


def _push(
    settings: Settings, plan: Plan, postgres_url: str | None, progress: Callable[[str], None]
) -> Callable[[], Awaitable[PushResult]]:
    return lambda: run_push(
        settings,
        burst=plan.push_burst,
        seconds=plan.push_level_seconds,
        backlog=plan.push_backlog,
        postgres_url=postgres_url,
        progress=progress,
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
            }
            for name, side in (("bare", intake.bare), ("gateway", intake.gateway))
        } | {"drained": intake.drained, "skipped": intake.skipped}  # fmt: skip
    for p in push:
        detail: dict[str, Any] = {
            "published_by_exchange": p.published,
            "applications": p.applications,
            "cpu_seconds": {"gateway_and_simulators": p.cpu_seconds,
                            "load_generator": p.load_cpu_seconds, "rabbitmq": p.broker_cpu_seconds},
            "peak_rss_kb": {"gateway_and_simulators": p.peak_rss_kb,
                            "load_generator": p.load_peak_rss_kb, "rabbitmq": p.broker_peak_rss_kb},
            "rss_kb_after_each_phase": p.rss_kb,
            "rss_kb_samples": p.rss_samples,
            "skipped": p.skipped,
        }  # fmt: skip
        phases = [("burst", p.burst), ("backlog", p.backlog)]
        phases += [(f"open_loop_{level.share:.0%}", level.phase) for level in p.levels]
        for name, phase in phases:
            if phase is not None:
                detail[name] = {
                    "submitted": phase.submitted, "completed": phase.completed,
                    "seconds": phase.seconds, "per_second": phase.per_second,
                    "p50_ms": phase.p(50), "p95_ms": phase.p(95), "p99_ms": phase.p(99),
                }  # fmt: skip
        out[f"push_{p.store}"] = detail
    return out


def _load(values: tuple[float, float, float]) -> str:
    return "/".join(f"{v:.2f}" for v in values)
