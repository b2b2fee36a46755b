"""The append-only audit trail: who did what to which letter or application, when and why.

``AuditEntry`` is a row of the ``audit`` table. Rows are written only inside a caller's
transaction (``write_audit``), beside the change they account for, and never updated or
deleted; ``read_trail`` reads them back newest first, paged by id. ``OperatorStore``
(``operators.py``) wraps both for callers that have no transaction of their own.
"""

# ruff: noqa: S608 -- statements use only this module's literals and column lists; every
# value is a bound ``?`` parameter.

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.store.sql import Tx


@dataclass(frozen=True, slots=True)
class AuditEntry:
    operator: str
    action: str  # e.g. "dlq.replay", "dlq.purge", "application.unmask", "denied"
    target: str  # e.g. "dead-letter:12", "application:<id>"
    at: float
    reason: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    id: int = 0  # assigned by the store


async def write_audit(tx: Tx, entry: AuditEntry) -> int:
    """An audit row inside a caller's transaction; its id."""
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


async def read_trail(
    tx: Tx,
    *,
    operator: str | None = None,
    action: str | None = None,
    target: str | None = None,
    limit: int = 100,
    before: int | None = None,
) -> list[AuditEntry]:
    """Newest first; ``before``: only ids below it (the last id of the previous page)."""
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
