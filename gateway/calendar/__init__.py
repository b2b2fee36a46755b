"""The working-day calendar as data (DESIGN "Time"): see ``workdays``."""

from gateway.calendar.missing import startup_warning, warn_uncovered
from gateway.calendar.workdays import (
    WorkCalendar,
    calendar_from,
    default_calendar,
    load_calendar,
    parse_office_hours,
)

CALENDAR_VERSION = default_calendar().version
"""The version of the packaged calendar (a local file names its own)."""

__all__ = [
    "CALENDAR_VERSION",
    "WorkCalendar",
    "calendar_from",
    "default_calendar",
    "load_calendar",
    "parse_office_hours",
    "startup_warning",
    "warn_uncovered",
]
