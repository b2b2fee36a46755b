"""Purging a dead letter with a reason (``Desk.purge`` calls ``purge_letter``).

The letter leaves the listings and its body, headers and edited copies are erased
(``gateway/store/marks.py``); who, when and why stay, with a ``dlq.purge`` audit row. A
purge of a letter whose task is still dead-lettered by it is refused: the application would
stay ``blocked`` for ever. With ``cancel_task`` the task is cancelled in the same
transaction and the application moves on (``planner.on_cancel``).
"""

from __future__ import annotations

from gateway.admin.auth import Operator
from gateway.admin.casework import Casework
from gateway.admin.copies import required_reason
from gateway.admin.outcomes import Conflict, Purged
from gateway.orchestration import planner
from gateway.orchestration.records import CaseState, Transition
from gateway.store import marks
from gateway.store.letters import LetterStatus
from gateway.store.sql import Tx


async def purge_letter(
    work: Casework, op: Operator, letter_id: int, reason: str, *, cancel_task: bool = False
) -> Purged:
    """Drop a letter with a reason. A letter whose task is still dead-lettered by it is
    refused unless ``cancel_task``: the task is then cancelled in the same transaction
    and the application moves on without it (``planner.on_cancel``)."""
    op.require("purge")
    reason = required_reason(reason)
    letter = await work.visible(op, letter_id)
    if letter.status is LetterStatus.PURGED:
        raise Conflict(f"dead letter {letter_id} was purged before")
    d = letter.record.letter
    task = await work.blocking_task(d)
    entry = work.entry(op, "dlq.purge", letter_id, reason, {"cancelled": task.id if task else None})

    async def drop(tx: Tx, tr: Transition | None = None) -> None:
        if not await marks.mark_purged(tx, letter_id, op.name, reason, work.clock(), audit=entry):
            raise Conflict(f"dead letter {letter_id} was purged before")

    if task is None:
        await work.store_marks(drop)
        return Purged(letter_id, None, None)
    if not cancel_task:
        raise Conflict(
            f"task {task.id} is still dead-lettered by dead letter {letter_id}: purging "
            "it alone would leave the application blocked for ever. Replay it, or purge "
            f"with {work.cancel_flag} to cancel the task (the application then goes on "
            "without it: rejected when the step is mandatory)"
        )
    order = planner.CancelOrder(task.id, task.attempt, op.name, reason, letter_id)

    def plan(state: CaseState) -> Transition:
        return planner.on_cancel(state, work.context(state), order)

    tr, _ = await work.transition(task.application_id, plan, drop)
    status = None if tr.status is None else tr.status.value
    return Purged(letter_id, task.id, status)
