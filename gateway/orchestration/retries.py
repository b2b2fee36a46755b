"""What to do after a department failed transiently: the retry policy as pure functions.

A task gets ``policy.attempts`` tries in all. The first ``policy.quick_attempts`` happen in
the connector runner's process, a short full-jitter pause apart (tenacity drives the loop,
``backoff`` gives the pauses), so a blip costs no broker round trip. After those the task
waits in a broker delay queue (``gw.retry.<level>``, a fixed ladder of message TTLs) and the
delivery is acked: nothing stays unacked while a department is down, and nothing spins.
When the budget is spent the task is dead-lettered with the reason.

    tries made   pause before the next try                     where it waits
    n            uniform(0, min(max_seconds, initial_seconds · 2^(n-1)))
    < quick      that pause                                    in process (tenacity)
    ≥ quick      the ladder level at or below that pause       gw.retry.<level>
                 (the lowest level when the pause is shorter)
    = attempts   —                                             dead letter

Counting: a task message's ``x-attempt`` header starts at the task's own attempt number (its
body's ``attempt``, which a correction raises); every copy sent through a delay queue carries
that number plus the tries made so far, so ``tries_spent`` reads the budget back from the
message alone, in whichever process picks it up.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gateway.settings import RetryPolicy


@dataclass(frozen=True, slots=True)
class TryAgainNow:
    """Pause ``delay`` seconds in process, then try again."""

    delay: float


@dataclass(frozen=True, slots=True)
class TryAgainLater:
    """Send the task through the delay queue of ``level`` seconds (``delay`` was computed)."""

    delay: float
    level: float


@dataclass(frozen=True, slots=True)
class GiveUp:
    """The budget is spent: dead-letter the task with ``reason``."""

    reason: str


Step = TryAgainNow | TryAgainLater | GiveUp


def backoff(policy: RetryPolicy, tries_made: int, rng: random.Random) -> float:
    """The pause after ``tries_made`` tries: exponential, capped, full jitter."""
    ceiling = min(policy.max_seconds, policy.initial_seconds * 2 ** max(tries_made - 1, 0))
    return rng.uniform(0.0, ceiling)


def ladder_level(ladder: Sequence[float], delay: float) -> float:
    """The longest level not above ``delay``; the shortest when ``delay`` is below them all."""
    fitting = [level for level in ladder if level <= delay]
    return max(fitting) if fitting else min(ladder)


def next_step(policy: RetryPolicy, tries_made: int, last_error: str, rng: random.Random) -> Step:
    """After ``tries_made`` tries, the last failing with ``last_error``: what now."""
    if tries_made >= policy.attempts:
        return GiveUp(budget_spent(tries_made, last_error))
    delay = backoff(policy, tries_made, rng)
    if tries_made < policy.quick_attempts:
        return TryAgainNow(delay)
    return TryAgainLater(delay, ladder_level(policy.ladder, delay))


def quick_tries(policy: RetryPolicy, spent: int) -> int:
    """How many tries this delivery may make in process, ``spent`` tries already made: the
    rest of the quick ones, else one (a delivery back from a delay queue), never past the
    budget (at least one, so a message always gets its try)."""
    return max(1, min(policy.quick_attempts - spent, policy.attempts - spent))


def tries_spent(header: Any, task_attempt: int) -> int:
    """Tries already made, from the message's ``x-attempt`` header and its body's attempt."""
    try:
        return max(0, int(header) - task_attempt)
    except (TypeError, ValueError):
        return 0


def budget_spent(tries: int, last_error: str) -> str:
    return f"retry budget spent after {tries} attempts: {last_error}"
