"""The ledger's store query on both databases, with timelines written by the real planner.

Two newborn applications on a controlled clock (the transitions' ``now``):

- app1, accepted Wed 18 Nov 2026 09:00. The hospital issues at 10:00 (due 11:00: on time,
  1 h). CDC answers at 10:30 (dispatched 10:00, due 11:00: on time, 0.5 h). Police receipt
  at 10:00, due 12:00; a correction asked at 11:00 (1 h left); the window corrects Thu
  09:00 (due → 10:00); the police complete 10:30: late, 1 h + 1.5 h = 2.5 h used.
  Insurance and the card go out Thu 10:30, due 11:30, and are never answered: overdue.
- app2, accepted Mon 26 Oct 09:00: certificate 09:30 and CDC 09:45, both October; the
  police (received 26 Oct 09:30, due 11:30) never answer: open overdue in November too.
"""

from __future__ import annotations

import datetime as dt
import time
import zoneinfo
from dataclasses import replace

from gateway.calendar import default_calendar
from gateway.catalogue.model import load
from gateway.orchestration import planner
from gateway.orchestration.messages import ResultMessage
from gateway.store import Store
from gateway.store.reports import reports
from gateway.supervision.ledger import Month, task_facts
from gateway.supervision.report import month_ledger
from tests.store.test_cases import accepted

TZ = zoneinfo.ZoneInfo("Asia/Shanghai")
CAL = default_calendar()


def t(m: int, d: int, hh: int, mm: int = 0) -> float:
    return dt.datetime(2026, m, d, hh, mm, tzinfo=TZ).timestamp()


def at(now: float) -> planner.Context:
    return planner.Context(load(), now, TZ, {})


async def result(store: Store, app: str, step: str, now: float, kind: str, **kw: object) -> None:
    state = await store.cases.load(app)
    assert state is not None
    task = state.task(step)
    message = ResultMessage(task.id, app, task.system, kind, task.attempt, **kw)  # type: ignore[arg-type]
    await store.cases.transition(app, lambda s: planner.on_result(s, at(now), message), now)


async def seeded(store: Store) -> None:
    done = {"outcome": "completed"}
    await accepted(store, "app1")
    await store.cases.transition("app1", lambda s: planner.start(s, at(t(11, 18, 9))), 0)
    issued = {**done, "provides": {"birth_certificate_no": "A123456789"}}
    await result(store, "app1", "birth_certificate", t(11, 18, 9, 30), "decision", **issued)
    await result(store, "app1", "hukou", t(11, 18, 10), "receipt", accepted_at=t(11, 18, 10))
    await result(store, "app1", "vaccination", t(11, 18, 10, 30), "decision", **done)
    gaps = ({"field": "subjects.child.name", "message": "spelling"},)
    await result(
        store, "app1", "hukou", t(11, 18, 11), "decision", outcome="correction_requested", gaps=gaps
    )
    state = await store.cases.load("app1")
    assert state is not None
    envelope = state.application.envelope_json
    await store.cases.transition(
        "app1",
        lambda s: planner.on_correction(s, at(t(11, 19, 9)), envelope, ["subjects.child.name"]),
        0,
    )
    citizen = {**done, "provides": {"citizen_id": "431022202611180012"}}
    await result(store, "app1", "hukou", t(11, 19, 10, 30), "decision", **citizen)

    await accepted(store, "app2")
    await store.cases.transition("app2", lambda s: planner.start(s, at(t(10, 26, 9))), 0)
    await result(store, "app2", "birth_certificate", t(10, 26, 9, 30), "decision", **issued)
    await result(store, "app2", "vaccination", t(10, 26, 9, 45), "decision", **done)


async def test_the_month_ledger_from_the_stored_timelines(store: Store) -> None:
    await seeded(store)
    ledger = await month_ledger(store, Month(2026, 11), now=time.time(), tz=TZ, calendar=CAL)
    rows = {(r.department, r.system): r for r in ledger.rows}
    assert set(rows) == {
        ("cdc", "cdc"),
        ("health_commission", "hospital"),
        ("human_resources", "provincial"),
        ("medical_insurance", "provincial"),
        ("public_security", "hukou"),
    }
    hospital, cdc = rows["health_commission", "hospital"], rows["cdc", "cdc"]
    # the certificate in its half hour; the vaccination record an hour after it, on the dot
    assert (hospital.received, hospital.completed_on_time, hospital.average_hours) == (1, 1, 0.5)
    assert (cdc.received, cdc.completed_on_time, cdc.average_hours) == (1, 1, 1.0)
    police = rows["public_security", "hukou"]
    assert police == replace(
        police,
        received=1,  # app2's police task was received in October
        completed_on_time=0,
        completed_late=1,
        open_within_time=0,
        open_overdue=1,  # app2's
        average_hours=2.5,
        p90_hours=2.5,
        corrections_requested=1,
    )
    insurance = rows["medical_insurance", "provincial"]
    assert (insurance.received, insurance.open_overdue, insurance.average_hours) == (1, 1, None)
    assert ledger.total.received == 5 and ledger.total.completed_late == 1
    assert ledger.total.open_overdue == 3


