"""An application's time budget: the critical path of its matter's dependency graph.

Each step may only start when every step it depends on has ended, so the bundle is due
when its latest chain of steps has run out. With mixed units along a chain (two working
hours, then a working day, then a calendar day) there is no common unit to add in, so the
budget is *composed* instead: every step's limit is applied, on the working-day calendar,
from the moment the latest of its dependencies ran out (the application's acceptance for
a step without dependencies), and the application is due at the latest end over all steps.
That is the longest path when every department uses all of its time, whatever the units;
for a chain of ``WORKDAY`` steps it is simply their sum.

Once tasks run, ``known`` gives a step's end as it stands (the task's current due time,
which moves with every clock stop): the path is then composed from those, so an
application is never due before one of its own tasks.

Only the steps that apply count: a step whose ``when`` does not hold, and every step that
depends on one that does not apply, are left out (as the planner cancels them).

The matter's ``promise`` (what the service centre tells the citizen) is a separate figure;
``exceeds_promise`` names the matters whose critical path runs past it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass

from gateway import deadlines
from gateway.calendar import WorkCalendar
from gateway.catalogue.model import Catalogue, Limit, Matter, Step


@dataclass(frozen=True, slots=True)
class ApplicationBudget:
    start: dt.datetime
    due_at: dt.datetime
    critical_path: tuple[str, ...]  # step keys, first to last, of the chain that ends last
    ends: Mapping[str, dt.datetime]  # per applicable step: when its limit runs out at the latest


def application_budget(
    matter: Matter,
    start: dt.datetime,
    calendar: WorkCalendar,
    applies: Collection[str] | None = None,
    known: Mapping[str, dt.datetime] | None = None,
) -> ApplicationBudget:
    """The application's due time from ``start`` (its acceptance, time-zone aware).

    ``applies``: the keys of the steps that apply to this application (all by default);
    a step depending on one left out is left out too. ``known``: per step, its end as it
    stands (a running task's due time), used instead of the planned one.
    """
    known = known or {}
    keys = {s.key for s in matter.steps} if applies is None else set(applies)
    ends: dict[str, dt.datetime] = {}
    via: dict[str, str | None] = {}
    for step in _topological(matter):
        if step.key not in keys or any(d not in ends for d in step.depends_on):
            continue  # does not apply, or depends on a step that does not
        begin, before = start, None
        for dep in step.depends_on:
            if ends[dep] > begin:
                begin, before = ends[dep], dep
        ends[step.key] = known.get(step.key) or _end(begin, step.limit, calendar)
        via[step.key] = before
    if not ends:
        return ApplicationBudget(start, start, (), {})
    last = max(ends, key=ends.__getitem__)  # the first in catalogue order on a tie
    path: list[str] = []
    key: str | None = last
    while key is not None:
        path.append(key)
        key = via[key]
    return ApplicationBudget(start, ends[last], tuple(reversed(path)), ends)


def promise_due(matter: Matter, start: dt.datetime, calendar: WorkCalendar) -> dt.datetime:
    """When the matter's promise to the citizen runs out from ``start``."""
    return _end(start, matter.promise, calendar)


def exceeds_promise(
    catalogue: Catalogue, start: dt.datetime, calendar: WorkCalendar
) -> dict[str, tuple[str, ...]]:
    """Matters whose critical path (every step applying) ends after their promise, with
    the path: catalogue data to reconcile, not an error."""
    late: dict[str, tuple[str, ...]] = {}
    for code, matter in catalogue.matters.items():
        budget = application_budget(matter, start, calendar)
        if budget.due_at > promise_due(matter, start, calendar):
            late[code] = budget.critical_path
    return late


def _end(begin: dt.datetime, limit: Limit, calendar: WorkCalendar) -> dt.datetime:
    return deadlines.due_at(begin, deadlines.Budget(limit.value, limit.unit), calendar)


def _topological(matter: Matter) -> Iterator[Step]:
    """Steps with every dependency before them (the catalogue check rejects cycles)."""
    done: set[str] = set()
    pending = list(matter.steps)
    while pending:
        ready = [s for s in pending if all(d in done for d in s.depends_on)]
        if not ready:
            raise ValueError(f"the steps {[s.key for s in pending]} form a cycle")
        for step in ready:
            done.add(step.key)
            yield step
        pending = [s for s in pending if s.key not in done]
