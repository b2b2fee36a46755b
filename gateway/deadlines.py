"""The one deadline function over the catalogue's units (DESIGN "Time").

``WORKDAY`` and ``WORKHOUR`` count office time on the working-day calendar; ``CALENDAR_DAY``
and ``HOUR`` count wall time. This release's calendar is Monday to Friday, 09:00–17:00 in
the configured time zone, with no public holidays or make-up working days yet: every answer
that shows a due time says so (``CALENDAR_NOTE``). The time-limits issue replaces the
calendar with the State Council's yearly notice held as data.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

CALENDAR_NOTE = (
    "working days are Monday to Friday, 09:00-17:00; public holidays and make-up working "
    "days are not yet in the calendar"
)
OPEN = dt.time(9, 0)
CLOSE = dt.time(17, 0)
HOURS_PER_WORKDAY = 8.0


@dataclass(frozen=True, slots=True)
class Budget:
    value: float
    unit: str  # WORKDAY | WORKHOUR | CALENDAR_DAY | HOUR


def is_working_day(day: dt.date) -> bool:
    return day.weekday() < 5


def due_at(start: dt.datetime, budget: Budget) -> dt.datetime:
    """When a budget that starts at ``start`` (time-zone aware) runs out."""
    if start.tzinfo is None:
        raise ValueError("start must be time-zone aware")
    if budget.unit == "HOUR":
        return start + dt.timedelta(hours=budget.value)
    if budget.unit == "CALENDAR_DAY":
        return start + dt.timedelta(days=budget.value)
    hours = budget.value * (HOURS_PER_WORKDAY if budget.unit == "WORKDAY" else 1.0)
    if budget.unit not in ("WORKDAY", "WORKHOUR"):
        raise ValueError(f"unknown time unit {budget.unit!r}")
    return _add_office_time(start, dt.timedelta(hours=hours))


def _add_office_time(start: dt.datetime, remaining: dt.timedelta) -> dt.datetime:
    current = start
    while True:
        day = current.date()
        opens = dt.datetime.combine(day, OPEN, current.tzinfo)
        closes = dt.datetime.combine(day, CLOSE, current.tzinfo)
        if is_working_day(day) and current < closes:
            current = max(current, opens)
            left_today = closes - current
            if remaining <= left_today:
                return current + remaining
            remaining -= left_today
        current = dt.datetime.combine(day + dt.timedelta(days=1), OPEN, current.tzinfo)
