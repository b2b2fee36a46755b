"""The case view marks a due time counted over a year without holiday data, per task and for
the application, in the shape the intake OpenAPI documents."""

from __future__ import annotations

import datetime as dt
import json
import zoneinfo
from dataclasses import replace
from typing import cast

from gateway.intake.auth import PortalAuth
from gateway.intake.cases_api import CasesApi
from gateway.orchestration import planner
from gateway.orchestration.orchestrator import Orchestrator
from gateway.store import Store
from tests.contract.test_intake_openapi import validator_at
from tests.unit.test_planner import apply, ctx, new_case

TZ = zoneinfo.ZoneInfo("Asia/Shanghai")


def view_at(now: float) -> dict[str, object]:
    """The newborn bundle started at ``now``, as ``GET /v1/applications/{id}`` shows it."""
    case = new_case()
    state = apply(case, planner.start(case, ctx(now)))
    state = replace(state, application=replace(state.application, accepted_at=now))
    store = cast(Store, object())
    api = CasesApi(
        PortalAuth({}, store), store, cast(Orchestrator, object()), timezone=TZ, clock=lambda: now
    )
    view: dict[str, object] = json.loads(json.dumps(api.view(state)))
    return view


def test_a_due_time_into_a_year_without_holidays_is_marked_on_the_case_view() -> None:
    late = view_at(dt.datetime(2026, 12, 31, 17, 15, tzinfo=TZ).timestamp())
    tasks = cast(list[dict[str, object]], late["tasks"])
    first = tasks[0]
    assert (first["step"], first["due_estimated"], first["calendar_uncovered_years"]) == (
        "birth_certificate",
        True,
        [2027],
    )
    assert late["due_estimated"] is True and late["calendar_uncovered_years"] == [2027]
    task_schema = validator_at("/components/schemas/Task")
    for task in tasks:
        assert not [e.message for e in task_schema.iter_errors(task)]

    known = view_at(dt.datetime(2026, 11, 18, 9, tzinfo=TZ).timestamp())
    first = cast(list[dict[str, object]], known["tasks"])[0]
    assert first["due_estimated"] is False and "calendar_uncovered_years" not in first
    assert known["due_estimated"] is False
    assert str(known["calendar"]).startswith("working-day calendar cn-workdays/")
