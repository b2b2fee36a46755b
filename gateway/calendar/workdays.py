"""The working-day calendar held as data: which dates are working days, and the office hours.

The packaged ``data/cn-workdays.toml`` copies the State Council General Office's yearly
holiday notices (public holidays, and the weekend dates made working days, 调休); a local
file with the same layout replaces it (``[calendar] file``), and ``[calendar] office_hours``
replaces the file's office hours. A year the data does not cover is counted Monday to
Friday; ``uncovered`` names such years so that whoever computes a due time over them can
flag it (and the gateway can warn at start) instead of guessing silently.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from gateway.errors import ConfigurationError
from gateway.settings import CalendarConfig

PACKAGED = "cn-workdays.toml"
_HOURS = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")

OfficeHours = tuple[tuple[dt.time, dt.time], ...]


@dataclass(frozen=True, slots=True)
class WorkCalendar:
    version: str
    office_hours: OfficeHours  # ordered, non-overlapping (open, close) pairs within one day
    years: frozenset[int]  # years whose holiday notice is in the data
    days_off: frozenset[dt.date]  # public holidays (and the weekdays they move)
    make_up_days: frozenset[dt.date]  # weekend dates that are working days
    sources: tuple[str, ...] = ()

    def is_working_day(self, day: dt.date) -> bool:
        if day in self.make_up_days:
            return True
        return day.weekday() < 5 and day not in self.days_off

    def office_time_per_day(self) -> dt.timedelta:
        return sum((_span(o, c) for o, c in self.office_hours), dt.timedelta())

    def uncovered(self, start: dt.date, end: dt.date) -> tuple[int, ...]:
        """Years between ``start`` and ``end`` (inclusive) counted without holidays."""
        lo, hi = sorted((start.year, end.year))
        return tuple(y for y in range(lo, hi + 1) if y not in self.years)

    def describe(self) -> str:
        """One line for people: which calendar, which years, which office hours."""
        years = ", ".join(str(y) for y in sorted(self.years)) or "none"
        hours = ", ".join(f"{o:%H:%M}-{c:%H:%M}" for o, c in self.office_hours)
        return (
            f"working-day calendar {self.version}: State Council holiday notices for {years}; "
            f"office hours {hours}; other years are counted Monday to Friday without holidays "
            "and flagged"
        )


def _span(opens: dt.time, closes: dt.time) -> dt.timedelta:
    day = dt.date(2000, 1, 1)
    return dt.datetime.combine(day, closes) - dt.datetime.combine(day, opens)


def parse_office_hours(spans: Sequence[str]) -> OfficeHours:
    """``["08:30-12:00", "14:30-17:30"]`` → ordered (open, close) pairs; raises on overlap."""
    pairs: list[tuple[dt.time, dt.time]] = []
    for span in spans:
        match = _HOURS.match(span)
        if match is None:
            raise ConfigurationError(f"office hours {span!r}: expected HH:MM-HH:MM")
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        opens, closes = dt.time(h1, m1), dt.time(h2, m2)
        if closes <= opens:
            raise ConfigurationError(f"office hours {span!r}: closes before it opens")
        pairs.append((opens, closes))
    if not pairs:
        raise ConfigurationError("office hours: at least one HH:MM-HH:MM span is needed")
    pairs.sort()
    for (_, c1), (o2, _) in itertools.pairwise(pairs):
        if o2 < c1:
            raise ConfigurationError(f"office hours {list(spans)!r} overlap")
    return tuple(pairs)


def parse_calendar(data: dict[str, Any], origin: str) -> WorkCalendar:
    """A calendar from the TOML layout of ``data/cn-workdays.toml``; every fault at once."""
    faults: list[str] = []
    days_off: set[dt.date] = set()
    make_up: set[dt.date] = set()
    years: set[int] = set()
    sources: list[str] = []
    for entry in data.get("years", []):
        year = entry.get("year")
        if not isinstance(year, int) or year in years:
            faults.append(f"year {year!r} is missing, not a number or listed twice")
            continue
        years.add(year)
        sources.append(f"{year}: {entry.get('source', '(no source given)')}")
        for holiday in entry.get("holidays", []):
            name = f"{year} {holiday.get('name', '?')}"
            off = holiday.get("off", [])
            if len(off) != 2 or not all(isinstance(d, dt.date) for d in off) or off[0] > off[1]:
                faults.append(f"{name}: off must be [first date, last date]")
            elif not off[0].year <= year <= off[1].year or off[1].year - off[0].year > 1:
                # a holiday may spill into the adjacent year (New Year 2024 was 2023-12-30
                # to 2024-01-01), but it must touch the year it is listed under
                faults.append(f"{name}: {off[0]}..{off[1]} lies outside {year}")
            else:
                day = off[0]
                while day <= off[1]:
                    days_off.add(day)
                    day += dt.timedelta(days=1)
            for work in holiday.get("work", []):
                if not isinstance(work, dt.date) or work.weekday() < 5:
                    faults.append(f"{name}: make-up working day {work} is not a weekend date")
                elif abs(work.year - year) > 1:
                    faults.append(f"{name}: make-up working day {work} lies outside {year}")
                else:
                    make_up.add(work)
    for day in sorted(days_off & make_up):
        faults.append(f"{day} is both a day off and a make-up working day")
    if not isinstance(data.get("version"), str) or not data["version"]:
        faults.append("version is missing")
    try:
        hours = parse_office_hours(data.get("office_hours", []))
    except ConfigurationError as exc:
        faults.append(str(exc))
        hours = ()
    if faults:
        raise ConfigurationError(f"working-day calendar {origin}: " + "; ".join(faults))
    return WorkCalendar(
        version=data["version"],
        office_hours=hours,
        years=frozenset(years),
        days_off=frozenset(days_off),
        make_up_days=frozenset(make_up),
        sources=tuple(sources),
    )


def load_calendar(
    file: Path | None = None, office_hours: Iterable[str] | None = None
) -> WorkCalendar:
    """The packaged calendar, or ``file``; ``office_hours`` replaces the file's hours.

    Raises ``ConfigurationError`` for a missing or malformed file.
    """
    if file is None:
        text = resources.files("gateway.calendar").joinpath("data", PACKAGED).read_text("utf-8")
        origin = f"(packaged {PACKAGED})"
    else:
        try:
            text = file.read_text("utf-8")
        except OSError as exc:
            raise ConfigurationError(f"working-day calendar {file}: {exc.strerror}") from None
        origin = str(file)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"working-day calendar {origin}: {exc}") from None
    if office_hours is not None:
        data["office_hours"] = list(office_hours)
    return parse_calendar(data, origin)


@functools.cache
def default_calendar() -> WorkCalendar:
    """The packaged calendar with its own office hours (read once per process)."""
    return load_calendar()


def calendar_from(config: CalendarConfig) -> WorkCalendar:
    """The calendar a ``[calendar]`` settings table asks for."""
    if config.file is None and config.office_hours is None:
        return default_calendar()
    return load_calendar(config.file, config.office_hours)
