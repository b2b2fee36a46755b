"""The gateway names, at start, the years within 90 days its calendar has no holidays for."""

from __future__ import annotations

import datetime as dt
import io
import json
import zoneinfo
from collections.abc import Callable

import pytest

from gateway.runtime import Gateway
from gateway.settings import Settings

TZ = zoneinfo.ZoneInfo("Asia/Shanghai")


@pytest.mark.parametrize(
    ("today", "years"),
    [((2026, 11, 28), [[2027]]), ((2026, 6, 1), [])],
)
async def test_start_warns_of_the_years_ahead_without_holidays(
    settings_for: Callable[..., Settings],
    log_capture: io.StringIO,
    today: tuple[int, int, int],
    years: list[list[int]],
) -> None:
    now = dt.datetime(*today, 9, tzinfo=TZ).timestamp()
    gw = Gateway(settings_for(), roles=["scheduler"], clock=lambda: now)
    await gw.start()
    await gw.stop(drain_seconds=1)
    lines = [json.loads(x) for x in log_capture.getvalue().splitlines() if x.strip()]
    assert [x["years"] for x in lines if x.get("event") == "calendar_missing_years"] == years
