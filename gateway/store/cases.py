"""Persistence of the internal push: tasks, timeline, the transactional outbox, timer rows.

``transition`` is the one way state changes: in one transaction it locks the application
row (``FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` holds the write lock),
reads the case, asks the pure planner what changes, and writes the tasks, the timeline, the
timers and the messages to send (the outbox) before it commits. Messages leave only after
the commit, so a crash never sends what was not recorded nor loses what was.
"""

# ruff: noqa: S608 -- statements use only this module's literals and dialect constants;
# every value is a bound ``?`` parameter.

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.broker.messages import Message
from gateway.orchestration.records import (
    CaseState,
    Outgoing,
    PollTimer,
    TaskRecord,
    TaskStatus,
    TimelineEntry,
    Transition,
)
from gateway.store import disclosures as disclosure_log
from gateway.store.records import ApplicationRecord, ApplicationStatus
from gateway.store.sql import _APP_COLUMNS, Database, Row, Tx, _application

_TASK_COLUMNS = (
    "id, application_id, matter, step, system, operation, status, depends_on, attempt, "
    "case_number, certificate, reason, gaps_json, provides_json, dispatched_at, "
    "clock_started_at, due_at, finished_at, updated_at, clock_stopped_at, escalated, request_key"
)
_TASK_COLUMN_COUNT = len(_TASK_COLUMNS.split(", "))
_TASK_UPDATE = (
    f"UPDATE tasks SET {', '.join(c + ' = ?' for c in _TASK_COLUMNS.split(', ')[1:])} WHERE id = ?"
)

_LOAD_JOINED = (
    f"SELECT {', '.join('a.' + c for c in _APP_COLUMNS.split(', '))}, a.catalogue_version, "
    f"a.provided_json, {', '.join('t.' + c for c in _TASK_COLUMNS.split(', '))} "
    "FROM applications a LEFT JOIN tasks t ON t.application_id = a.id WHERE a.id = ? "
    "ORDER BY t.position"
)


class UnknownApplication(LookupError):
    """No application with this id in this store."""


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    outgoing: Outgoing


_STATUS = {s.value: s for s in TaskStatus}  # a dict lookup, cheaper than the enum's call


def _task(row: Row) -> TaskRecord:
    """The record of a task row. A case is read whole on every transition and most of its
    rows have not changed since the last one: an unchanged row gives back the record it
    gave before (records are frozen, their mappings never changed in place)."""
    try:
        return _known_task(tuple(row))
    except TypeError:  # a driver's value that cannot be hashed: build it afresh
        return _new_task(row)


@functools.lru_cache(maxsize=4096)
def _known_task(row: tuple[Any, ...]) -> TaskRecord:
    return _new_task(row)


def _new_task(row: Row) -> TaskRecord:
    return TaskRecord(
        id=row[0],
        application_id=row[1],
        matter=row[2],
        step=row[3],
        system=row[4],
        operation=row[5],
        status=_STATUS[row[6]],
        depends_on=tuple(_json_list(row[7])),
        attempt=int(row[8]),
        case_number=row[9],
        certificate=row[10],
        reason=row[11],
        gaps=tuple(_json_list(row[12])),
        provides={} if row[13] == "{}" else json.loads(row[13]),
        dispatched_at=_f(row[14]),
        clock_started_at=_f(row[15]),
        due_at=_f(row[16]),
        finished_at=_f(row[17]),
        updated_at=float(row[18]),
        clock_stopped_at=_f(row[19]),
        escalated=row[20],
        request_key=row[21],
    )


def _json_list(text: str) -> list[Any]:
    """``json.loads`` for a JSON list column; most rows hold ``[]`` (every case load reads
    each task's three JSON columns, so the common value skips the parser)."""
    return [] if text == "[]" else list(json.loads(text))


@functools.lru_cache(maxsize=256)
def _depends_json(depends_on: tuple[str, ...]) -> str:
    """A step's dependencies as stored: a handful of catalogue tuples, encoded once each."""
    return json.dumps(list(depends_on))


def _marks(count: int) -> str:
    """``?, ?, …``: ``count`` placeholders."""
    return ", ".join("?" * count)


def _rows(width: int, count: int) -> str:
    """``(?, ?), (?, ?)``: placeholders for a multi-row ``VALUES`` of ``count`` rows."""
    row = f"({_marks(width)})"
    return ", ".join([row] * count)


def _f(value: Any) -> float | None:
    return None if value is None else float(value)


