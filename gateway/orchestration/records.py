"""What the orchestrator keeps per application: its tasks, timeline and outgoing messages.

The planner (``planner.py``) is a pure function from a ``CaseState`` and an event to a
``Transition``; the store applies a transition in the same transaction that read the state,
guarded by the application row, so two orchestrators never both act on one application.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from connectors.base import DepartmentRequest
from gateway.broker.messages import Message
from gateway.calendar import WorkCalendar, default_calendar
from gateway.catalogue.model import Catalogue
from gateway.store.records import ApplicationRecord, ApplicationStatus


class TaskStatus(StrEnum):
    """Task statuses, fixed by DESIGN.md "Public interface"."""

    WAITING = "waiting"
    DISPATCHED = "dispatched"
    SUBMITTED = "submitted"
    IN_PROGRESS = "in_progress"
    CORRECTION_REQUESTED = "correction_requested"
    SUSPENDED = "suspended"
    COMPLETED = "completed"
    DENIED = "denied"
    CANCELLED = "cancelled"
    DEAD_LETTERED = "dead_lettered"


TERMINAL = frozenset({TaskStatus.COMPLETED, TaskStatus.DENIED, TaskStatus.CANCELLED})
OPEN = frozenset(TaskStatus) - TERMINAL
CLOCK_STOPS = frozenset({TaskStatus.CORRECTION_REQUESTED, TaskStatus.SUSPENDED})
"""While a task is in one of these its clock stands still (DOMAIN §5)."""


@dataclass(frozen=True, slots=True)
class TaskRecord:
    id: str  # "<application id>.<step>"
    application_id: str
    matter: str
    step: str
    system: str
    operation: str
    status: TaskStatus
    depends_on: tuple[str, ...]
    attempt: int = 0  # dispatches so far; the department's idempotency key changes per attempt
    case_number: str | None = None
    certificate: str | None = None
    reason: str | None = None
    gaps: tuple[Mapping[str, str], ...] = ()
    provides: Mapping[str, str] = field(default_factory=dict)
    dispatched_at: float | None = None
    clock_started_at: float | None = None
    due_at: float | None = None
    clock_stopped_at: float | None = None  # set while the clock stands still (CLOCK_STOPS)
    finished_at: float | None = None
    escalated: str | None = None  # highest deadline threshold raised: "due_soon" | "overdue"
    request_key: str | None = None  # an operator's edited copy: "<id>.r<n>" for its attempt
    updated_at: float = 0.0
    version: int = 0

    @property
    def request_id(self) -> str:
        """The idempotency key the department sees for the current attempt: ``<id>`` first,
        ``<id>.c<n>`` after a correction, ``<id>.r<n>`` for an operator's edited copy; ``n``
        is always ``attempt - 1``, so the two kinds never share a key."""
        if self.request_key is not None and self.request_key.endswith(f".r{self.attempt - 1}"):
            return self.request_key  # a later correction's attempt no longer matches it
        return self.id if self.attempt <= 1 else f"{self.id}.c{self.attempt - 1}"


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    at: float
    kind: str  # e.g. "task.dispatched", "application.completed"
    task_id: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Outgoing:
    exchange: str
    routing_key: str
    message: Message
    # a task message's request as built (its body encodes exactly this), so that the store
    # reads the disclosed fields without decoding the body again; None when read back
    request: DepartmentRequest | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class PollTimer:
    """A timer row: ask ``system`` about ``task_id`` at ``due_at``. ``lease_until`` is the
    lease a poller's claim wrote (0 for a row the planner writes): the poller deletes or
    reschedules only the row it claimed, never a fresh one written meanwhile (a receipt
    after a correction)."""

    task_id: str
    system: str
    due_at: float
    lease_until: float = 0.0


@dataclass(frozen=True, slots=True)
class CaseState:
    application: ApplicationRecord
    catalogue_version: str | None
    provided: Mapping[str, str]
    tasks: tuple[TaskRecord, ...]

    def task(self, step: str) -> TaskRecord:
        for t in self.tasks:
            if t.step == step:
                return t
        raise KeyError(step)


@dataclass
class Transition:
    """What one event changes. Empty (``changed`` False) for a duplicate or late event."""

    status: ApplicationStatus | None = None
    catalogue_version: str | None = None
    envelope_json: str | None = None
    provided: dict[str, str] | None = None
    tasks: list[TaskRecord] = field(default_factory=list)
    outbox: list[Outgoing] = field(default_factory=list)
    timeline: list[TimelineEntry] = field(default_factory=list)
    timers: list[PollTimer] = field(default_factory=list)
    drop_timers: list[str] = field(default_factory=list)  # task ids

    @property
    def changed(self) -> bool:
        return bool(
            self.status
            or self.tasks
            or self.outbox
            or self.timeline
            or self.envelope_json
            or self.provided
        )


@dataclass(frozen=True, slots=True)
class Context:
    catalogue: Catalogue
    now: float
    timezone: dt.tzinfo
    poll_seconds: Mapping[str, float]  # systems whose decisions are polled, and how often
    calendar: WorkCalendar = field(default_factory=default_calendar)


INTERIM_FROM = {
    # an interim answer only moves a task forward; replies may arrive out of order
    "in_progress": frozenset({TaskStatus.DISPATCHED, TaskStatus.SUBMITTED, TaskStatus.SUSPENDED}),
    "suspended": frozenset({TaskStatus.DISPATCHED, TaskStatus.SUBMITTED, TaskStatus.IN_PROGRESS}),
}


def stale_interim(task: TaskRecord, outcome: str | None, case_number: str | None) -> bool:
    """True for an interim answer (in progress, suspended) that would move the task back:
    repeated by a poll, or arriving after a correction request or a later interim answer."""
    allowed = INTERIM_FROM.get(outcome or "")
    if allowed is None:
        return False  # final answers and correction requests always count
    return task.status not in allowed and not (case_number is not None and task.case_number is None)
