"""The push's figures, pure: process readings, the drain, levels, the steady run, costs per row."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.bench.components import NEWBORN, examples
from gateway.bench.loadgen import LoadResult
from gateway.bench.newborns import (
    BIRTH_DAYS,
    FOLDER_SCAN_SECONDS,
    HUKOU_POLL_SECONDS,
    newborn_bodies,
    tuned,
)
from gateway.bench.observe import Published
from gateway.bench.processes import reset_peak_rss, stat_cpu_seconds, status_kb
from gateway.bench.push_figures import (
    BROKER,
    GATEWAY,
    LOAD_GENERATOR,
    SIMULATORS,
    Level,
    Phase,
    ProcessCost,
    PushResult,
    Steady,
    body_row,
    drain_of,
    growth_means,
    phase_of,
    publish_rows,
)
from gateway.bench.run import push_detail
from gateway.broker.messages import Message
from gateway.simulators.fleet import local_systems

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
        processes=[
            ProcessCost(GATEWAY, 2.0, 150 * 1024),
            ProcessCost(SIMULATORS, 0.5, 70 * 1024),
            ProcessCost(LOAD_GENERATOR, 0.1, 40 * 1024),
            ProcessCost(BROKER, None, None, "RabbitMQ not on this host"),
        ],
        rss_kb={GATEWAY: [100 * 1024, 110 * 1024], SIMULATORS: [60 * 1024, 61 * 1024]},
    )


def test_the_drain_is_compared_with_the_burst_rate() -> None:
    assert _result().drain_ratio == pytest.approx(0.8)  # 8/s drained ÷ 10/s burst
    assert PushResult().drain_ratio is None


def test_rows_give_each_level_its_p99_and_the_backlog_in_tasks() -> None:
    rows = {r.name: r for r in _result().rows()}
    assert all(r.section.endswith(", postgresql") for r in rows.values())
    level = rows["50% load (5.0/s offered): p99"]
    assert level.value == pytest.approx(99.0)
    assert "target p99 ≤ 100 ms" in level.note
    assert "5.0/s" in level.note  # 10 completed over the 2 s window
    assert rows["backlog of 100 newborns (500 tasks): drained"].value == pytest.approx(8.0)


def test_cpu_and_memory_rows_come_one_per_process_in_order() -> None:
    rows = _result().rows()
    cpu = [r for r in rows if r.name.startswith("CPU per application: ")]
    assert [r.name.removeprefix("CPU per application: ") for r in cpu] == [
        GATEWAY, SIMULATORS, LOAD_GENERATOR, BROKER,
    ]  # fmt: skip
    assert [r.value for r in cpu[:3]] == pytest.approx([100.0, 25.0, 5.0])  # ms over 20 apps
    assert cpu[3].value is None
    assert "not on this host" in cpu[3].note
    peak = {r.name: r for r in rows if r.name.startswith("peak RSS: ")}
    assert peak[f"peak RSS: {GATEWAY}"].value == pytest.approx(150.0)
    assert "100, 110 MB" in peak[f"peak RSS: {GATEWAY}"].note
    assert "60, 61 MB" in peak[f"peak RSS: {SIMULATORS}"].note
    assert peak[f"peak RSS: {SIMULATORS}"].value == pytest.approx(70.0)
    assert {r.name: r.value for r in rows}["gateway publishes per application"] == 17.0


def test_the_json_keeps_the_old_keys_and_adds_the_simulators() -> None:
    detail = push_detail(_result())
    assert detail["cpu_seconds"] == {
        "gateway": 2.0, "simulators": 0.5, "load_generator": 0.1, "rabbitmq": None,
        "gateway_and_simulators": 2.5,
    }  # fmt: skip
    assert detail["peak_rss_kb"]["simulators"] == 70 * 1024
    assert detail["rss_kb_after_each_phase"]["simulators"] == [60 * 1024, 61 * 1024]
    assert detail["backlog"]["per_second"] == pytest.approx(8.0)


def test_a_skipped_push_is_one_row_that_says_why() -> None:
    rows = PushResult(store="sqlite", skipped="queues in use").rows()
    assert len(rows) == 1
    assert rows[0].value is None
    assert "queues in use" in rows[0].note


def test_growth_compares_the_mean_of_the_first_window_with_the_last() -> None:
    samples = [(0.0, 100), (10.0, 110), (20.0, 500), (30.0, 150), (40.0, 170)]
    first, last = growth_means(samples, window=10.0) or (0, 0)
    assert (first, last) == (105.0, 160.0)  # (100 + 110) / 2, (150 + 170) / 2
    assert growth_means([(0.0, 100)], window=60.0) is None
    flat = [(float(t), 100) for t in range(0, 610, 10)]
    assert growth_means(flat, window=60.0) == (100.0, 100.0)


def test_the_steady_run_gives_latency_and_each_sampled_process_its_growth_and_peak() -> None:
    phase = Phase(submitted=300, completed=300, latency_ms=[float(i) for i in range(101)])
    phase.load = LoadResult(window_seconds=600.0)
    gateway = [(float(t), 100 * 1024 + t * 1024 // 60) for t in range(0, 610, 10)]
    steady = Steady(0.5, 0.5, phase, window_seconds=60.0, sample_seconds=10.0,
                    samples={GATEWAY: gateway, SIMULATORS: [(0.0, 60 * 1024)]})  # fmt: skip
    result = _result()
    result.steady = steady
    rows = {r.name: r for r in result.rows()}
    latency = rows["steady 50% load for 10 min: p99"]
    assert latency.value == pytest.approx(99.0)
    assert "300/300 completed, 0.5/s" in latency.note
    grew = rows[f"steady: RSS growth, {GATEWAY}"]
    assert grew.value == pytest.approx(9.0, abs=0.1)  # 1 MB a minute, minute 0–1 vs 9–10
    assert "peak 110 MB" in grew.note
    assert "61 samples every 10 s" in grew.note
    assert rows[f"steady: RSS growth, {SIMULATORS}"].value is None  # one sample is no trend


def test_a_phase_of_a_burst_keeps_the_middle_80_percent_rate_and_the_push_uses_it() -> None:
    accepted = [(f"a{i}", 0.0) for i in range(10)]
    completed = {"a0": 1.0, "a9": 60.0} | {f"a{i}": 10.0 + i for i in range(1, 9)}
    burst = phase_of(LoadResult(accepted=accepted), completed)
    assert (burst.completed, burst.seconds) == (10, 60.0)
    assert burst.middle_per_second == pytest.approx(1.0)  # 11 → 18 s: 7 intervals in 7 s
    result = PushResult(burst=burst, backlog=Phase(submitted=10, completed=10, seconds=20.0))
    assert result.burst_rate == pytest.approx(burst.middle_per_second)
    assert result.drain_ratio == pytest.approx(0.5 / (burst.middle_per_second or 0))
    row = next(r for r in result.rows() if r.name.startswith("burst of 10"))
    assert row.value == pytest.approx(burst.middle_per_second)
    assert "middle 80 %" in row.note


def test_an_incomplete_phase_shows_no_figures_and_fails_the_run() -> None:
    result = _result()
    level = result.levels[0].phase
    level.completed = 9  # one of the ten timed out: its latency is missing from p99
    rows = {r.name: r for r in result.rows()}
    row = rows["50% load (5.0/s offered): p99"]
    assert row.value is None
    assert "INCOMPLETE 9/10" in row.note
    assert result.failures() == [
        "push (postgresql): 50% load INCOMPLETE 9/10 completed (timed out)"
    ]
    assert push_detail(result)["open_loop_50%"]["p99_ms"] is None
    assert _result().failures() == []


def test_an_incomplete_burst_or_drain_gives_no_rate_or_ratio() -> None:
    result = _result()
    assert result.backlog is not None and result.burst is not None
    result.backlog.completed = 99
    assert result.drain_ratio is None
    drained = next(r for r in result.rows() if r.name.startswith("backlog of"))
    assert drained.value is None and "INCOMPLETE 99/100" in drained.note
    result.burst.completed = 59
    assert result.burst_rate is None and result.hop_efficiency(7000.0) is None
    assert [f.split(": ")[1] for f in result.failures()] == [
        "burst INCOMPLETE 59/60 completed (timed out)",
        "backlog drain INCOMPLETE 99/100 completed (timed out)",
    ]


def test_a_skipped_push_is_a_failure_with_its_reason() -> None:
    assert PushResult(store="sqlite", skipped="queues in use").failures() == [
        "push (sqlite): skipped — queues in use"
    ]


def test_every_latency_row_gives_its_samples_and_few_samples_show_the_max() -> None:
    rows = {r.name: r for r in _result().rows()}
    assert "n=101" in rows["50% load (5.0/s offered): p99"].note
    assert "few samples" not in rows["50% load (5.0/s offered): p99"].note
    burst = rows["burst: latency p50"].note
    assert "n=2, few samples: max 200 ms" in burst


def test_resetting_the_peak_writes_5_to_clear_refs_or_says_it_could_not(tmp_path: Path) -> None:
    clear_refs = tmp_path / "clear_refs"
    clear_refs.write_text("")
    assert reset_peak_rss(clear_refs) is True
    assert clear_refs.read_text() == "5"
    assert reset_peak_rss(tmp_path / "missing" / "clear_refs") is False


def test_the_push_tunes_departments_unthrottled_with_production_polling(tmp_path: Path) -> None:
    systems = {
        name: config.model_copy(update=tuned(config))
        for name, config in local_systems(tmp_path, poll_seconds=HUKOU_POLL_SECONDS).items()
    }
    assert all(c.rate_per_second >= 10_000 and c.concurrency == 16 for c in systems.values())
    assert systems["hukou"].poll_seconds == 30.0
    assert systems["hukou"].poll_on_receipt is True  # its decisions come with the receipt
    assert systems["hospital"].poll_seconds == 1.0  # the fallback scan; inotify wakes it
    assert FOLDER_SCAN_SECONDS == 1.0


def test_the_latency_path_row_says_what_carries_each_answer() -> None:
    result = _result()
    result.poll_seconds, result.scan_seconds = 30.0, 1.0
    row = next(r for r in result.rows() if r.name == "on the latency path")
    for words in ("poll_on_receipt", "every 30 s", "callback", "inotify", "1 s fallback", "queue"):
        assert words in row.note


def test_the_push_spreads_its_newborns_over_birth_dates_for_the_hukou_id_space() -> None:
    original = json.loads(dict(examples())[NEWBORN])
    bodies = [json.loads(b) for b in newborn_bodies(json.dumps(original), 3)]
    born = [b["subjects"]["child"]["birth_datetime"] for b in bodies]
    assert born[0] == original["subjects"]["child"]["birth_datetime"]
    assert len(set(born)) == 3 and born[2].startswith("2026-11-18T06:42")
    assert bodies[2]["subjects"]["vaccination"]["hepb_at"].startswith("2026-11-18T08:10")
    assert BIRTH_DAYS * 500 >= 40_000  # a full push sends some 20,000 newborns


def test_publish_rows_add_the_department_side_and_the_broker_count() -> None:
    gateway, department = {"gw.tasks": 100, "(default)": 20}, {"dept.cdc.replies": 40}
    rows = {r.name: r for r in publish_rows("s", gateway, department, 900, 20)}
    assert rows["gateway publishes per application"].value == pytest.approx(6.0)
    assert "(default) 1.0" in rows["gateway publishes per application"].note
    assert rows["department-side publishes per application"].value == pytest.approx(2.0)
    assert "dept.cdc.replies 2.0" in rows["department-side publishes per application"].note
    both = rows["all publishes per application (gateway + department side)"]
    assert both.value == pytest.approx(8.0)
    broker = rows["broker: messages received per application"]
    assert broker.value == pytest.approx(45.0)
    assert "+37.0 beyond" in broker.note  # 45 − 6 − 2: other clients on a shared broker


def test_without_rabbitmqctl_the_broker_row_says_not_measured() -> None:
    rows = {r.name: r for r in publish_rows("s", {"gw.tasks": 10}, {}, None, 10)}
    broker = rows["broker: messages received per application"]
    assert broker.value is None
    assert broker.note.startswith("not measured")
    assert "none" in rows["department-side publishes per application"].note


def test_the_body_row_says_when_the_raw_baseline_size_is_off() -> None:
    assert "update raw.RAW_BODY_BYTES" not in body_row("s", 520.0, 515).note
    off = body_row("s", 1030.0, 515)
    assert off.value == pytest.approx(1030.0)
    assert "(+100%)" in off.note
    assert "update raw.RAW_BODY_BYTES" in off.note


def test_counted_publishes_give_their_mean_body() -> None:
    published = Published()
    assert published.mean_body_bytes is None
    published.add("", Message(body=b"x" * 100))
    published.add("gw.tasks", Message(body=b"x" * 300))
    assert published.by_exchange == {"(default)": 1, "gw.tasks": 1}
    assert published.mean_body_bytes == pytest.approx(200.0)
