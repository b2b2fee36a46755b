"""What operators need from the store: dead letters to find, replay and purge, edited
copies, application search, and the append-only audit trail.

Composed on the same ``Database`` as ``SqlStore`` and ``CaseStore``. Listings page by key
(``before`` the last id seen), never by offset, so a page is as cheap at the end as at the
start. ``scope`` is an operator's departments: ``None`` sees every system; a set sees only
letters and applications of those systems (a letter with no system — an intake or
orchestrator message — only ``None`` sees).
"""

# ruff: noqa: S608 -- statements use only this module's literals and column lists; every
# value is a bound ``?`` parameter.

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from gateway.store.records import ApplicationRecord, ApplicationStatus, DeadLetterRecord
from gateway.store.sql import _APP_COLUMNS, _LETTER_COLUMNS, Database, Row, Tx, _application
from gateway.store.sql import _dead_letter as _letter_record

if TYPE_CHECKING:  # the store package is imported by orchestration.records
    from gateway.orchestration.records import TaskRecord

RUNNING_TASKS = ("dispatched", "submitted", "in_progress")  # task clocks that run


class LetterStatus(StrEnum):
    PARKED = "parked"  # waiting for an operator
    REPLAYED = "replayed"  # sent again (see ``replays``)
    PURGED = "purged"  # dropped with a reason; body and headers erased


@dataclass(frozen=True, slots=True)
class ParkedLetter:
    """A stored dead letter and what operators did with it."""

    record: DeadLetterRecord
    status: LetterStatus
    replays: int
    replayed_at: float | None
    replayed_by: str | None
    replay_reason: str | None
    purged_at: float | None
    purged_by: str | None
    purge_reason: str | None

    @property
    def id(self) -> int:
        return self.record.id


@dataclass(frozen=True, slots=True)
class LetterFilter:
    scope: frozenset[str] | None = None  # the operator's systems; None: every system
    system: str | None = None
    reason: str | None = None  # a part of the reason, any case
    group: str | None = None  # one group's reason as ``reason_group`` prints it
    error_kind: str | None = None
    matter: str | None = None
    application_id: str | None = None
    since: float | None = None  # last failure at or after (unix seconds)
    until: float | None = None  # last failure before
    status: LetterStatus | None = LetterStatus.PARKED  # None: any status
    up_to: int | None = None  # only ids at or below it (a "replay all" fixed at its start)


@dataclass(frozen=True, slots=True)
class LetterGroup:
    system: str | None
    error_kind: str
    reason: str
    count: int
    first_failed_at: float
    last_failed_at: float
    latest_id: int


@dataclass(frozen=True, slots=True)
class AuditEntry:
    operator: str
    action: str  # e.g. "dlq.replay", "dlq.purge", "application.unmask", "denied"
    target: str  # e.g. "dead-letter:12", "application:<id>"
    at: float
    reason: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    id: int = 0  # assigned by the store


@dataclass(frozen=True, slots=True)
class LetterEdit:
    """An edited copy of a dead-lettered task message; the original letter is unchanged."""

    dead_letter_id: int
    task_id: str
    idempotency_key: str  # "<task id>.r<n>"
    diff: Sequence[Mapping[str, Any]]  # [{"path", "before", "after"}]
    body: bytes  # the copy as sent
    reason: str
    operator: str
    at: float
    id: int = 0


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


_ID = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"  # uuid
    r"(?:\.[\w-]+)*"  # a task id: "<application id>.<step>[.r1]"
    r"|\b[0-9a-fA-F]{16,}\b"  # digests, long hex ids
    r"|\b\w*\d[\w-]*"  # any token with a digit: counts, codes, times, case numbers
)


VOLATILE_KINDS = frozenset({"retryable", "delivery_limit", "broker"})
"""Error kinds whose last error text changes from try to try (a spent retry budget, a
delivery limit, the broker's word); a permanent refusal's text is the department's reason."""


