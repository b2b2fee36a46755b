"""``gateway tasks overdue``: overdue and due-soon tasks by department (no personal data).

A due time counted over a year the calendar has no holidays for is marked ``(estimated:
no holidays for 2027)`` beside it, as everywhere a due time is shown.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
import time
import zoneinfo

from gateway.calendar import calendar_from
from gateway.catalogue.model import load
from gateway.orchestration.clock import task_estimate
from gateway.settings import Settings
from gateway.supervision.reading import open_existing


async def overdue_text(settings: Settings, limit: int, now: float | None = None) -> str:
    """The listing, grouped by department and system."""
    store = await open_existing(settings.database_url)
    now = time.time() if now is None else now
    try:
        rows = await store.cases.deadline_tasks(
            now, settings.scheduler.due_soon_share, limit, pending=False
        )
    finally:
        await store.close()
    catalogue = load()
    calendar = calendar_from(settings.calendar)
    tz = zoneinfo.ZoneInfo(settings.timezone)
    groups: dict[tuple[str, str], list[str]] = {}
    for t in rows:
        try:
            department = catalogue.matter(t.matter).step(t.step).department
        except KeyError:
            department = "?"
        assert t.due_at is not None
        late = now - t.due_at
        state = "overdue" if late >= 0 else "due soon"
        when = dt.datetime.fromtimestamp(t.due_at, tz).isoformat(timespec="minutes")
        estimate = task_estimate(t, tz, calendar)
        mark = ""
        if estimate["due_estimated"]:
            years = ", ".join(str(y) for y in estimate["calendar_uncovered_years"])
            mark = f"  (estimated: no holidays for {years})"
        groups.setdefault((department, t.system), []).append(
            f"  {t.application_id:<38} {t.matter:<14} {t.step:<20} {when:<25} "
            f"{state:<9} {_span(abs(late))}{' late' if late >= 0 else ' left'}{mark}"
        )
    if not groups:
        return "no overdue or due-soon tasks\n"
    out: list[str] = []
    for (department, system), lines in sorted(groups.items()):
        out.append(f"{department} ({system}): {len(lines)}")
        out.append(f"  {'application id':<38} {'matter':<14} {'step':<20} {'due':<25} state")
        out.extend(lines)
    return "\n".join(out) + "\n"


def command(args: argparse.Namespace, settings: Settings) -> int:
    sys.stdout.write(asyncio.run(overdue_text(settings, args.limit)))
    return 0


def _span(seconds: float) -> str:
    minutes = int(seconds // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    return f"{days}d {hours:02d}h{minutes:02d}m" if days else f"{hours}h{minutes:02d}m"
