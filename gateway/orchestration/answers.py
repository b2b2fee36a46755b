"""A department's answer (``on_result``): a receipt, a decision, or word that the task's
message was dead-lettered. A duplicate or late answer gives an empty transition."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from gateway.catalogue.model import Matter
from gateway.orchestration import clock, notices
from gateway.orchestration.advance import FINAL_APPLICATION, Envelope, advance
from gateway.orchestration.messages import ResultMessage
from gateway.orchestration.records import (
    CLOCK_STOPS,
    TERMINAL,
    CaseState,
    Context,
    PollTimer,
    TaskRecord,
    TaskStatus,
    TimelineEntry,
    Transition,
    stale_interim,
)
from gateway.store.records import ApplicationStatus


def on_result(state: CaseState, ctx: Context, result: ResultMessage) -> Transition:
    app = state.application
    tasks = {t.step: t for t in state.tasks}
    task = next((t for t in state.tasks if t.id == result.task_id), None)
    if task is None or task.status in TERMINAL or result.attempt != task.attempt:
        return Transition()  # unknown, already decided, or an answer to an older attempt
    if app.status in FINAL_APPLICATION:
        return Transition()
    matter = ctx.catalogue.matter(app.matter)
    envelope = Envelope(app.envelope_json)  # decoded only if a task is dispatched
    provided = dict(state.provided)
    tr = Transition()
    case_number = result.case_number or task.case_number
    if result.kind == "dead_lettered":
        if task.status is TaskStatus.DEAD_LETTERED:
            return Transition()  # the runner and the dead-letter store may both say so
        tasks[task.step] = replace(
            task, status=TaskStatus.DEAD_LETTERED, reason=result.reason, updated_at=ctx.now
        )
        tr.drop_timers.append(task.id)
        tr.status = ApplicationStatus.BLOCKED
        tr.timeline.append(
            TimelineEntry(ctx.now, "task.dead_lettered", task.id, {"reason": result.reason})
        )
        notices.event(
            tr,
            state,
            ctx,
            "task.dead_lettered",
            (task.id, str(task.attempt)),
            {"step": task.step, "reason": result.reason},
        )
        notices.event(
            tr,
            state,
            ctx,
            "application.blocked",
            (app.id, task.id, str(task.attempt)),
            {"step": task.step, "reason": result.reason},
        )
        tr.tasks.append(tasks[task.step])
        return tr
    if result.kind == "receipt":
        if not _receipt(tr, state, ctx, matter, tasks, task, result, provided):
            return Transition()
    else:
        if stale_interim(task, result.outcome, case_number):
            return Transition()  # said before, or overtaken by a later answer
        tasks[task.step] = _decided(tr, state, ctx, task, result, case_number, provided)
    advance(tr, state, ctx, matter, tasks, envelope, provided)
    return tr


def _receipt(
    tr: Transition,
    state: CaseState,
    ctx: Context,
    matter: Matter,
    tasks: dict[str, TaskRecord],
    task: TaskRecord,
    result: ResultMessage,
    provided: dict[str, str],
) -> bool:
    """The department took the request (the task is ``submitted``) and, when it decided at
    once, its decision in the same transition, as if it had come in a message of its own
    right after. False when neither applies (a duplicate or late receipt)."""
    decided = result.decision
    if task.status is TaskStatus.DISPATCHED:
        task = tasks[task.step] = _received(tr, ctx, matter, task, result)
    elif decided is None:
        return False
    if decided is not None:
        case_number = decided.case_number or task.case_number
        if not stale_interim(task, decided.outcome, case_number):
            tasks[task.step] = _decided(tr, state, ctx, task, decided, case_number, provided)
            # asked and answered at once: no poll timer for a decided task
            tr.timers = [t for t in tr.timers if t.task_id not in tr.drop_timers]
    return bool(tr.timeline)


def _received(
    tr: Transition, ctx: Context, matter: Matter, task: TaskRecord, result: ResultMessage
) -> TaskRecord:
    case_number = result.case_number or task.case_number
    due: float | None
    if task.attempt <= 1:  # the clock starts at the department's acceptance
        started = result.accepted_at or task.clock_started_at or ctx.now
        due = clock.due(matter.step(task.step), started, ctx)
    else:  # after a correction the clock resumed at the re-dispatch, with its time used
        started, due = task.clock_started_at or ctx.now, task.due_at
    new = replace(
        task,
        status=TaskStatus.SUBMITTED,
        case_number=case_number,
        clock_started_at=started,
        due_at=due,
        # a threshold raised on the dispatch's due time says nothing of the receipt's
        escalated=task.escalated if due == task.due_at else None,
        updated_at=ctx.now,
        version=task.version,
    )
    tr.timeline.append(
        TimelineEntry(
            ctx.now,
            "task.submitted",
            task.id,
            {"case_number": case_number, **clock.detail(ctx, started, due)},
        )
    )
    if task.system in ctx.poll_seconds:
        tr.timers.append(PollTimer(task.id, task.system, ctx.now + ctx.poll_seconds[task.system]))
    return new


def _decided(
    tr: Transition,
    state: CaseState,
    ctx: Context,
    task: TaskRecord,
    result: ResultMessage,
    case_number: str | None,
    provided: dict[str, str],
) -> TaskRecord:
    outcome = result.outcome
    base = replace(task, case_number=case_number, updated_at=ctx.now)
    detail: dict[str, Any] = {"outcome": outcome, "case_number": case_number}
    if outcome == "completed":
        provided.update(result.provides)
        tr.provided = provided
        tr.drop_timers.append(task.id)
        new = replace(
            base,
            status=TaskStatus.COMPLETED,
            provides=dict(result.provides),
            certificate=result.certificate,
            finished_at=ctx.now,
        )
        notices.event(
            tr,
            state,
            ctx,
            "task.completed",
            (task.id,),
            {"step": task.step, "case_number": case_number, "certificate": result.certificate},
        )
    elif outcome == "denied":
        tr.drop_timers.append(task.id)
        new = replace(
            base,
            status=TaskStatus.DENIED,
            finished_at=ctx.now,
            reason=result.reason or "denied without a reason",
        )
        detail["reason"] = new.reason
    elif outcome == "correction_requested":
        tr.drop_timers.append(task.id)
        new = replace(
            base, status=TaskStatus.CORRECTION_REQUESTED, gaps=result.gaps, reason=result.reason
        )
        detail["gaps"] = [dict(g) for g in result.gaps]
    elif outcome == "suspended":
        new = replace(base, status=TaskStatus.SUSPENDED, reason=result.reason)
    else:  # in_progress
        new = replace(base, status=TaskStatus.IN_PROGRESS)
    tr.timeline.append(TimelineEntry(ctx.now, f"task.{new.status.value}", task.id, detail))
    if new.status in CLOCK_STOPS and task.clock_stopped_at is None:
        new = replace(new, clock_stopped_at=ctx.now)
        tr.timeline.append(
            TimelineEntry(ctx.now, "task.clock_stopped", task.id, {"reason": outcome})
        )
    elif new.status is TaskStatus.IN_PROGRESS and task.clock_stopped_at is not None:
        new = clock.restart(tr, state, ctx, new, "suspension_ended")
    elif new.status in TERMINAL and task.clock_stopped_at is not None:
        new = clock.restart(tr, state, ctx, new, "decided")  # the stop ends with the task
    return new