def reason_group(reason: str, kind: str = "permanent") -> str:
    """A reason with its volatile parts normalised, so that letters that failed the same way
    group together: ids and numbers become ``#``, and for a kind in ``VOLATILE_KINDS`` the
    last error text (after the last ``": "``) becomes ``…`` — "retry budget spent after 3
    attempts: HTTP 503 at 12:00" and "… after 5 attempts: connection refused" are one group,
    while two refusals with different department reasons stay two."""
    head, sep, _ = reason.rpartition(": ")
    text = f"{head}: …" if sep and kind in VOLATILE_KINDS else reason
    return _ID.sub("#", text).strip()[:300]


_STATE_COLUMNS = (
    "status, replays, replayed_at, replayed_by, replay_reason, purged_at, purged_by, purge_reason"
)
_SELECT_LETTER = f"SELECT id, {_LETTER_COLUMNS}, stored_at, {_STATE_COLUMNS} FROM dead_letters"
_EDIT_COLUMNS = (
    "id, dead_letter_id, task_id, idempotency_key, diff_json, body, reason, operator, at"
)


def _parked(row: Row) -> ParkedLetter:
    s = row[16:]
    return ParkedLetter(
        record=_letter_record(row[:16]),
        status=LetterStatus(s[0]),
        replays=int(s[1]),
        replayed_at=None if s[2] is None else float(s[2]),
        replayed_by=s[3],
        replay_reason=s[4],
        purged_at=None if s[5] is None else float(s[5]),
        purged_by=s[6],
        purge_reason=s[7],
    )


