"""The planner's operator paths as pure functions: replay (``on_replay``), cancel
(``on_cancel``) and the dead letters the gateway writes itself (a field missing at
dispatch)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from gateway.orchestration import planner
from gateway.orchestration.messages import ResultMessage
from gateway.orchestration.records import CaseState, Outgoing, TaskStatus, Transition
from gateway.store.records import ApplicationStatus
from tests.unit.test_planner import answer, apply, ctx, events, new_case


def dead(state: CaseState, step: str) -> CaseState:
    task = state.task(step)
    result = ResultMessage(
        task.id, "app1", task.system, "dead_lettered", task.attempt, reason="refused"
    )
    return apply(state, planner.on_result(state, ctx(), result))


def order(state: CaseState, step: str, **kw: object) -> planner.ReplayOrder:
    task = state.task(step)
    o = planner.ReplayOrder(
        task.id,
        task.attempt,
        "lead",
        "department back",
        7,
        Outgoing("gw.tasks", f"{task.system}.newborn.{step}", _message(task.request_id)),
    )
    return replace(o, **kw)  # type: ignore[arg-type]


def _message(key: str) -> planner.Message:
    return planner.Message(body=b"{}", headers={"x-task-id": key})


def two_dead_lettered() -> CaseState:
    state = apply(new_case(), planner.start(new_case(), ctx()))
    state, _ = answer(state, "birth_certificate", provides={"birth_certificate_no": "A123456789"})
    return dead(dead(state, "hukou"), "vaccination")


def test_replaying_one_of_two_dead_lettered_tasks_leaves_the_application_blocked() -> None:
    state = two_dead_lettered()
    assert state.application.status is ApplicationStatus.BLOCKED
    tr = planner.on_replay(state, ctx(), order(state, "hukou"))
    assert tr.status is None  # still blocked: vaccination waits for an operator too
    assert [t.status for t in tr.tasks] == [TaskStatus.DISPATCHED]
    state = apply(state, tr)
    tr = planner.on_replay(state, ctx(), order(state, "vaccination"))
    assert tr.status is ApplicationStatus.IN_PROGRESS  # the last one un-blocks it


def test_the_portal_hears_that_the_application_moves_again() -> None:
    state = dead(apply(new_case(), planner.start(new_case(), ctx())), "birth_certificate")
    tr = planner.on_replay(state, ctx(), order(state, "birth_certificate"))
    [event] = [o for o in tr.outbox if o.exchange == "gw.events"]
    body = json.loads(event.message.body)
    assert body["event"] == "task.dispatched" and event.routing_key.endswith("task.dispatched")
    assert body["data"]["replayed"] is True
    assert body["data"]["application_status"] == "in_progress"


def test_an_old_attempt_letter_does_nothing_beside_a_newer_live_attempt() -> None:
    state = dead(apply(new_case(), planner.start(new_case(), ctx())), "birth_certificate")
    old = order(state, "birth_certificate")
    edited = replace(old, edited_key="app1.birth_certificate.r1")
    state = apply(state, planner.on_replay(state, ctx(), edited))
    assert state.task("birth_certificate").attempt == 2  # the edited copy is live
    tr = planner.on_replay(state, ctx(), replace(old, force=True))
    assert tr.outbox == [] and tr.tasks == []  # not the old request beside the live one
    assert [e.kind for e in tr.timeline] == ["task.replay_skipped"]


def test_a_field_missing_at_dispatch_is_parked_as_a_dead_letter_to_replay() -> None:
    state = apply(new_case(), planner.start(new_case(), ctx()))
    state, tr = answer(state, "birth_certificate", provides={})  # no birth_certificate_no
    letters = {o.routing_key: o for o in tr.outbox if o.exchange == "gw.dlx"}
    assert set(letters) == {"hukou.newborn.hukou", "cdc.newborn.vaccination"}
    hukou = letters["hukou.newborn.hukou"].message
    assert hukou.headers["x-original-exchange"] == "gw.tasks"
    assert hukou.headers["x-original-routing-key"] == "hukou.newborn.hukou"
    assert hukou.headers["x-error-kind"] == "permanent"
    assert "provided.birth_certificate_no" in hukou.headers["x-reason"]
    body = json.loads(hukou.body)
    assert body["task_id"] == hukou.headers["x-task-id"] == "app1.hukou"
    assert "provided" not in body["fields"] and body["fields"]["subjects"]  # what there was
    task = state.task("hukou")
    assert (task.status, task.attempt) == (TaskStatus.DEAD_LETTERED, body["attempt"])
    # so an operator's replay of it applies to the task (same attempt)
    replayed = planner.on_replay(state, ctx(), order(state, "hukou"))
    assert [t.status for t in replayed.tasks] == [TaskStatus.DISPATCHED]


def _cancel(state: CaseState, step: str) -> Transition:
    task = state.task(step)
    o = planner.CancelOrder(task.id, task.attempt, "lead", "citizen withdrew by phone", 9)
    return planner.on_cancel(state, ctx(), o)


def test_cancelling_a_dead_lettered_task_moves_the_application_on() -> None:
    state = two_dead_lettered()
    tr = _cancel(state, "hukou")
    by_step = {t.step: t for t in tr.tasks}
    assert by_step["hukou"].status is TaskStatus.CANCELLED
    assert "lead" in (by_step["hukou"].reason or "")
    # its dependents cannot run without it; vaccination still keeps the application blocked
    assert by_step["medical_insurance"].status is TaskStatus.CANCELLED
    assert tr.status is None and apply(state, tr).application.status is ApplicationStatus.BLOCKED
    state = apply(state, tr)
    tr = _cancel(state, "vaccination")  # nothing open any more: a mandatory step failed
    assert tr.status is ApplicationStatus.REJECTED
    assert "application.rejected" in events(tr)


def test_cancelling_while_other_tasks_run_puts_the_application_back_in_progress() -> None:
    state = two_dead_lettered()
    state = apply(state, planner.on_replay(state, ctx(), order(state, "vaccination")))
    tr = _cancel(state, "hukou")
    assert tr.status is ApplicationStatus.IN_PROGRESS


def test_only_a_task_still_dead_lettered_by_that_attempt_is_cancelled() -> None:
    state = two_dead_lettered()
    state = apply(state, planner.on_replay(state, ctx(), order(state, "hukou")))
    with pytest.raises(planner.NotAllowed):
        _cancel(state, "hukou")  # dispatched again: not the operator's to cancel now
