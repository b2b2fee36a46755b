"""The bench's arithmetic, pure: percentiles, rates, issue 6's ratios and the noise flag.

hop efficiency     (newborn applications/s × 10) ÷ raw one-hop messages/s
                   10 is the fixed reference hop count of a newborn application
intake efficiency  accepted envelopes/s ÷ bare-handler requests/s
noisy              the raw baseline fell below 80 % of DESIGN's table (pika
                   ``AsyncioConnection``: ~12.8k publish, ~21k consume, ~7–9k one hop, taken
                   at its low end, 7k): the machine was busy with something else, so no
                   figure of the run is to be trusted (the hop is hop efficiency's divisor)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

DESIGN_PUBLISH = 12_800.0  # msg/s, DESIGN "Measured on this machine class"
DESIGN_CONSUME = 21_000.0
DESIGN_HOP = 7_000.0  # one hop, publish and consume together: DESIGN "~7–9k", its low end
NOISE_FLOOR = 0.8
REFERENCE_HOPS = 10


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0–100), linear between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("no values to take a percentile of")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0–100")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def rate(count: float, seconds: float) -> float:
    """``count`` per second; 0 for an empty or instant interval."""
    return count / seconds if seconds > 0 else 0.0


def middle_rate(times: Sequence[float], share: float = 0.8) -> float | None:
    """Completions per second over the middle ``share`` of ``times`` (the first and last
    (1 − share) / 2 dropped, so ramp-up and ramp-down neither flatter nor punish the rate):
    the intervals between the first and the last kept completion. None with fewer than two
    kept, or all at one instant."""
    ordered = sorted(times)
    drop = math.floor(round(len(ordered) * (1 - share) / 2, 6))  # 10 × 0.1 is 0.999…
    kept = ordered[drop : len(ordered) - drop]
    if len(kept) < 2 or kept[-1] <= kept[0]:
        return None
    return (len(kept) - 1) / (kept[-1] - kept[0])


def ratio(numerator: float, denominator: float) -> float | None:
    """None when the denominator was not measured (zero or negative)."""
    return numerator / denominator if denominator > 0 else None


def hop_efficiency(
    applications_per_second: float, hop_messages_per_second: float, hops: int = REFERENCE_HOPS
) -> float | None:
    return ratio(applications_per_second * hops, hop_messages_per_second)


def intake_efficiency(accepted_per_second: float, bare_per_second: float) -> float | None:
    return ratio(accepted_per_second, bare_per_second)


def noise_reasons(
    publish_per_second: float,
    consume_per_second: float,
    hop_per_second: float | None = None,
    *,
    publish_reference: float = DESIGN_PUBLISH,
    consume_reference: float = DESIGN_CONSUME,
    hop_reference: float = DESIGN_HOP,
    floor: float = NOISE_FLOOR,
) -> list[str]:
    """Why the run is noisy (empty when it is not): each figure below ``floor`` × reference
    (the one hop only when measured)."""
    reasons = []
    figures = [
        ("publish", publish_per_second, publish_reference),
        ("consume", consume_per_second, consume_reference),
    ]
    if hop_per_second is not None:
        figures.append(("one-hop", hop_per_second, hop_reference))
    for what, got, reference in figures:
        if got < floor * reference:
            reasons.append(
                f"raw {what} {got:,.0f} msg/s is below {floor:.0%} of DESIGN's "
                f"{reference:,.0f} msg/s ({got / reference:.0%})"
            )
    return reasons
