"""Replaying an edited copy of a dead-lettered task message (``Desk.edit`` calls ``replay_edited``).

The copy is a new attempt under ``<task id>.r<n>`` (``n`` = the attempt it replaces), with
the diff stored beside the untouched original (``copies.py`` builds it, pure). It goes
through the planner like a replay (``replay.py``), in one transaction that also keeps the
edit with its one ``dlq.edit`` audit row and marks the letter replayed; only to a task that
is still dead-lettered, and only for a letter the department refused: a letter that died of
timeouts may have reached it (``force`` to say you checked).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.admin.auth import Operator
from gateway.admin.casework import Casework, queued
from gateway.admin.copies import edited_copy, original_headers, required_reason
from gateway.admin.outcomes import Conflict, NotFound, Replayed
from gateway.broker.messages import Message, header_str
from gateway.broker.topology import HEADER_ATTEMPT, HEADER_TASK_ID, TASKS
from gateway.orchestration import planner
from gateway.orchestration.messages import attempt_of, task_of
from gateway.orchestration.records import Outgoing, Transition
from gateway.store import marks
from gateway.store.letters import LetterStatus
from gateway.store.marks import LetterEdit
from gateway.store.sql import Tx

REFUSED_KINDS = frozenset({"permanent", "rejected"})  # the department (or a consumer) said no


async def replay_edited(
    work: Casework,
    op: Operator,
    letter_id: int,
    changes: Mapping[str, Any],
    reason: str,
    *,
    force: bool = False,
    add: Mapping[str, Any] | None = None,
) -> Replayed:
    """Replay an edited copy of a dead-lettered task message under ``<task id>.r<n>``.

    ``changes`` maps dotted paths under ``fields.`` that the message has to new values
    (``None`` removes); ``add`` maps paths it does not have yet (a missing field)."""
    op.require("edit")
    reason = required_reason(reason)
    letter = await work.visible(op, letter_id)
    d = letter.record.letter
    if letter.status is LetterStatus.PURGED:
        raise Conflict(f"dead letter {letter_id} was purged: nothing left to edit")
    request_id = header_str(original_headers(d.headers_json).get(HEADER_TASK_ID))
    if d.exchange != TASKS or not request_id or not d.application_id:
        raise Conflict(f"dead letter {letter_id} is not a task message; only tasks are edited")
    task = await work.store.cases.task(task_of(request_id))
    if task is None:
        raise NotFound(f"no task {task_of(request_id)}")
    key = f"{task.id}.r{task.attempt}"
    body, diff = edited_copy(d.body, changes, key, task.attempt + 1, add=add or {})
    if d.error_kind not in REFUSED_KINDS and not force:
        raise Conflict(
            f"dead letter {letter_id} died of {d.error_kind}, so the department may have "
            "received it: an edited copy under a new key could be a second effect. Check "
            "with the department, then edit with force"
        )
    headers = {**original_headers(d.headers_json), HEADER_TASK_ID: key}
    headers[HEADER_ATTEMPT] = task.attempt + 1
    message = Message(body=body, correlation_id=d.application_id, headers=headers)
    order = planner.ReplayOrder(
        task_id=task.id,
        attempt=attempt_of(request_id),
        operator=op.name,
        reason=reason,
        dead_letter_id=letter_id,
        outgoing=Outgoing(d.exchange, d.routing_key, message),
        edited_key=key,
    )
    copy = LetterEdit(letter_id, task.id, key, diff, body, reason, op.name, work.clock())
    paths = [c["path"] for c in diff]  # the values stay in the edit, not in the trail

    async def keep(tx: Tx, tr: Transition) -> None:
        # one audit row for the action (dlq.edit), with what a replay's row would say
        details = {**queued(tr, key, force), "paths": paths}
        await marks.add_edit(tx, copy, work.entry(op, "dlq.edit", letter_id, reason, details))
        await work.mark_replayed(tx, op, letter_id, reason, None)

    _, pending = await work.through_planner(d.application_id, order, keep)
    note = f"edited copy sent as {key}"
    if pending:
        note = f"edited copy {key} written to the outbox: the relay sends it"
    return Replayed(letter_id, True, key, note, pending)
