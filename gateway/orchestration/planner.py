"""The process manager as pure functions: (state, event) → transition. No I/O here.

Events: the application was accepted (``start``), a department answered (``on_result``),
the citizen sent corrections (``on_correction``), withdrew (``on_withdrawal``), the window
handed out the results (``on_delivery``), or an operator replayed a dead letter
(``on_replay``) or gave up on it (``on_cancel``). Every function returns an empty
transition for a duplicate or late event, so redelivery changes nothing.

This module holds the citizen's and the window's events and is the one name callers
import; the rest lives beside it:

    answers.py          on_result: receipts, decisions, dead-lettered task messages
    operator_orders.py  on_replay, on_cancel: an operator's orders on a dead letter
    advance.py          after any event: cancel, dispatch, settle the status
    task_requests.py    a task's message, and the dead letters the gateway writes itself
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import replace

from gateway.broker.messages import Message
from gateway.catalogue.fields import present
from gateway.orchestration import clock, notices
from gateway.orchestration.advance import FINAL_APPLICATION, NotAllowed, advance
from gateway.orchestration.answers import on_result
from gateway.orchestration.notices import results_pack
from gateway.orchestration.operator_orders import CancelOrder, ReplayOrder, on_cancel, on_replay
from gateway.orchestration.records import (
    TERMINAL,
    CaseState,
    Context,
    TaskRecord,
    TaskStatus,
    TimelineEntry,
    Transition,
)
from gateway.orchestration.task_requests import dead_letter_of, synthetic_letter, task_outgoing
from gateway.store.records import ApplicationStatus

__all__ = [
    "FINAL_APPLICATION",
    "CancelOrder",
    "Context",
    "Message",
    "NotAllowed",
    "ReplayOrder",
    "Transition",
    "dead_letter_of",
    "on_cancel",
    "on_correction",
    "on_delivery",
    "on_replay",
    "on_result",
    "on_withdrawal",
    "results_pack",
    "start",
    "synthetic_letter",
    "task_outgoing",
]


def start(state: CaseState, ctx: Context) -> Transition:
    app = state.application
    if state.tasks or app.status not in (ApplicationStatus.RECEIVED, ApplicationStatus.ACCEPTED):
        return Transition()  # a duplicate gw.accepted, or withdrawn before it started
    matter = ctx.catalogue.matter(app.matter)
    envelope = json.loads(app.envelope_json)
    tasks = {}
    for step in matter.steps:
        applies = step.when is None or present(envelope, step.when)
        tasks[step.key] = TaskRecord(
            id=f"{app.id}.{step.key}",
            application_id=app.id,
            matter=app.matter,
            step=step.key,
            system=step.system,
            operation=step.operation,
            depends_on=step.depends_on,
            status=TaskStatus.WAITING if applies else TaskStatus.CANCELLED,
            reason=None if applies else f"not applicable: {step.when} is empty",
            updated_at=ctx.now,
        )
    tr = Transition(
        status=ApplicationStatus.IN_PROGRESS, catalogue_version=ctx.catalogue.version, provided={}
    )
    tr.timeline.append(
        TimelineEntry(
            ctx.now, "application.accepted", detail={"catalogue_version": ctx.catalogue.version}
        )
    )
    notices.event(
        tr,
        state,
        ctx,
        "application.accepted",
        (app.id,),
        {
            "tasks": [
                {
                    "step": s.key,
                    "title": s.title,
                    "system": s.system,
                    "applies": tasks[s.key].status is TaskStatus.WAITING,
                }
                for s in matter.steps
            ]
        },
    )
    advance(tr, state, ctx, matter, tasks, envelope, {})
    return tr


def on_correction(
    state: CaseState, ctx: Context, envelope_json: str, changed: Iterable[str]
) -> Transition:
    """Re-run only the tasks waiting for a correction, with the corrected envelope."""
    app = state.application
    waiting = [t for t in state.tasks if t.status is TaskStatus.CORRECTION_REQUESTED]
    if app.status is not ApplicationStatus.CORRECTION_REQUESTED or not waiting:
        raise NotAllowed(f"application is {app.status.value}: no department asked for a correction")
    matter = ctx.catalogue.matter(app.matter)
    tasks = {t.step: t for t in state.tasks}
    for t in waiting:
        tasks[t.step] = replace(t, status=TaskStatus.WAITING, gaps=(), updated_at=ctx.now)
    tr = Transition(envelope_json=envelope_json)
    tr.timeline.append(
        TimelineEntry(
            ctx.now,
            "application.corrected",
            detail={"fields": sorted(changed), "rerun": [t.step for t in waiting]},
        )
    )
    advance(tr, state, ctx, matter, tasks, json.loads(envelope_json), dict(state.provided))
    return tr


def on_withdrawal(state: CaseState, ctx: Context, reason: str) -> Transition:
    app = state.application
    if app.status in FINAL_APPLICATION:
        raise NotAllowed(f"application is already {app.status.value}")
    tr = Transition(status=ApplicationStatus.WITHDRAWN)
    for t in state.tasks:
        if t.status not in TERMINAL:
            if t.clock_stopped_at is not None:  # the stop ends with the task
                t = clock.restart(tr, state, ctx, t, "withdrawn")
            tr.tasks.append(
                replace(
                    t,
                    status=TaskStatus.CANCELLED,
                    reason="withdrawn",
                    finished_at=ctx.now,
                    updated_at=ctx.now,
                )
            )
            tr.drop_timers.append(t.id)
    tr.timeline.append(TimelineEntry(ctx.now, "application.withdrawn", detail={"reason": reason}))
    notices.event(tr, state, ctx, "application.withdrawn", (app.id,), {"reason": reason})
    return tr


def on_delivery(state: CaseState, ctx: Context) -> Transition:
    app = state.application
    if app.status is ApplicationStatus.DELIVERED:
        return Transition()
    if app.status is not ApplicationStatus.COMPLETED:
        raise NotAllowed(f"application is {app.status.value}; only a completed one is handed out")
    tr = Transition(status=ApplicationStatus.DELIVERED)
    tr.timeline.append(TimelineEntry(ctx.now, "application.delivered"))
    notices.event(tr, state, ctx, "application.delivered", (app.id,), {})
    return tr
