"""The supervision ledger: per department and matter, how a month's work kept its time
limits. Pure: computed from task timelines alone, so any past month can be recomputed.

Per task, from its timeline (``gateway.orchestration.clock`` writes the clock's start into
every dispatch and receipt entry):

- the clock starts at the department's acceptance receipt where there is one, else at the
  confirmed dispatch (DESIGN "Time"); it stands still from ``task.clock_stopped`` to the
  next ``task.clock_started``;
- the due time is the one the gateway *recorded* in the timeline when it started or
  restarted the clock, so a later change of the calendar file does not move a past month
  (a timeline entry without one has it recomputed: the step's limit applied from the
  clock's start on the current calendar, pushed by every stop that ended, as the planner
  pushes it). A task that ends while its clock is stopped has the stop closed at its end,
  so it is judged by the time it used. Working hours used are measured on the current
  calendar;
- the task ends at ``task.completed`` or ``task.denied`` (decided, 办结), at
  ``task.cancelled``, or when its application is withdrawn (``application.withdrawn``).

The month runs from the first day 00:00 to the next month's first day 00:00 in the
configured time zone; figures are as of the month's end, or now if that is earlier:

    received               tasks first dispatched in the month (once, even when the
                           department's receipt restarts the clock in the next month)
    completed on time/late tasks decided in the month, by the decision against the due time
    cancelled              tasks received at some point and cancelled or withdrawn in the month
    open within time       received by the as-of moment, not ended, not past the due time
    open overdue           the same, past the due time (a stopped clock is overdue when it
                           stopped after its due time)
    average / p90 hours    office time used by the tasks decided in the month, stops
                           excluded; p90 by nearest rank
    corrections requested  ``task.correction_requested`` entries in the month
    due estimated          tasks counted in the month whose due time reaches a year the
                           calendar has no holidays for (counted Monday to Friday)

So open(previous month) + received − decided − cancelled = open(this month).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from gateway import deadlines
from gateway.calendar import WorkCalendar
from gateway.catalogue.model import Catalogue
from gateway.orchestration.records import TimelineEntry

DECIDED = frozenset({"task.completed", "task.denied"})
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


class InvalidMonth(ValueError):
    """A month that is not ``YYYY-MM``."""


@dataclass(frozen=True, slots=True)
class Month:
    year: int
    month: int

    @classmethod
    def parse(cls, text: str) -> Month:
        match = _MONTH.match(text.strip())
        if match is None or not 1 <= int(match[1]) <= 9999:
            raise InvalidMonth(f"month {text!r}: expected YYYY-MM, e.g. 2026-11")
        return cls(int(match[1]), int(match[2]))

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    def bounds(self, tz: dt.tzinfo) -> tuple[dt.datetime, dt.datetime]:
        """The month's first moment and the next month's first moment in ``tz``."""
        start = dt.datetime(self.year, self.month, 1, tzinfo=tz)
        nxt = (self.year + 1, 1) if self.month == 12 else (self.year, self.month + 1)
        return start, dt.datetime(*nxt, 1, tzinfo=tz)


@dataclass(frozen=True, slots=True)
class TaskTimeline:
    """One task's timeline entries (and its application's withdrawal, if any), in order."""

    task_id: str
    application_id: str
    matter: str
    step: str
    system: str
    catalogue_version: str
    entries: tuple[TimelineEntry, ...]


@dataclass(frozen=True, slots=True)
class TaskFacts:
    """What the ledger needs of one task, as of a moment."""

    clock_started_at: float | None
    due_at: float | None  # recomputed, with the stops that ended by the as-of moment
    ended_at: float | None
    ended: str | None  # "decided" | "cancelled"
    stopped_at: float | None  # set when the clock stands still at the as-of moment
    used_hours: float | None  # office time used, stops excluded (ended tasks)
    corrections: tuple[float, ...]
    received_at: float | None = None  # the first dispatch (the clock start if not given)
    uncovered_years: tuple[int, ...] = ()  # due time counted without holidays for these

    @property
    def received(self) -> float | None:
        return self.received_at if self.received_at is not None else self.clock_started_at

    def open_at(self, moment: float) -> bool:
        started = self.received is not None and self.received < moment
        return started and (self.ended_at is None or self.ended_at >= moment)

    def overdue_at(self, moment: float) -> bool:
        if self.due_at is None:
            return False
        return (self.stopped_at if self.stopped_at is not None else moment) > self.due_at


@dataclass(frozen=True, slots=True)
class LedgerRow:
    department: str
    system: str
    matter: str
    received: int = 0
    completed_on_time: int = 0
    completed_late: int = 0
    cancelled: int = 0
    open_within_time: int = 0
    open_overdue: int = 0
    average_hours: float | None = None
    p90_hours: float | None = None
    corrections_requested: int = 0
    due_estimated: int = 0  # tasks counted here whose due time had no holidays to count on

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class Ledger:
    month: str
    start: dt.datetime
    as_of: dt.datetime
    calendar: str
    rows: tuple[LedgerRow, ...]  # per department, system and matter
    departments: tuple[LedgerRow, ...]  # per department (matter "*", system "*" if several)
    total: LedgerRow
    calendar_uncovered_years: tuple[int, ...] = ()  # years due times were estimated over

    def as_dict(self) -> dict[str, Any]:
        return {
            "month": self.month,
            "from": self.start.isoformat(),
            "as_of": self.as_of.isoformat(timespec="seconds"),
            "calendar": self.calendar,
            "calendar_uncovered_years": list(self.calendar_uncovered_years),
            "rows": [r.as_dict() for r in self.rows],
            "departments": [r.as_dict() for r in self.departments],
            "total": self.total.as_dict(),
        }


def task_facts(
    tl: TaskTimeline, catalogue: Catalogue, tz: dt.tzinfo, calendar: WorkCalendar, as_of: float
) -> TaskFacts:
    """The task's clock, due time, end, stops and corrections, from entries before ``as_of``.

    The due time is the one the gateway recorded (dispatch, receipt and clock-restart
    entries carry it), so a later change of the calendar file does not move a past month;
    an entry without one (older timelines) has it recomputed on ``calendar``.
    """
    limit = catalogue.matter(tl.matter).step(tl.step).limit
    budget = deadlines.Budget(limit.value, limit.unit)

    def local(ts: float) -> dt.datetime:
        return dt.datetime.fromtimestamp(ts, tz)

    received: float | None = None
    start: float | None = None
    due: dt.datetime | None = None
    receipt_seen = False
    stops: list[tuple[float, float | None]] = []
    ended_at: float | None = None
    ended: str | None = None
    corrections: list[float] = []
    estimated: set[int] = set()
    for e in tl.entries:
        if e.at >= as_of or ended is not None:
            break
        recorded = _float(e.detail.get("due_at"), None)
        if e.kind == "task.dispatched" and start is None:
            received = e.at  # received once, at the first dispatch, whatever the receipt says
            start = _at(e.detail.get("clock_started_at"), e.at)
            due = _due(recorded, start, budget, calendar, tz)
        elif e.kind == "task.submitted":
            # the first receipt starts the clock; later ones (after a correction) carry it on
            default = start if receipt_seen and start is not None else e.at
            start = _at(e.detail.get("clock_started_at"), default)
            if recorded is not None or not receipt_seen:
                due = _due(recorded, start, budget, calendar, tz)
            receipt_seen = True
            received = e.at if received is None else received
        elif e.kind == "task.clock_stopped":
            stops.append((e.at, None))
        elif e.kind == "task.clock_started" and stops and stops[-1][1] is None:
            stops[-1] = (stops[-1][0], e.at)
            if recorded is not None:
                due = local(recorded)
            elif due is not None:
                due = deadlines.resume(due, local(stops[-1][0]), local(e.at), limit.unit, calendar)
        elif e.kind == "task.correction_requested":
            corrections.append(e.at)
        elif e.kind in DECIDED:
            ended_at, ended = e.at, "decided"
        elif e.kind in ("task.cancelled", "application.withdrawn"):
            ended_at, ended = e.at, "cancelled"
        years = e.detail.get("calendar_uncovered_years")
        if e.kind.startswith("task.") and isinstance(years, list):
            estimated.update(y for y in years if isinstance(y, int))
    if start is None or due is None:
        return TaskFacts(None, None, ended_at, ended, None, None, tuple(corrections))
    stopped_at: float | None = None
    if stops and stops[-1][1] is None:
        if ended_at is None:
            stopped_at = stops[-1][0]  # still standing still at the as-of moment
        else:  # ended while stopped: the stop lasted until the end, as the planner closes it
            stops[-1] = (stops[-1][0], ended_at)
            due = deadlines.resume(due, local(stops[-1][0]), local(ended_at), limit.unit, calendar)
    used: float | None = None
    if ended_at is not None:
        office = deadlines.working_time_between(local(start), local(ended_at), calendar)
        for stopped, resumed in stops:
            office -= deadlines.working_time_between(
                local(stopped), local(ended_at if resumed is None else resumed), calendar
            )
        used = office.total_seconds() / 3600
    estimated.update(calendar.uncovered(local(start).date(), due.date()))
    return TaskFacts(
        start,
        due.timestamp(),
        ended_at,
        ended,
        stopped_at,
        used,
        tuple(corrections),
        received_at=received,
        uncovered_years=tuple(sorted(estimated)),
    )


def _due(
    recorded: float | None,
    start: float,
    budget: deadlines.Budget,
    calendar: WorkCalendar,
    tz: dt.tzinfo,
) -> dt.datetime:
    if recorded is not None:
        return dt.datetime.fromtimestamp(recorded, tz)
    return deadlines.due_at(dt.datetime.fromtimestamp(start, tz), budget, calendar)


def compute(
    timelines: Iterable[TaskTimeline],
    month: Month,
    *,
    now: float,
    tz: dt.tzinfo,
    calendar: WorkCalendar,
    catalogue_for: Callable[[str], Catalogue],
    systems: Collection[str] | None = None,
) -> Ledger:
    """The month's ledger from task timelines; ``systems`` limits it to those systems."""
    start_dt, end_dt = month.bounds(tz)
    as_of_dt = min(end_dt, dt.datetime.fromtimestamp(now, tz))
    lo, hi = start_dt.timestamp(), as_of_dt.timestamp()
    groups: dict[tuple[str, str, str], _Tally] = {}
    uncovered: set[int] = set()
    for tl in timelines:
        if systems is not None and tl.system not in systems:
            continue
        catalogue = catalogue_for(tl.catalogue_version)
        department = catalogue.matter(tl.matter).step(tl.step).department
        facts = task_facts(tl, catalogue, tz, calendar, hi)
        tally = groups.setdefault((department, tl.system, tl.matter), _Tally())
        if tally.add(facts, lo, hi):
            uncovered.update(facts.uncovered_years)
    rows = tuple(t.row(*key) for key, t in sorted(groups.items()))
    by_department: dict[str, list[tuple[tuple[str, str, str], _Tally]]] = {}
    for key, tally in sorted(groups.items()):
        by_department.setdefault(key[0], []).append((key, tally))
    departments = tuple(
        _Tally.merge(t for _, t in items).row(department, _one({k[1] for k, _ in items}), "*")
        for department, items in by_department.items()
    )
    total = _Tally.merge(groups.values()).row("*", "*", "*")
    return Ledger(
        str(month),
        start_dt,
        as_of_dt,
        calendar.version,
        rows,
        departments,
        total,
        tuple(sorted(uncovered)),
    )


