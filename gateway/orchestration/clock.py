"""Task clocks: due times on the working-day calendar, and the stop and restart while a
task waits for the citizen (correction) or a special procedure (suspension). Pure."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from gateway import deadlines
from gateway.calendar import WorkCalendar, warn_uncovered
from gateway.catalogue.budget import ApplicationBudget, application_budget, promise_due
from gateway.catalogue.model import CURRENT_VERSION, Matter, Step, load
from gateway.orchestration.records import (
    CaseState,
    Context,
    TaskRecord,
    TaskStatus,
    TimelineEntry,
    Transition,
)


def due(step: Step, start: float, ctx: Context) -> float:
    begin = dt.datetime.fromtimestamp(start, ctx.timezone)
    budget = deadlines.Budget(step.limit.value, step.limit.unit)
    end = deadlines.due_at(begin, budget, ctx.calendar)
    warn_uncovered(ctx.calendar.uncovered(begin.date(), end.date()))
    return end.timestamp()


def estimate(calendar: WorkCalendar, start: dt.date, due: dt.date) -> dict[str, Any]:
    """``due_estimated`` (and the years) for a due time counted over a year the calendar
    has no holidays for: shown beside every due time a person or a portal reads."""
    years = calendar.uncovered(start, due)
    if not years:
        return {"due_estimated": False}
    return {"due_estimated": True, "calendar_uncovered_years": list(years)}


def task_estimate(task: TaskRecord, timezone: dt.tzinfo, calendar: WorkCalendar) -> dict[str, Any]:
    """``estimate`` for a task's due time (counted from its clock's start)."""
    if task.due_at is None:
        return {"due_estimated": False}
    start = task.clock_started_at if task.clock_started_at is not None else task.due_at
    return estimate(
        calendar,
        dt.datetime.fromtimestamp(start, timezone).date(),
        dt.datetime.fromtimestamp(task.due_at, timezone).date(),
    )


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

    moved = deadlines.resume(local(due), local(stopped), local(ctx.now), unit, ctx.calendar)
    warn_uncovered(ctx.calendar.uncovered(local(due).date(), moved.date()))
    pushed = moved.timestamp()
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
    """The clock's start and due time, which calendar the due time was counted on, and the
    years it had no holidays for. The start in the timeline is what lets the supervision
    ledger recompute every due time from the timeline alone."""
    detail: dict[str, Any] = {"calendar": ctx.calendar.version}
    if start is not None:
        detail["clock_started_at"] = start
    if due is not None:
        detail["due_at"] = due
    if start is not None and due is not None:
        uncovered = ctx.calendar.uncovered(day(start, ctx), day(due, ctx))
        if uncovered:
            detail["due_estimated"] = True
            detail["calendar_uncovered_years"] = list(uncovered)
    return detail


def application_due(
    matter: Matter,
    tasks: Iterable[TaskRecord],
    accepted_at: float,
    timezone: dt.tzinfo,
    calendar: WorkCalendar,
) -> ApplicationBudget:
    """The application's budget from its acceptance: the critical path over the steps that
    apply to it (a task cancelled as not applicable does not count), each task that has a
    due time counted with its current one (moved by its clock stops)."""
    tasks = list(tasks)
    applies = {t.step for t in tasks if not not_applicable(t)}
    known = {
        t.step: dt.datetime.fromtimestamp(t.due_at, timezone)
        for t in tasks
        if t.due_at is not None and not not_applicable(t)
    }
    start = dt.datetime.fromtimestamp(accepted_at, timezone)
    return application_budget(matter, start, calendar, applies, known)


def budget_view(state: CaseState, timezone: dt.tzinfo, calendar: WorkCalendar) -> dict[str, Any]:
    """The application's due time (critical path from acceptance), the path, and the
    matter's promise beside it, for the case view and ``gateway apps show``. Recomputed
    from what is stored (acceptance time, catalogue version, the tasks that apply), so it
    is the same every time it is shown."""
    accepted = state.application.accepted_at
    if accepted is None or not state.tasks:
        return {"due_at": None, "critical_path": [], "promise": None}
    matter = load(state.catalogue_version or CURRENT_VERSION).matter(state.application.matter)
    budget = application_due(matter, state.tasks, accepted, timezone, calendar)
    return {
        "due_at": budget.due_at.isoformat(timespec="seconds"),
        **estimate(calendar, budget.start.date(), budget.due_at.date()),
        "critical_path": list(budget.critical_path),
        "promise": {
            **matter.promise.model_dump(),
            "due_at": promise_due(matter, budget.start, calendar).isoformat(timespec="seconds"),
        },
    }


def not_applicable(task: TaskRecord) -> bool:
    """Cancelled at the start because its ``when`` condition (or a dependency's) did not hold."""
    return task.status is TaskStatus.CANCELLED and (task.reason or "").startswith("not applicable")


def day(ts: float, ctx: Context) -> dt.date:
    return dt.datetime.fromtimestamp(ts, ctx.timezone).date()
