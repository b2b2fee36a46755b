"""The supervision ledger for November 2026 from timelines written by hand.

Calendar: the packaged one, office hours 08:30-12:00 and 14:30-17:30. Limits from catalogue
2026.1: newborn.hukou (public_security, hukou) 2 working hours; newborn.birth_certificate
(health_commission, hospital) 2 working hours; retirement.file_review (employment_service,
provincial) 5 working days. 18 November 2026 is a Wednesday.

Every expected figure below is worked out by hand in the comments beside the timelines.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import zoneinfo
from typing import Any

import pytest

from gateway.calendar import default_calendar
from gateway.catalogue.model import load
from gateway.orchestration.records import TimelineEntry
from gateway.supervision.ledger import (
    InvalidMonth,
    LedgerRow,
    Month,
    TaskTimeline,
    compute,
    p90,
    task_facts,
)
from gateway.supervision.render import render

TZ = zoneinfo.ZoneInfo("Asia/Shanghai")
CAL = default_calendar()
NOVEMBER = Month(2026, 11)
LATER = dt.datetime(2026, 12, 10, tzinfo=TZ).timestamp()  # "now", after the month ended


def t(m: int, d: int, hh: int, mm: int = 0) -> float:
    return dt.datetime(2026, m, d, hh, mm, tzinfo=TZ).timestamp()


def e(at: float, kind: str, **detail: Any) -> TimelineEntry:
    return TimelineEntry(at, kind, None if kind.startswith("application.") else "x", detail)


def started(at: float, receipt: bool = True) -> list[TimelineEntry]:
    """Dispatched at ``at``; with ``receipt``, the department's receipt at the same time."""
    out = [e(at, "task.dispatched", clock_started_at=at, attempt=1)]
    if receipt:
        out.append(e(at, "task.submitted", clock_started_at=at))
    return out


def timeline(name: str, step: str, entries: list[TimelineEntry]) -> TaskTimeline:
    matter, system = {
        "hukou": ("newborn", "hukou"),
        "birth_certificate": ("newborn", "hospital"),
        "file_review": ("retirement", "provincial"),
    }[step]
    return TaskTimeline(f"{name}.{step}", name, matter, step, system, "2026.1", tuple(entries))


TASKS = [
    # T1: Wed 18 Nov 09:00, 2 h → due 11:00; completed 10:30: on time, 1.5 h used
    timeline("A", "hukou", [*started(t(11, 18, 9)), e(t(11, 18, 10, 30), "task.completed")]),
    # T2: Wed 18 Nov 11:00 → due 15:30 (1 h before lunch, 1 h after). Correction asked at
    # 12:30 (1 h used, 1 h left); the clock restarts Thu 09:00 → due Thu 10:00. Completed
    # Thu 10:30: late. Used: Wed 11-12, 14:30-17:30, Thu 08:30-10:30 = 6 h, less the stop
    # (Wed 14:30-17:30 and Thu 08:30-09:00 = 3.5 h) = 2.5 h. One correction.
    timeline(
        "B",
        "hukou",
        [
            *started(t(11, 18, 11)),
            e(t(11, 18, 12, 30), "task.correction_requested"),
            e(t(11, 18, 12, 30), "task.clock_stopped", reason="correction_requested"),
            e(t(11, 19, 9), "task.dispatched", attempt=2),
            e(t(11, 19, 9), "task.clock_started", stopped_at=t(11, 18, 12, 30)),
            e(t(11, 19, 9, 1), "task.submitted", clock_started_at=t(11, 18, 11)),
            e(t(11, 19, 10, 30), "task.completed"),
        ],
    ),
    # T3: the hospital has no receipt: the clock starts at the dispatch, Wed 10:00; completed
    # 10:30: on time, 0.5 h
    timeline(
        "B",
        "birth_certificate",
        [*started(t(11, 18, 10), receipt=False), e(t(11, 18, 10, 30), "task.completed")],
    ),
    # T4: dispatched Fri 27 Nov 09:00, receipt written 09:05 saying the department accepted at
    # 09:00; 5 working days = 32.5 h → Fri 4 Dec 09:00. Open within time on 1 December.
    timeline(
        "C",
        "file_review",
        [
            e(t(11, 27, 9), "task.dispatched", clock_started_at=t(11, 27, 9)),
            e(t(11, 27, 9, 5), "task.submitted", clock_started_at=t(11, 27, 9)),
        ],
    ),
    # T5: received Fri 30 Oct 17:00 (October), due Mon 2 Nov 10:00; completed 11:00: late in
    # November. Used 0.5 h Friday + 2.5 h Monday = 3 h
    timeline("D", "hukou", [*started(t(10, 30, 17)), e(t(11, 2, 11), "task.completed")]),
    # T6: Mon 23 Nov 09:00 → due 11:00; suspended 10:00 and never resumed: stopped with an
    # hour left, so open within time
    timeline(
        "E",
        "hukou",
        [
            *started(t(11, 23, 9)),
            e(t(11, 23, 10), "task.suspended"),
            e(t(11, 23, 10), "task.clock_stopped", reason="suspended"),
        ],
    ),
    # T7: Mon 23 Nov 09:00 → due 11:00; no answer: open overdue
    timeline("F", "hukou", started(t(11, 23, 9))),
    # T8: Tue 24 Nov 09:00 → due 11:00; suspended 14:30, after its due time: open overdue
    timeline(
        "G",
        "hukou",
        [*started(t(11, 24, 9)), e(t(11, 24, 14, 30), "task.clock_stopped", reason="suspended")],
    ),
    # T9: Wed 25 Nov 09:00, the application withdrawn at 10:00: received, cancelled
    timeline("H", "hukou", [*started(t(11, 25, 9)), e(t(11, 25, 10), "application.withdrawn")]),
    # T10: received 1 December: not November's
    timeline("I", "hukou", started(t(12, 1, 9))),
    # T11: received and completed in September: nothing in November
    timeline("J", "hukou", [*started(t(9, 1, 9)), e(t(9, 1, 10), "task.completed")]),
    # T12: Mon 2 Nov 08:30, 5 working days → Fri 6 Nov 17:30; denied Wed 4 Nov 17:30, three
    # whole working days = 19.5 h: decided on time (a denial is a decision)
    timeline(
        "K",
        "file_review",
        [*started(t(11, 2, 8, 30)), e(t(11, 4, 17, 30), "task.denied", reason="too young")],
    ),
]


