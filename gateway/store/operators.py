"""What operators need from the store, in one object: ``OperatorStore``, and the
application search and overdue-task list that only operators use.

Composed on the same ``Database`` as ``SqlStore`` and ``CaseStore``; each method is one
transaction over what the store keeps for operators, by what it keeps:

    letters.py  dead letters to find: status, filter, listings, groups (``reason_group``)
    marks.py    what operators do to a letter: replayed, purged, an edited copy kept
    audit.py    the append-only audit trail

Listings page by key (``before`` the last id seen), never by offset, so a page is as cheap
at the end as at the start. ``scope`` is an operator's departments: ``None`` sees every
system; a set sees only letters and applications of those systems (a letter with no
system — an intake or orchestrator message — only ``None`` sees).
"""

# ruff: noqa: S608 -- statements use only this module's literals and column lists; every
# value is a bound ``?`` parameter.

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.store import marks
from gateway.store.audit import AuditEntry, read_trail, write_audit
from gateway.store.letters import (
    LetterFilter,
    LetterGroup,
    ParkedLetter,
    find_groups,
    find_letter,
    find_letters,
    sql_in,
)
from gateway.store.marks import LetterEdit
from gateway.store.records import ApplicationRecord, ApplicationStatus
from gateway.store.sql import _APP_COLUMNS, Database, _application

if TYPE_CHECKING:  # the store package is imported by orchestration.records
    from gateway.orchestration.records import TaskRecord

RUNNING_TASKS = ("dispatched", "submitted", "in_progress")  # task clocks that run


@dataclass(frozen=True, slots=True)
class AppFilter:
    scope: frozenset[str] | None = None
    status: ApplicationStatus | None = None
    matter: str | None = None
    portal_id: str | None = None
    created_from: float | None = None  # inclusive
    created_to: float | None = None  # exclusive
    overdue_at: float | None = None  # only applications with a task overdue at this time
    not_overdue_at: float | None = None  # only applications with none overdue at this time


class OperatorStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    @property
    def database(self) -> Database:
        """For the desk's own transactions (``marks.mark_replayed`` … with ``Tx``)."""
        return self._db

    # -- dead letters (letters.py, marks.py) ---------------------------------------------
    async def letters(
        self,
        f: LetterFilter,
        *,
        limit: int = 50,
        before: int | None = None,
        after: int | None = None,
        oldest_first: bool = False,
    ) -> list[ParkedLetter]:
        """Newest first (or ``oldest_first``); ``before`` / ``after``: only ids below / above
        it (the last id of the previous page)."""
        async with self._db.transaction() as tx:
            return await find_letters(
                tx, f, limit=limit, before=before, after=after, oldest_first=oldest_first
            )

    async def letter(self, letter_id: int) -> ParkedLetter | None:
        async with self._db.transaction() as tx:
            return await find_letter(tx, letter_id)

    async def groups(self, f: LetterFilter, *, limit: int = 100) -> list[LetterGroup]:
        """Letters grouped by (system, error kind, ``reason_group``), the largest first."""
        async with self._db.transaction() as tx:
            return await find_groups(tx, f, limit=limit)

    async def mark_replayed(
        self,
        letter_id: int,
        operator: str,
        reason: str,
        now: float,
        *,
        again: bool,
        audit: AuditEntry,
    ) -> bool:
        """Parked (or, with ``again``, already replayed) → replayed, with the audit row in
        the same transaction; False when the letter is not in such a state."""
        async with self._db.transaction() as tx:
            return await marks.mark_replayed(
                tx, letter_id, operator, reason, now, again=again, audit=audit
            )

    async def mark_purged(
        self, letter_id: int, operator: str, reason: str, now: float, *, audit: AuditEntry
    ) -> bool:
        """Drop the letter from the listings and erase its body and headers and its edited
        copies' bodies and diffs (the personal data); who, when and why stay. False when it
        was purged before."""
        async with self._db.transaction() as tx:
            return await marks.mark_purged(tx, letter_id, operator, reason, now, audit=audit)

    async def add_edit(self, edit: LetterEdit, audit: AuditEntry) -> int:
        async with self._db.transaction() as tx:
            return await marks.add_edit(tx, edit, audit)

    async def edits(self, letter_id: int) -> list[LetterEdit]:
        async with self._db.transaction() as tx:
            return await marks.find_edits(tx, letter_id)

    # -- applications ------------------------------------------------------------------
    async def applications(
        self, f: AppFilter, *, limit: int = 50, before: tuple[float, str] | None = None
    ) -> list[ApplicationRecord]:
        """Newest first; ``before``: (created_at, id) of the last row of the previous page."""
        conditions: list[str] = []
        params: list[object] = []
        for condition, value in (
            ("status = ?", None if f.status is None else ApplicationStatus(f.status).value),
            ("matter = ?", f.matter),
            ("portal_id = ?", f.portal_id),
            ("created_at >= ?", None if f.created_from is None else float(f.created_from)),
            ("created_at < ?", None if f.created_to is None else float(f.created_to)),
        ):
            if value is not None:
                conditions.append(condition)
                params.append(value)
        if f.scope is not None:
            sql, values = sql_in("t.system", f.scope)
            conditions.append(
                f"EXISTS (SELECT 1 FROM tasks t WHERE t.application_id = applications.id AND {sql})"
            )
            params += values
        overdue = (
            "EXISTS (SELECT 1 FROM tasks t WHERE t.application_id = applications.id "
            "AND t.status IN (?, ?, ?) AND t.due_at IS NOT NULL AND t.due_at <= ? "
            "AND t.clock_stopped_at IS NULL)"
        )
        if f.overdue_at is not None:
            conditions.append(overdue)
            params += [*RUNNING_TASKS, float(f.overdue_at)]
        if f.not_overdue_at is not None:
            conditions.append("NOT " + overdue)
            params += [*RUNNING_TASKS, float(f.not_overdue_at)]
        if before is not None:
            conditions.append("(created_at < ? OR (created_at = ? AND id < ?))")
            params += [float(before[0]), float(before[0]), before[1]]
        where = " AND ".join(conditions) or "1 = 1"
        async with self._db.transaction() as tx:
            rows = await tx.fetchall(
                f"SELECT {_APP_COLUMNS} FROM applications WHERE {where} "
                "ORDER BY created_at DESC, id DESC LIMIT ?",
                (*params, int(limit)),
            )
        return [_application(r) for r in rows]

    async def application_systems(self, application_id: str) -> frozenset[str]:
        """The systems an application's tasks go to (for an operator's scope)."""
        async with self._db.transaction() as tx:
            rows = await tx.fetchall(
                "SELECT DISTINCT system FROM tasks WHERE application_id = ?", (application_id,)
            )
        return frozenset(r[0] for r in rows)

    async def overdue_tasks(
        self, now: float, share: float, limit: int, scope: frozenset[str] | None
    ) -> list[TaskRecord]:
        """Running tasks past ``share`` of their budget, of the ``scope``'s systems only
        (in the query, so a page is full of what the operator may see)."""
        from gateway.store.cases import _TASK_COLUMNS
        from gateway.store.cases import _task as _task_record

        start = "COALESCE(clock_started_at, due_at)"
        where = (
            "status IN (?, ?, ?) AND due_at IS NOT NULL AND clock_stopped_at IS NULL "
            f"AND {start} + ? * (due_at - {start}) <= ?"
        )
        params: list[object] = [*RUNNING_TASKS, float(share), float(now)]
        if scope is not None:
            sql, values = sql_in("system", scope)
            where += f" AND {sql}"
            params += values
        async with self._db.transaction() as tx:
            rows = await tx.fetchall(
                f"SELECT {_TASK_COLUMNS} FROM tasks WHERE {where} ORDER BY due_at LIMIT ?",
                (*params, int(limit)),
            )
        return [_task_record(r) for r in rows]

    # -- audit (audit.py) ----------------------------------------------------------------
    async def audit(self, entry: AuditEntry) -> int:
        async with self._db.transaction() as tx:
            return await write_audit(tx, entry)

    async def audit_trail(
        self,
        *,
        operator: str | None = None,
        action: str | None = None,
        target: str | None = None,
        limit: int = 100,
        before: int | None = None,
    ) -> list[AuditEntry]:
        """Newest first."""
        async with self._db.transaction() as tx:
            return await read_trail(
                tx, operator=operator, action=action, target=target, limit=limit, before=before
            )


def operators_of(store: object) -> OperatorStore:
    """The operator tables on the same database as a ``SqlStore`` (``open_store``'s)."""
    from gateway.store.sql import SqlStore

    if not isinstance(store, SqlStore):
        raise TypeError(f"operators need the SQL store, not {type(store).__name__}")
    return OperatorStore(store.database)