@dataclass
class _Tally:
    received: int = 0
    on_time: int = 0
    late: int = 0
    cancelled: int = 0
    open_ok: int = 0
    open_late: int = 0
    corrections: int = 0
    estimated: int = 0
    hours: list[float] = field(default_factory=list)

    def add(self, f: TaskFacts, lo: float, hi: float) -> bool:
        """Count the task; True when it appears in a figure of the month."""
        counted = f.received is not None and lo <= f.received < hi
        self.received += counted
        ended, due, used = f.ended_at, f.due_at, f.used_hours
        if ended is not None and due is not None and lo <= ended < hi:  # a started task ended
            counted = True
            if f.ended == "cancelled":
                self.cancelled += 1
            else:
                self.on_time += ended <= due
                self.late += ended > due
                self.hours.append(used if used is not None else 0.0)
        if f.open_at(hi):
            counted = True
            if f.overdue_at(hi):
                self.open_late += 1
            else:
                self.open_ok += 1
        self.corrections += sum(1 for c in f.corrections if lo <= c < hi)
        counted = counted and f.due_at is not None
        self.estimated += counted and bool(f.uncovered_years)
        return counted

    @staticmethod
    def merge(tallies: Iterable[_Tally]) -> _Tally:
        out = _Tally()
        for t in tallies:
            out.received += t.received
            out.on_time += t.on_time
            out.late += t.late
            out.cancelled += t.cancelled
            out.open_ok += t.open_ok
            out.open_late += t.open_late
            out.corrections += t.corrections
            out.estimated += t.estimated
            out.hours.extend(t.hours)
        return out

    def row(self, department: str, system: str, matter: str) -> LedgerRow:
        return LedgerRow(
            department=department,
            system=system,
            matter=matter,
            received=self.received,
            completed_on_time=self.on_time,
            completed_late=self.late,
            cancelled=self.cancelled,
            open_within_time=self.open_ok,
            open_overdue=self.open_late,
            average_hours=_round(sum(self.hours) / len(self.hours)) if self.hours else None,
            p90_hours=_round(p90(self.hours)) if self.hours else None,
            corrections_requested=self.corrections,
            due_estimated=self.estimated,
        )


def p90(values: Collection[float]) -> float:
    """The 90th percentile by nearest rank: the smallest value with 90 % at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


def _round(hours: float) -> float:
    return round(hours, 2)


def _one(values: set[str]) -> str:
    return next(iter(values)) if len(values) == 1 else "*"


def _float(value: object, default: float | None) -> float | None:
    return float(value) if isinstance(value, int | float) else default


def _at(value: object, default: float) -> float:
    return float(value) if isinstance(value, int | float) else default
