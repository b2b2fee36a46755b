"""The process manager's rules, as pure functions over the real catalogue."""

from __future__ import annotations

import datetime as dt
import json
import zoneinfo
from dataclasses import replace
from typing import Any

import pytest

from gateway.catalogue.model import load
from gateway.orchestration import planner
from gateway.orchestration.messages import ResultMessage
from gateway.orchestration.records import CaseState, TaskStatus, Transition
from gateway.store.records import ApplicationRecord, ApplicationStatus
from tests.support.portal import example_json

TZ = zoneinfo.ZoneInfo("Asia/Shanghai")
NOW = 1_794_981_600.0  # Wednesday 2026-11-18 14:00 in Shanghai


def ctx(now: float = NOW) -> planner.Context:
    return planner.Context(load(), now, TZ, {"hukou": 60.0, "provincial": 300.0})


def new_case(example: str = "newborn-yizhang-window", **envelope_changes: Any) -> CaseState:
    envelope = example_json(example)
    envelope["subjects"].update(envelope_changes)
    app = ApplicationRecord(
        id="app1",
        portal_id="window",
        idempotency_key="k",
        channel="http",
        matter=envelope["matter"],
        schema_version="1.0",
        status=ApplicationStatus.ACCEPTED,
        envelope_json=json.dumps(envelope, ensure_ascii=False),
        created_at=NOW,
        updated_at=NOW,
        accepted_at=NOW,
        version=1,
    )
    return CaseState(app, None, {}, ())


def apply(state: CaseState, tr: Transition) -> CaseState:
    """What the store does with a transition, in memory."""
    tasks = {t.id: t for t in state.tasks}
    tasks.update({t.id: t for t in tr.tasks})
    app = state.application
    if tr.status:
        app = replace(app, status=tr.status)
    if tr.envelope_json:
        app = replace(app, envelope_json=tr.envelope_json)
    order = [t.id for t in state.tasks] + [
        t.id for t in tr.tasks if t.id not in {x.id for x in state.tasks}
    ]
    return CaseState(
        app,
        tr.catalogue_version or state.catalogue_version,
        tr.provided if tr.provided is not None else state.provided,
        tuple(tasks[i] for i in order),
    )


def dispatched(tr: Transition) -> dict[str, dict[str, Any]]:
    """step → task message body, for every task the transition sends."""
    out = {}
    for o in tr.outbox:
        if o.exchange == "gw.tasks":
            body = json.loads(o.message.body)
            out[body["task"]] = body
    return out


def events(tr: Transition) -> list[str]:
    return [o.message.type or "" for o in tr.outbox if o.exchange == "gw.events"]


def answer(
    state: CaseState, step: str, outcome: str = "completed", **kw: Any
) -> tuple[CaseState, Transition]:
    task = state.task(step)
    receipt = ResultMessage(
        task.id, "app1", task.system, "receipt", task.attempt, case_number=f"C-{step}"
    )
    state = apply(state, planner.on_result(state, ctx(), receipt))
    result = ResultMessage(
        task.id, "app1", task.system, "decision", task.attempt, outcome=outcome, **kw
    )
    tr = planner.on_result(state, ctx(), result)
    return apply(state, tr), tr


def test_start_dispatches_only_steps_without_dependencies() -> None:
    tr = planner.start(new_case(), ctx())
    assert tr.status is ApplicationStatus.IN_PROGRESS and tr.catalogue_version == "2026.1"
    assert [t.step for t in tr.tasks] == [
        "birth_certificate",
        "vaccination",
        "hukou",
        "medical_insurance",
        "social_security_card",
    ]
    sent = dispatched(tr)
    assert list(sent) == ["birth_certificate"]
    assert sent["birth_certificate"]["task_id"] == "app1.birth_certificate"
    assert events(tr) == ["application.accepted", "task.dispatched"]


def test_a_department_gets_only_the_fields_its_step_needs() -> None:
    body = dispatched(planner.start(new_case(), ctx()))["birth_certificate"]
    assert set(body["fields"]) == {"subjects"}
    assert set(body["fields"]["subjects"]) == {"child", "mother", "father", "hospital"}
    assert "applicant" not in json.dumps(body)  # the applicant's phone stays home


def test_duplicate_accepted_message_changes_nothing() -> None:
    state = apply(new_case(), planner.start(new_case(), ctx()))
    assert not planner.start(state, ctx()).changed


