"""Dead letters as operators find them: their status, the filter, listings and groups.

``ParkedLetter`` is a stored dead letter with what operators did with it (``LetterStatus``,
replays, the purge); ``LetterFilter`` selects letters; ``reason_group`` normalises a reason
so that letters that failed the same way count as one ``LetterGroup``. The queries here run
inside a caller's transaction; ``OperatorStore`` (``operators.py``) opens it. Listings page
by key (``before`` / ``after`` the last id seen), never by offset. What operators do to a
letter (replay, purge, an edited copy) is in ``marks.py``.
"""

# ruff: noqa: S608 -- statements use only this module's literals and column lists; every
# value is a bound ``?`` parameter.

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from gateway.store.records import DeadLetterRecord
from gateway.store.sql import _LETTER_COLUMNS, Row, Tx
from gateway.store.sql import _dead_letter as _letter_record


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


def sql_in(column: str, values: frozenset[str]) -> tuple[str, list[object]]:
    """``column IN (?, …)`` with its parameters, sorted; an empty set matches nothing."""
    if not values:
        return "1 = 0", []
    return f"{column} IN ({', '.join('?' * len(values))})", list(sorted(values))


def _letter_where(f: LetterFilter) -> tuple[str, list[object]]:
    conditions: list[str] = []
    params: list[object] = []
    if f.scope is not None:
        sql, values = sql_in("system", f.scope)
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


async def _where(tx: Tx, f: LetterFilter) -> tuple[str, list[object]]:
    """The filter as SQL; a group becomes the exact reasons that normalise to it."""
    where, params = _letter_where(f)
    if f.group is None:
        return where, params
    rows = await tx.fetchall(
        f"SELECT DISTINCT reason, error_kind FROM dead_letters WHERE {where}", params
    )
    reasons = frozenset(r[0] for r in rows if reason_group(r[0], r[1]) == f.group)
    sql, values = sql_in("reason", reasons)
    return f"{where} AND {sql}", [*params, *values]


async def find_letters(
    tx: Tx,
    f: LetterFilter,
    *,
    limit: int = 50,
    before: int | None = None,
    after: int | None = None,
    oldest_first: bool = False,
) -> list[ParkedLetter]:
    """Newest first (or ``oldest_first``); ``before`` / ``after``: only ids below / above
    it (the last id of the previous page)."""
    where, params = await _where(tx, f)
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


async def find_letter(tx: Tx, letter_id: int) -> ParkedLetter | None:
    row = await tx.fetchone(f"{_SELECT_LETTER} WHERE id = ?", (int(letter_id),))
    return None if row is None else _parked(row)


async def find_groups(tx: Tx, f: LetterFilter, *, limit: int = 100) -> list[LetterGroup]:
    """Letters grouped by (system, error kind, ``reason_group``), the largest first."""
    where, params = await _where(tx, f)
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
