"""How a simulated department behaves: delays, failures, outages and scripted verdicts."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

VerdictOutcome = Literal["completed", "denied", "correction_requested", "suspended"]
Moment = Literal["arrived", "taken"]
RequestHook = Callable[[Moment, str, str], None]
"""``(moment, application id, task)``: a request has ``arrived`` (recorded in the ledger,
not yet looked at) or been ``taken`` (the case is open), and the department has not answered
yet. The fault-injection tests cut the caller's line there — the worst moment for it."""


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: VerdictOutcome
    reason: str | None = None
    gaps: Sequence[tuple[str, str]] = ()  # (field in the department's terms, message)


@dataclass
class Behaviour:
    """Knobs every simulator honours. Mutable on purpose: tests and the demo turn them."""

    decision_delay_seconds: float = 0.0  # how long until the department decides
    failure_rate: float = 0.0  # share of requests answered with a transient failure
    outages: list[tuple[float, float]] = field(default_factory=list)  # unix [start, end)
    # Scripted verdicts: by application id, or by a person's name the department sees.
    by_application: dict[str, Verdict] = field(default_factory=dict)
    by_name: dict[str, Verdict] = field(default_factory=dict)
    seed: int | None = None
    on_request: RequestHook | None = None  # see ``RequestHook``; the hukou simulator calls it
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)  # noqa: S311  # simulation, not cryptography

    def down(self, now: float | None = None) -> bool:
        """True during an outage window, or for a random share of requests."""
        t = time.time() if now is None else now
        if any(start <= t < end for start, end in self.outages):
            return True
        return self.failure_rate > 0 and self._rng.random() < self.failure_rate

    def verdict(self, application_id: str, names: Sequence[str] = ()) -> Verdict:
        if application_id in self.by_application:
            return self.by_application[application_id]
        for name in names:
            if name in self.by_name:
                return self.by_name[name]
        return Verdict("completed")

    def request(self, moment: Moment, application_id: str, task: str) -> None:
        """Tell ``on_request`` (when set) where a request has got to."""
        if self.on_request is not None:
            self.on_request(moment, application_id, task)

    def due(self, submitted_at: float, now: float | None = None) -> bool:
        t = time.time() if now is None else now
        return t >= submitted_at + self.decision_delay_seconds


def application_of(task_id: str) -> tuple[str, str]:
    """Task ids are ``<application id>.<task>[.r<n>]``: the department's view of the business
    key (application, task), shared by every simulator."""
    parts = task_id.split(".")
    if len(parts) < 2:
        raise ValueError(f"task id {task_id!r} is not <application id>.<task>")
    return parts[0], parts[1]


def names_in(data: Mapping[str, object]) -> list[str]:
    """Every string under a key ending in 'name' (for ``Behaviour.by_name``)."""
    found: list[str] = []
    for key, value in data.items():
        if isinstance(value, Mapping):
            found += names_in(value)
        elif isinstance(value, str) and key.lower().endswith("name"):
            found.append(value)
    return found