def ledger(now: float = LATER, systems: set[str] | None = None) -> Any:
    return compute(
        TASKS, NOVEMBER, now=now, tz=TZ, calendar=CAL, catalogue_for=load, systems=systems
    )


def test_november_by_department_and_matter_equals_the_figures_by_hand() -> None:
    result = ledger()
    assert result.as_of == dt.datetime(2026, 12, 1, tzinfo=TZ)
    assert result.rows == (
        # C, K received; K on time (19.5 h); C open within time
        LedgerRow("employment_service", "provincial", "retirement", 2, 1, 0, 0, 1, 0, 19.5, 19.5, 0),  # noqa: E501
        LedgerRow("health_commission", "hospital", "newborn", 1, 1, 0, 0, 0, 0, 0.5, 0.5, 0),
        # received T1 T2 T6 T7 T8 T9; on time T1; late T2 T5; cancelled T9; open E; overdue
        # F G; hours 1.5, 2.5, 3 → mean 2.33, p90 by nearest rank (3rd of 3) 3; T2's correction
        LedgerRow("public_security", "hukou", "newborn", 6, 1, 2, 1, 1, 2, 2.33, 3.0, 1),
    )  # fmt: skip
    assert [r.department for r in result.departments] == [
        "employment_service",
        "health_commission",
        "public_security",
    ]
    # hours 19.5, 0.5, 1.5, 2.5, 3 → mean 27 / 5 = 5.4; p90 the 5th of 5 = 19.5
    assert result.total == LedgerRow("*", "*", "*", 9, 3, 2, 1, 2, 2, 5.4, 19.5, 1)


def test_open_last_month_plus_received_less_ended_is_open_this_month() -> None:
    october = compute(TASKS, Month(2026, 10), now=LATER, tz=TZ, calendar=CAL, catalogue_for=load)
    november = ledger()
    o, n = october.total, november.total
    assert o.open_within_time + o.open_overdue == 1  # T5, received 30 October
    ended = n.completed_on_time + n.completed_late + n.cancelled
    assert o.open_within_time + o.open_overdue + n.received - ended == (
        n.open_within_time + n.open_overdue
    )


def test_a_month_not_over_is_counted_as_of_now() -> None:
    mon_1030 = t(11, 23, 10, 30)
    hukou = next(r for r in ledger(now=mon_1030).rows if r.system == "hukou")
    # by Mon 23 Nov 10:30: received T1 T2 T6 T7; T7 (due 11:00) is not late yet, T6 stopped
    assert (hukou.received, hukou.completed_on_time, hukou.completed_late) == (4, 1, 2)
    assert (hukou.open_within_time, hukou.open_overdue, hukou.cancelled) == (2, 0, 0)


