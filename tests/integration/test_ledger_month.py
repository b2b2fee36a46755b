"""A simulated month: November 2026 in a real SQLite store, written by the real planner.

Sixty applications of seven matters are accepted at random office moments between 26 October
and 30 November. Each department answers after a share of its limit drawn at random (some
late), in office time; the police ask for a correction now and then (the citizen answers
hours later), the provincial platform suspends a few cases and denies fewer. Events after
4 December are not played, so some November work is still open at the month's end.

The ledger, recomputed from the timelines, must equal what the task rows say: clocks started
in November, decisions in November on time or late against the due time the planner stored,
and what was open at the end of the month. ``pytest -s`` prints the month's table.
"""

from __future__ import annotations

import datetime as dt
import heapq
import random
import zoneinfo
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway import deadlines
from gateway.calendar import default_calendar
from gateway.catalogue.model import load
from gateway.orchestration import planner
from gateway.orchestration.messages import ResultMessage
from gateway.orchestration.records import TERMINAL, CaseState, Context, TaskStatus, Transition
from gateway.store import NewApplication, Store, open_store
from gateway.supervision.ledger import Month
from gateway.supervision.render import render
from gateway.supervision.report import month_ledger
from tests.support.portal import example

TZ = zoneinfo.ZoneInfo("Asia/Shanghai")
CAL = default_calendar()
CATALOGUE = load()
HOUR = dt.timedelta(hours=1)
EXAMPLES = {
    "newborn": ("newborn-yizhang-window", 25),
    "retirement": ("retirement-online", 10),
    "after_death": ("after-death-mobile", 7),
    "school_entry": ("school-entry-online", 5),
    "housing": ("housing-window", 5),
    "medical_care": ("medical-care-window", 4),
    "veteran": ("veteran-window", 4),
}
HORIZON = dt.datetime(2026, 12, 4, 9, tzinfo=TZ).timestamp()
PROVIDES = {"birth_certificate_no": "A123456789", "citizen_id": "431022202611180012"}


def office_hours(step_limit_value: float, unit: str) -> float:
    return step_limit_value * (6.5 if unit == "WORKDAY" else 1.0)


def after(ts: float, hours: float) -> float:
    start = dt.datetime.fromtimestamp(ts, TZ)
    return deadlines.add_office_time(start, HOUR * hours, CAL).timestamp()


def ctx(now: float) -> planner.Context:
    return planner.Context(CATALOGUE, now, TZ, {})


class Case:
    """One application played on its own clock (applications do not affect each other)."""

    def __init__(self, store: Store, app_id: str, matter: str, rng: random.Random) -> None:
        self.store, self.app_id, self.matter, self.rng = store, app_id, matter, rng
        self.events: list[tuple[float, int, str, str, dict[str, object]]] = []
        self.seq = 0
        self.scheduled: set[tuple[str, int]] = set()

    def push(self, at: float, kind: str, step: str, **data: object) -> None:
        self.seq += 1
        heapq.heappush(self.events, (at, self.seq, kind, step, data))

    async def play(self, accepted_at: float) -> None:
        name = EXAMPLES[self.matter][0]
        await self.store.claim_idempotency("window", self.app_id, "f", accepted_at, 30)
        await self.store.create_application(
            NewApplication(
                id=self.app_id,
                portal_id="window",
                idempotency_key=self.app_id,
                channel="http",
                matter=self.matter,
                schema_version="1.0",
                envelope_json=example(name).decode(),
                fingerprint="f",
                created_at=accepted_at,
            )
        )
        await self.store.mark_accepted(self.app_id, accepted_at)
        await self.apply(accepted_at, lambda s, c: planner.start(s, c))
        while self.events and self.events[0][0] < HORIZON:
            at, _, kind, step, data = heapq.heappop(self.events)
            await self.event(at, kind, step, data)

    async def apply(self, now: float, plan: Callable[[CaseState, Context], Transition]) -> None:
        await self.store.cases.transition(self.app_id, lambda s: plan(s, ctx(now)), now)
        state = await self.store.cases.load(self.app_id)
        assert state is not None
        for task in state.tasks:
            key = (task.step, task.attempt)
            if task.status is TaskStatus.DISPATCHED and key not in self.scheduled:
                self.scheduled.add(key)
                self.dispatched(now, task.step, task.system, task.attempt)

    def dispatched(self, now: float, step: str, system: str, attempt: int) -> None:
        limit = CATALOGUE.matter(self.matter).step(step).limit
        budget = office_hours(limit.value, limit.unit)
        taken = now + 60 if system != "hospital" else now
        if system != "hospital":
            self.push(taken, "receipt", step, accepted_at=taken)
        share = self.rng.uniform(0.15, 1.35) if attempt == 1 else self.rng.uniform(0.2, 0.8)
        decided = after(taken, budget * share)
        draw = self.rng.random()
        if attempt == 1 and system == "hukou" and draw < 0.15:
            asked = after(taken, budget * share * 0.4)
            self.push(asked, "correction", step)
        elif attempt == 1 and system == "provincial" and draw < 0.06:
            stopped = after(taken, budget * share * 0.3)
            self.push(stopped, "suspend", step)
            self.push(after(stopped, self.rng.uniform(2, 12)), "resume", step)
            self.push(after(decided, 6), "decide", step)
        elif system == "provincial" and draw > 0.97 and step != "file_review":
            self.push(decided, "deny", step)
        else:
            self.push(decided, "decide", step)

    async def event(self, at: float, kind: str, step: str, data: dict[str, object]) -> None:
        state = await self.store.cases.load(self.app_id)
        assert state is not None
        task = state.task(step)
        if task.status in TERMINAL:
            return
        if kind == "citizen":
            envelope = state.application.envelope_json
            await self.apply(
                at, lambda s, c: planner.on_correction(s, c, envelope, ["subjects.child.name"])
            )
            return
        args: dict[str, object] = {}
        if kind == "receipt":
            args = {"accepted_at": data["accepted_at"], "case_number": f"C-{task.id}"}
        elif kind == "decide":
            provides = CATALOGUE.matter(self.matter).step(step).provides
            args = {
                "outcome": "completed",
                "provides": {p: PROVIDES.get(p, f"N-{p}") for p in provides},
            }
        elif kind == "deny":
            args = {"outcome": "denied", "reason": "does not qualify"}
        elif kind == "suspend":
            args = {"outcome": "suspended", "reason": "an on-site check"}
        elif kind == "resume":
            args = {"outcome": "in_progress"}
        elif kind == "correction":
            gap = {"field": "subjects.child.name", "message": "as on the birth certificate"}
            args = {"outcome": "correction_requested", "gaps": (gap,)}
            self.push(after(at, self.rng.uniform(1, 20)), "citizen", step)
        message = ResultMessage(
            task.id,
            self.app_id,
            task.system,
            "receipt" if kind == "receipt" else "decision",
            task.attempt,
            **args,  # type: ignore[arg-type]
        )
        await self.apply(at, lambda s, c: planner.on_result(s, c, message))


