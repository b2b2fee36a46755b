"""Escalation: ``task.due_soon`` and ``task.overdue`` when a running clock crosses a threshold.

The due-soon threshold is a share of the task's budget (default 80 %):
``clock_started_at + share × (due_at − clock_started_at)``; overdue is the due time itself.
``on_deadline`` is pure: it raises the highest threshold crossed and not yet raised, once,
remembered on the task (``escalated``), with a timeline entry and an event whose ``event_id``
is stable per task, attempt, threshold and due time, so a repeat after a crash is
recognisable. A stopped clock forgets what was raised, so thresholds count anew after it
restarts; the due time it restarts with is a new one, so a threshold raised again then
carries a new ``event_id`` (the same one if the stop moved nothing, e.g. over a weekend).

The ``Scheduler`` is the role that looks for candidates (one indexed query) and applies
``on_deadline`` through ``Orchestrator.apply``: one guarded transaction with the outbox per
task, so several schedulers may run; the second to arrive changes nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Literal

from gateway.logs import get_logger
from gateway.orchestration import clock, notices
from gateway.orchestration.orchestrator import Orchestrator
from gateway.orchestration.records import (
    CLOCK_STOPS,
    CaseState,
    Context,
    TaskRecord,
    TaskStatus,
    TimelineEntry,
    Transition,
)
from gateway.periodic import repeat
from gateway.store.cases import CaseStore, UnknownApplication

log = get_logger(__name__)
Threshold = Literal["due_soon", "overdue"]
THRESHOLDS: tuple[Threshold, ...] = ("due_soon", "overdue")  # in the order they are crossed
_RANK: dict[str, int] = {name: i for i, name in enumerate(THRESHOLDS)}
DEFAULT_SHARE = 0.8
RUNNING = frozenset({TaskStatus.DISPATCHED, TaskStatus.SUBMITTED, TaskStatus.IN_PROGRESS})


def due_soon_at(task: TaskRecord, share: float = DEFAULT_SHARE) -> float | None:
    """When the task has used ``share`` of its budget; None without a due time."""
    if task.due_at is None:
        return None
    start = task.clock_started_at if task.clock_started_at is not None else task.due_at
    return start + share * (task.due_at - start)


def crossed(task: TaskRecord, now: float, share: float = DEFAULT_SHARE) -> Threshold | None:
    """The highest threshold a running clock has crossed at ``now``; None if none, or if
    the clock is not running (waiting, stopped, finished)."""
    if task.status not in RUNNING or task.clock_stopped_at is not None or task.due_at is None:
        return None
    if now >= task.due_at:
        return "overdue"
    soon = due_soon_at(task, share)
    if soon is not None and now >= soon:
        return "due_soon"
    return None


def to_raise(task: TaskRecord, now: float, share: float = DEFAULT_SHARE) -> Threshold | None:
    """The threshold to raise now: crossed and higher than what was already raised."""
    hit = crossed(task, now, share)
    if hit is None:
        return None
    return hit if _RANK[hit] > _RANK.get(task.escalated or "", -1) else None


def on_deadline(
    state: CaseState, ctx: Context, task_id: str, share: float = DEFAULT_SHARE
) -> Transition:
    """Raise the task's crossed threshold once, or forget it while the clock stands still.

    Empty for an unknown task, a threshold already raised, or a clock not past one: what a
    second scheduler (or a repeat after a crash) sees after the first one's commit.
    """
    task = next((t for t in state.tasks if t.id == task_id), None)
    tr = Transition()
    if task is None:
        return tr
    if task.status in CLOCK_STOPS and task.escalated is not None:
        tr.tasks.append(replace(task, escalated=None, updated_at=ctx.now))
        tr.timeline.append(
            TimelineEntry(
                ctx.now,
                "task.escalation_reset",
                task.id,
                {"reason": "clock_stopped", "was": task.escalated},
            )
        )
        return tr
    which = to_raise(task, ctx.now, share)
    if which is None:
        return tr
    assert task.due_at is not None
    name = f"task.{which}"
    detail = {
        "step": task.step,
        "system": task.system,
        "attempt": task.attempt,
        "threshold": which,
        "share": share,
        "clock_started_at": task.clock_started_at,
        "due_soon_at": due_soon_at(task, share),
        "due_at": task.due_at,
        "late_seconds": max(0.0, ctx.now - task.due_at),
        **clock.task_estimate(task, ctx.timezone, ctx.calendar),
    }
    tr.tasks.append(replace(task, escalated=which, updated_at=ctx.now))
    tr.timeline.append(TimelineEntry(ctx.now, name, task.id, detail))
    # the id names the due time it announces: a repeat (a crash before the commit, two
    # schedulers) is the same event; a threshold crossed again on a due time that a clock
    # stop moved is a new one, which a portal must not drop as a duplicate
    subject = (task.id, str(task.attempt), which, f"{task.due_at:.3f}")
    notices.event(tr, state, ctx, name, subject, detail)
    return tr


class Scheduler:
    """The ``scheduler`` role: finds tasks past a threshold and escalates each."""

    def __init__(
        self,
        cases: CaseStore,
        orchestrator: Orchestrator,
        *,
        share: float = DEFAULT_SHARE,
        batch: int = 200,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._cases = cases
        self._orchestrator = orchestrator
        self._share = share
        self._batch = batch
        self._clock = clock

    async def tick(self) -> int:
        """One pass: the number of tasks it changed."""
        changed = 0
        for task in await self._cases.deadline_tasks(self._clock(), self._share, self._batch):
            try:
                tr = await self._orchestrator.apply(task.application_id, self._plan(task.id))
            except UnknownApplication:
                continue
            if tr.changed:
                changed += 1
                log.info(
                    "task_escalated",
                    application_id=task.application_id,
                    task_id=task.id,
                    kinds=[e.kind for e in tr.timeline],
                )
        return changed

    def _plan(self, task_id: str) -> Callable[[CaseState, Context], Transition]:
        return lambda state, ctx: on_deadline(state, ctx, task_id, self._share)

    async def run(self, interval: float, stop: asyncio.Event) -> None:
        await repeat(self.tick, interval, stop, name="scheduler")
