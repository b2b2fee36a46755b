"""Maintenance windows: when a department system must not be called.

``[systems.<name>] maintenance`` lists entries in the gateway's time zone
(``Settings.timezone``)::

    "Mon-Fri 22:00-23:30"     every weekday evening
    "Sat,Sun 00:00-06:00"     days may be listed and ranged (``Fri-Mon`` wraps the week)
    "2026-12-24 08:00-12:00"  one date
    "Sun 23:00-01:00"         an end at or before the start ends the next day; 24:00 is midnight

Entries are checked when the settings load (a bad one is a ``ConfigurationError`` naming the
system and the entry). During a window the connector runner holds the system's tasks without
calling it and without spending their retry budget, and its polling waits; see
``gateway.orchestration.runner``. Everything here is pure: the clock is an argument.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
EXAMPLES = "'Mon-Fri 22:00-23:30', 'Sat 00:00-06:00' or '2026-12-24 08:00-12:00'"
_ENTRY = re.compile(r"^\s*(\S+)\s+(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MAX_CHAINED = 32  # adjoining windows followed to find where maintenance really ends


class BadWindow(ValueError):
    """A maintenance entry that cannot be read; the message names the entry."""


@dataclass(frozen=True, slots=True)
class MaintenanceWindow:
    """One entry: on ``date`` or on ``weekdays`` (0 = Monday), from ``start`` for
    ``minutes`` minutes of wall-clock time (may run past midnight)."""

    entry: str
    start: dt.time
    minutes: int
    weekdays: frozenset[int] = frozenset()
    date: dt.date | None = None

    def applies_on(self, day: dt.date) -> bool:
        return day == self.date if self.date is not None else day.weekday() in self.weekdays

    def span_on(self, day: dt.date, tz: dt.tzinfo) -> tuple[float, float]:
        """(start, end) in unix seconds of the occurrence starting on ``day``."""
        begin = dt.datetime.combine(day, self.start)
        end = begin + dt.timedelta(minutes=self.minutes)  # wall clock, then localised
        return begin.replace(tzinfo=tz).timestamp(), end.replace(tzinfo=tz).timestamp()


def parse_window(entry: str) -> MaintenanceWindow:
    """``"Mon-Fri 22:00-23:30"`` → a window; ``BadWindow`` saying what is wrong."""
    match = _ENTRY.match(entry)
    if match is None:
        raise BadWindow(f"maintenance entry {entry!r} is not '<days or date> HH:MM-HH:MM'; "
                        f"write it like {EXAMPLES}")  # fmt: skip
    days, h1, m1, h2, m2 = match.groups()
    start = _minute_of_day(entry, int(h1), int(m1), allow_24=False)
    end = _minute_of_day(entry, int(h2), int(m2), allow_24=True)
    if start == end % (24 * 60) and end != 24 * 60:
        raise BadWindow(f"maintenance entry {entry!r} starts and ends at the same time")
    minutes = end - start if end > start else end + 24 * 60 - start
    begin = dt.time(start // 60, start % 60)
    if _DATE.match(days):
        try:
            date = dt.date.fromisoformat(days)
        except ValueError:
            raise BadWindow(f"maintenance entry {entry!r}: {days!r} is not a date") from None
        return MaintenanceWindow(entry, begin, minutes, date=date)
    return MaintenanceWindow(entry, begin, minutes, weekdays=_weekdays(entry, days))


def _minute_of_day(entry: str, hour: int, minute: int, *, allow_24: bool) -> int:
    if minute > 59 or hour > 24 or (hour == 24 and (minute or not allow_24)):
        raise BadWindow(f"maintenance entry {entry!r}: {hour:02d}:{minute:02d} is not a time")
    return hour * 60 + minute


def _weekdays(entry: str, spec: str) -> frozenset[int]:
    found: set[int] = set()
    for item in spec.split(","):
        first, _, last = item.partition("-")
        a, b = _day(entry, first), _day(entry, last or first)
        found.update((a + i) % 7 for i in range((b - a) % 7 + 1))  # "Fri-Mon" wraps
    return frozenset(found)


def _day(entry: str, name: str) -> int:
    try:
        return DAYS.index(name.strip().lower())
    except ValueError:
        raise BadWindow(
            f"maintenance entry {entry!r}: {name!r} is neither a day (Mon … Sun) nor a date "
            "(YYYY-MM-DD)"
        ) from None


@dataclass(frozen=True, slots=True)
class Maintenance:
    """A system's maintenance windows in the gateway's time zone."""

    windows: tuple[MaintenanceWindow, ...]
    tz: dt.tzinfo

    @classmethod
    def parse(cls, entries: Iterable[str], timezone: str) -> Maintenance:
        return cls(tuple(parse_window(e) for e in entries), zoneinfo.ZoneInfo(timezone))

    def ends_at(self, now: float) -> float | None:
        """When the maintenance under way at ``now`` ends (unix seconds; windows that adjoin
        or overlap count as one), or None when the system is available at ``now``."""
        end = self._covering(now)
        if end is None:
            return None
        for _ in range(_MAX_CHAINED):
            further = self._covering(end)
            if further is None or further <= end:
                break
            end = further
        return end

    def _covering(self, t: float) -> float | None:
        """The latest end of the windows that contain ``t``."""
        today = dt.datetime.fromtimestamp(t, self.tz).date()
        ends = [
            end
            for w in self.windows
            for day in (today - dt.timedelta(days=1), today)  # a window may start yesterday
            if w.applies_on(day)
            for start, end in (w.span_on(day, self.tz),)
            if start <= t < end
        ]
        return max(ends, default=None)
