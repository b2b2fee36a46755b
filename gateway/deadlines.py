"""The one deadline function over the catalogue's units (DESIGN "Time").

``WORKDAY`` and ``WORKHOUR`` count office time on the working-day calendar
(``gateway.calendar``): one ``WORKDAY`` is the office time of one working day (6.5 hours
with the default 08:30-12:00 and 14:30-17:30), so ``0.5 WORKDAY`` is half of it.
``CALENDAR_DAY`` and ``HOUR`` count wall time. Times are read in the time zone of the
``start`` given (the configured one), and the answer is in that zone too.

A clock that stops (a correction asked of the citizen, a suspension) keeps the time it
had used: ``resume`` pushes the due time by the stop, measured on the budget's own clock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

from gateway.calendar import WorkCalendar, default_calendar

OFFICE_UNITS = frozenset({"WORKDAY", "WORKHOUR"})
WALL_UNITS = frozenset({"CALENDAR_DAY", "HOUR"})


@dataclass(frozen=True, slots=True)
class Budget:
    value: float
    unit: str  # WORKDAY | WORKHOUR | CALENDAR_DAY | HOUR


def due_at(start: dt.datetime, budget: Budget, calendar: WorkCalendar | None = None) -> dt.datetime:
    """When a budget that starts at ``start`` (time-zone aware) runs out."""
    _aware(start)
    cal = calendar or default_calendar()
    if budget.unit == "HOUR":
        return _wall(start, dt.timedelta(hours=budget.value))
    if budget.unit == "CALENDAR_DAY":
        return start + dt.timedelta(days=budget.value)  # same local time, N days later
    if budget.unit == "WORKDAY":
        return add_office_time(start, cal.office_time_per_day() * budget.value, cal)
    if budget.unit == "WORKHOUR":
        return add_office_time(start, dt.timedelta(hours=budget.value), cal)
    raise ValueError(f"unknown time unit {budget.unit!r}")


def add_office_time(
    start: dt.datetime, amount: dt.timedelta, calendar: WorkCalendar
) -> dt.datetime:
    """The moment ``amount`` of office time after ``start`` (the next opening for zero)."""
    remaining = amount
    for opens, closes in _office_spans(start, calendar):
        begin = max(start, opens)
        if remaining <= closes - begin:
            return begin + remaining
        remaining -= closes - begin
    raise AssertionError("unreachable: office spans never run out")


def working_time_between(
    start: dt.datetime, end: dt.datetime, calendar: WorkCalendar | None = None
) -> dt.timedelta:
    """Office time elapsed from ``start`` to ``end`` (zero when ``end`` is not later)."""
    _aware(start)
    _aware(end)
    cal = calendar or default_calendar()
    end = end.astimezone(start.tzinfo)
    total = dt.timedelta()
    if end <= start:
        return total
    for opens, closes in _office_spans(start, cal):
        if opens >= end:
            return total
        total += min(closes, end) - max(start, opens)
    raise AssertionError("unreachable: office spans never run out")


def resume(
    due: dt.datetime,
    stopped: dt.datetime,
    resumed: dt.datetime,
    unit: str,
    calendar: WorkCalendar | None = None,
) -> dt.datetime:
    """The due time of a clock stopped at ``stopped`` and restarted at ``resumed``.

    The stop is measured on the budget's own clock (office time for ``WORKDAY`` and
    ``WORKHOUR``, wall time otherwise) and added to ``due``: the time used before the stop
    stays used.
    """
    cal = calendar or default_calendar()
    if unit in OFFICE_UNITS:
        return add_office_time(due, working_time_between(stopped, resumed, cal), cal)
    if unit in WALL_UNITS:
        return _wall(due, max(resumed - stopped, dt.timedelta()))
    raise ValueError(f"unknown time unit {unit!r}")


def _office_spans(
    start: dt.datetime, calendar: WorkCalendar
) -> Iterator[tuple[dt.datetime, dt.datetime]]:
    """The office spans that end after ``start``, in order, for ever."""
    tz = start.tzinfo
    day = start.date()
    while True:
        if calendar.is_working_day(day):
            for opens, closes in calendar.office_hours:
                span_end = dt.datetime.combine(day, closes, tz)
                if span_end > start:
                    yield dt.datetime.combine(day, opens, tz), span_end
        day += dt.timedelta(days=1)


def _wall(start: dt.datetime, delta: dt.timedelta) -> dt.datetime:
    """Elapsed (not local wall-clock) time, right across a daylight-saving change too."""
    return (start.astimezone(dt.UTC) + delta).astimezone(start.tzinfo)


def _aware(moment: dt.datetime) -> None:
    if moment.tzinfo is None:
        raise ValueError("times must be time-zone aware")