def acceptance_moments(rng: random.Random, n: int) -> list[float]:
    days = [
        d
        for d in (dt.date(2026, 10, 26) + dt.timedelta(days=i) for i in range(36))
        if CAL.is_working_day(d)
    ]
    out = []
    for _ in range(n):
        day = dt.datetime.combine(days[rng.randrange(len(days))], dt.time(8, 30), TZ)
        out.append(after(day.timestamp(), rng.uniform(0, 6.4)))
    return out


async def test_a_simulated_november(tmp_path: Path) -> None:
    rng = random.Random(20261130)  # a fixed month
    store = await open_store(f"sqlite:///{tmp_path / 'month.sqlite3'}")
    try:
        matters = [m for m, (_, n) in EXAMPLES.items() for _ in range(n)]
        moments = acceptance_moments(rng, len(matters))
        for i, (matter, accepted_at) in enumerate(zip(matters, moments, strict=True)):
            await Case(store, f"app{i:03d}", matter, rng).play(accepted_at)
        ledger = await month_ledger(store, Month(2026, 11), now=HORIZON, tz=TZ, calendar=CAL)
        lo = dt.datetime(2026, 11, 1, tzinfo=TZ).timestamp()
        hi = dt.datetime(2026, 12, 1, tzinfo=TZ).timestamp()
        rows = await store_rows(store)
        timelines = {r["id"]: await task_timeline(store, r["id"]) for r in rows}
    finally:
        await store.close()
    print("\n" + render(ledger, "table"), end="")

    received = [r for r in rows if r["clock_started_at"] and lo <= r["clock_started_at"] < hi]
    decided = [
        r
        for r in rows
        if r["status"] in ("completed", "denied")
        and r["finished_at"]
        and lo <= r["finished_at"] < hi
    ]
    on_time = [r for r in decided if r["finished_at"] <= r["due_at"]]
    still_open = [
        r
        for r in rows
        if r["clock_started_at"]
        and r["clock_started_at"] < hi
        and (r["finished_at"] is None or r["finished_at"] >= hi)
        and r["status"] != "cancelled"
    ]
    # the split of what was open at the month's end, from the due times the planner wrote
    # into the timeline (the last one before the end) and the clock stops then standing
    overdue = 0
    for r in still_open:
        due, stopped = None, None
        for at, kind, detail in timelines[r["id"]]:
            if at >= hi:
                break
            if detail.get("due_at") is not None:
                due = detail["due_at"]
            if kind == "task.clock_stopped":
                stopped = at
            elif kind == "task.clock_started":
                stopped = None
        assert due is not None
        overdue += (stopped if stopped is not None else hi) > due
    t = ledger.total
    assert (t.open_within_time, t.open_overdue) == (len(still_open) - overdue, overdue)
    assert t.open_overdue > 0 and t.open_within_time > 0
    assert t.received == len(received) > 100
    assert (t.completed_on_time, t.completed_late) == (len(on_time), len(decided) - len(on_time))
    assert t.completed_late > 0 and t.completed_on_time > t.completed_late
    assert t.open_within_time + t.open_overdue == len(still_open) > 0
    assert t.corrections_requested > 0
    assert sum(r.received for r in ledger.rows) == t.received
    assert sum(r.received for r in ledger.departments) == t.received


async def store_rows(store: Store) -> list[dict[str, Any]]:
    from gateway.store.sql import SqlStore

    assert isinstance(store, SqlStore)
    async with store.database.transaction() as tx:
        rows = await tx.fetchall(
            "SELECT id, status, clock_started_at, due_at, finished_at FROM tasks ORDER BY id"
        )
    keys = ("id", "status", "clock_started_at", "due_at", "finished_at")
    return [dict(zip(keys, r, strict=True)) for r in rows]


async def task_timeline(store: Store, task_id: str) -> list[tuple[float, str, dict[str, Any]]]:
    entries = await store.cases.timeline(task_id.rsplit(".", 1)[0])
    return [(e.at, e.kind, dict(e.detail)) for e in entries if e.task_id == task_id]