def test_dependency_order_and_what_each_step_provides() -> None:
    state = apply(new_case(), planner.start(new_case(), ctx()))
    state, tr = answer(
        state,
        "birth_certificate",
        provides={"birth_certificate_no": "A123456789"},
        certificate="A123456789",
    )
    sent = dispatched(tr)
    assert set(sent) == {"vaccination", "hukou"}
    assert sent["hukou"]["fields"]["provided"] == {"birth_certificate_no": "A123456789"}
    state, tr = answer(state, "hukou", provides={"citizen_id": "43102220261120001X"})
    sent = dispatched(tr)
    assert set(sent) == {"medical_insurance", "social_security_card"}
    assert sent["medical_insurance"]["fields"]["provided"] == {"citizen_id": "43102220261120001X"}
    for step in ("vaccination", "medical_insurance"):
        state, tr = answer(state, step)
        assert tr.status is None or tr.status is ApplicationStatus.IN_PROGRESS
    state, tr = answer(state, "social_security_card", certificate="SSC-1")
    assert tr.status is ApplicationStatus.COMPLETED
    [done] = [o for o in tr.outbox if o.message.type == "application.completed"]
    pack = json.loads(done.message.body)["data"]["results"]
    assert {p["step"]: p["case_number"] for p in pack}["hukou"] == "C-hukou"
    assert {p["step"]: p["certificate"] for p in pack}["birth_certificate"] == "A123456789"


def test_receipt_starts_the_clock_and_a_poll_timer_for_polled_systems() -> None:
    state = apply(new_case(), planner.start(new_case(), ctx()))
    state, _ = answer(state, "birth_certificate", provides={"birth_certificate_no": "A1"})
    hukou = state.task("hukou")
    tr = planner.on_result(
        state,
        ctx(NOW + 5),
        ResultMessage(
            hukou.id, "app1", "hukou", "receipt", 1, case_number="P-1", accepted_at=NOW + 3
        ),
    )
    [task] = tr.tasks
    assert (task.status, task.case_number, task.clock_started_at) == (
        TaskStatus.SUBMITTED,
        "P-1",
        NOW + 3,
    )
    # 2 working hours; the receipt came at 14:00, in the lunch break, so they count from 14:30
    assert task.due_at == NOW + 2.5 * 3600
    assert [(t.task_id, t.due_at) for t in tr.timers] == [(hukou.id, NOW + 5 + 60.0)]


def test_only_an_answer_that_dispatches_reads_the_envelope() -> None:
    """The envelope is decoded for a dispatch only: with the stored text broken, an answer
    that dispatches nothing still applies, and one that dispatches fails on it."""
    state = apply(new_case(), planner.start(new_case(), ctx()))
    broken = replace(state, application=replace(state.application, envelope_json="{broken"))
    task = broken.task("birth_certificate")
    receipt = ResultMessage(task.id, "app1", "hospital", "receipt", 1, case_number="H-1")
    tr = planner.on_result(broken, ctx(), receipt)
    assert [t.status for t in tr.tasks] == [TaskStatus.SUBMITTED]
    done = ResultMessage(
        task.id, "app1", "hospital", "decision", 1, outcome="completed",
        provides={"birth_certificate_no": "A1"},
    )  # fmt: skip
    with pytest.raises(json.JSONDecodeError):
        planner.on_result(apply(broken, tr), ctx(), done)
    assert set(dispatched(planner.on_result(apply(state, tr), ctx(), done))) == {
        "vaccination",
        "hukou",
    }


def test_duplicate_late_and_stale_results_change_nothing() -> None:
    state = apply(new_case(), planner.start(new_case(), ctx()))
    state, _ = answer(state, "birth_certificate", provides={"birth_certificate_no": "A1"})
    task = state.task("birth_certificate")
    again = ResultMessage(task.id, "app1", "hospital", "decision", 1, outcome="denied")
    assert not planner.on_result(state, ctx(), again).changed
    hukou = state.task("hukou")
    stale = ResultMessage(hukou.id, "app1", "hukou", "decision", 0, outcome="completed")
    assert not planner.on_result(state, ctx(), stale).changed
    unknown = ResultMessage("app1.nope", "app1", "hukou", "decision", 1, outcome="completed")
    assert not planner.on_result(state, ctx(), unknown).changed


