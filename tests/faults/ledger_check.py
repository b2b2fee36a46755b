"""The one check every fault case ends with, read from the store and the departments' own
effect ledgers — never from the gateway's belief about itself.

    accepted              applications in the store not rejected at intake (``received``
                          rows included: a crash may have left them, the relay must finish them)
    completed / blocked   ended well, or blocked with a dead letter and a reason — the
                          reason also in the application's own record (a dead-lettered
                          task's reason, or an ``application.blocked`` entry for one that
                          never started), as its status view shows it
    stuck                 neither: must be none
    lost                  answered 202 to the portal but not in the store: must be none
    double_effects        (system, application, task) applied more than once: must be none
    effects_missing       tasks the store calls completed that no department applied
    duplicate_deliveries  requests a department received again (counted, allowed)
    doubled_transitions   a state change recorded twice in the timeline: must be none
    queues                depth of every gw.* / dept.* queue (ready + unacked): all 0
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support.rabbit import rabbitmqctl

ONCE_ONLY = (
    "application.accepted",
    "application.completed",
    "application.blocked",
    "task.dispatched",
    "task.submitted",
    "task.completed",
    "task.dead_lettered",
)
"""Timeline kinds that happen once per application or task in these cases (no corrections,
so no task is dispatched a second time)."""

ENDED = ("completed", "delivered")
REPORT_FILE_ENV = "GATEWAY_FAULTS_REPORT"  # JSON lines of every report, when set


@dataclass
class LedgerReport:
    case: str
    store: str
    accepted: int = 0
    completed: int = 0
    blocked: dict[str, str] = field(default_factory=dict)  # application → dead-letter reason
    blocked_unexplained: list[str] = field(default_factory=list)
    stuck: dict[str, str] = field(default_factory=dict)  # application → status
    lost: list[str] = field(default_factory=list)
    double_effects: list[tuple[str, str, str, int]] = field(default_factory=list)
    effects: int = 0
    effects_missing: list[str] = field(default_factory=list)
    deliveries: int = 0
    duplicate_deliveries: int = 0
    doubled_transitions: list[tuple[str, str, str, int]] = field(default_factory=list)
    dead_letters: int = 0
    queues: dict[str, int] = field(default_factory=dict)

    @property
    def settled(self) -> bool:
        return not self.stuck and not any(self.queues.values())

    def line(self) -> str:
        busy = {q: n for q, n in self.queues.items() if n}
        return (
            f"LEDGER {self.case} [{self.store}] accepted={self.accepted} "
            f"completed={self.completed} blocked={len(self.blocked)} "
            f"blocked_unexplained={len(self.blocked_unexplained)} stuck={len(self.stuck)} "
            f"lost={len(self.lost)} effects={self.effects} "
            f"double_effects={len(self.double_effects)} "
            f"effects_missing={len(self.effects_missing)} deliveries={self.deliveries} "
            f"duplicate_deliveries={self.duplicate_deliveries} "
            f"doubled_transitions={len(self.doubled_transitions)} "
            f"dead_letters={self.dead_letters} queues={busy or 'all 0'}"
        )

    def assert_sound(self, *, completed: int, blocked: Iterable[str] = ()) -> None:
        """The issue's ledger check; ``completed`` and ``blocked`` are what the case expects."""
        print(self.line())
        if path := os.environ.get(REPORT_FILE_ENV):
            with Path(path).open("a", encoding="utf-8") as f:
                f.write(json.dumps(asdict(self), ensure_ascii=False) + "\n")
        assert self.stuck == {}, f"applications stuck without a reason: {self.stuck}"
        assert self.lost == [], f"accepted (202) but not in the store: {self.lost}"
        assert self.blocked_unexplained == [], self.blocked_unexplained
        assert self.double_effects == [], f"applied more than once: {self.double_effects}"
        assert self.effects_missing == [], f"completed without an effect: {self.effects_missing}"
        assert self.doubled_transitions == [], self.doubled_transitions
        assert set(self.blocked) == set(blocked), self.blocked
        assert self.completed == completed, self.line()
        assert self.accepted == completed + len(self.blocked), self.line()
        assert not any(self.queues.values()), f"queues not drained: {self.queues}"


def read_store(database_url: str, sql: str) -> list[tuple[Any, ...]]:
    """Rows of one read-only query, on either dialect (the store's own tables)."""
    if database_url.startswith("sqlite:///"):
        conn = sqlite3.connect(database_url.removeprefix("sqlite:///"), timeout=30)
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()
    with psycopg.connect(database_url, autocommit=True) as pg:
        return pg.execute(sql.replace("?", "%s")).fetchall()


