"""An operator's orders on a dead-lettered task: replay its message (``on_replay``) or
give up on it (``on_cancel``). Both come from the admin desk and the dead-letter CLI."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

from gateway.orchestration import notices
from gateway.orchestration.advance import FINAL_APPLICATION, NotAllowed, advance
from gateway.orchestration.records import (
    TERMINAL,
    CaseState,
    Context,
    Outgoing,
    TaskStatus,
    TimelineEntry,
    Transition,
)
from gateway.store.records import ApplicationStatus


@dataclass(frozen=True, slots=True)
class ReplayOrder:
    """An operator's replay of a dead-lettered task message (gateway/admin/desk.py)."""

    task_id: str  # "<application id>.<step>"
    attempt: int  # the attempt the dead letter belongs to
    operator: str
    reason: str
    dead_letter_id: int
    outgoing: Outgoing  # the task message to send when the replay applies
    edited_key: str | None = None  # an edited copy goes as "<task id>.r<n>", a new attempt
    force: bool = False  # send again even though the task is no longer dead-lettered


def on_replay(state: CaseState, ctx: Context, order: ReplayOrder) -> Transition:
    """Un-block a dead-lettered task: back to ``dispatched`` (a new attempt for an edited
    copy) with the message in the outbox, and the application back to ``in_progress`` when
    no other task is dead-lettered.

    A task that has finished since, or moved on to a later attempt, gets nothing sent: its
    timeline says the replay was skipped. ``force`` re-sends the same request to a task
    still open at that attempt; the department is idempotent on the key, so it costs nothing
    twice. An edited copy goes only to a task that is dead-lettered, never beside a live one.
    """
    app = state.application
    task = next((t for t in state.tasks if t.id == order.task_id), None)
    if task is None:
        raise NotAllowed(f"application {app.id} has no task {order.task_id}")
    who = {"operator": order.operator, "reason": order.reason, "dead_letter": order.dead_letter_id}
    if app.status in FINAL_APPLICATION or task.status in TERMINAL or order.attempt != task.attempt:
        if order.edited_key is not None:
            raise NotAllowed(
                f"task {task.step} is {task.status.value} at attempt {task.attempt}: "
                "an edited copy would be a second request beside the one that stands"
            )
        tr = Transition()
        detail = {**who, "task_status": task.status.value, "task_attempt": task.attempt}
        tr.timeline.append(TimelineEntry(ctx.now, "task.replay_skipped", task.id, detail))
        return tr
    if task.status is not TaskStatus.DEAD_LETTERED:
        if order.edited_key is not None or not order.force:
            raise NotAllowed(
                f"task {task.step} is {task.status.value}, not dead-lettered: nothing to replay"
            )
        tr = Transition(outbox=[order.outgoing])
        tr.timeline.append(
            TimelineEntry(
                ctx.now,
                "task.replayed",
                task.id,
                {**who, "key": task.request_id, "forced": True, **_said(order)},
            )
        )
        return tr
    new = replace(
        task, status=TaskStatus.DISPATCHED, reason=None, dispatched_at=ctx.now, updated_at=ctx.now
    )
    if order.edited_key is not None:
        if order.edited_key != f"{task.id}.r{task.attempt}":
            raise NotAllowed(f"task {task.step} changed meanwhile; look at it again")
        new = replace(new, attempt=task.attempt + 1, request_key=order.edited_key)
    tr = Transition(tasks=[new], outbox=[order.outgoing])
    tr.timeline.append(
        TimelineEntry(
            ctx.now,
            "task.replayed",
            task.id,
            {**who, "key": new.request_id, "attempt": new.attempt, **_said(order)},
        )
    )
    others = [t for t in state.tasks if t.id != task.id and t.status is TaskStatus.DEAD_LETTERED]
    if app.status is ApplicationStatus.BLOCKED and not others:
        tr.status = ApplicationStatus.IN_PROGRESS
    # DESIGN has no application.in_progress event: the portal learns that the application
    # is moving again from task.dispatched, which says the application's status
    notices.event(
        tr,
        state,
        ctx,
        "task.dispatched",
        (task.id, str(new.attempt), f"replay-{order.dead_letter_id}"),
        {
            "step": task.step,
            "system": task.system,
            "due_at": task.due_at,
            "replayed": True,
            "application_status": (tr.status or app.status).value,
        },
    )
    return tr


def _said(order: ReplayOrder) -> dict[str, str]:
    return {"summary": f"replayed by {order.operator}: {order.reason}"}


@dataclass(frozen=True, slots=True)
class CancelOrder:
    """An operator gives up on a dead-lettered task (``dlq purge --cancel-task``)."""

    task_id: str
    attempt: int  # the attempt the purged dead letter belongs to
    operator: str
    reason: str
    dead_letter_id: int


def on_cancel(state: CaseState, ctx: Context, order: CancelOrder) -> Transition:
    """Cancel a dead-lettered task for good; the application moves on by the usual rules.

    Its dependents are cancelled with it; when nothing else is open the application ends:
    ``rejected`` (with ``application.rejected`` to the portal) when the task was mandatory,
    else ``completed``; with other tasks still running it goes back to ``in_progress``
    (or stays ``blocked`` while another task is dead-lettered)."""
    app = state.application
    task = next((t for t in state.tasks if t.id == order.task_id), None)
    if task is None:
        raise NotAllowed(f"application {app.id} has no task {order.task_id}")
    if (
        app.status in FINAL_APPLICATION
        or task.status is not TaskStatus.DEAD_LETTERED
        or task.attempt != order.attempt
    ):
        raise NotAllowed(
            f"task {task.step} is {task.status.value} at attempt {task.attempt}: "
            "only a task still dead-lettered by this letter can be cancelled"
        )
    matter = ctx.catalogue.matter(app.matter)
    reason = f"cancelled by operator {order.operator}: {order.reason}"
    tasks = {t.step: t for t in state.tasks}
    tasks[task.step] = replace(
        task,
        status=TaskStatus.CANCELLED,
        reason=reason,
        finished_at=ctx.now,
        updated_at=ctx.now,
    )
    tr = Transition()
    tr.drop_timers.append(task.id)
    tr.timeline.append(
        TimelineEntry(
            ctx.now,
            "task.cancelled",
            task.id,
            {"reason": reason, "operator": order.operator, "dead_letter": order.dead_letter_id},
        )
    )
    advance(tr, state, ctx, matter, tasks, json.loads(app.envelope_json), dict(state.provided))
    return tr
