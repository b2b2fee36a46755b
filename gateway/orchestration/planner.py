"""The process manager as pure functions: (state, event) → transition. No I/O here.

Events: the application was accepted (``start``), a department answered (``on_result``),
the citizen sent corrections (``on_correction``), withdrew (``on_withdrawal``), the window
handed out the results (``on_delivery``), or an operator replayed a dead letter
(``on_replay``). Every function returns an empty transition for a duplicate or late event,
so redelivery changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from connectors.base import DepartmentRequest
from gateway.broker.messages import Message, uuid7
from gateway.broker.topology import (
    DLX,
    HEADER_ERROR_KIND,
    HEADER_ORIGINAL_EXCHANGE,
    HEADER_ORIGINAL_ROUTING_KEY,
    HEADER_REASON,
    TASKS,
)
from gateway.catalogue.fields import PROVIDED, MissingField, present, select
from gateway.catalogue.model import Catalogue, Matter, Step
from gateway.orchestration import clock, notices
from gateway.orchestration.messages import ResultMessage, routing_key, task_message
from gateway.orchestration.notices import results_pack as results_pack
from gateway.orchestration.records import (
    CLOCK_STOPS,
    TERMINAL,
    CaseState,
    Context,
    Outgoing,
    PollTimer,
    TaskRecord,
    TaskStatus,
    TimelineEntry,
    Transition,
    stale_interim,
)
from gateway.store.records import ApplicationStatus

FINAL_APPLICATION = frozenset(
    {
        ApplicationStatus.COMPLETED,
        ApplicationStatus.DELIVERED,
        ApplicationStatus.REJECTED,
        ApplicationStatus.WITHDRAWN,
    }
)


class NotAllowed(Exception):
    """The event does not fit the application's state (→ 409 for an HTTP caller)."""


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
    _advance(tr, state, ctx, matter, tasks, envelope, {})
    return tr


def on_result(state: CaseState, ctx: Context, result: ResultMessage) -> Transition:
    app = state.application
    tasks = {t.step: t for t in state.tasks}
    task = next((t for t in state.tasks if t.id == result.task_id), None)
    if task is None or task.status in TERMINAL or result.attempt != task.attempt:
        return Transition()  # unknown, already decided, or an answer to an older attempt
    if app.status in FINAL_APPLICATION:
        return Transition()
    matter = ctx.catalogue.matter(app.matter)
    envelope = json.loads(app.envelope_json)
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
    _advance(tr, state, ctx, matter, tasks, envelope, provided)
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
    _advance(tr, state, ctx, matter, tasks, json.loads(envelope_json), dict(state.provided))
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
    _advance(tr, state, ctx, matter, tasks, json.loads(app.envelope_json), dict(state.provided))
    return tr


def task_outgoing(
    state: CaseState, catalogue: Catalogue, task: TaskRecord
) -> tuple[Outgoing, Step]:
    """The task message of ``task``'s current attempt, rebuilt from the case (for a
    dead letter the gateway writes itself, e.g. a status query the department refused)."""
    app = state.application
    step = catalogue.matter(app.matter).step(task.step)
    envelope = json.loads(app.envelope_json)
    fields = _available(envelope, step.needs, state.provided)
    version = state.catalogue_version or catalogue.version
    return _task_outgoing(task, step, fields, version), step


def synthetic_letter(
    task: TaskRecord,
    step: Step,
    envelope: Mapping[str, Any],
    provided: Mapping[str, str],
    catalogue_version: str,
    reason: str,
) -> Outgoing:
    """A dead letter for a task that failed without a message to park (a field missing at
    dispatch, a refused status query): its task message as it would have been sent, through
    ``gw.dlx`` with the reason — so an operator replays it like any other."""
    fields = _available(envelope, step.needs, provided)
    return dead_letter_of(_task_outgoing(task, step, fields, catalogue_version), reason)