def read_ledger(path: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(str(path), timeout=30)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def queue_depths(vhost: str) -> dict[str, int]:
    """messages (ready + unacknowledged) of every gateway and department queue; ``{"(broker
    down)": 1}`` while the node does not answer (the shared broker restarting), so the
    caller waits on."""
    try:
        out = rabbitmqctl(
            "list_queues", "-p", vhost, "-q", "--no-table-headers", "name", "messages"
        )
    except pytest.fail.Exception:
        return {"(broker down)": 1}
    depths: dict[str, int] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].startswith(("gw.", "dept.")):
            depths[parts[0]] = int(parts[1])
    return depths


def build_report(
    case: str,
    database_url: str,
    ledger_path: Path,
    answered: Iterable[str],
    queues: dict[str, int],
) -> LedgerReport:
    store = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    report = LedgerReport(case, store, queues=queues)
    apps = dict(read_store(database_url, "SELECT id, status FROM applications"))
    letters: dict[str, str] = {}  # only a letter still parked explains a blocked application
    for app_id, reason, status in read_store(
        database_url, "SELECT application_id, reason, status FROM dead_letters ORDER BY id"
    ):
        report.dead_letters += 1
        if app_id and reason and status == "parked":
            letters.setdefault(str(app_id), str(reason))
    # the application's own record must say why, as its status view shows it: a task
    # dead-lettered with a reason, or (not started) an application.blocked with a reason
    said = {
        str(r[0])
        for r in read_store(
            database_url,
            "SELECT application_id FROM tasks WHERE status = 'dead_lettered' "
            "AND reason IS NOT NULL AND reason <> ''",
        )
    }
    said |= {
        str(app_id)
        for app_id, detail in read_store(
            database_url,
            "SELECT application_id, detail_json FROM timeline "
            "WHERE kind = 'application.blocked' AND task_id IS NULL",
        )
        if json.loads(detail or "{}").get("reason")
    }
    for app_id, status in apps.items():
        if status == "rejected":
            continue
        report.accepted += 1
        if status in ENDED:
            report.completed += 1
        elif status == "blocked":
            if app_id in letters and app_id in said:
                report.blocked[app_id] = letters[app_id]
            else:
                report.blocked_unexplained.append(app_id)
        else:
            report.stuck[app_id] = status
    report.lost = sorted(set(answered) - set(apps))
    report.double_effects = [
        (r[0], r[1], r[2], int(r[3]))
        for r in read_ledger(
            ledger_path,
            "SELECT system, application_id, task, COUNT(*) FROM effects "
            "GROUP BY system, application_id, task HAVING COUNT(*) > 1",
        )
    ]
    applied = {(r[0], r[1], r[2]) for r in read_ledger(
        ledger_path, "SELECT system, application_id, task FROM effects")}  # fmt: skip
    report.effects = len(applied)
    for app_id, step, system in read_store(
        database_url, "SELECT application_id, step, system FROM tasks WHERE status = 'completed'"
    ):
        if (system, app_id, step) not in applied:
            report.effects_missing.append(f"{system}:{app_id}.{step}")
    per_key = read_ledger(
        ledger_path, "SELECT COUNT(*) FROM deliveries GROUP BY system, application_id, task"
    )
    report.deliveries = sum(int(r[0]) for r in per_key)
    report.duplicate_deliveries = sum(int(r[0]) - 1 for r in per_key)
    kinds = ", ".join(f"'{k}'" for k in ONCE_ONLY)
    timeline = Counter(
        (str(r[0]), str(r[1] or ""), str(r[2]))
        for r in read_store(
            database_url,
            f"SELECT application_id, task_id, kind FROM timeline WHERE kind IN ({kinds})",  # noqa: S608  # constants
        )
    )
    report.doubled_transitions = [(*key, n) for key, n in timeline.items() if n > 1]
    return report


async def ledger_check(
    case: str,
    database_url: str,
    ledger_path: Path,
    vhost: str,
    answered: Iterable[str],
    *,
    within: float = 120.0,
) -> LedgerReport:
    """Wait (up to ``within`` s) until no application is stuck and every queue is drained,
    then report; the caller asserts on the report, so a timeout fails with the figures."""
    answered = list(answered)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        report = await asyncio.to_thread(
            build_report, case, database_url, ledger_path, answered, {}
        )
        if not report.stuck or loop.time() > deadline:
            report.queues = await asyncio.to_thread(queue_depths, vhost)
            if report.settled or loop.time() > deadline:
                return report
        await asyncio.sleep(0.3)
