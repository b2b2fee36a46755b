"""What operators do to a dead letter, written inside the caller's transaction: mark it
replayed, purge it, keep an edited copy (``LetterEdit``) — each with its audit row.

The desk (``gateway/admin``) calls these inside the transaction that also moves the case,
so a letter's mark, its audit row and the case's change commit together or not at all;
``OperatorStore`` (``operators.py``) wraps them for callers without a transaction. The
original letter is never changed by an edit: the copy and its diff are kept beside it.
"""

# ruff: noqa: S608 -- statements use only this module's literals and column lists; every
# value is a bound ``?`` parameter.

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.store.audit import AuditEntry, write_audit
from gateway.store.letters import LetterStatus
from gateway.store.sql import Tx

_EDIT_COLUMNS = (
    "id, dead_letter_id, task_id, idempotency_key, diff_json, body, reason, operator, at"
)


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
    """Parked (or, with ``again``, already replayed) → replayed, with the audit row; False
    when the letter is not in such a state. ``audit`` None when the caller writes the
    action's one audit row itself (an edit)."""
    allowed = (LetterStatus.PARKED.value, LetterStatus.REPLAYED.value if again else "")
    changed = await tx.execute(
        "UPDATE dead_letters SET status = ?, replays = replays + 1, replayed_at = ?, "
        "replayed_by = ?, replay_reason = ? WHERE id = ? AND status IN (?, ?)",
        (LetterStatus.REPLAYED.value, float(now), operator, reason, int(letter_id), *allowed),
    )
    if changed and audit is not None:
        await write_audit(tx, audit)
    return changed == 1


async def mark_purged(
    tx: Tx, letter_id: int, operator: str, reason: str, now: float, *, audit: AuditEntry
) -> bool:
    """Drop the letter from the listings and erase its body and headers and its edited
    copies' bodies and diffs (the personal data); who, when and why stay. False when it
    was purged before."""
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
        await write_audit(tx, audit)
    return changed == 1


async def add_edit(tx: Tx, edit: LetterEdit, audit: AuditEntry) -> int:
    """Keep an edited copy (and its audit row); its id."""
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
    await write_audit(tx, audit)
    assert row is not None
    return int(row[0])


async def find_edits(tx: Tx, letter_id: int) -> list[LetterEdit]:
    """A letter's edited copies, oldest first."""
    rows = await tx.fetchall(
        f"SELECT {_EDIT_COLUMNS} FROM dead_letter_edits WHERE dead_letter_id = ? ORDER BY id",
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
