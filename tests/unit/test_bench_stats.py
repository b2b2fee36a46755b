"""The bench's arithmetic: percentiles, rates, issue 6's ratios and the noise flag."""

from __future__ import annotations

import pytest

from gateway.bench import stats


def test_percentile_interpolates_between_closest_ranks_like_numpy() -> None:
    values = [15.0, 20.0, 35.0, 40.0, 50.0]
    assert stats.percentile(values, 0) == 15.0
    assert stats.percentile(values, 100) == 50.0
    assert stats.percentile(values, 50) == 35.0
    assert stats.percentile(values, 40) == pytest.approx(29.0)  # numpy.percentile: 29.0
    assert stats.percentile(values, 99) == pytest.approx(49.6)  # numpy.percentile: 49.6


def test_percentile_does_not_depend_on_order_and_takes_one_value() -> None:
    assert stats.percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert stats.percentile([7.0], 99) == 7.0
    assert stats.median([4.0, 1.0, 3.0, 2.0]) == 2.5


@pytest.mark.parametrize("q", [-1, 100.5])
def test_percentile_outside_0_to_100_is_refused(q: float) -> None:
    with pytest.raises(ValueError, match="outside"):
        stats.percentile([1.0], q)


def test_percentile_of_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match="no values"):
        stats.percentile([], 50)


def test_rate_of_an_empty_interval_is_zero() -> None:
    assert stats.rate(500, 2.0) == 250.0
    assert stats.rate(500, 0.0) == 0.0


def test_hop_efficiency_counts_ten_hops_per_newborn() -> None:
    assert stats.hop_efficiency(400.0, 8000.0) == pytest.approx(0.5)
    assert stats.hop_efficiency(400.0, 8000.0, hops=5) == pytest.approx(0.25)
    assert stats.hop_efficiency(400.0, 0.0) is None  # no baseline: no ratio


def test_intake_efficiency_is_accepted_over_bare() -> None:
    assert stats.intake_efficiency(2500.0, 10_000.0) == pytest.approx(0.25)
    assert stats.intake_efficiency(2500.0, 0.0) is None


def test_a_baseline_at_80_percent_of_design_is_not_noisy() -> None:
    assert stats.noise_reasons(0.8 * stats.DESIGN_PUBLISH, 0.8 * stats.DESIGN_CONSUME) == []
    assert stats.noise_reasons(20_000.0, 60_000.0) == []  # faster than DESIGN is fine


def test_each_figure_below_80_percent_gives_its_own_reason() -> None:
    publish_only = stats.noise_reasons(10_000.0, 21_000.0)
    assert len(publish_only) == 1
    assert "publish" in publish_only[0] and "12,800" in publish_only[0]
    both = stats.noise_reasons(10_000.0, 16_000.0)
    assert [r.split()[1] for r in both] == ["publish", "consume"]


def test_noise_reference_and_floor_can_be_given() -> None:
    assert stats.noise_reasons(90.0, 90.0, publish_reference=100, consume_reference=100) == []
    assert stats.noise_reasons(90.0, 90.0, publish_reference=100, consume_reference=100, floor=0.95)


def test_a_one_hop_below_80_percent_of_7k_is_noise_too() -> None:
    fine = (stats.DESIGN_PUBLISH, stats.DESIGN_CONSUME)
    assert stats.noise_reasons(*fine, 0.8 * stats.DESIGN_HOP) == []
    reasons = stats.noise_reasons(*fine, 5_000.0)
    assert len(reasons) == 1
    assert "one-hop" in reasons[0] and "7,000" in reasons[0]
    assert stats.noise_reasons(*fine) == []  # the hop not measured: not a reason


def test_the_burst_rate_drops_the_first_and_last_tenth_of_completions() -> None:
    # a slow start (t=0) and a straggler (t=50) around 8 completions a second apart
    times = [50.0, 0.0] + [10.0 + i for i in range(8)]
    assert stats.middle_rate(times) == pytest.approx(1.0)  # 7 intervals over 10 → 17 s
    assert stats.rate(len(times), 50.0) == pytest.approx(0.2)  # the whole span says 0.2


def test_the_middle_rate_needs_two_distinct_instants() -> None:
    assert stats.middle_rate([]) is None
    assert stats.middle_rate([1.0]) is None
    assert stats.middle_rate([3.0, 3.0, 3.0]) is None