def test_a_denied_step_cancels_its_dependents_with_the_reason() -> None:
    state = apply(new_case(), planner.start(new_case(), ctx()))
    state, _ = answer(state, "birth_certificate", provides={"birth_certificate_no": "A1"})
    state, tr = answer(state, "hukou", outcome="denied", reason="household head not found")
    cancelled = {t.step: t.reason for t in tr.tasks if t.status is TaskStatus.CANCELLED}
    assert cancelled == {
        "medical_insurance": "cancelled: hukou was denied",
        "social_security_card": "cancelled: hukou was denied",
    }
    state, tr = answer(state, "vaccination")
    assert tr.status is ApplicationStatus.REJECTED
    [rejected] = [o for o in tr.outbox if o.message.type == "application.rejected"]
    reasons = json.loads(rejected.message.body)["data"]["reasons"]
    assert reasons[0] == {"step": "hukou", "status": "denied", "reason": "household head not found"}


def test_corrections_gather_every_gap_in_one_notice_and_rerun_only_those_tasks() -> None:
    state = apply(new_case(), planner.start(new_case(), ctx()))
    state, _ = answer(state, "birth_certificate", provides={"birth_certificate_no": "A1"})
    state, tr = answer(
        state,
        "hukou",
        outcome="correction_requested",
        gaps=({"field": "subjects.household.address_detail", "message": "house number missing"},),
    )
    assert tr.status is ApplicationStatus.CORRECTION_REQUESTED
    state, tr = answer(
        state,
        "vaccination",
        outcome="correction_requested",
        gaps=({"field": "subjects.vaccination.bcg_at", "message": "no BCG date"},),
    )
    [notice] = [o for o in tr.outbox if o.message.type == "application.correction_requested"]
    gaps = json.loads(notice.message.body)["data"]["gaps"]
    assert {g["field"] for g in gaps} == {
        "subjects.household.address_detail",
        "subjects.vaccination.bcg_at",
    }

    corrected = json.loads(state.application.envelope_json)
    corrected["subjects"]["household"]["address_detail"] = "人民路 58 号 2 栋"
    tr = planner.on_correction(
        state,
        ctx(),
        json.dumps(corrected, ensure_ascii=False),
        ["subjects.household.address_detail"],
    )
    sent = dispatched(tr)
    assert set(sent) == {"hukou", "vaccination"}  # only the tasks that asked
    assert sent["hukou"]["task_id"] == "app1.hukou.c1" and sent["hukou"]["attempt"] == 2
    assert sent["hukou"]["fields"]["subjects"]["household"]["address_detail"].endswith("2 栋")
    assert tr.status is ApplicationStatus.IN_PROGRESS


def test_correction_is_refused_when_nobody_asked() -> None:
    state = apply(new_case(), planner.start(new_case(), ctx()))
    with pytest.raises(planner.NotAllowed, match="no department asked"):
        planner.on_correction(state, ctx(), state.application.envelope_json, [])


def test_steps_that_do_not_apply_are_cancelled_at_start() -> None:
    state = new_case(
        "after-death-mobile",
        heirs=[],
        vehicle_licence_no=None,
        property_certificate_nos=[],
        provident_fund_account=None,
    )
    tr = planner.start(state, ctx())
    skipped = {t.step for t in tr.tasks if t.status is TaskStatus.CANCELLED}
    assert skipped == {"kinship", "driving_licence", "property_inheritance", "provident_fund"}
    assert list(dispatched(tr)) == ["death_certificate"]


def test_withdrawal_and_delivery() -> None:
    state = apply(new_case(), planner.start(new_case(), ctx()))
    with pytest.raises(planner.NotAllowed, match="only a completed one"):
        planner.on_delivery(state, ctx())
    tr = planner.on_withdrawal(state, ctx(), "citizen changed their mind")
    assert tr.status is ApplicationStatus.WITHDRAWN
    assert {t.status for t in tr.tasks} == {TaskStatus.CANCELLED}
    state = apply(state, tr)
    with pytest.raises(planner.NotAllowed):
        planner.on_withdrawal(state, ctx(), "again")
    late = ResultMessage(
        "app1.birth_certificate", "app1", "hospital", "decision", 1, outcome="completed"
    )
    assert not planner.on_result(state, ctx(), late).changed


