"""A month's ledger from the store: the one entry point for the CLI and the admin API."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection

from gateway.calendar import WorkCalendar
from gateway.catalogue.model import load
from gateway.store.base import Store
from gateway.store.reports import reports
from gateway.supervision.ledger import Ledger, Month, compute


async def month_ledger(
    store: Store,
    month: Month,
    *,
    now: float,
    tz: dt.tzinfo,
    calendar: WorkCalendar,
    systems: Collection[str] | None = None,
) -> Ledger:
    """The ledger of ``month`` as of its end (or ``now``, if earlier), recomputed from the
    stored timelines; ``systems`` limits it to an operator's systems."""
    start, end = month.bounds(tz)
    as_of = min(end.timestamp(), now)
    timelines = await reports(store).task_timelines(start.timestamp(), as_of, systems)
    return compute(
        timelines, month, now=now, tz=tz, calendar=calendar, catalogue_for=load, systems=systems
    )