def test_an_operator_sees_only_the_systems_in_scope() -> None:
    scoped = ledger(systems={"hukou"})
    assert {r.system for r in scoped.rows} == {"hukou"}
    assert scoped.total.received == 6


def test_the_recomputed_due_time_follows_the_clock_stop() -> None:
    facts = task_facts(TASKS[1], load(), TZ, CAL, LATER)
    assert facts.clock_started_at == t(11, 18, 11)
    assert facts.due_at == t(11, 19, 10)
    assert facts.used_hours == 2.5 and facts.corrections == (t(11, 18, 12, 30),)
    receipt_later = task_facts(TASKS[3], load(), TZ, CAL, LATER)
    assert receipt_later.clock_started_at == t(11, 27, 9)  # the department's acceptance
    assert receipt_later.due_at == t(12, 4, 9)


@pytest.mark.parametrize("text", ["2026-13", "2026-1", "26-11", "november", "2026-00", ""])
def test_a_month_must_be_year_dash_month(text: str) -> None:
    with pytest.raises(InvalidMonth, match="expected YYYY-MM"):
        Month.parse(text)


def test_month_bounds_in_the_configured_zone() -> None:
    start, end = Month(2026, 12).bounds(TZ)
    assert (start.isoformat(), end.isoformat()) == (
        "2026-12-01T00:00:00+08:00",
        "2027-01-01T00:00:00+08:00",
    )


def test_p90_is_the_nearest_rank() -> None:
    assert p90([5.0]) == 5.0
    assert p90([float(i) for i in range(1, 11)]) == 9.0  # 9 of 10 at or below
    assert p90([float(i) for i in range(1, 12)]) == 10.0  # ceil(9.9) = 10th of 11


def test_the_three_renderings_carry_the_same_figures() -> None:
    result = ledger()
    rows = list(csv.DictReader(io.StringIO(render(result, "csv"))))
    assert len(rows) == 3 + 3 + 1
    hukou = rows[2]
    assert (hukou["department"], hukou["received"], hukou["open_overdue"]) == (
        "public_security",
        "6",
        "2",
    )
    assert rows[-1]["matter"] == "*" and rows[-1]["average_hours"] == "5.4"
    assert rows[0]["month"] == "2026-11" and rows[0]["as_of"] == "2026-12-01T00:00:00+08:00"
    data = json.loads(render(result, "json"))
    assert data["total"]["completed_late"] == 2 and data["rows"][1]["p90_hours"] == 0.5
    text = render(result, "table")
    assert "Supervision ledger 2026-11" in text
    line = next(ln for ln in text.splitlines() if ln.startswith("public_security"))
    assert line.split()[-10:] == ["6", "1", "2", "1", "1", "2", "2.33", "3.00", "1", "0"]
    empty = compute([], NOVEMBER, now=LATER, tz=TZ, calendar=CAL, catalogue_for=load)
    assert "no task clock ran in 2026-11" in render(empty, "table")


def test_hours_over_national_day_count_the_make_up_saturday_and_not_the_holiday() -> None:
    def t25(m: int, d: int, hh: int, mm: int = 0) -> float:
        return dt.datetime(2025, m, d, hh, mm, tzinfo=TZ).timestamp()

    # received Tue 30 Sep 2025 16:30, 2 working hours: 16:30-17:30, then 1-8 October are
    # off → Thu 9 Oct 09:30. Completed Sat 11 Oct 09:00 (a make-up working day): late.
    # Used: 1 h (30 Sep) + 6.5 (9 Oct) + 6.5 (10 Oct) + 0.5 (11 Oct) = 14.5 h
    holiday = timeline(
        "L", "hukou", [*started(t25(9, 30, 16, 30)), e(t25(10, 11, 9), "task.completed")]
    )
    facts = task_facts(holiday, load(), TZ, CAL, t25(11, 1, 0))
    assert facts.due_at == t25(10, 9, 9, 30) and facts.used_hours == 14.5
    october = compute(
        [holiday], Month(2025, 10), now=LATER, tz=TZ, calendar=CAL, catalogue_for=load
    )
    assert october.total == LedgerRow("*", "*", "*", 0, 0, 1, 0, 0, 0, 14.5, 14.5, 0)
    september = compute(
        [holiday], Month(2025, 9), now=LATER, tz=TZ, calendar=CAL, catalogue_for=load
    )
    # at the end of September it was received and open, not yet overdue
    assert september.total == LedgerRow("*", "*", "*", 1, 0, 0, 0, 1, 0, None, None, 0)