def test_a_dead_lettered_task_blocks_the_application_with_its_reason() -> None:
    state = apply(new_case(), planner.start(new_case(), ctx()))
    tr = planner.on_result(
        state,
        ctx(),
        ResultMessage(
            "app1.birth_certificate",
            "app1",
            "hospital",
            "dead_lettered",
            1,
            reason="hospital refused the request: missing mother's ID",
        ),
    )
    assert tr.status is ApplicationStatus.BLOCKED
    assert events(tr) == ["task.dead_lettered", "application.blocked"]


def test_a_step_that_did_not_provide_what_the_catalogue_promises_blocks_with_a_reason() -> None:
    state = apply(new_case(), planner.start(new_case(), ctx()))
    state, tr = answer(state, "birth_certificate", provides={})  # no birth_certificate_no
    assert tr.status is ApplicationStatus.BLOCKED
    blocked = {t.step: t.reason for t in tr.tasks if t.status is TaskStatus.DEAD_LETTERED}
    assert set(blocked) == {"vaccination", "hukou"}
    assert "provided.birth_certificate_no was not provided" in (blocked["hukou"] or "")
    assert "application.blocked" in events(tr)


def test_dependents_of_a_step_that_does_not_apply_do_not_apply_either() -> None:
    state = new_case(
        "after-death-mobile", heirs=[], vehicle_licence_no=None, provident_fund_account=None
    )
    tr = planner.start(state, ctx())
    reasons = {t.step: t.reason for t in tr.tasks}
    assert reasons["kinship"] == "not applicable: subjects.heirs is empty"
    # property inheritance needs the kinship verification: it cannot apply either
    assert reasons["property_inheritance"] in (
        "not applicable: kinship does not apply",
        "not applicable: subjects.property_certificate_nos is empty",
    )


@pytest.mark.parametrize("late", ["in_progress", "suspended"])
def test_a_late_interim_answer_does_not_undo_a_correction_request(late: str) -> None:
    state = apply(new_case(), planner.start(new_case(), ctx()))
    state, _ = answer(state, "birth_certificate", provides={"birth_certificate_no": "A1"})
    state, tr = answer(
        state,
        "vaccination",
        outcome="correction_requested",
        gaps=({"field": "subjects.vaccination.bcg_at", "message": "no date"},),
    )
    assert tr.status is ApplicationStatus.CORRECTION_REQUESTED
    task = state.task("vaccination")
    stale = ResultMessage(
        task.id, "app1", "cdc", "decision", task.attempt, outcome=late, case_number=task.case_number
    )
    assert not planner.on_result(state, ctx(), stale).changed


def test_a_suspended_task_resumes_and_repeated_polls_record_nothing() -> None:
    state = apply(new_case(), planner.start(new_case(), ctx()))
    state, _ = answer(state, "birth_certificate", provides={"birth_certificate_no": "A1"})
    hukou = state.task("hukou")
    state = apply(
        state,
        planner.on_result(
            state, ctx(), ResultMessage(hukou.id, "app1", "hukou", "receipt", 1, case_number="P-1")
        ),
    )
    suspended = ResultMessage(
        hukou.id,
        "app1",
        "hukou",
        "decision",
        1,
        outcome="suspended",
        case_number="P-1",
        reason="awaiting a DNA test",
    )
    state = apply(state, planner.on_result(state, ctx(), suspended))
    assert state.task("hukou").status is TaskStatus.SUSPENDED
    assert not planner.on_result(state, ctx(), suspended).changed  # the next poll
    resumed = ResultMessage(
        hukou.id, "app1", "hukou", "decision", 1, outcome="in_progress", case_number="P-1"
    )
    state = apply(state, planner.on_result(state, ctx(), resumed))
    assert state.task("hukou").status is TaskStatus.IN_PROGRESS
    assert not planner.on_result(state, ctx(), resumed).changed


def test_a_correction_does_not_rerun_tasks_still_in_progress() -> None:
    state = apply(new_case(), planner.start(new_case(), ctx()))
    state, _ = answer(state, "birth_certificate", provides={"birth_certificate_no": "A1"})
    vacc = state.task("vaccination")
    state = apply(
        state,
        planner.on_result(
            state,
            ctx(),
            ResultMessage(
                vacc.id, "app1", "cdc", "decision", 1, outcome="in_progress", case_number="V-1"
            ),
        ),
    )
    state, _ = answer(
        state,
        "hukou",
        outcome="correction_requested",
        gaps=({"field": "subjects.child.name", "message": "spelling"},),
    )
    tr = planner.on_correction(
        state, ctx(), state.application.envelope_json, ["subjects.child.name"]
    )
    assert set(dispatched(tr)) == {"hukou"}


