"""The push's figures, pure: process readings, the backlog drain, levels and costs per row."""

from __future__ import annotations

import pytest

from gateway.bench.loadgen import LoadResult
from gateway.bench.processes import stat_cpu_seconds, status_kb
from gateway.bench.push import Level, Phase, PushResult, drain_of, rss_growth

# /proc/<pid>/stat of a process whose name holds a space and a parenthesis
STAT = (
    "2945 (beam.smp (x)) S 1 2945 2945 0 -1 4194560 91830 0 12 0 "
    "1234 567 0 0 20 0 30 0 1200 2345678 34567 18446744073709551615"
)
STATUS = "Name:\tbeam.smp\nVmHWM:\t  150000 kB\nVmRSS:\t  120000 kB\nThreads:\t30\n"


def test_cpu_seconds_are_utime_plus_stime_in_clock_ticks() -> None:
    assert stat_cpu_seconds(STAT, 100) == pytest.approx(18.01)  # (1234 + 567) / 100


def test_status_lines_are_read_by_name_in_kb() -> None:
    assert status_kb(STATUS, "VmRSS") == 120_000
    assert status_kb(STATUS, "VmHWM") == 150_000
    assert status_kb(STATUS, "VmSwap") is None


def test_a_drain_runs_from_its_start_to_the_last_completion() -> None:
    completed = {"a": 110.0, "b": 112.0, "c": 114.0, "other": 200.0}
    phase = drain_of(["a", "b", "c", "d"], completed, started=104.0)
    assert (phase.submitted, phase.completed, phase.seconds) == (4, 3, 10.0)
    assert phase.per_second == pytest.approx(0.3)


def test_a_drain_with_nothing_completed_has_no_rate() -> None:
    phase = drain_of(["a"], {}, started=1.0)
    assert (phase.completed, phase.per_second) == (0, 0.0)


def _result() -> PushResult:
    burst = Phase(submitted=60, completed=60, seconds=6.0, latency_ms=[100.0, 200.0])
    half = Phase(submitted=10, completed=10, seconds=3.0, latency_ms=[float(i) for i in range(101)])
    half.load = LoadResult(window_seconds=2.0)
    return PushResult(
        store="postgresql",
        burst=burst,
        levels=[Level(0.5, 5.0, half)],
        backlog=Phase(submitted=100, completed=100, seconds=12.5),
        published={"gw.tasks": 100, "gw.results": 240},
        applications=20,
        cpu_seconds=2.0,
        load_cpu_seconds=0.1,
        load_peak_rss_kb=40 * 1024,
        broker_cpu_seconds=None,
        peak_rss_kb=150 * 1024,
        rss_kb=[100 * 1024, 110 * 1024],
    )


def test_the_drain_is_compared_with_the_burst_rate() -> None:
    assert _result().drain_ratio == pytest.approx(0.8)  # 8/s drained ÷ 10/s burst
    assert PushResult().drain_ratio is None


def test_rows_give_each_level_its_p99_and_split_cpu_by_process() -> None:
    rows = {r.name: r for r in _result().rows()}
    assert all(r.section.endswith(", postgresql") for r in rows.values())
    level = rows["50% load (5.0/s offered): p99"]
    assert level.value == pytest.approx(99.0)
    assert "target p99 ≤ 100 ms" in level.note
    assert "5.0/s" in level.note  # 10 completed over the 2 s window
    assert rows["backlog of 100: drained"].value == pytest.approx(8.0)
    assert rows["CPU per application: gateway + simulators"].value == pytest.approx(100.0)
    assert rows["CPU per application: load generator"].value == pytest.approx(5.0)
    broker = rows["CPU per application: RabbitMQ"]
    assert broker.value is None
    assert "not on this host" in broker.note
    assert rows["peak RSS: gateway + simulators"].value == pytest.approx(150.0)
    assert "100, 110 MB" in rows["peak RSS: gateway + simulators"].note
    assert rows["gateway publishes per application"].value == pytest.approx(17.0)


def test_a_skipped_push_is_one_row_that_says_why() -> None:
    rows = PushResult(store="sqlite", skipped="queues in use").rows()
    assert len(rows) == 1
    assert rows[0].value is None
    assert "queues in use" in rows[0].note


def test_rss_growth_is_the_last_sample_over_the_low_of_the_first_half() -> None:
    samples = [(0.0, 120), (10.0, 100), (20.0, 130), (30.0, 150), (40.0, 160)]
    assert rss_growth(samples) == 60  # 160 − min(120, 100)
    assert rss_growth([(0.0, 100)]) is None
    flat = [(float(t), 100) for t in range(0, 600, 10)]
    assert rss_growth(flat) == 0
