"""Maintenance windows: read from config entries, in the gateway's time zone."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest

from gateway.errors import ConfigurationError
from gateway.orchestration.maintenance import BadWindow, Maintenance, parse_window
from gateway.settings import SystemConfig, load_settings

SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")


def at(text: str, tz: dt.tzinfo = SHANGHAI) -> float:
    """Unix seconds of a local wall-clock time, e.g. ``"2026-11-27 22:10"`` (a Friday)."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=tz).timestamp()


def windows(*entries: str, tz: str = "Asia/Shanghai") -> Maintenance:
    return Maintenance.parse(entries, tz)


def test_entries_are_read_into_days_dates_and_spans() -> None:
    weekdays = parse_window("Mon-Fri 22:00-23:30")
    assert weekdays.weekdays == {0, 1, 2, 3, 4} and weekdays.minutes == 90
    assert weekdays.start == dt.time(22, 0) and weekdays.date is None
    assert parse_window("sat,Sun 00:00-06:00").weekdays == {5, 6}
    assert parse_window("Fri-Mon 01:00-02:00").weekdays == {4, 5, 6, 0}  # wraps the week
    one_day = parse_window("2026-12-24 08:00-12:00")
    assert one_day.date == dt.date(2026, 12, 24) and one_day.weekdays == frozenset()
    assert parse_window("Sun 23:00-01:00").minutes == 120  # ends the next day
    assert parse_window("Sun 22:00-24:00").minutes == 120
    assert parse_window("Sun 00:00-24:00").minutes == 24 * 60


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ("Mon-Fry 22:00-23:30", "'Fry' is neither a day"),
        ("Mon-Fri 22:00", "is not '<days or date> HH:MM-HH:MM'"),
        ("Mon 25:00-26:00", "25:00 is not a time"),
        ("Mon 10:61-11:00", "10:61 is not a time"),
        ("Mon 24:00-01:00", "24:00 is not a time"),  # midnight starts as 00:00
        ("Mon 10:00-10:00", "starts and ends at the same time"),
        ("2026-02-30 08:00-12:00", "'2026-02-30' is not a date"),
        ("22:00-23:00", "is not '<days or date> HH:MM-HH:MM'"),
    ],
)
def test_a_bad_entry_says_what_is_wrong_and_quotes_it(entry: str, says: str) -> None:
    with pytest.raises(BadWindow) as caught:
        parse_window(entry)
    assert says in str(caught.value) and repr(entry) in str(caught.value)


def test_settings_refuse_a_bad_entry_naming_the_system_and_the_entry() -> None:
    good = SystemConfig(kind="soap", maintenance=("Mon-Fri 22:00-23:30",))
    assert good.maintenance == ("Mon-Fri 22:00-23:30",)
    with pytest.raises(ConfigurationError) as caught:
        load_settings(
            systems={"hukou": {"kind": "soap", "maintenance": ["Sat 00:00-06:00", "Sun 7-8"]}}
        )
    message = str(caught.value)
    assert "systems.hukou.maintenance" in message and "'Sun 7-8'" in message


def test_inside_a_weekday_window_it_ends_at_the_window_end() -> None:
    m = windows("Mon-Fri 22:00-23:30")
    assert m.ends_at(at("2026-11-27 22:10")) == at("2026-11-27 23:30")  # Friday
    assert m.ends_at(at("2026-11-27 22:00")) == at("2026-11-27 23:30")  # start included
    assert m.ends_at(at("2026-11-27 23:30")) is None  # end excluded
    assert m.ends_at(at("2026-11-27 21:59")) is None
    assert m.ends_at(at("2026-11-28 22:10")) is None  # Saturday


def test_a_window_past_midnight_covers_the_next_morning() -> None:
    m = windows("Sun 23:00-01:00")
    assert m.ends_at(at("2026-11-29 23:30")) == at("2026-11-30 01:00")  # Sunday night
    assert m.ends_at(at("2026-11-30 00:30")) == at("2026-11-30 01:00")  # Monday morning
    assert m.ends_at(at("2026-11-30 23:30")) is None  # Monday night is not Sunday's


def test_adjoining_windows_count_as_one() -> None:
    m = windows("Fri 22:00-24:00", "Sat 00:00-06:00", "Sat 05:00-07:00")
    assert m.ends_at(at("2026-11-27 23:00")) == at("2026-11-28 07:00")


def test_a_dated_window_applies_on_that_date_only() -> None:
    m = windows("2026-12-24 08:00-12:00")
    assert m.ends_at(at("2026-12-24 09:00")) == at("2026-12-24 12:00")
    assert m.ends_at(at("2026-12-31 09:00")) is None
    assert windows().ends_at(at("2026-12-24 09:00")) is None  # no windows: never


def test_the_time_zone_is_the_configured_one() -> None:
    m = windows("Mon-Fri 22:00-23:30", tz="Europe/Berlin")
    berlin = zoneinfo.ZoneInfo("Europe/Berlin")
    assert m.ends_at(at("2026-11-27 22:10", berlin)) == at("2026-11-27 23:30", berlin)
    assert m.ends_at(at("2026-11-27 22:10")) is None  # 22:10 in Shanghai is 15:10 in Berlin
