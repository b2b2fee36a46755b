"""``gateway report ledger --month YYYY-MM [--format table|csv|json] [--out FILE]``."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import zoneinfo
from pathlib import Path
from typing import Any

from gateway.calendar import calendar_from
from gateway.orchestration.clock import budget_view, task_estimate
from gateway.settings import Settings
from gateway.store import Store
from gateway.supervision.ledger import InvalidMonth, Month
from gateway.supervision.reading import open_existing
from gateway.supervision.render import FORMATS, render
from gateway.supervision.report import month_ledger


async def application_budget(
    store: Store, application_id: str, settings: Settings
) -> dict[str, Any]:
    """``due_at``, ``critical_path`` and ``promise`` of one application, for ``apps show``,
    with ``due_estimated`` for it and, under ``due_estimated_tasks``, the steps whose due
    time reaches a year without holidays (step → years)."""
    state = await store.cases.load(application_id)
    if state is None:
        return {}
    tz, calendar = zoneinfo.ZoneInfo(settings.timezone), calendar_from(settings.calendar)
    view = budget_view(state, tz, calendar)
    estimated = {
        t.step: mark["calendar_uncovered_years"]
        for t in state.tasks
        if (mark := task_estimate(t, tz, calendar))["due_estimated"]
    }
    if estimated:
        view["due_estimated_tasks"] = estimated
    return view


def register(sub: Any) -> None:
    """Add ``report ledger`` to the ``gateway`` command's sub-parsers."""
    report = sub.add_parser("report", help="reports for supervision")
    r_sub = report.add_subparsers(required=True, metavar="report")
    ledger = r_sub.add_parser(
        "ledger",
        help="per department and matter: received, on time, late, open, overdue, hours used",
    )
    ledger.add_argument("--month", required=True, help="YYYY-MM (in the configured time zone)")
    ledger.add_argument("--format", choices=FORMATS, default="table")
    ledger.add_argument("--out", type=Path, help="write to FILE instead of the terminal")
    ledger.set_defaults(func=_cmd_ledger)


def _cmd_ledger(args: argparse.Namespace, settings: Settings) -> int:
    try:
        month = Month.parse(args.month)
    except InvalidMonth as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2

    async def go() -> str:
        store = await open_existing(settings.database_url)
        try:
            ledger = await month_ledger(
                store,
                month,
                now=time.time(),
                tz=zoneinfo.ZoneInfo(settings.timezone),
                calendar=calendar_from(settings.calendar),
            )
        finally:
            await store.close()
        return render(ledger, args.format)

    text = asyncio.run(go())
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.write_text(text, encoding="utf-8")
        print(f"wrote {args.out}")
    return 0