def dead_letter_of(
    o: Outgoing, reason: str, kind: str = "permanent", extra: Mapping[str, Any] | None = None
) -> Outgoing:
    """``o`` as a dead letter through ``gw.dlx``, with the headers ``park`` would add."""
    m = o.message
    headers = {
        **m.headers,
        **(extra or {}),
        HEADER_REASON: reason[:2000],
        HEADER_ERROR_KIND: kind,
        HEADER_ORIGINAL_EXCHANGE: o.exchange,
        HEADER_ORIGINAL_ROUTING_KEY: o.routing_key,
    }
    message = Message(
        body=m.body,
        message_id=uuid7(),  # kept in the outbox row: a republish parks the same letter
        correlation_id=m.correlation_id,
        headers=headers,
        content_type=m.content_type,
    )
    return Outgoing(DLX, o.routing_key, message)


def _available(
    envelope: Mapping[str, Any], needs: Iterable[str], provided: Mapping[str, str]
) -> dict[str, Any]:
    """``select`` without the ``provided.<name>`` values nobody provided."""
    head = f"{PROVIDED}."
    have = [n for n in needs if not n.startswith(head) or n[len(head) :] in provided]
    return select(envelope, have, provided)


def _task_outgoing(
    task: TaskRecord, step: Step, fields: dict[str, Any], catalogue_version: str
) -> Outgoing:
    request = DepartmentRequest(
        task_id=task.request_id,
        application_id=task.application_id,
        matter=task.matter,
        task=step.key,
        system=step.system,
        operation=step.operation,
        attempt=task.attempt,
        fields=fields,
    )
    return Outgoing(
        TASKS,
        routing_key(step.system, task.matter, step.key),
        task_message(request, catalogue_version),
    )


def _said(order: ReplayOrder) -> dict[str, str]:
    return {"summary": f"replayed by {order.operator}: {order.reason}"}


# --- internals --------------------------------------------------------------------------


def _advance(
    tr: Transition,
    state: CaseState,
    ctx: Context,
    matter: Matter,
    tasks: dict[str, TaskRecord],
    envelope: Mapping[str, Any],
    provided: Mapping[str, str],
) -> None:
    """Cancel what can no longer run, dispatch what became ready, settle the status."""
    changed = True
    while changed:
        changed = False
        for step in matter.steps:
            task = tasks[step.key]
            if task.status is not TaskStatus.WAITING:
                continue
            deps = [tasks[d] for d in step.depends_on]
            blocked = [d for d in deps if d.status in (TaskStatus.DENIED, TaskStatus.CANCELLED)]
            if blocked:
                dep = blocked[0]
                if all(_not_applicable(d) for d in blocked):
                    reason = f"not applicable: {dep.step} does not apply"
                else:
                    reason = f"cancelled: {dep.step} was {dep.status.value}"
                tasks[step.key] = replace(
                    task,
                    status=TaskStatus.CANCELLED,
                    reason=reason,
                    finished_at=ctx.now,
                    updated_at=ctx.now,
                )
                tr.timeline.append(
                    TimelineEntry(ctx.now, "task.cancelled", task.id, {"reason": reason})
                )
                changed = True
            elif all(d.status is TaskStatus.COMPLETED for d in deps):
                tasks[step.key] = _dispatch(tr, state, ctx, step, task, envelope, provided)
    originals = {t.step: t for t in state.tasks}
    tr.tasks.extend(t for k, t in tasks.items() if originals.get(k) != t)
    _settle(tr, state, ctx, matter, tasks)


