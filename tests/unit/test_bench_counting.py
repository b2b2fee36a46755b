"""Pure counting inside the bench: publisher confirms, and 202s matched with completions."""

from __future__ import annotations

from types import SimpleNamespace

import pika
import pytest

from gateway.bench.loadgen import LoadResult
from gateway.bench.push_figures import phase_of
from gateway.bench.raw import Confirms


def _frame(tag: int, *, multiple: bool = False, nack: bool = False) -> SimpleNamespace:
    method = (pika.spec.Basic.Nack if nack else pika.spec.Basic.Ack)(tag, multiple)
    return SimpleNamespace(method=method)


def _published(n: int) -> Confirms:
    confirms = Confirms()
    for _ in range(n):
        confirms.published()
    return confirms


def test_a_multiple_confirm_settles_every_tag_up_to_it() -> None:
    c = _published(10)
    c.on_confirm(_frame(6, multiple=True))
    assert (c.confirmed, c.in_flight) == (6, 4)
    c.on_confirm(_frame(10, multiple=True))
    assert (c.confirmed, c.in_flight) == (10, 0)


def test_single_confirms_out_of_order_are_counted_once() -> None:
    c = _published(5)
    c.on_confirm(_frame(3))
    c.on_confirm(_frame(1))
    assert c.confirmed == 2
    c.on_confirm(_frame(4, multiple=True))  # settles 2 and 4; 1 and 3 were counted already
    assert (c.confirmed, c.in_flight) == (4, 1)
    c.on_confirm(_frame(5))
    assert (c.confirmed, c.in_flight, c.nacked) == (5, 0, 0)


def test_nacks_are_counted_and_settle_their_tags() -> None:
    c = _published(5)
    c.on_confirm(_frame(1, nack=True))
    c.on_confirm(_frame(2))
    c.on_confirm(_frame(4, multiple=True, nack=True))  # 3 and 4
    assert (c.confirmed, c.in_flight, c.nacked) == (4, 1, 3)


def test_phase_matches_202s_with_completions_on_one_clock() -> None:
    load = LoadResult(accepted=[("a", 100.0), ("b", 100.5), ("c", 101.0)])
    phase = phase_of(load, {"a": 100.2, "b": 101.5, "x": 99.0})
    assert (phase.submitted, phase.completed) == (3, 2)
    assert phase.seconds == pytest.approx(1.5)  # first 202 → last completion
    assert phase.latency_ms == pytest.approx([200.0, 1000.0])
    assert phase.per_second == pytest.approx(2 / 1.5)
    assert phase.p(50) == pytest.approx(600.0)


def test_a_phase_with_no_completion_has_no_rate_and_no_percentiles() -> None:
    phase = phase_of(LoadResult(accepted=[("a", 1.0)]), {})
    assert (phase.completed, phase.per_second, phase.p(99)) == (0, 0.0, None)


def test_load_result_rates_are_over_the_measuring_window() -> None:
    result = LoadResult.from_json(
        {"sent": 120, "counted": 100, "counted_ok": 90, "window_seconds": 4.0,
         "accepted": [["a", 1.5]]}
    )  # fmt: skip
    assert (result.per_second, result.ok_per_second) == (25.0, 22.5)
    assert result.accepted == [("a", 1.5)]
