"""Warnings for years the calendar has no holidays for (DESIGN "Time": never a silent guess).

At start the gateway names the uncovered years within the next 90 days
(``startup_warning``); afterwards, the first due time computed into an uncovered year warns
again, once per year per process (``warn_uncovered``), so a gateway that runs across New
Year without the next notice says so when it starts guessing, not only at its last start.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterable

from gateway.calendar.workdays import WorkCalendar
from gateway.logs import get_logger

log = get_logger(__name__)
HORIZON = dt.timedelta(days=90)
_DETAIL = "due times in these years count Monday to Friday only, without public holidays"
_warned: set[int] = set()
_lock = threading.Lock()


def startup_warning(calendar: WorkCalendar, today: dt.date) -> tuple[int, ...]:
    """Warn (``calendar_missing_years``) for the years from ``today`` to 90 days on that
    the calendar lacks; the years warned about."""
    uncovered = calendar.uncovered(today, today + HORIZON)
    if uncovered:
        log.warning(
            "calendar_missing_years",
            years=list(uncovered),
            calendar=calendar.version,
            detail=_DETAIL,
        )
    return uncovered


def warn_uncovered(years: Iterable[int]) -> tuple[int, ...]:
    """Warn (``calendar_year_estimated``) for each of ``years`` not warned about yet in this
    process; the years it warned about now."""
    with _lock:
        new = tuple(sorted(set(years) - _warned))
        _warned.update(new)
    if new:
        log.warning("calendar_year_estimated", years=list(new), detail=_DETAIL)
    return new


def forget_warnings() -> None:
    """Tests: start again as a fresh process would."""
    with _lock:
        _warned.clear()
