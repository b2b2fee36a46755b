"""Escalation rules, pure: the threshold maths and raising each threshold once."""

from __future__ import annotations

import json
import zoneinfo
from dataclasses import replace

import pytest

from gateway.catalogue.model import load
from gateway.orchestration import escalation
from gateway.orchestration.records import CaseState, Context, TaskRecord, TaskStatus
from gateway.store.records import ApplicationRecord, ApplicationStatus

TZ = zoneinfo.ZoneInfo("Asia/Shanghai")
START = 1_794_981_600.0
DUE = START + 10_000.0  # due-soon at START + 8 000 with the default share


def task(**changes: object) -> TaskRecord:
    base = TaskRecord(
        id="app1.hukou",
        application_id="app1",
        matter="newborn",
        step="hukou",
        system="hukou",
        operation="register",
        status=TaskStatus.SUBMITTED,
        depends_on=(),
        attempt=1,
        clock_started_at=START,
        due_at=DUE,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def case(t: TaskRecord) -> CaseState:
    app = ApplicationRecord(
        id="app1",
        portal_id="window",
        idempotency_key="k",
        channel="http",
        matter="newborn",
        schema_version="1.0",
        status=ApplicationStatus.IN_PROGRESS,
        envelope_json="{}",
        created_at=START,
        updated_at=START,
        accepted_at=START,
        version=1,
    )
    return CaseState(app, "2026.1", {}, (t,))


def ctx(now: float) -> Context:
    return Context(load(), now, TZ, {})


def test_due_soon_is_the_share_of_the_budget() -> None:
    assert escalation.due_soon_at(task()) == START + 8_000
    assert escalation.due_soon_at(task(), share=0.5) == START + 5_000
    assert escalation.due_soon_at(task(due_at=None)) is None


@pytest.mark.parametrize(
    ("offset", "expected"),
    [
        (7_999, None),
        (8_000, "due_soon"),
        (9_999, "due_soon"),
        (10_000, "overdue"),
        (99_999, "overdue"),
    ],
)
def test_threshold_crossed(offset: float, expected: str | None) -> None:
    assert escalation.crossed(task(), START + offset) == expected


@pytest.mark.parametrize(
    "status",
    [
        TaskStatus.WAITING,
        TaskStatus.CORRECTION_REQUESTED,
        TaskStatus.SUSPENDED,
        TaskStatus.COMPLETED,
    ],
)
def test_only_running_clocks_escalate(status: TaskStatus) -> None:
    assert escalation.crossed(task(status=status), DUE + 1) is None
    assert escalation.crossed(task(clock_stopped_at=START + 1), DUE + 1) is None


def test_each_threshold_is_raised_once() -> None:
    t = task()
    assert escalation.to_raise(t, START + 8_500) == "due_soon"
    assert escalation.to_raise(replace(t, escalated="due_soon"), START + 8_500) is None
    assert escalation.to_raise(replace(t, escalated="due_soon"), DUE) == "overdue"
    assert escalation.to_raise(replace(t, escalated="overdue"), DUE + 5) is None
    # found already overdue (scheduler was down): only the higher threshold
    assert escalation.to_raise(t, DUE + 5) == "overdue"


def test_on_deadline_raises_an_event_with_a_stable_id_and_remembers_it() -> None:
    state = case(task())
    tr = escalation.on_deadline(state, ctx(START + 8_500), "app1.hukou")
    assert [t.escalated for t in tr.tasks] == ["due_soon"]
    assert [e.kind for e in tr.timeline] == ["task.due_soon"]
    [out] = tr.outbox
    assert out.exchange == "gw.events" and out.routing_key == "window.newborn.task.due_soon"
    body = json.loads(out.message.body)
    assert body["data"]["threshold"] == "due_soon" and body["data"]["late_seconds"] == 0
    # a repeat (after a crash, before the commit) carries the same event id
    again = escalation.on_deadline(state, ctx(START + 9_000), "app1.hukou")
    assert json.loads(again.outbox[0].message.body)["event_id"] == body["event_id"]
    # once remembered: nothing more until the due time
    raised = case(tr.tasks[0])
    assert not escalation.on_deadline(raised, ctx(START + 9_000), "app1.hukou").changed
    late = escalation.on_deadline(raised, ctx(DUE + 60), "app1.hukou")
    late_body = json.loads(late.outbox[0].message.body)
    assert late_body["event"] == "task.overdue" and late_body["data"]["late_seconds"] == 60
    assert late_body["event_id"] != body["event_id"]
    assert not escalation.on_deadline(case(late.tasks[0]), ctx(DUE + 999), "app1.hukou").changed


def test_a_new_attempt_gets_new_event_ids() -> None:
    first = escalation.on_deadline(case(task()), ctx(DUE), "app1.hukou")
    second = escalation.on_deadline(case(task(attempt=2)), ctx(DUE), "app1.hukou")
    ids = {json.loads(tr.outbox[0].message.body)["event_id"] for tr in (first, second)}
    assert len(ids) == 2


def test_a_stopped_clock_forgets_what_was_raised() -> None:
    stopped = task(status=TaskStatus.SUSPENDED, clock_stopped_at=DUE + 1, escalated="overdue")
    tr = escalation.on_deadline(case(stopped), ctx(DUE + 2), "app1.hukou")
    assert [t.escalated for t in tr.tasks] == [None] and tr.outbox == []
    assert [e.kind for e in tr.timeline] == ["task.escalation_reset"]
    assert not escalation.on_deadline(case(tr.tasks[0]), ctx(DUE + 3), "app1.hukou").changed


def test_unknown_task_changes_nothing() -> None:
    assert not escalation.on_deadline(case(task()), ctx(DUE), "app1.nope").changed


def test_after_a_stop_a_threshold_on_the_moved_due_time_is_a_new_event() -> None:
    first = escalation.on_deadline(case(task()), ctx(DUE + 60), "app1.hukou")
    first_id = json.loads(first.outbox[0].message.body)["event_id"]
    # suspended, escalation forgotten, resumed with the due time pushed by the stop
    resumed = replace(first.tasks[0], escalated=None, due_at=DUE + 3_600)
    again = escalation.on_deadline(case(resumed), ctx(DUE + 3_700), "app1.hukou")
    body = json.loads(again.outbox[0].message.body)
    assert body["event"] == "task.overdue" and body["event_id"] != first_id
    # a stop that moved nothing (outside office hours): the same overdue, the same id
    unmoved = replace(first.tasks[0], escalated=None)
    same = escalation.on_deadline(case(unmoved), ctx(DUE + 120), "app1.hukou")
    assert json.loads(same.outbox[0].message.body)["event_id"] == first_id