# --- clocks that stop and start (DOMAIN §5) ----------------------------------------------


def local(y: int, m: int, d: int, hh: int, mm: int = 0) -> float:
    return dt.datetime(y, m, d, hh, mm, tzinfo=TZ).timestamp()


def on(state: CaseState, now: float, step: str, kind: str, **kw: Any) -> Transition:
    task = state.task(step)
    return planner.on_result(
        state, ctx(now), ResultMessage(task.id, "app1", task.system, kind, task.attempt, **kw)
    )


def clock_entries(tr: Transition) -> list[tuple[str, dict[str, Any]]]:
    return [(e.kind, dict(e.detail)) for e in tr.timeline if e.kind.startswith("task.clock_")]


def test_a_correction_stops_the_clock_and_the_redispatch_keeps_the_time_used() -> None:
    wed_0900 = local(2026, 11, 18, 9)
    state = apply(new_case(), planner.start(new_case(), ctx(wed_0900)))
    state = apply(state, on(state, wed_0900, "birth_certificate", "receipt"))
    done = {"outcome": "completed", "provides": {"birth_certificate_no": "A1"}}
    state = apply(state, on(state, wed_0900, "birth_certificate", "decision", **done))
    state = apply(state, on(state, wed_0900, "hukou", "receipt", case_number="P-1"))
    hukou = state.task("hukou")
    assert hukou.due_at == local(2026, 11, 18, 11)  # 2 working hours

    gap = ({"field": "subjects.child.name", "message": "spelling"},)
    asked = local(2026, 11, 18, 10)  # one hour used, one left
    tr = on(state, asked, "hukou", "decision", outcome="correction_requested", gaps=gap)
    state = apply(state, tr)
    assert state.task("hukou").clock_stopped_at == asked
    assert clock_entries(tr) == [("task.clock_stopped", {"reason": "correction_requested"})]

    thu_0900 = local(2026, 11, 19, 9)  # the citizen answers the next morning
    tr = planner.on_correction(
        state, ctx(thu_0900), state.application.envelope_json, ["subjects.child.name"]
    )
    state = apply(state, tr)
    hukou = state.task("hukou")
    # the hour left counts from the re-dispatch, not a new budget of two
    assert (hukou.attempt, hukou.status, hukou.due_at) == (
        2,
        TaskStatus.DISPATCHED,
        local(2026, 11, 19, 10),
    )
    assert (hukou.clock_started_at, hukou.clock_stopped_at) == (wed_0900, None)
    assert [e.kind for e in tr.timeline if e.task_id == hukou.id] == [
        "task.dispatched",
        "task.clock_started",
    ]
    [(_, started)] = clock_entries(tr)
    assert started["reason"] == "corrected" and started["stopped_at"] == asked
    assert (started["previous_due_at"], started["due_at"]) == (
        local(2026, 11, 18, 11),
        local(2026, 11, 19, 10),
    )

    # the department's receipt for the corrected attempt does not restart the budget
    tr = on(state, thu_0900 + 60, "hukou", "receipt", accepted_at=thu_0900 + 30)
    [task] = tr.tasks
    assert (task.due_at, task.clock_started_at) == (local(2026, 11, 19, 10), wed_0900)


def test_a_suspension_over_a_public_holiday_pushes_the_due_time_by_office_time() -> None:
    tue_1500 = local(2025, 9, 30, 15)  # the day before the National Day holiday (1-8 October)
    state = apply(new_case(), planner.start(new_case(), ctx(tue_1500)))
    done = {"outcome": "completed", "provides": {"birth_certificate_no": "A1"}}
    state = apply(state, on(state, tue_1500, "birth_certificate", "decision", **done))
    state = apply(state, on(state, tue_1500, "hukou", "receipt", case_number="P-1"))
    assert state.task("hukou").due_at == local(2025, 9, 30, 17)

    suspended = {"outcome": "suspended", "case_number": "P-1", "reason": "DNA test"}
    tr = on(state, local(2025, 9, 30, 16), "hukou", "decision", **suspended)
    state = apply(state, tr)
    assert clock_entries(tr) == [("task.clock_stopped", {"reason": "suspended"})]
    assert not on(state, local(2025, 10, 3, 10), "hukou", "decision", **suspended).changed

    resumed_at = local(2025, 10, 9, 10)  # first working day after the holiday
    tr = on(state, resumed_at, "hukou", "decision", outcome="in_progress", case_number="P-1")
    state = apply(state, tr)
    hukou = state.task("hukou")
    assert hukou.status is TaskStatus.IN_PROGRESS and hukou.clock_stopped_at is None
    assert hukou.due_at == local(2025, 10, 9, 11)  # the hour left, from 10:00
    [(kind, detail)] = clock_entries(tr)
    assert (kind, detail["reason"], detail["calendar"]) == (
        "task.clock_started",
        "suspension_ended",
        ctx().calendar.version,
    )


