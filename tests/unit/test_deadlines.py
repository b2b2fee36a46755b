"""Deadlines on the working-day calendar: weekends, holidays, make-up days, office hours."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from pathlib import Path

import pytest

from gateway import deadlines
from gateway.calendar import CALENDAR_VERSION, default_calendar, load_calendar
from gateway.errors import ConfigurationError

TZ = zoneinfo.ZoneInfo("Asia/Shanghai")
CAL = default_calendar()  # 08:30-12:00 and 14:30-17:30: 6.5 hours a working day


def at(y: int, m: int, d: int, hh: int, mm: int = 0) -> dt.datetime:
    return dt.datetime(y, m, d, hh, mm, tzinfo=TZ)


def test_the_packaged_calendar_holds_the_2025_and_2026_notices() -> None:
    assert CAL.version == CALENDAR_VERSION
    assert CAL.years == {2025, 2026}
    assert CAL.office_time_per_day() == dt.timedelta(hours=6, minutes=30)
    off_2025 = sorted(d for d in CAL.days_off if d.year == 2025)
    assert len(off_2025) == 1 + 8 + 3 + 5 + 3 + 8  # the notice's own day counts
    assert sorted(d.isoformat() for d in CAL.make_up_days if d.year == 2025) == [
        "2025-01-26",
        "2025-02-08",
        "2025-04-27",
        "2025-09-28",
        "2025-10-11",
    ]
    assert len([d for d in CAL.days_off if d.year == 2026]) == 3 + 9 + 3 + 5 + 3 + 3 + 7
    assert CAL.is_working_day(dt.date(2026, 2, 14))  # a Saturday, made a working day
    assert not CAL.is_working_day(dt.date(2026, 2, 23))  # a Monday in the Spring Festival


@pytest.mark.parametrize(
    ("start", "value", "unit", "due"),
    [
        (at(2026, 11, 18, 9), 2, "WORKHOUR", at(2026, 11, 18, 11)),
        (at(2026, 11, 18, 11), 2, "WORKHOUR", at(2026, 11, 18, 15, 30)),  # over lunch
        (at(2026, 11, 18, 12, 30), 1, "WORKHOUR", at(2026, 11, 18, 15, 30)),  # in lunch
        (at(2026, 11, 18, 17, 45), 1, "WORKHOUR", at(2026, 11, 19, 9, 30)),  # after close
        (at(2026, 11, 18, 8), 1, "WORKHOUR", at(2026, 11, 18, 9, 30)),  # before opening
        (at(2026, 11, 18, 16, 30), 1, "WORKHOUR", at(2026, 11, 18, 17, 30)),  # at close
        (at(2026, 11, 20, 17), 2, "WORKHOUR", at(2026, 11, 23, 10)),  # Friday → Monday
        (at(2026, 11, 21, 10), 1, "WORKHOUR", at(2026, 11, 23, 9, 30)),  # Saturday start
        (at(2026, 11, 18, 8, 30), 1, "WORKDAY", at(2026, 11, 18, 17, 30)),
        (at(2026, 11, 18, 8, 30), 0.5, "WORKDAY", at(2026, 11, 18, 11, 45)),  # 3 h 15 min
        (at(2026, 11, 18, 7), 0.5, "WORKDAY", at(2026, 11, 18, 11, 45)),
        (at(2026, 11, 18, 8, 30), 15, "WORKDAY", at(2026, 12, 8, 17, 30)),
        (at(2026, 11, 18, 9), 30, "CALENDAR_DAY", at(2026, 12, 18, 9)),
        (at(2026, 11, 21, 23), 2, "HOUR", at(2026, 11, 22, 1)),
        # 2025: National Day and Mid-Autumn, 1-8 October, and Saturday 11 October works
        (at(2025, 9, 30, 16, 30), 2, "WORKHOUR", at(2025, 10, 9, 9, 30)),
        (at(2025, 9, 30, 8, 30), 3, "WORKDAY", at(2025, 10, 10, 17, 30)),  # 30 Sep, 9, 10 Oct
        (at(2025, 9, 30, 8, 30), 4, "WORKDAY", at(2025, 10, 11, 17, 30)),  # the make-up Saturday
        (at(2025, 10, 10, 17), 1, "WORKHOUR", at(2025, 10, 11, 9)),
        (at(2025, 10, 11, 17), 1, "WORKHOUR", at(2025, 10, 13, 9)),  # Sunday 12th is off
        (at(2025, 9, 27, 10), 1, "WORKHOUR", at(2025, 9, 28, 9, 30)),  # Saturday → make-up Sunday
        (at(2025, 10, 3, 10), 1, "CALENDAR_DAY", at(2025, 10, 4, 10)),  # wall time ignores it
        # 2026: Spring Festival 15-23 February, with Saturday 14 February working
        (at(2026, 2, 13, 17), 1, "WORKHOUR", at(2026, 2, 14, 9)),
        (at(2026, 2, 14, 17), 1, "WORKHOUR", at(2026, 2, 24, 9)),
    ],
)
def test_due_at(start: dt.datetime, value: float, unit: str, due: dt.datetime) -> None:
    assert deadlines.due_at(start, deadlines.Budget(value, unit), CAL) == due


@pytest.mark.parametrize(
    ("start", "end", "hours"),
    [
        (at(2026, 11, 18, 8, 30), at(2026, 11, 18, 17, 30), 6.5),
        (at(2026, 11, 18, 12, 30), at(2026, 11, 18, 14, 30), 0),  # lunch
        (at(2026, 11, 18, 11), at(2026, 11, 18, 15), 1.5),
        (at(2026, 11, 20, 17), at(2026, 11, 23, 9), 1),  # the weekend counts nothing
        (at(2025, 9, 30, 17), at(2025, 10, 9, 8, 30), 0.5),  # nor does a public holiday
        (at(2025, 10, 10, 17, 30), at(2025, 10, 13, 8, 30), 6.5),  # the make-up Saturday does
        (at(2026, 11, 18, 15), at(2026, 11, 18, 11), 0),  # an end before the start
    ],
)
def test_working_time_between(start: dt.datetime, end: dt.datetime, hours: float) -> None:
    assert deadlines.working_time_between(start, end, CAL) == dt.timedelta(hours=hours)


def test_working_time_between_inverts_due_at() -> None:
    start = at(2025, 9, 26, 10, 17)
    for value in (0.25, 1, 3, 7.5, 20):
        due = deadlines.due_at(start, deadlines.Budget(value, "WORKDAY"), CAL)
        assert deadlines.working_time_between(start, due, CAL) == CAL.office_time_per_day() * value


def test_resume_keeps_the_time_used_before_the_stop() -> None:
    due = at(2026, 11, 20, 11)  # stopped Wednesday 10:00 with 2 working days left
    stopped, resumed = at(2026, 11, 18, 10), at(2026, 11, 19, 10)  # stopped 6.5 office hours
    assert deadlines.resume(due, stopped, resumed, "WORKDAY", CAL) == at(2026, 11, 23, 11)
    # a wall-clock budget is pushed by the wall time the stop lasted
    assert deadlines.resume(due, stopped, resumed, "HOUR", CAL) == at(2026, 11, 21, 11)


def test_a_year_without_data_is_named() -> None:
    assert CAL.uncovered(dt.date(2026, 12, 1), dt.date(2027, 1, 5)) == (2027,)
    assert CAL.uncovered(dt.date(2025, 1, 1), dt.date(2026, 12, 31)) == ()
    assert "2025, 2026" in CAL.describe() and CAL.version in CAL.describe()


def test_office_hours_are_configurable() -> None:
    cal = load_calendar(office_hours=["09:00-17:00"])
    assert cal.office_time_per_day() == dt.timedelta(hours=8)
    due = deadlines.due_at(at(2025, 9, 30, 16), deadlines.Budget(2, "WORKHOUR"), cal)
    assert due == at(2025, 10, 9, 10)


@pytest.mark.parametrize(
    ("hours", "message"),
    [
        (["8:30-12:00"], "expected HH:MM-HH:MM"),
        (["12:00-08:30"], "closes before it opens"),
        (["08:30-12:00", "11:00-17:00"], "overlap"),
        ([], "at least one"),
    ],
)
def test_bad_office_hours_are_start_up_errors(hours: list[str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load_calendar(office_hours=hours)


def test_a_local_calendar_file_replaces_the_packaged_one(tmp_path: Path) -> None:
    local = tmp_path / "cal.toml"
    local.write_text(
        'version = "local/1"\noffice_hours = ["09:00-12:00"]\n'
        '[[years]]\nyear = 2027\nsource = "local notice"\n'
        '[[years.holidays]]\nname = "x"\noff = [2027-01-01, 2027-01-01]\n'
        "work = [2027-01-02]\n",
        encoding="utf-8",
    )
    cal = load_calendar(local)
    assert (cal.version, cal.years) == ("local/1", {2027})
    assert not cal.is_working_day(dt.date(2027, 1, 1))
    assert cal.is_working_day(dt.date(2027, 1, 2))


def test_a_wrong_calendar_file_names_every_fault(tmp_path: Path) -> None:
    local = tmp_path / "cal.toml"
    local.write_text(
        'office_hours = ["09:00-12:00"]\n[[years]]\nyear = 2027\n'
        '[[years.holidays]]\nname = "x"\noff = [2027-01-05, 2027-01-01]\n'
        "work = [2027-01-04]\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigurationError) as info:
        load_calendar(local)
    message = str(info.value)
    assert "off must be [first date, last date]" in message
    assert "2027-01-04 is not a weekend date" in message
    assert "version is missing" in message
    with pytest.raises(ConfigurationError, match="does-not-exist"):
        load_calendar(tmp_path / "does-not-exist.toml")


def test_the_calendar_settings_table() -> None:
    from gateway.calendar import calendar_from
    from gateway.settings import Settings

    assert calendar_from(Settings().calendar) is CAL
    cal = calendar_from(
        Settings(calendar={"office_hours": ["09:00-12:00", "13:00-17:00"]}).calendar
    )
    assert cal.office_time_per_day() == dt.timedelta(hours=7)
    assert "office hours 09:00-12:00, 13:00-17:00" in cal.describe()


def test_a_holiday_may_spill_into_the_adjacent_year(tmp_path: Path) -> None:
    # the 2024 notice (国办发明电〔2023〕7号): New Year off 30 December 2023 to 1 January 2024
    local = tmp_path / "cal.toml"
    local.write_text(
        'version = "local/2024"\noffice_hours = ["09:00-17:00"]\n'
        '[[years]]\nyear = 2024\nsource = "国办发明电〔2023〕7号"\n'
        '[[years.holidays]]\nname = "元旦"\noff = [2023-12-30, 2024-01-01]\nwork = []\n',
        encoding="utf-8",
    )
    cal = load_calendar(local)
    assert cal.years == {2024}
    assert not cal.is_working_day(dt.date(2024, 1, 1))  # a Monday, off
    assert cal.is_working_day(dt.date(2024, 1, 2))
    # Fri 29 Dec 2023 16:00 + 2 working hours: the 1 January holiday is skipped
    start = dt.datetime(2023, 12, 29, 16, tzinfo=TZ)
    assert deadlines.due_at(start, deadlines.Budget(2, "WORKHOUR"), cal) == dt.datetime(
        2024, 1, 2, 10, tzinfo=TZ
    )
    # a range that does not touch its year is still refused
    local.write_text(
        local.read_text(encoding="utf-8").replace(
            "2023-12-30, 2024-01-01", "2022-12-30, 2023-01-01"
        ),
        encoding="utf-8",
    )
    with pytest.raises(ConfigurationError, match="lies outside 2024"):
        load_calendar(local)
