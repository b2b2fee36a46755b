"""How a case moves on after any event: cancel what can no longer run, dispatch what
became ready, settle the application's status. Pure, like the rest of the planner."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

from gateway.catalogue.fields import MissingField, select
from gateway.catalogue.model import Matter, Step
from gateway.orchestration import clock, notices
from gateway.orchestration.notices import results_pack
from gateway.orchestration.records import (
    TERMINAL,
    CaseState,
    Context,
    TaskRecord,
    TaskStatus,
    TimelineEntry,
    Transition,
)
from gateway.orchestration.task_requests import outgoing_for, synthetic_letter
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


class Envelope(Mapping[str, Any]):
    """An application's stored envelope JSON, decoded when first read: most answers
    dispatch nothing, and only a dispatch reads the envelope."""

    __slots__ = ("_data", "_text")

    def __init__(self, text: str) -> None:
        self._text = text
        self._data: dict[str, Any] | None = None

    def _decoded(self) -> dict[str, Any]:
        if self._data is None:
            self._data = dict(json.loads(self._text))
        return self._data

    def __getitem__(self, key: str) -> Any:
        return self._decoded()[key]

    def __contains__(self, key: object) -> bool:
        return key in self._decoded()

    def __iter__(self) -> Iterator[str]:
        return iter(self._decoded())

    def __len__(self) -> int:
        return len(self._decoded())


def advance(
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
                if all(not_applicable(d) for d in blocked):
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
    tr.outbox.append(outgoing_for(new, step, fields, version))
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
        skipped = {t.step for t in all_tasks if not_applicable(t)}
        failed = [
            t
            for t in all_tasks
            if t.status is not TaskStatus.COMPLETED
            and t.step not in skipped
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


def not_applicable(task: TaskRecord) -> bool:
    """Cancelled because its ``when`` condition (or a dependency's) did not hold."""
    return task.status is TaskStatus.CANCELLED and (task.reason or "").startswith("not applicable")