def test_a_suspended_task_asked_for_a_correction_keeps_its_first_stop() -> None:
    state = apply(new_case(), planner.start(new_case(), ctx()))
    state, _ = answer(state, "birth_certificate", provides={"birth_certificate_no": "A1"})
    state = apply(state, on(state, NOW, "hukou", "receipt", case_number="P-1"))
    state = apply(state, on(state, NOW + 60, "hukou", "decision", outcome="suspended"))
    gap = ({"field": "subjects.child.name", "message": "spelling"},)
    tr = on(state, NOW + 120, "hukou", "decision", outcome="correction_requested", gaps=gap)
    assert clock_entries(tr) == []
    assert apply(state, tr).task("hukou").clock_stopped_at == NOW + 60


def test_a_due_time_past_the_calendar_data_is_flagged() -> None:
    late = local(2027, 3, 1, 9)  # no State Council notice for 2027 in the data
    tr = planner.start(new_case(), ctx(late))
    [entry] = [e for e in tr.timeline if e.kind == "task.dispatched"]
    assert entry.detail["calendar_uncovered_years"] == [2027]
    tr = planner.start(new_case(), ctx())
    [entry] = [e for e in tr.timeline if e.kind == "task.dispatched"]
    assert "calendar_uncovered_years" not in entry.detail


def hukou_received(at: float) -> CaseState:
    """The newborn bundle started at ``at``; the birth certificate done; hukou's receipt at
    ``at`` (2 working hours)."""
    state = apply(new_case(), planner.start(new_case(), ctx(at)))
    done = {"outcome": "completed", "provides": {"birth_certificate_no": "A1"}}
    state = apply(state, on(state, at, "birth_certificate", "decision", **done))
    return apply(state, on(state, at, "hukou", "receipt", case_number="P-1"))


def test_a_task_decided_while_its_clock_is_stopped_closes_the_stop() -> None:
    # Wed 09:00, 2 h → due 11:00; suspended 10:00 (1 h used); completed 15:00, still
    # suspended: the stop ends with the decision and the due time moves by it (16:00)
    state = hukou_received(local(2026, 11, 18, 9))
    state = apply(
        state, on(state, local(2026, 11, 18, 10), "hukou", "decision", outcome="suspended")
    )
    tr = on(state, local(2026, 11, 18, 15), "hukou", "decision", outcome="completed")
    hukou = apply(state, tr).task("hukou")
    assert hukou.status is TaskStatus.COMPLETED and hukou.clock_stopped_at is None
    assert hukou.due_at == local(2026, 11, 18, 16)
    [(kind, detail)] = clock_entries(tr)
    assert (kind, detail["reason"], detail["stopped_at"]) == (
        "task.clock_started",
        "decided",
        local(2026, 11, 18, 10),
    )


def test_a_withdrawal_closes_a_stopped_clock() -> None:
    state = hukou_received(local(2026, 11, 18, 9))
    state = apply(
        state, on(state, local(2026, 11, 18, 10), "hukou", "decision", outcome="suspended")
    )
    tr = planner.on_withdrawal(state, ctx(local(2026, 11, 18, 15)), "moved away")
    hukou = apply(state, tr).task("hukou")
    assert hukou.status is TaskStatus.CANCELLED and hukou.clock_stopped_at is None
    assert [(k, d["reason"]) for k, d in clock_entries(tr)] == [("task.clock_started", "withdrawn")]


