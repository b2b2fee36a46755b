"""An application's budget is the critical path of its matter's dependency graph.

Figures by hand on the packaged calendar: office hours 08:30-12:00 and 14:30-17:30
(6.5 hours a working day); 2025 National Day 1-8 October off, Saturday 11 October works.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import replace

from gateway.calendar import default_calendar
from gateway.catalogue.budget import application_budget, exceeds_promise, promise_due
from gateway.catalogue.model import load as load_catalogue
from gateway.catalogue.model import parse
from gateway.orchestration.clock import application_due, budget_view
from gateway.orchestration.records import CaseState, TaskRecord, TaskStatus
from gateway.store.records import ApplicationRecord, ApplicationStatus

TZ = zoneinfo.ZoneInfo("Asia/Shanghai")
CAL = default_calendar()
CATALOGUE = load_catalogue()


def at(y: int, m: int, d: int, hh: int, mm: int = 0) -> dt.datetime:
    return dt.datetime(y, m, d, hh, mm, tzinfo=TZ)


def test_newborn_critical_path_is_three_working_hours_within_its_promise() -> None:
    newborn = CATALOGUE.matter("newborn")
    b = application_budget(newborn, at(2026, 11, 18, 8, 30), CAL)
    # birth certificate 0.5 h → 09:00; hukou 2 h → 11:00; medical insurance (or the card,
    # equally long; the first listed is named) 0.5 h → 11:30; vaccination 1 h after the
    # certificate → 10:00
    assert b.critical_path == ("birth_certificate", "hukou", "medical_insurance")
    assert b.due_at == at(2026, 11, 18, 11, 30)
    assert b.ends["vaccination"] == at(2026, 11, 18, 10)
    # DOMAIN's promise is half a working day: 3 h 15 min → 11:45, after the path ends
    assert (newborn.promise.value, newborn.promise.unit) == (0.5, "WORKDAY")
    assert promise_due(newborn, b.start, CAL) == at(2026, 11, 18, 11, 45)


def test_newborn_accepted_on_a_friday_afternoon_runs_into_monday() -> None:
    b = application_budget(CATALOGUE.matter("newborn"), at(2026, 11, 20, 15), CAL)
    # birth certificate → Fri 15:30; hukou 2 h → Fri 17:30 (closing); insurance 0.5 h from
    # Monday 08:30 → 09:00 (the weekend counts nothing)
    assert b.ends["birth_certificate"] == at(2026, 11, 20, 15, 30)
    assert b.ends["hukou"] == at(2026, 11, 20, 17, 30)
    assert b.due_at == at(2026, 11, 23, 9)


def test_retirement_is_twelve_working_days_within_its_promise_of_fifteen() -> None:
    retirement = CATALOGUE.matter("retirement")
    b = application_budget(retirement, at(2026, 11, 18, 8, 30), CAL)
    # file review 5 + pension 5 + payment account 2 = 12 working days from Wed 18 Nov:
    # 18 19 20 | 23 24 25 26 27 | 30 Nov, 1 2 3 Dec → Thu 3 Dec at closing
    assert b.critical_path == ("file_review", "pension", "payment_account")
    assert b.due_at == at(2026, 12, 3, 17, 30)
    assert (retirement.promise.value, retirement.promise.unit) == (15, "WORKDAY")
    assert promise_due(retirement, b.start, CAL) == at(2026, 12, 8, 17, 30)


def test_retirement_over_national_day_counts_the_make_up_saturday() -> None:
    b = application_budget(CATALOGUE.matter("retirement"), at(2025, 9, 30, 8, 30), CAL)
    # 30 Sep | 9 10 11(Sat, works) | 13 14 15 16 17 | 20 21 22 → 12th working day is 22 Oct
    assert b.due_at == at(2025, 10, 22, 17, 30)


def test_only_the_steps_that_apply_count() -> None:
    after_death = CATALOGUE.matter("after_death")
    every = application_budget(after_death, at(2026, 11, 18, 8, 30), CAL)
    # 1 + 2 + 5 working days: 18 | 19 20 | 23 24 25 26 27 → Fri 27 Nov at closing
    assert every.critical_path == ("death_certificate", "kinship", "property_inheritance")
    assert every.due_at == at(2026, 11, 27, 17, 30)
    applies = {
        "death_certificate",
        "cremation",
        "hukou_cancellation",
        "pension_stop",
        "medical_insurance_stop",
        "property_inheritance",  # listed, but it depends on kinship, which does not apply
    }
    b = application_budget(after_death, at(2026, 11, 18, 8, 30), CAL, applies)
    assert "property_inheritance" not in b.ends
    # 1 + 1 + 5 working days from Wed 18 Nov: 18 | 19 | 20 23 24 25 26 → Thu 26 Nov
    assert b.critical_path == ("death_certificate", "hukou_cancellation", "pension_stop")
    assert b.due_at == at(2026, 11, 26, 17, 30)


MIXED = """
version = "t"
[matters.newborn]
title = "mixed"
promise = { value = 2, unit = "WORKDAY" }
[[matters.newborn.steps]]
key = "a"
title = "a"
department = "d"
system = "hospital"
operation = "op"
needs = []
limit = { value = 1, unit = "WORKDAY" }
[[matters.newborn.steps]]
key = "b"
title = "b"
department = "d"
system = "hospital"
operation = "op"
needs = []
depends_on = ["a"]
limit = { value = 2, unit = "HOUR" }
[[matters.newborn.steps]]
key = "c"
title = "c"
department = "d"
system = "hospital"
operation = "op"
needs = []
depends_on = ["b"]
limit = { value = 1, unit = "CALENDAR_DAY" }
[[matters.newborn.steps]]
key = "d"
title = "d"
department = "d"
system = "hospital"
operation = "op"
needs = []
limit = { value = 2, unit = "WORKDAY" }
"""


def test_mixed_units_compose_step_by_step_and_the_latest_end_wins() -> None:
    matter = parse(MIXED, "test").matter("newborn")
    b = application_budget(matter, at(2026, 11, 20, 9), CAL)  # a Friday
    # a: 6.5 office hours = Fri 3 h + 3 h, Mon 0.5 h → Mon 09:00; b: 2 wall hours → 11:00;
    # c: one calendar day → Tue 11:00.  d: 13 office hours = Fri 6 h, Mon 6.5 h, Tue 0.5 h
    # → Tue 09:00. Counted in "working days" a+b+c would look shorter than d; it is not.
    assert b.ends == {
        "a": at(2026, 11, 23, 9),
        "d": at(2026, 11, 24, 9),
        "b": at(2026, 11, 23, 11),
        "c": at(2026, 11, 24, 11),
    }
    assert (b.critical_path, b.due_at) == (("a", "b", "c"), at(2026, 11, 24, 11))


def test_every_catalogue_matter_fits_its_promise() -> None:
    # a step limit raised past its matter's promise is named here before it reaches a window
    assert exceeds_promise(CATALOGUE, at(2026, 11, 18, 8, 30), CAL) == {}


def test_a_matter_whose_critical_path_overruns_its_promise_is_named() -> None:
    newborn = CATALOGUE.matter("newborn")
    steps = tuple(
        s.model_copy(update={"limit": s.limit.model_copy(update={"value": 3})})
        if s.key == "hukou"
        else s
        for s in newborn.steps
    )  # hukou 3 h: 0.5 + 3 + 0.5 = 4 working hours against the promise of 3 h 15 min
    slow = newborn.model_copy(update={"steps": steps})
    catalogue = CATALOGUE.model_copy(update={"matters": {**CATALOGUE.matters, "newborn": slow}})
    assert set(exceeds_promise(catalogue, at(2026, 11, 18, 8, 30), CAL)) == {"newborn"}


def _case(tasks: tuple[TaskRecord, ...], accepted: float | None) -> CaseState:
    app = ApplicationRecord(
        id="app1",
        portal_id="window",
        idempotency_key="k",
        channel="http",
        matter="after_death",
        schema_version="1.0",
        status=ApplicationStatus.IN_PROGRESS,
        envelope_json="{}",
        created_at=0.0,
        updated_at=0.0,
        accepted_at=accepted,
        version=1,
    )
    return CaseState(app, "2026.1", {}, tasks)


def test_the_case_view_leaves_out_tasks_cancelled_as_not_applicable() -> None:
    matter = CATALOGUE.matter("after_death")
    base = TaskRecord(
        id="x",
        application_id="app1",
        matter="after_death",
        step="",
        system="provincial",
        operation="op",
        status=TaskStatus.WAITING,
        depends_on=(),
    )
    skipped = {"kinship", "provident_fund", "driving_licence", "property_inheritance"}
    tasks = tuple(
        replace(
            base,
            step=s.key,
            status=TaskStatus.CANCELLED if s.key in skipped else TaskStatus.WAITING,
            reason="not applicable: subjects.heirs is empty" if s.key in skipped else None,
        )
        for s in matter.steps
    )
    accepted = at(2026, 11, 18, 8, 30).timestamp()
    assert application_due(matter, tasks, accepted, TZ, CAL).due_at == at(2026, 11, 26, 17, 30)
    view = budget_view(_case(tasks, accepted), TZ, CAL)
    assert view["due_at"] == "2026-11-26T17:30:00+08:00"
    assert view["critical_path"] == ["death_certificate", "hukou_cancellation", "pension_stop"]
    # the promise, 10 working days: 18 19 20 | 23 24 25 26 27 | 30 Nov, 1 Dec
    assert view["promise"] == {
        "value": 10,
        "unit": "WORKDAY",
        "due_at": "2026-12-01T17:30:00+08:00",
    }
    # a withdrawal cancels too, but those steps still applied: the budget stays whole
    withdrawn = tuple(replace(t, status=TaskStatus.CANCELLED, reason="withdrawn") for t in tasks)
    assert budget_view(_case(withdrawn, accepted), TZ, CAL)["critical_path"][-1] == (
        "property_inheritance"
    )
    assert budget_view(_case(tasks, None), TZ, CAL)["due_at"] is None  # not accepted yet


def test_the_application_is_never_due_before_its_own_task_after_a_clock_stop() -> None:
    # newborn accepted Wed 18 Nov 08:30: planned birth 09:00, hukou 11:00, then medical
    # insurance and the social security card 11:30. Hukou's clock stopped for a correction
    # and its due time moved to Thu 10:00: the application is due half an hour after that.
    matter = CATALOGUE.matter("newborn")
    accepted = at(2026, 11, 18, 8, 30)
    base = TaskRecord(
        id="x",
        application_id="app1",
        matter="newborn",
        step="",
        system="hukou",
        operation="op",
        status=TaskStatus.WAITING,
        depends_on=(),
    )
    due = {"birth_certificate": at(2026, 11, 18, 9), "hukou": at(2026, 11, 19, 10)}
    tasks = tuple(
        replace(
            base,
            step=s.key,
            due_at=due[s.key].timestamp() if s.key in due else None,
            status=TaskStatus.DISPATCHED if s.key in due else TaskStatus.WAITING,
        )
        for s in matter.steps
    )
    budget = application_due(matter, tasks, accepted.timestamp(), TZ, CAL)
    assert budget.due_at == at(2026, 11, 19, 10, 30)
    case = _case(tasks, accepted.timestamp())
    case = replace(case, application=replace(case.application, matter="newborn"))
    view = budget_view(case, TZ, CAL)
    assert view["due_at"] == "2026-11-19T10:30:00+08:00" and view["due_estimated"] is False
    assert view["critical_path"] == ["birth_certificate", "hukou", "medical_insurance"]
