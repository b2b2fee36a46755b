"""Task clocks: due times on the working-day calendar, and the stop and restart while a
task waits for the citizen (correction) or a special procedure (suspension). Pure."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

from gateway import deadlines
from gateway.catalogue.model import Step
from gateway.orchestration.records import (
    CaseState,
    Context,
    TaskRecord,
    TimelineEntry,
    Transition,
)


def due(step: Step, start: float, ctx: Context) -> float:
    begin = dt.datetime.fromtimestamp(start, ctx.timezone)
    budget = deadlines.Budget(step.limit.value, step.limit.unit)
    return deadlines.due_at(begin, budget, ctx.calendar).timestamp()


def restart(
    tr: Transition, state: CaseState, ctx: Context, task: TaskRecord, reason: str
) -> TaskRecord:
    """Restart a stopped clock: the due time moves by the stop, the time used stays used."""
    stopped, due = task.clock_stopped_at, task.due_at
    assert stopped is not None
    if due is None:  # never had a due time: nothing to push
        return replace(task, clock_stopped_at=None)
    unit = ctx.catalogue.matter(state.application.matter).step(task.step).limit.unit

    def local(ts: float) -> dt.datetime:
        return dt.datetime.fromtimestamp(ts, ctx.timezone)

    pushed = deadlines.resume(
        local(due), local(stopped), local(ctx.now), unit, ctx.calendar
    ).timestamp()
    tr.timeline.append(
        TimelineEntry(
            ctx.now,
            "task.clock_started",
            task.id,
            {
                "reason": reason,
                "stopped_at": stopped,
                "previous_due_at": due,
                "due_at": pushed,
                **detail(ctx, task.clock_started_at, pushed),
            },
        )
    )
    return replace(task, clock_stopped_at=None, due_at=pushed, escalated=None)


def detail(ctx: Context, start: float | None, due: float | None) -> dict[str, Any]:
    """Which calendar a due time was counted on, and the years it had no holidays for."""
    detail: dict[str, Any] = {"calendar": ctx.calendar.version}
    if start is not None and due is not None:
        uncovered = ctx.calendar.uncovered(day(start, ctx), day(due, ctx))
        if uncovered:
            detail["calendar_uncovered_years"] = list(uncovered)
    return detail


def day(ts: float, ctx: Context) -> dt.date:
    return dt.datetime.fromtimestamp(ts, ctx.timezone).date()