def test_a_task_received_across_the_month_end_is_received_once() -> None:
    # dispatched Mon 30 Nov 17:00; the department's receipt says it accepted Tue 1 Dec 09:00
    # (the clock's start moves there): received in November only, and the months add up
    across = timeline(
        "M",
        "hukou",
        [
            e(t(11, 30, 17), "task.dispatched", clock_started_at=t(11, 30, 17), attempt=1),
            e(t(12, 1, 9), "task.submitted", clock_started_at=t(12, 1, 9)),
            e(t(12, 1, 10), "task.completed"),
        ],
    )
    now = dt.datetime(2027, 1, 10, tzinfo=TZ).timestamp()
    nov = compute([across], NOVEMBER, now=now, tz=TZ, calendar=CAL, catalogue_for=load).total
    dec = compute([across], Month(2026, 12), now=now, tz=TZ, calendar=CAL, catalogue_for=load)
    d = dec.total
    assert (nov.received, nov.open_within_time, nov.open_overdue) == (1, 1, 0)
    assert (d.received, d.completed_on_time, d.open_within_time) == (0, 1, 0)
    ended = d.completed_on_time + d.completed_late + d.cancelled
    assert nov.open_within_time + nov.open_overdue + d.received - ended == (
        d.open_within_time + d.open_overdue
    )


@pytest.mark.parametrize("closed_by_the_planner", [False, True])
def test_a_task_decided_while_its_clock_is_stopped_is_judged_by_the_time_used(
    closed_by_the_planner: bool,
) -> None:
    # Wed 18 Nov 09:00, 2 h → due 11:00; suspended 10:00 (1 h used), completed 15:00 still
    # suspended: 1.0 h used of 2, on time. The planner now closes the stop when the task is
    # decided (a task.clock_started after the decision); older timelines have no such entry.
    entries = [
        *started(t(11, 18, 9)),
        e(t(11, 18, 10), "task.suspended"),
        e(t(11, 18, 10), "task.clock_stopped", reason="suspended"),
        e(t(11, 18, 15), "task.completed"),
    ]
    if closed_by_the_planner:
        entries.append(e(t(11, 18, 15), "task.clock_started", reason="decided"))
    tl = timeline("N", "hukou", entries)
    facts = task_facts(tl, load(), TZ, CAL, LATER)
    assert facts.used_hours == 1.0 and facts.stopped_at is None
    assert facts.due_at == t(11, 18, 16)  # 11:00 pushed by the stop's 2.5 office hours
    row = compute([tl], NOVEMBER, now=LATER, tz=TZ, calendar=CAL, catalogue_for=load).total
    assert (row.completed_on_time, row.completed_late, row.average_hours) == (1, 0, 1.0)


def test_the_due_time_recorded_in_the_timeline_is_the_one_judged() -> None:
    # the gateway recorded due 12:00 (say the calendar of the day had other office hours);
    # today's calendar would say 11:00. Completed 11:30: on time by the recorded due time,
    # so a later change of the calendar file does not change a past month.
    start = t(11, 18, 9)
    tl = timeline(
        "P",
        "hukou",
        [
            e(start, "task.dispatched", clock_started_at=start, due_at=t(11, 18, 12)),
            e(start, "task.submitted", clock_started_at=start, due_at=t(11, 18, 12)),
            e(t(11, 18, 11, 30), "task.completed"),
        ],
    )
    assert task_facts(tl, load(), TZ, CAL, LATER).due_at == t(11, 18, 12)
    row = compute([tl], NOVEMBER, now=LATER, tz=TZ, calendar=CAL, catalogue_for=load).total
    assert (row.completed_on_time, row.completed_late) == (1, 0)


def test_a_due_time_reaching_a_year_without_holidays_is_marked() -> None:
    # Mon 28 Dec 2026 09:00, 5 working days → into January 2027, which has no notice
    tl = timeline("Q", "file_review", started(t(12, 28, 9)))
    now = dt.datetime(2027, 1, 10, tzinfo=TZ).timestamp()
    dec = compute([tl], Month(2026, 12), now=now, tz=TZ, calendar=CAL, catalogue_for=load)
    assert dec.total.due_estimated == 1 and dec.calendar_uncovered_years == (2027,)
    assert json.loads(render(dec, "json"))["calendar_uncovered_years"] == [2027]
    assert "due times reaching 2027 are counted Monday to Friday" in render(dec, "table")
    assert ledger().total.due_estimated == 0 and ledger().calendar_uncovered_years == ()
