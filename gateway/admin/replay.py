"""Replaying dead letters: one letter (``replay_letter``, for ``Desk.replay``), or every
letter a filter matches (``replay_matching_letters``, for ``Desk.replay_matching``).

Replay is safe by construction:

* a **task message** is replayed through the planner (``planner.on_replay``) in one guarded
  transaction that moves the task back to ``dispatched``, the application from ``blocked``
  to ``in_progress``, puts the message in the outbox and marks the letter replayed with its
  audit row; the message is then published with the broker's confirm, or by the outbox
  relay when the broker does not confirm now. The department is idempotent on the task's
  request id, and the connector drops a message for a finished or superseded task, so a
  second replay — or a replay of a task that completed meanwhile — has no second effect;
* a **portal's envelope** (``gw.intake``) is submitted to intake in process as its portal,
  under its own idempotency key (``resubmit.py``): the broker would not carry the portal's
  ``user_id`` on a republish;
* a **department's answer** (``gw.results``) that dead-lettered its task dispatches the task
  again under the same request id (the planner would drop the same answer republished to a
  dead-lettered task); the department answers again;
* any **other message** (``gw.accepted``, an answer whose task moved on) is republished to
  its original exchange and routing key; its consumers are idempotent on its content.

An edited copy is replayed by ``edit.py``.
"""

from __future__ import annotations

from dataclasses import asdict, replace

from gateway.admin.auth import Operator
from gateway.admin.casework import Casework, queued
from gateway.admin.copies import original_headers, required_reason
from gateway.admin.outcomes import BatchReplay, Conflict, NotFound, Replayed
from gateway.admin.resubmit import Refused
from gateway.broker.messages import Message, header_str, uuid7
from gateway.broker.topology import HEADER_ATTEMPT, HEADER_TASK_ID, INTAKE, RESULTS, TASKS
from gateway.orchestration import planner
from gateway.orchestration.messages import attempt_of, task_of
from gateway.orchestration.records import CaseState, Outgoing, TaskRecord, Transition
from gateway.store import DeadLetter
from gateway.store.letters import LetterFilter, LetterStatus
from gateway.store.sql import Tx


async def replay_letter(
    work: Casework, op: Operator, letter_id: int, reason: str, *, force: bool = False
) -> Replayed:
    """Replay one letter (see the module doc for what that sends, by its exchange)."""
    op.require("replay")
    reason = required_reason(reason)
    letter = await work.visible(op, letter_id)
    if letter.status is LetterStatus.PURGED:
        raise Conflict(f"dead letter {letter_id} was purged: nothing left to replay")
    if letter.status is LetterStatus.REPLAYED and not force:
        raise Conflict(
            f"dead letter {letter_id} was replayed {letter.replays} time(s), last by "
            f"{letter.replayed_by}; replay with force to send it again"
        )
    d = letter.record.letter
    if d.exchange == INTAKE:
        return await _replay_intake(work, op, letter_id, d, reason, force)
    headers = original_headers(d.headers_json)
    request_id = header_str(headers.get(HEADER_TASK_ID))
    if request_id:  # a fresh retry budget: the connector counts tries from x-attempt
        headers[HEADER_ATTEMPT] = attempt_of(request_id)
    message = Message(
        body=d.body, message_id=uuid7(), correlation_id=d.application_id, headers=headers
    )
    if d.exchange == TASKS and request_id and d.application_id:
        order = planner.ReplayOrder(
            task_id=task_of(request_id),
            attempt=attempt_of(request_id),
            operator=op.name,
            reason=reason,
            dead_letter_id=letter_id,
            outgoing=Outgoing(d.exchange, d.routing_key, message),
            force=force,
        )

        async def mark(tx: Tx, tr: Transition) -> None:
            await work.mark_replayed(tx, op, letter_id, reason, queued(tr, request_id, force))

        tr, pending = await work.through_planner(d.application_id, order, mark)
        sent = any(o.exchange == TASKS for o in tr.outbox)
        note = "sent" if sent else "nothing sent: the task finished or moved on"
        if pending:
            note = "written to the outbox: the relay sends it once the broker confirms"
        return Replayed(letter_id, sent, request_id, note, pending)
    if d.exchange == RESULTS and (task := await work.blocking_task(d)) is not None:
        return await _redispatch(work, op, letter_id, task, reason, force)
    await work.publish(d.exchange, d.routing_key, message)
    note = f"republished to {d.exchange} {d.routing_key}"
    details = {"sent": True, "key": request_id, "forced": force, "note": note}
    await work.store_marks(lambda tx: work.mark_replayed(tx, op, letter_id, reason, details))
    return Replayed(letter_id, True, request_id, note)