def _dispatch(
    tr: Transition,
    state: CaseState,
    ctx: Context,
    step: Step,
    task: TaskRecord,
    envelope: Mapping[str, Any],
    provided: Mapping[str, str],
) -> TaskRecord:
    app = state.application
    new = replace(
        task,
        status=TaskStatus.DISPATCHED,
        attempt=task.attempt + 1,
        dispatched_at=ctx.now,
        updated_at=ctx.now,
    )
    restart = task.clock_stopped_at is not None and task.due_at is not None
    if not restart:
        new = replace(new, clock_started_at=ctx.now, due_at=clock.due(step, ctx.now, ctx))
    version = tr.catalogue_version or state.catalogue_version or ctx.catalogue.version
    try:
        fields = select(envelope, step.needs, provided)
    except MissingField as exc:
        reason = f"cannot dispatch {step.key}: {exc}"
        tr.status = ApplicationStatus.BLOCKED
        tr.timeline.append(
            TimelineEntry(ctx.now, "task.dead_lettered", task.id, {"reason": reason})
        )
        notices.event(
            tr,
            state,
            ctx,
            "application.blocked",
            (app.id, task.id, "dispatch"),
            {"step": step.key, "reason": reason},
        )
        # the attempt that could not be sent, parked as a dead letter so that an operator
        # replays it (or an edited copy adding the missing field) like any other
        failed = replace(
            task,
            status=TaskStatus.DEAD_LETTERED,
            reason=reason,
            attempt=new.attempt,
            updated_at=ctx.now,
        )
        tr.outbox.append(synthetic_letter(failed, step, envelope, provided, version, reason))
        return failed
    tr.outbox.append(_task_outgoing(new, step, fields, version))
    tr.timeline.append(
        TimelineEntry(
            ctx.now,
            "task.dispatched",
            task.id,
            {
                "system": step.system,
                "attempt": new.attempt,
                "due_at": new.due_at,
                **clock.detail(ctx, new.clock_started_at, new.due_at),
            },
        )
    )
    if restart:  # corrected: the clock goes on from where it stopped
        new = clock.restart(tr, state, ctx, new, "corrected")
    notices.event(
        tr,
        state,
        ctx,
        "task.dispatched",
        (task.id, str(new.attempt)),
        {
            "step": step.key,
            "system": step.system,
            "due_at": new.due_at,
            **clock.task_estimate(new, ctx.timezone, ctx.calendar),
        },
    )
    return new


def _settle(
    tr: Transition, state: CaseState, ctx: Context, matter: Matter, tasks: Mapping[str, TaskRecord]
) -> None:
    app = state.application
    current = tr.status or app.status
    all_tasks = list(tasks.values())
    if all(t.status in TERMINAL for t in all_tasks):
        not_applicable = {t.step for t in all_tasks if _not_applicable(t)}
        failed = [
            t
            for t in all_tasks
            if t.status is not TaskStatus.COMPLETED
            and t.step not in not_applicable
            and matter.step(t.step).mandatory
        ]
        pack = results_pack(all_tasks, matter)
        if failed:
            tr.status = ApplicationStatus.REJECTED
            reasons = [
                {"step": t.step, "status": t.status.value, "reason": t.reason} for t in failed
            ]
            tr.timeline.append(
                TimelineEntry(ctx.now, "application.rejected", detail={"reasons": reasons})
            )
            notices.event(
                tr,
                state,
                ctx,
                "application.rejected",
                (app.id,),
                {"reasons": reasons, "results": pack},
            )
        else:
            tr.status = ApplicationStatus.COMPLETED
            tr.timeline.append(TimelineEntry(ctx.now, "application.completed"))
            notices.event(tr, state, ctx, "application.completed", (app.id,), {"results": pack})
        return
    if any(t.status is TaskStatus.CORRECTION_REQUESTED for t in all_tasks):
        if current is not ApplicationStatus.CORRECTION_REQUESTED or tr.timeline:
            gaps = [{"step": t.step, **g} for t in all_tasks for g in t.gaps]
            tr.status = ApplicationStatus.CORRECTION_REQUESTED
            notices.event(
                tr,
                state,
                ctx,
                "application.correction_requested",
                (app.id, str(len(gaps)), *sorted(g["field"] for g in gaps)),
                {"gaps": gaps},
            )
        return
    if any(t.status is TaskStatus.DEAD_LETTERED for t in all_tasks):
        if app.status is not ApplicationStatus.BLOCKED:
            tr.status = ApplicationStatus.BLOCKED
        return
    if current is not ApplicationStatus.IN_PROGRESS:
        tr.status = ApplicationStatus.IN_PROGRESS


def _not_applicable(task: TaskRecord) -> bool:
    """Cancelled because its ``when`` condition (or a dependency's) did not hold."""
    return task.status is TaskStatus.CANCELLED and (task.reason or "").startswith("not applicable")