def _task_values(t: TaskRecord) -> tuple[Any, ...]:
    return (
        t.id,
        t.application_id,
        t.matter,
        t.step,
        t.system,
        t.operation,
        t.status.value,
        _depends_json(tuple(t.depends_on)),
        t.attempt,
        t.case_number,
        t.certificate,
        t.reason,
        json.dumps([dict(g) for g in t.gaps], ensure_ascii=False) if t.gaps else "[]",
        json.dumps(dict(t.provides), ensure_ascii=False) if t.provides else "{}",
        t.dispatched_at,
        t.clock_started_at,
        t.due_at,
        t.finished_at,
        t.updated_at,
        t.clock_stopped_at,
        t.escalated,
        t.request_key,
    )


class CaseStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def load(self, application_id: str) -> CaseState | None:
        async def work(tx: Tx) -> CaseState | None:
            return await self._load(tx, application_id, lock=False)

        return await self._db.run(work)

    async def _load(self, tx: Tx, application_id: str, *, lock: bool) -> CaseState | None:
        lock_rows = self._db.dialect.lock_rows
        if not lock_rows:  # SQLite: the transaction holds the write lock from its BEGIN
            return await self._load_joined(tx, application_id)
        # A row lock needs its own statement: the tasks are read once it is held (PostgreSQL
        # would re-check a joined statement's locked row, not the tasks joined to it).
        suffix = lock_rows if lock else ""
        row = await tx.fetchone(
            f"SELECT {_APP_COLUMNS}, catalogue_version, provided_json FROM applications "
            f"WHERE id = ?{suffix}",
            (application_id,),
        )
        if row is None:
            return None
        tasks = await tx.fetchall(
            f"SELECT {_TASK_COLUMNS} FROM tasks WHERE application_id = ? ORDER BY position",
            (application_id,),
        )
        return CaseState(
            application=_application(row),
            catalogue_version=row[12],
            provided=json.loads(row[13]),
            tasks=tuple(_task(t) for t in tasks),
        )

    async def _load_joined(self, tx: Tx, application_id: str) -> CaseState | None:
        """The case in one statement: the application's columns on each of its task rows
        (one row with no task columns before the case starts)."""
        rows = await tx.fetchall(_LOAD_JOINED, (application_id,))
        if not rows:
            return None
        row = rows[0]
        return CaseState(
            application=_application(row),
            catalogue_version=row[12],
            provided=json.loads(row[13]),
            tasks=tuple(_task(r[14:]) for r in rows if r[14] is not None),
        )

    async def transition(
        self,
        application_id: str,
        plan: Callable[[CaseState], Transition],
        now: float,
        *,
        also: Callable[[Tx, Transition], Awaitable[None]] | None = None,
    ) -> tuple[Transition, list[OutboxRow]]:
        """Apply ``plan`` to the locked case; the transition and the outbox rows it wrote.

        ``also`` writes more in the same transaction (an operator's marks and audit row).
        Raises ``UnknownApplication`` for an application not in this store; whatever
        ``plan`` or ``also`` raises rolls the transaction back.
        """

        async def work(tx: Tx) -> tuple[Transition, list[OutboxRow]]:
            state = await self._load(tx, application_id, lock=True)
            if state is None:
                raise UnknownApplication(application_id)
            tr = plan(state)
            if also is not None:
                await also(tx, tr)
            if not tr.changed:
                return tr, []
            await self._write_application(tx, state.application, tr, now)
            await self._write_tasks(tx, state, tr)
            await self._write_timeline(tx, application_id, tr.timeline)
            if tr.drop_timers:
                await tx.execute(
                    f"DELETE FROM timers WHERE task_id IN ({_marks(len(tr.drop_timers))})",
                    tuple(tr.drop_timers),
                )
            for timer in tr.timers:
                await tx.execute(
                    "INSERT INTO timers (task_id, system, due_at, lease_until) VALUES (?, ?, ?, 0)"
                    " ON CONFLICT (task_id) DO UPDATE SET due_at = excluded.due_at,"
                    " lease_until = 0",  # a timer written anew: no poller's claim is on it
                    (timer.task_id, timer.system, timer.due_at),
                )
            await disclosure_log.record(tx, tr.outbox, now)  # who gets which personal fields
            return tr, await self._enqueue(tx, tr.outbox, now)

        return await self._db.run(work)

    async def _write_application(
        self, tx: Tx, app: ApplicationRecord, tr: Transition, now: float
    ) -> None:
        sets = ["updated_at = ?", "version = version + 1"]
        params: list[Any] = [now]
        if tr.status is not None:
            sets.append("status = ?")
            params.append(tr.status.value)
            if tr.status is ApplicationStatus.IN_PROGRESS and app.accepted_at is None:
                sets.append("accepted_at = ?")
                params.append(now)
        if tr.catalogue_version is not None:
            sets.append("catalogue_version = ?")
            params.append(tr.catalogue_version)
        if tr.provided is not None:
            sets.append("provided_json = ?")
            params.append(json.dumps(tr.provided, ensure_ascii=False))
        if tr.envelope_json is not None:
            sets.append("envelope_json = ?")
            params.append(tr.envelope_json)
        await tx.execute(
            f"UPDATE applications SET {', '.join(sets)} WHERE id = ?", (*params, app.id)
        )

    async def _write_timeline(
        self, tx: Tx, application_id: str, entries: Sequence[TimelineEntry]
    ) -> None:
        """The transition's entries in one statement, in order (``seq`` follows it)."""
        if not entries:
            return
        values: list[Any] = []
        for e in entries:
            detail = json.dumps(dict(e.detail), ensure_ascii=False, default=str)
            values += (application_id, e.task_id, e.at, e.kind, detail)
        await tx.execute(
            "INSERT INTO timeline (application_id, task_id, at, kind, detail_json) "
            f"VALUES {_rows(5, len(entries))}",
            values,
        )

    async def _write_tasks(self, tx: Tx, state: CaseState, tr: Transition) -> None:
        """Changed tasks one UPDATE each; new ones (a case's start) in one INSERT."""
        known = {t.id: t for t in state.tasks}
        new: list[Any] = []
        for position, t in enumerate(tr.tasks):
            if t.id not in known:
                new += (*_task_values(t), position)
            elif known[t.id] != t:
                await tx.execute(_TASK_UPDATE, (*_task_values(t)[1:], t.id))
            # else unchanged by this transition: no write
        if new:
            await tx.execute(
                f"INSERT INTO tasks ({_TASK_COLUMNS}, position) "
                f"VALUES {_rows(_TASK_COLUMN_COUNT + 1, len(new) // (_TASK_COLUMN_COUNT + 1))}",
                new,
            )

    async def _enqueue(self, tx: Tx, outgoing: Sequence[Outgoing], now: float) -> list[OutboxRow]:
        """Insert the messages in one statement; their rows in ``outgoing``'s order.

        The writer publishes them at once; the relay after the lease. Ids grow in the order
        the rows are inserted (SQLite holds the write lock; PostgreSQL draws them from the
        identity sequence row by row), but RETURNING may list them in any order: sorted,
        they pair with ``outgoing`` again.
        """
        if not outgoing:
            return []
        values: list[Any] = []
        for o in outgoing:
            m = o.message
            values += (o.exchange, o.routing_key, m.message_id, m.correlation_id,
                       m.content_type, m.type, json.dumps(dict(m.headers), ensure_ascii=False),
                       bytes(m.body), now, now + 30.0)  # fmt: skip
        rows = await tx.fetchall(
            "INSERT INTO outbox (exchange, routing_key, message_id, correlation_id, "
            "content_type, type, headers_json, body, created_at, lease_until) "
            f"VALUES {_rows(10, len(outgoing))} RETURNING id",
            values,
        )
        ids = sorted(int(r[0]) for r in rows)
        return [OutboxRow(i, o) for i, o in zip(ids, outgoing, strict=True)]

    # -- outbox ------------------------------------------------------------------------
    async def claim_outbox(self, now: float, lease_seconds: float, limit: int) -> list[OutboxRow]:
        """Rows whose writer did not publish them in time (it crashed): leased to the caller."""

        async def work(tx: Tx) -> list[Row]:
            return await tx.fetchall(
                "UPDATE outbox SET lease_until = ? WHERE id IN (SELECT id FROM outbox "
                f"WHERE lease_until <= ? ORDER BY id LIMIT ?{self._db.dialect.skip_locked}) "
                "RETURNING id, exchange, routing_key, message_id, correlation_id, "
                "content_type, type, headers_json, body",
                (now + lease_seconds, now, limit),
            )

        return sorted((_outbox(r) for r in await self._db.run(work)), key=lambda r: r.id)

    async def delete_outbox(self, ids: Sequence[int]) -> None:
        if not ids:
            return

        async def work(tx: Tx) -> None:
            await tx.execute(
                f"DELETE FROM outbox WHERE id IN ({', '.join('?' * len(ids))})", tuple(ids)
            )

        await self._db.run(work)

    # -- timers ------------------------------------------------------------------------
    async def claim_timers(
        self, system: str, now: float, lease_seconds: float, limit: int
    ) -> list[PollTimer]:

        # The lease as sent, not as read back: PostgreSQL's text output of a float is exact
        # only with extra_float_digits >= 1 (the default since 12), and a lease read back
        # rounded would never match its row again (``delete_timer``, ``reschedule_timer``).
        lease_until = float(now + lease_seconds)

        async def work(tx: Tx) -> list[Row]:
            return await tx.fetchall(
                "UPDATE timers SET lease_until = ?, polls = polls + 1 WHERE task_id IN ("
                "SELECT task_id FROM timers WHERE system = ? AND due_at <= ? AND "
                f"lease_until <= ? ORDER BY due_at LIMIT ?{self._db.dialect.skip_locked}) "
                "RETURNING task_id, system, due_at",
                (lease_until, system, now, now, limit),
            )

        rows = await self._db.run(work)
        return [PollTimer(r[0], r[1], float(r[2]), lease_until) for r in rows]

    async def delete_timer(self, task_id: str, lease_until: float | None = None) -> None:
        """Drop the task's timer; with ``lease_until``, only the row that claim leased (a
        row written since, by a new receipt, stays)."""
        sql, params = _timer_row("DELETE FROM timers", task_id, lease_until)
        await self._db.run(lambda tx: tx.execute(sql, params))

    async def reschedule_timer(
        self, task_id: str, due_at: float, lease_until: float | None = None
    ) -> None:
        """Ask again at ``due_at``; with ``lease_until``, only if the row is still the one
        that claim leased."""
        sql, params = _timer_row(
            "UPDATE timers SET due_at = ?, lease_until = 0", task_id, lease_until
        )
        await self._db.run(lambda tx: tx.execute(sql, (due_at, *params)))

    # -- deadlines ---------------------------------------------------------------------
    async def deadline_tasks(
        self, now: float, share: float, limit: int, *, pending: bool = True
    ) -> list[TaskRecord]:
        """Tasks whose running clock crossed ``share`` of its budget (or its due time).

        ``pending``: only what escalation still has to do (a threshold crossed beyond the
        one raised, or a stopped clock still carrying a raised threshold), for the
        scheduler; otherwise every running task past the share, for the operator's list.
        One query on ``tasks_status_due``; the guarded transition decides, so several
        schedulers may read the same rows.
        """
        running = tuple(
            s.value for s in (TaskStatus.DISPATCHED, TaskStatus.SUBMITTED, TaskStatus.IN_PROGRESS)
        )
        stopped = tuple(s.value for s in (TaskStatus.CORRECTION_REQUESTED, TaskStatus.SUSPENDED))
        start = "COALESCE(clock_started_at, due_at)"
        soon = f"{start} + ? * (due_at - {start}) <= ?"
        where = "status IN (?, ?, ?) AND due_at IS NOT NULL AND clock_stopped_at IS NULL"
        if pending:
            where = (
                f"({where} AND ((escalated IS NULL AND {soon}) OR "
                "(escalated = 'due_soon' AND due_at <= ?))) "
                "OR (status IN (?, ?) AND escalated IS NOT NULL)"
            )
            params: tuple[Any, ...] = (*running, share, now, now, *stopped, limit)
        else:
            where = f"{where} AND {soon}"
            params = (*running, share, now, limit)

        async def work(tx: Tx) -> list[Row]:
            return await tx.fetchall(
                f"SELECT {_TASK_COLUMNS} FROM tasks WHERE {where} ORDER BY due_at LIMIT ?", params
            )

        return [_task(r) for r in await self._db.run(work)]

    # -- reading -----------------------------------------------------------------------
    async def disclosures(self, application_id: str) -> list[disclosure_log.Disclosure]:
        """Which department system received which personal fields, per dispatched task."""
        async with self._db.transaction() as tx:
            return await disclosure_log.read(tx, application_id)

    async def timeline(self, application_id: str) -> list[TimelineEntry]:
        async def work(tx: Tx) -> list[Row]:
            return await tx.fetchall(
                "SELECT at, kind, task_id, detail_json FROM timeline WHERE application_id = ? "
                "ORDER BY seq",
                (application_id,),
            )

        rows = await self._db.run(work)
        return [TimelineEntry(float(r[0]), r[1], r[2], json.loads(r[3])) for r in rows]

    async def task(self, task_id: str) -> TaskRecord | None:
        async def work(tx: Tx) -> Row | None:
            return await tx.fetchone(f"SELECT {_TASK_COLUMNS} FROM tasks WHERE id = ?", (task_id,))

        row = await self._db.run(work)
        return None if row is None else _task(row)


def _outbox(row: Row) -> OutboxRow:
    message = Message(
        body=bytes(row[8]),
        message_id=row[3],
        correlation_id=row[4],
        content_type=row[5],
        type=row[6],
        headers=json.loads(row[7]),
    )
    return OutboxRow(int(row[0]), Outgoing(row[1], row[2], message))


def _timer_row(
    statement: str, task_id: str, lease_until: float | None
) -> tuple[str, tuple[Any, ...]]:
    if lease_until is None:
        return f"{statement} WHERE task_id = ?", (task_id,)
    return f"{statement} WHERE task_id = ? AND lease_until = ?", (task_id, lease_until)