async def _redispatch(
    work: Casework, op: Operator, letter_id: int, task: TaskRecord, reason: str, force: bool
) -> Replayed:
    """A department's answer that died dead-lettered its task: the orchestrator would
    drop the same answer republished, so the task is dispatched again under the same
    request id instead (the department is idempotent on it and answers again)."""
    key = task.request_id

    def plan(state: CaseState) -> Transition:
        ctx = work.context(state)
        current = next(t for t in state.tasks if t.id == task.id)
        outgoing, _ = planner.task_outgoing(state, ctx.catalogue, current)
        order = planner.ReplayOrder(
            task.id, task.attempt, op.name, reason, letter_id, outgoing, force=force
        )
        return planner.on_replay(state, ctx, order)

    async def mark(tx: Tx, tr: Transition) -> None:
        await work.mark_replayed(tx, op, letter_id, reason, queued(tr, key, force))

    tr, pending = await work.transition(task.application_id, plan, mark)
    sent = any(o.exchange == TASKS for o in tr.outbox)
    note = f"task {task.id} dispatched again as {key}" if sent else "nothing sent"
    if pending:
        note = "written to the outbox: the relay sends it once the broker confirms"
    return Replayed(letter_id, sent, key, note, pending)


async def _replay_intake(
    work: Casework, op: Operator, letter_id: int, d: DeadLetter, reason: str, force: bool
) -> Replayed:
    if work.resubmit is None:
        raise Conflict("this desk cannot submit to intake; replay it through the admin API")
    try:
        done = await work.resubmit(d)
    except Refused as exc:
        raise Conflict(f"dead letter {letter_id} cannot be replayed: {exc}") from None
    if done.new:
        note = f"accepted by intake as application {done.application_id}"
    else:
        note = f"accepted before as application {done.application_id}: nothing sent again"
    details = {"sent": done.new, "application": done.application_id, "forced": force}
    await work.store_marks(
        lambda tx: work.mark_replayed(tx, op, letter_id, reason, {**details, "note": note})
    )
    return Replayed(letter_id, done.new, None, note)


async def replay_matching_letters(
    work: Casework,
    op: Operator,
    f: LetterFilter,
    reason: str,
    *,
    limit: int = 500,
    after: int | None = None,
) -> BatchReplay:
    """Replay the parked letters the filter matches, oldest first, at most ``limit`` in
    one call: ``more`` says whether others match after ``next_after`` (call again with
    ``after=next_after`` to go on; the CLI does)."""
    op.require("replay")
    op.require("view")
    reason = required_reason(reason)
    if f.system is not None:
        op.require_system(f.system)
    letters = await work.ops.letters(
        replace(f, scope=op.scope), limit=limit + 1, after=after, oldest_first=True
    )
    more = len(letters) > limit
    letters = letters[:limit]
    replayed: list[Replayed] = []
    refused: list[tuple[int, str]] = []
    for letter in letters:
        try:
            replayed.append(await replay_letter(work, op, letter.id, reason))
        except (Conflict, NotFound) as exc:
            refused.append((letter.id, str(exc)))
    await work.audit(
        op,
        "dlq.replay_filter",
        "dead-letters",
        reason,
        {
            "filter": {k: v for k, v in asdict(f).items() if v is not None and k != "scope"},
            "after": after,
            "replayed": [r.letter_id for r in replayed],
            "refused": [i for i, _ in refused],
            "more": more,
        },
    )
    next_after = letters[-1].id if more and letters else None
    return BatchReplay(replayed, refused, more, next_after)
