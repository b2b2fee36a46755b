"""What every desk action stands on: the store, the publish function and the clock, and
the steps the actions share.

``Casework`` finds a letter the operator may see (``visible``), tells which task a letter
keeps dead-lettered (``blocking_task``), builds and writes audit rows (``entry``,
``audit``), marks a letter replayed (``mark_replayed``), and applies a planner transition
to the locked case with the letter's marks in the same transaction, then publishes its
outbox rows, confirmed (``transition``). A row the broker does not confirm now stays in the
outbox and the relay sends it: the action answers ``pending``.

The actions themselves are in ``replay.py``, ``edit.py`` and ``purge.py``; the reads in
``desk.py``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.admin.auth import Operator
from gateway.admin.copies import original_headers
from gateway.admin.outcomes import Conflict, NotFound
from gateway.admin.resubmit import Resubmit
from gateway.broker.messages import Message, header_str
from gateway.broker.topology import HEADER_TASK_ID, RESULTS, TASKS
from gateway.calendar import default_calendar
from gateway.catalogue.model import CURRENT_VERSION, load
from gateway.errors import BrokerUnavailable, Permanent
from gateway.logs import get_logger
from gateway.orchestration import planner
from gateway.orchestration.messages import ResultMessage, attempt_of, task_of
from gateway.orchestration.records import CaseState, Context, TaskRecord, TaskStatus, Transition
from gateway.store import DeadLetter, Store, marks
from gateway.store.audit import AuditEntry
from gateway.store.cases import OutboxRow, UnknownApplication
from gateway.store.letters import ParkedLetter
from gateway.store.operators import OperatorStore
from gateway.store.sql import Tx

log = get_logger(__name__)
Publish = Callable[[str, str, Message], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Casework:
    """A desk's store, publish function and clock, with the steps its actions share."""

    store: Store
    ops: OperatorStore
    publish: Publish
    timezone: dt.tzinfo
    clock: Callable[[], float]
    resubmit: Resubmit | None
    cancel_flag: str  # how the caller says it: --cancel-task in a shell

    async def visible(self, op: Operator, letter_id: int) -> ParkedLetter:
        letter = await self.ops.letter(letter_id)
        if letter is None:
            raise NotFound(f"no dead letter {letter_id}")
        op.require_system(letter.record.letter.system)
        return letter

    async def blocking_task(self, d: DeadLetter) -> TaskRecord | None:
        """The task this letter keeps dead-lettered (its attempt is the task's), if any."""
        request_id = header_str(original_headers(d.headers_json).get(HEADER_TASK_ID))
        if d.exchange == TASKS and request_id:
            task_id, attempt = task_of(request_id), attempt_of(request_id)
        elif d.exchange == RESULTS:  # a department's answer: its task dead-lettered
            try:
                said = ResultMessage.parse(d.body)
            except Permanent:
                return None
            task_id, attempt = said.task_id, said.attempt
        else:
            return None
        task = await self.store.cases.task(task_id)
        if task is None or task.status is not TaskStatus.DEAD_LETTERED:
            return None
        return task if task.attempt == attempt else None

    async def mark_replayed(
        self,
        tx: Tx,
        op: Operator,
        letter_id: int,
        reason: str,
        details: Mapping[str, Any] | None,
    ) -> None:
        """The letter marked replayed, with a ``dlq.replay`` audit row (none for ``details``
        None: the caller wrote the action's row)."""
        entry = (
            None if details is None else self.entry(op, "dlq.replay", letter_id, reason, details)
        )
        if not await marks.mark_replayed(
            tx, letter_id, op.name, reason, self.clock(), again=True, audit=entry
        ):
            raise Conflict(f"dead letter {letter_id} was purged meanwhile")

    async def store_marks(self, write: Callable[[Tx], Awaitable[None]]) -> None:
        async with self.ops.database.transaction() as tx:
            await write(tx)

    async def through_planner(
        self,
        application_id: str,
        order: planner.ReplayOrder,
        also: Callable[[Tx, Transition], Awaitable[None]],
    ) -> tuple[Transition, bool]:
        """Apply the replay on the locked case with ``also`` (the letter's marks, the audit
        row, an edit) in the same transaction; then publish its outbox rows, confirmed.
        True when a row stays in the outbox unconfirmed: the relay sends it."""

        def plan(state: CaseState) -> Transition:
            return planner.on_replay(state, self.context(state), order)

        return await self.transition(application_id, plan, also)

    async def transition(
        self,
        application_id: str,
        plan: Callable[[CaseState], Transition],
        also: Callable[[Tx, Transition], Awaitable[None]],
    ) -> tuple[Transition, bool]:
        try:
            tr, rows = await self.store.cases.transition(
                application_id, plan, self.clock(), also=also
            )
        except UnknownApplication:
            raise NotFound(f"no application {application_id}") from None
        except planner.NotAllowed as exc:
            raise Conflict(str(exc)) from None
        try:
            await self._flush(rows)
        except BrokerUnavailable as exc:
            log.warning("replay_unconfirmed", error=str(exc), application_id=application_id)
            return tr, True
        return tr, False

    async def _flush(self, rows: Sequence[OutboxRow]) -> None:
        sent: list[int] = []
        try:
            for row in rows:
                o = row.outgoing
                await self.publish(o.exchange, o.routing_key, o.message)
                sent.append(row.id)
        finally:
            await self.store.cases.delete_outbox(sent)

    def context(self, state: CaseState) -> Context:
        return Context(
            catalogue=load(state.catalogue_version or CURRENT_VERSION),
            now=self.clock(),
            timezone=self.timezone,
            poll_seconds={},
            calendar=default_calendar(),
        )

    def entry(
        self, op: Operator, action: str, letter_id: int, reason: str, details: Mapping[str, Any]
    ) -> AuditEntry:
        return AuditEntry(
            op.name, action, f"dead-letter:{letter_id}", self.clock(), reason, details
        )

    async def audit(
        self,
        op: Operator,
        action: str,
        target: str,
        reason: str | None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        await self.ops.audit(
            AuditEntry(op.name, action, target, self.clock(), reason, details or {})
        )


def queued(tr: Transition, key: str | None, force: bool) -> dict[str, Any]:
    """What a replay's audit row can say when it commits: the message is queued in the
    outbox (published next by the desk, or by the relay while the broker does not confirm),
    or nothing was sent. Never "sent": the row is written before the broker confirms."""
    is_queued = any(o.exchange == TASKS for o in tr.outbox)
    note = (
        "queued in the outbox: published by the desk, or by the relay once the broker confirms"
        if is_queued
        else "nothing sent: the task finished or moved on"
    )
    return {"queued": is_queued, "key": key, "forced": force, "note": note}