def test_the_receipt_that_moves_the_due_time_forgets_a_threshold_raised_before_it() -> None:
    wed_0900 = local(2026, 11, 18, 9)
    state = apply(new_case(), planner.start(new_case(), ctx(wed_0900)))
    done = {"outcome": "completed", "provides": {"birth_certificate_no": "A1"}}
    state = apply(state, on(state, wed_0900, "birth_certificate", "decision", **done))
    # overdue raised on the dispatch's due time (11:00) before the department's receipt
    hukou = replace(state.task("hukou"), escalated="overdue")
    state = replace(state, tasks=tuple(hukou if t.id == hukou.id else t for t in state.tasks))
    accepted = local(2026, 11, 18, 14, 30)
    tr = on(state, accepted + 60, "hukou", "receipt", case_number="P-1", accepted_at=accepted)
    [task] = tr.tasks
    assert (task.due_at, task.escalated) == (local(2026, 11, 18, 16, 30), None)
    # a receipt that moves nothing keeps what was raised
    same = on(state, wed_0900 + 60, "hukou", "receipt", case_number="P-1", accepted_at=wed_0900)
    assert same.tasks[0].escalated == "overdue"


def test_a_clock_restart_forgets_a_threshold_raised_before_the_stop() -> None:
    # no scheduler ran while the clock stood still, so the task still carries "overdue"
    state = hukou_received(local(2026, 11, 18, 9))
    state = apply(
        state, on(state, local(2026, 11, 18, 11, 30), "hukou", "decision", outcome="suspended")
    )
    hukou = replace(state.task("hukou"), escalated="overdue")
    state = replace(state, tasks=tuple(hukou if t.id == hukou.id else t for t in state.tasks))
    tr = on(state, local(2026, 11, 19, 9), "hukou", "decision", outcome="in_progress")
    assert apply(state, tr).task("hukou").escalated is None


def test_the_dispatch_event_says_whether_its_due_time_is_estimated() -> None:
    def dispatch_data(tr: Transition) -> dict[str, Any]:
        for o in tr.outbox:
            if o.message.type == "task.dispatched":
                data: dict[str, Any] = json.loads(o.message.body)["data"]
                return data
        raise AssertionError("no task.dispatched event")

    # Thu 31 Dec 2026 17:15: the birth certificate's half working hour runs into January
    # 2027, which has no notice in the calendar
    late = dispatch_data(planner.start(new_case(), ctx(local(2026, 12, 31, 17, 15))))
    assert (late["due_estimated"], late["calendar_uncovered_years"]) == (True, [2027])
    known = dispatch_data(planner.start(new_case(), ctx()))
    assert known["due_estimated"] is False and "calendar_uncovered_years" not in known


def test_a_decision_deletes_the_poll_timer_whatever_this_configuration_polls() -> None:
    # hospital is not polled here, but a timer row for its task may be there all the same:
    # written under an earlier configuration, or by another gateway process whose
    # configuration polls it; kept, it is never claimed (nobody polls the system) or claimed
    # and deleted by a poller that may race the task's next receipt and delete its new timer
    state = apply(new_case(), planner.start(new_case(), ctx()))
    task = state.task("birth_certificate")
    assert task.system == "hospital" and task.system not in ctx().poll_seconds
    here = ctx()
    receipt = ResultMessage(task.id, "app1", task.system, "receipt", 1, case_number="C-1")
    state = apply(state, planner.on_result(state, here, receipt))
    decision = ResultMessage(
        task.id,
        "app1",
        task.system,
        "decision",
        1,
        outcome="completed",
        provides={"birth_certificate_no": "A1"},
    )
    tr = planner.on_result(state, here, decision)
    assert tr.changed and tr.drop_timers == [task.id]


def test_a_polled_systems_decision_deletes_its_timer() -> None:
    state = apply(new_case(), planner.start(new_case(), ctx()))
    state, _ = answer(state, "birth_certificate", provides={"birth_certificate_no": "A1"})
    known = ctx()
    hukou = state.task("hukou")
    receipt = ResultMessage(hukou.id, "app1", "hukou", "receipt", 1, case_number="P-1")
    tr = planner.on_result(state, known, receipt)
    assert [t.task_id for t in tr.timers] == [hukou.id]
    state = apply(state, tr)
    decision = ResultMessage(hukou.id, "app1", "hukou", "decision", 1, outcome="denied")
    assert planner.on_result(state, known, decision).drop_timers == [hukou.id]