def _like(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _in(column: str, values: frozenset[str]) -> tuple[str, list[object]]:
    if not values:
        return "1 = 0", []
    return f"{column} IN ({', '.join('?' * len(values))})", list(sorted(values))


def _letter_where(f: LetterFilter) -> tuple[str, list[object]]:
    conditions: list[str] = []
    params: list[object] = []
    if f.scope is not None:
        sql, values = _in("system", f.scope)
        conditions.append(sql)
        params += values
    for condition, value in (
        ("system = ?", f.system),
        ("LOWER(reason) LIKE ? ESCAPE '\\'", None if f.reason is None else _like(f.reason)),
        ("error_kind = ?", f.error_kind),
        ("matter = ?", f.matter),
        ("application_id = ?", f.application_id),
        ("last_failed_at >= ?", None if f.since is None else float(f.since)),
        ("last_failed_at < ?", None if f.until is None else float(f.until)),
        ("status = ?", None if f.status is None else LetterStatus(f.status).value),
        ("id <= ?", None if f.up_to is None else int(f.up_to)),
    ):
        if value is not None:
            conditions.append(condition)
            params.append(value)
    return " AND ".join(conditions) or "1 = 1", params


class OperatorStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    @property
    def database(self) -> Database:
        """For the desk's own transactions (``mark_replayed`` … with ``Tx``)."""
        return self._db

    # -- dead letters ------------------------------------------------------------------
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
            where, params = await self._where(tx, f)
            if before is not None:
                where += " AND id < ?"
                params.append(int(before))
            if after is not None:
                where += " AND id > ?"
                params.append(int(after))
            order = "ASC" if oldest_first else "DESC"
            rows = await tx.fetchall(
                f"{_SELECT_LETTER} WHERE {where} ORDER BY id {order} LIMIT ?",
                (*params, int(limit)),
            )
        return [_parked(r) for r in rows]

    async def _where(self, tx: Tx, f: LetterFilter) -> tuple[str, list[object]]:
        """The filter as SQL; a group becomes the exact reasons that normalise to it."""
        where, params = _letter_where(f)
        if f.group is None:
            return where, params
        rows = await tx.fetchall(
            f"SELECT DISTINCT reason, error_kind FROM dead_letters WHERE {where}", params
        )
        reasons = frozenset(r[0] for r in rows if reason_group(r[0], r[1]) == f.group)
        sql, values = _in("reason", reasons)
        return f"{where} AND {sql}", [*params, *values]

    async def letter(self, letter_id: int) -> ParkedLetter | None:
        async with self._db.transaction() as tx:
            row = await tx.fetchone(f"{_SELECT_LETTER} WHERE id = ?", (int(letter_id),))
        return None if row is None else _parked(row)

    async def groups(self, f: LetterFilter, *, limit: int = 100) -> list[LetterGroup]:
        """Letters grouped by (system, error kind, ``reason_group``), the largest first."""
        async with self._db.transaction() as tx:
            where, params = await self._where(tx, f)
            rows = await tx.fetchall(
                "SELECT system, error_kind, reason, COUNT(*), MIN(first_failed_at), "
                f"MAX(last_failed_at), MAX(id) FROM dead_letters WHERE {where} "
                "GROUP BY system, error_kind, reason",
                params,
            )
        merged: dict[tuple[str | None, str, str], LetterGroup] = {}
        for r in rows:
            key = (r[0], r[1], reason_group(r[2], r[1]))
            g = LetterGroup(key[0], key[1], key[2], int(r[3]), float(r[4]), float(r[5]), int(r[6]))
            if (seen := merged.get(key)) is not None:
                g = LetterGroup(
                    g.system,
                    g.error_kind,
                    g.reason,
                    seen.count + g.count,
                    min(seen.first_failed_at, g.first_failed_at),
                    max(seen.last_failed_at, g.last_failed_at),
                    max(seen.latest_id, g.latest_id),
                )
            merged[key] = g
        ranked = sorted(merged.values(), key=lambda g: (-g.count, -g.latest_id))
        return ranked[:limit]

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
            return await mark_replayed(
                tx, letter_id, operator, reason, now, again=again, audit=audit
            )

    async def mark_purged(
        self, letter_id: int, operator: str, reason: str, now: float, *, audit: AuditEntry
    ) -> bool:
        """Drop the letter from the listings and erase its body and headers and its edited
        copies' bodies and diffs (the personal data); who, when and why stay. False when it
        was purged before."""
        async with self._db.transaction() as tx:
            return await mark_purged(tx, letter_id, operator, reason, now, audit=audit)

    # -- edited copies -----------------------------------------------------------------
    async def add_edit(self, edit: LetterEdit, audit: AuditEntry) -> int:
        async with self._db.transaction() as tx:
            return await add_edit(tx, edit, audit)

    async def edits(self, letter_id: int) -> list[LetterEdit]:
        async with self._db.transaction() as tx:
            rows = await tx.fetchall(
                f"SELECT {_EDIT_COLUMNS} FROM dead_letter_edits WHERE dead_letter_id = ? "
                "ORDER BY id",
                (int(letter_id),),
            )
        return [
            LetterEdit(
                id=int(r[0]),
                dead_letter_id=int(r[1]),
                task_id=r[2],
                idempotency_key=r[3],
                diff=json.loads(r[4]),
                body=bytes(r[5]),
                reason=r[6],
                operator=r[7],
                at=float(r[8]),
            )
            for r in rows
        ]

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
            sql, values = _in("t.system", f.scope)
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
            sql, values = _in("system", scope)
            where += f" AND {sql}"
            params += values
        async with self._db.transaction() as tx:
            rows = await tx.fetchall(
                f"SELECT {_TASK_COLUMNS} FROM tasks WHERE {where} ORDER BY due_at LIMIT ?",
                (*params, int(limit)),
            )
        return [_task_record(r) for r in rows]

    # -- audit -------------------------------------------------------------------------
    async def audit(self, entry: AuditEntry) -> int:
        async with self._db.transaction() as tx:
            return await _audit(tx, entry)

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
        conditions: list[str] = []
        params: list[object] = []
        for condition, value in (
            ("operator = ?", operator),
            ("action = ?", action),
            ("target = ?", target),
            ("id < ?", before),
        ):
            if value is not None:
                conditions.append(condition)
                params.append(value)
        where = " AND ".join(conditions) or "1 = 1"
        async with self._db.transaction() as tx:
            rows = await tx.fetchall(
                "SELECT id, at, operator, action, target, reason, details_json FROM audit "
                f"WHERE {where} ORDER BY id DESC LIMIT ?",
                (*params, int(limit)),
            )
        return [
            AuditEntry(
                id=int(r[0]),
                at=float(r[1]),
                operator=r[2],
                action=r[3],
                target=r[4],
                reason=r[5],
                details=json.loads(r[6]),
            )
            for r in rows
        ]


async def mark_replayed(
    tx: Tx,
    letter_id: int,
    operator: str,
    reason: str,
    now: float,
    *,
    again: bool,
    audit: AuditEntry | None,
) -> bool:
    """``OperatorStore.mark_replayed`` inside a caller's transaction (the replay's own);
    ``audit`` None when the caller writes the action's one audit row itself (an edit)."""
    allowed = (LetterStatus.PARKED.value, LetterStatus.REPLAYED.value if again else "")
    changed = await tx.execute(
        "UPDATE dead_letters SET status = ?, replays = replays + 1, replayed_at = ?, "
        "replayed_by = ?, replay_reason = ? WHERE id = ? AND status IN (?, ?)",
        (LetterStatus.REPLAYED.value, float(now), operator, reason, int(letter_id), *allowed),
    )
    if changed and audit is not None:
        await _audit(tx, audit)
    return changed == 1


async def mark_purged(
    tx: Tx, letter_id: int, operator: str, reason: str, now: float, *, audit: AuditEntry
) -> bool:
    """``OperatorStore.mark_purged`` inside a caller's transaction."""
    changed = await tx.execute(
        "UPDATE dead_letters SET status = ?, purged_at = ?, purged_by = ?, "
        "purge_reason = ?, body = ?, headers_json = '{}' WHERE id = ? AND status <> ?",
        (
            LetterStatus.PURGED.value,
            float(now),
            operator,
            reason,
            b"",
            int(letter_id),
            LetterStatus.PURGED.value,
        ),
    )
    if changed:
        await tx.execute(
            "UPDATE dead_letter_edits SET body = ?, diff_json = '[]' WHERE dead_letter_id = ?",
            (b"", int(letter_id)),
        )
        await _audit(tx, audit)
    return changed == 1


async def add_edit(tx: Tx, edit: LetterEdit, audit: AuditEntry) -> int:
    """Keep an edited copy (and its audit row) inside a caller's transaction."""
    row = await tx.fetchone(
        "INSERT INTO dead_letter_edits (dead_letter_id, task_id, idempotency_key, "
        "diff_json, body, reason, operator, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
        "RETURNING id",
        (
            int(edit.dead_letter_id),
            edit.task_id,
            edit.idempotency_key,
            json.dumps(list(edit.diff), ensure_ascii=False, default=str),
            bytes(edit.body),
            edit.reason,
            edit.operator,
            float(edit.at),
        ),
    )
    await _audit(tx, audit)
    assert row is not None
    return int(row[0])


async def write_audit(tx: Tx, entry: AuditEntry) -> int:
    """An audit row inside a caller's transaction."""
    return await _audit(tx, entry)


async def _audit(tx: Tx, entry: AuditEntry) -> int:
    row = await tx.fetchone(
        "INSERT INTO audit (at, operator, action, target, reason, details_json) "
        "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        (
            float(entry.at),
            entry.operator,
            entry.action,
            entry.target,
            entry.reason,
            json.dumps(dict(entry.details), ensure_ascii=False, default=str, sort_keys=True),
        ),
    )
    assert row is not None
    return int(row[0])


def operators_of(store: object) -> OperatorStore:
    """The operator tables on the same database as a ``SqlStore`` (``open_store``'s)."""
    from gateway.store.sql import SqlStore

    if not isinstance(store, SqlStore):
        raise TypeError(f"operators need the SQL store, not {type(store).__name__}")
    return OperatorStore(store.database)
