"""Task clocks: due times on the working-day calendar, and the stop and restart while a
task waits for the citizen (correction) or a special procedure (suspension). Pure."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from gateway import deadlines
from gateway.calendar import WorkCalendar
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
    apply to it (a task cancelled as not applicable does not count)."""
    applies = {t.step for t in tasks if not not_applicable(t)}
    start = dt.datetime.fromtimestamp(accepted_at, timezone)
    return application_budget(matter, start, calendar, applies)


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
