"""``GET /v1/admin/reports/ledger?month=YYYY-MM[&format=json|csv]`` (role ``view``).

An operator sees the ledger of the systems in its scope only (``[operators.<name>]
systems``; all systems when it has none). JSON by default; ``format=csv`` for spreadsheets.
A missing or malformed month, or an unknown format, is a 422 naming every fault at once.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Awaitable, Callable, Collection, Mapping

from aiohttp import web

from gateway.admin.auth import Operator
from gateway.calendar import WorkCalendar
from gateway.intake.problem_http import problem_response
from gateway.problems import Problem
from gateway.store.base import Store
from gateway.supervision.ledger import InvalidMonth, Month
from gateway.supervision.render import CONTENT_TYPES, render
from gateway.supervision.report import month_ledger

PATH = "/v1/admin/reports/ledger"
FORMATS = ("json", "csv")


async def ledger_answer(
    store: Store,
    query: Mapping[str, str],
    scope: Collection[str] | None,
    *,
    now: float,
    tz: dt.tzinfo,
    calendar: WorkCalendar,
) -> web.Response:
    """The ledger of ``query["month"]`` for the systems in ``scope`` (None: every system)."""
    errors: list[dict[str, str]] = []
    month: Month | None = None
    try:
        month = Month.parse(query.get("month", ""))
    except InvalidMonth as exc:
        errors.append({"loc": "query.month", "msg": str(exc)})
    fmt = query.get("format", "json")
    if fmt not in FORMATS:
        errors.append({"loc": "query.format", "msg": f"format {fmt!r}: one of json, csv"})
    if month is None or errors:
        return problem_response(
            Problem(
                422,
                "invalid-request",
                "Invalid request",
                f"{len(errors)} query parameter(s) are wrong",
                errors,
            )
        )
    ledger = await month_ledger(store, month, now=now, tz=tz, calendar=calendar, systems=scope)
    if fmt == "csv":
        return web.Response(
            text=render(ledger, "csv"),
            content_type="text/csv",
            charset="utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="ledger-{month}.csv"',
            },
        )
    body = {**ledger.as_dict(), "scope": sorted(scope) if scope is not None else None}
    return web.Response(
        text=json.dumps(body, ensure_ascii=False), content_type=CONTENT_TYPES["json"]
    )


def ledger_handler(
    store: Store,
    *,
    timezone: dt.tzinfo,
    calendar: WorkCalendar,
    clock: Callable[[], float] = time.time,
) -> Callable[[web.Request, Operator], Awaitable[web.StreamResponse]]:
    """The admin route's handler: ``admin.route("GET", PATH, "view", ledger_handler(…))``."""

    async def handle(request: web.Request, operator: Operator) -> web.StreamResponse:
        return await ledger_answer(
            store, request.query, operator.scope, now=clock(), tz=timezone, calendar=calendar
        )

    return handle
