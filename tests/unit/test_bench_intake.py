"""Intake's rows, pure: a side whose load generator used a whole CPU is flagged."""

from __future__ import annotations

from gateway.bench.intake import IntakeResult, Side
from gateway.bench.loadgen import LoadResult


def _side(cpu: float, wall: float) -> Side:
    load = LoadResult(sent=100, counted=100, counted_ok=100, window_seconds=4.0,
                      cpu_seconds=cpu, latency_ms=[1.0, 2.0, 3.0])  # fmt: skip
    return Side(load, server_cpu_seconds=1.0, wall_seconds=wall)


def test_a_side_whose_load_generator_used_90_percent_of_its_wall_time_is_flagged() -> None:
    result = IntakeResult(32, 4.0, bare=_side(4.47, 4.5), gateway=_side(2.0, 4.5), drained=0)
    rows = {r.name: r for r in result.rows()}
    assert "bounded by the load generator" in rows["bare aiohttp handler: 202 answers"].note
    assert "bounded by the load generator" not in rows["gateway intake: 202 answers"].note
    assert "n=3" in rows["gateway intake: latency p50 / p99"].note


def test_the_bound_starts_at_exactly_90_percent() -> None:
    assert _side(0.9, 1.0).bounded_by_load_generator
    assert not _side(0.89, 1.0).bounded_by_load_generator
    assert not _side(1.0, 0.0).bounded_by_load_generator  # wall time not measured
