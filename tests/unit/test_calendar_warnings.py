"""Warnings for years without holiday data: once at start for the next 90 days, and again
the first time a due time reaches such a year, once per year per process."""

from __future__ import annotations

import datetime as dt
import io
import json
import zoneinfo
from collections.abc import Iterator

import pytest

from gateway.calendar import default_calendar, startup_warning, warn_uncovered
from gateway.calendar.missing import forget_warnings
from gateway.catalogue.model import load
from gateway.orchestration import clock
from gateway.orchestration.records import Context

TZ = zoneinfo.ZoneInfo("Asia/Shanghai")


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    forget_warnings()
    yield
    forget_warnings()


def warnings(buffer: io.StringIO, event: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]
    return [line for line in lines if line.get("event") == event]


def test_start_warns_for_a_year_without_data_within_90_days(log_capture: io.StringIO) -> None:
    assert startup_warning(default_calendar(), dt.date(2026, 11, 28)) == (2027,)
    [line] = warnings(log_capture, "calendar_missing_years")
    assert line["years"] == [2027] and line["level"] == "warning"
    assert startup_warning(default_calendar(), dt.date(2026, 6, 1)) == ()  # to 30 Aug 2026
    assert len(warnings(log_capture, "calendar_missing_years")) == 1


def test_the_first_due_time_in_a_year_without_data_warns_once(log_capture: io.StringIO) -> None:
    step = load().matter("retirement").step("file_review")  # 5 working days
    ctx = Context(load(), 0.0, TZ, {})
    clock.due(step, dt.datetime(2026, 11, 18, 9, tzinfo=TZ).timestamp(), ctx)
    assert warnings(log_capture, "calendar_year_estimated") == []
    clock.due(step, dt.datetime(2026, 12, 28, 9, tzinfo=TZ).timestamp(), ctx)  # into 2027
    clock.due(step, dt.datetime(2026, 12, 29, 9, tzinfo=TZ).timestamp(), ctx)
    [line] = warnings(log_capture, "calendar_year_estimated")
    assert line["years"] == [2027]
    assert warn_uncovered([2027, 2028]) == (2028,)  # 2027 said already in this process
    assert [w["years"] for w in warnings(log_capture, "calendar_year_estimated")] == [
        [2027],
        [2028],
    ]