async def test_the_query_narrows_to_the_month_and_the_systems(store: Store) -> None:
    await seeded(store)
    start = t(11, 1, 0)
    found = await reports(store).task_timelines(start, t(12, 1, 0))
    ids = {tl.task_id for tl in found}
    assert "app2.birth_certificate" not in ids and "app2.vaccination" not in ids  # October
    assert {"app1.hukou", "app2.hukou", "app1.medical_insurance"} <= ids
    hukou = next(tl for tl in found if tl.task_id == "app1.hukou")
    assert (hukou.matter, hukou.step, hukou.system, hukou.catalogue_version) == (
        "newborn",
        "hukou",
        "hukou",
        "2026.1",
    )
    kinds = [e.kind for e in hukou.entries]
    assert kinds[0] == "task.dispatched" and kinds[-1] == "task.completed"
    assert "task.clock_stopped" in kinds and "task.clock_started" in kinds
    scoped = await reports(store).task_timelines(start, t(12, 1, 0), {"hukou"})
    assert {tl.system for tl in scoped} == {"hukou"}
    assert await reports(store).task_timelines(start, t(12, 1, 0), set()) == []


async def test_due_times_recomputed_from_the_timeline_equal_the_stored_ones(
    store: Store,
) -> None:
    await seeded(store)
    for tl in await reports(store).task_timelines(t(10, 1, 0), t(12, 1, 0)):
        stored = await store.cases.task(tl.task_id)
        assert stored is not None
        facts = task_facts(tl, load(), TZ, CAL, t(12, 1, 0))
        assert facts.due_at == stored.due_at, tl.task_id
        assert facts.clock_started_at == stored.clock_started_at, tl.task_id


async def test_a_task_dispatched_before_the_month_end_with_a_late_receipt_is_novembers(
    store: Store,
) -> None:
    # police dispatched Mon 30 Nov 17:20; their receipt, days later, says they accepted it
    # Thu 3 Dec 09:00 (the clock's start moves there, past the query's one-day margin):
    # still received in November, once
    await accepted(store, "app3")
    await store.cases.transition("app3", lambda s: planner.start(s, at(t(11, 30, 17))), 0)
    issued = {"outcome": "completed", "provides": {"birth_certificate_no": "A123456789"}}
    await result(store, "app3", "birth_certificate", t(11, 30, 17, 20), "decision", **issued)
    await result(store, "app3", "hukou", t(12, 3, 9, 5), "receipt", accepted_at=t(12, 3, 9))
    now = t(12, 20, 0)
    nov = await month_ledger(store, Month(2026, 11), now=now, tz=TZ, calendar=CAL)
    dec = await month_ledger(store, Month(2026, 12), now=now, tz=TZ, calendar=CAL)
    police = {r.system: r for r in nov.rows}["hukou"]
    assert (police.received, police.open_within_time + police.open_overdue) == (1, 1)
    assert {r.system: r for r in dec.rows}["hukou"].received == 0


async def test_apps_show_names_the_steps_whose_due_time_is_estimated(store: Store) -> None:
    from gateway.settings import Settings
    from gateway.supervision.cli import application_budget

    # accepted Thu 31 Dec 2026 17:15: the certificate's half hour runs into 2027, and with
    # it the whole bundle, counted without the 2027 holidays (no notice yet)
    await accepted(store, "app4")
    await store.mark_accepted("app4", t(12, 31, 17, 15))
    await store.cases.transition("app4", lambda s: planner.start(s, at(t(12, 31, 17, 15))), 0)
    shown = await application_budget(store, "app4", Settings())
    assert shown["due_estimated"] is True and shown["calendar_uncovered_years"] == [2027]
    assert shown["due_estimated_tasks"] == {"birth_certificate": [2027]}
    await accepted(store, "app5")
    await store.mark_accepted("app5", t(11, 18, 9))
    await store.cases.transition("app5", lambda s: planner.start(s, at(t(11, 18, 9))), 0)
    plain = await application_budget(store, "app5", Settings())
    assert plain["due_estimated"] is False and "due_estimated_tasks" not in plain
