"""The dead-letter desk: what an operator does with what failed, for the CLI and the API.

Every method takes the ``Operator`` asking, checks its role and its systems first, and
writes the audit trail for every action (and for every unmasked read, see ``audit.py``).

Replay is safe by construction:

* a **task message** is replayed through the planner (``planner.on_replay``) in one guarded
  transaction that moves the task back to ``dispatched``, the application from ``blocked``
  to ``in_progress``, puts the message in the outbox and marks the letter replayed with its
  audit row (and an edit's copy); the message is then published with the broker's confirm,
  or by the outbox relay when the broker does not confirm now. The department is
  idempotent on the task's request id, and the connector drops a message for a finished or
  superseded task, so a second replay — or a replay of a task that completed meanwhile —
  has no second effect;
* an **edited copy** is a new attempt under ``<task id>.r<n>`` (``n`` = the attempt it
  replaces), with the diff stored beside the untouched original; it goes only to a task
  that is still dead-lettered, and only for a letter the department refused (a letter that
  died of timeouts may have reached it: ``force`` to say you checked);
* a **portal's envelope** (``gw.intake``) is submitted to intake in process as its portal,
  under its own idempotency key (``resubmit.py``): the broker would not carry the portal's
  ``user_id`` on a republish;
* a **department's answer** (``gw.results``) that dead-lettered its task dispatches the task
  again under the same request id (the planner would drop the same answer republished to a
  dead-lettered task); the department answers again;
* any **other message** (``gw.accepted``, an answer whose task moved on) is republished to
  its original exchange and routing key; its consumers are idempotent on its content.

A **purge** of a letter whose task is still dead-lettered by it is refused: the application
would stay ``blocked`` for ever. With ``cancel_task`` the task is cancelled in the same
transaction and the application moves on (``planner.on_cancel``).

(A little over 500 lines: one class whose every action sits beside its role check, its
transaction and its audit row; what it answers lives in ``outcomes.py``.)
"""

from __future__ import annotations

import datetime as dt
import time
import zoneinfo
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, replace
from typing import Any

from gateway.admin.auth import Operator
from gateway.admin.copies import edited_copy, original_headers, required_reason
from gateway.admin.outcomes import (
    BatchReplay,
    CaseDetail,
    Conflict,
    LetterDetail,
    NotFound,
    Purged,
    Replayed,
    required_why,
)
from gateway.admin.resubmit import Refused, Resubmit
from gateway.broker.messages import Message, header_str, uuid7
from gateway.broker.topology import HEADER_ATTEMPT, HEADER_TASK_ID, INTAKE, RESULTS, TASKS
from gateway.calendar import default_calendar
from gateway.catalogue.model import CURRENT_VERSION, load
from gateway.errors import BrokerUnavailable, Permanent
from gateway.logs import get_logger
from gateway.orchestration import planner
from gateway.orchestration.messages import ResultMessage, attempt_of, task_of
from gateway.orchestration.records import (
    CaseState,
    Context,
    Outgoing,
    TaskRecord,
    TaskStatus,
    Transition,
)
from gateway.store import DeadLetter, Store, marks, operators_of
from gateway.store.audit import AuditEntry
from gateway.store.cases import OutboxRow, UnknownApplication
from gateway.store.letters import LetterFilter, LetterGroup, LetterStatus, ParkedLetter
from gateway.store.marks import LetterEdit
from gateway.store.operators import AppFilter, OperatorStore
from gateway.store.records import ApplicationRecord
from gateway.store.sql import Tx

log = get_logger(__name__)
Publish = Callable[[str, str, Message], Awaitable[None]]
REFUSED_KINDS = frozenset({"permanent", "rejected"})  # the department (or a consumer) said no


class Desk:
    """The desk over a store and a publish function (the gateway's, or any confirmed one).

    From Python (the fault-injection tests do this)::

        desk = Desk(gw.store, gw.publish)
        admin = Operator("faults", frozenset(ROLES), frozenset())  # gateway.admin.auth
        await desk.replay_matching(admin, LetterFilter(system="hukou"), "department back up")
    """

    def __init__(
        self,
        store: Store,
        publish: Publish,
        *,
        timezone: dt.tzinfo | None = None,
        due_soon_share: float = 0.8,
        clock: Callable[[], float] = time.time,
        resubmit: Resubmit | None = None,
        cancel_flag: str = "cancel_task",
    ) -> None:
        self._store = store
        self._cancel_flag = cancel_flag  # how the caller says it: --cancel-task in a shell
        self._resubmit = resubmit
        self._ops = operators_of(store)
        self._publish = publish
        self._tz = timezone or zoneinfo.ZoneInfo("Asia/Shanghai")
        self._share = due_soon_share
        self._clock = clock

    @property
    def operators(self) -> OperatorStore:
        return self._ops

    @property
    def store(self) -> Store:
        return self._store

    # -- reading -----------------------------------------------------------------------
    async def letters(
        self, op: Operator, f: LetterFilter, *, limit: int = 50, before: int | None = None
    ) -> list[ParkedLetter]:
        op.require("view")
        if f.system is not None:
            op.require_system(f.system)
        return await self._ops.letters(replace(f, scope=op.scope), limit=limit, before=before)

    async def groups(self, op: Operator, f: LetterFilter) -> list[LetterGroup]:
        op.require("view")
        if f.system is not None:
            op.require_system(f.system)
        return await self._ops.groups(replace(f, scope=op.scope))

    async def letter(
        self, op: Operator, letter_id: int, *, unmask: bool = False, why: str | None = None
    ) -> LetterDetail:
        op.require("view")
        if unmask:
            op.require("unmask")
            why = required_why(why)
        letter = await self._visible(op, letter_id)
        if unmask:
            await self._audit(op, "dead_letter.unmask", f"dead-letter:{letter_id}", why)
        return LetterDetail(letter, await self._ops.edits(letter_id), unmask)

    async def applications(
        self,
        op: Operator,
        f: AppFilter,
        *,
        limit: int = 50,
        before: tuple[float, str] | None = None,
    ) -> list[ApplicationRecord]:
        op.require("view")
        return await self._ops.applications(replace(f, scope=op.scope), limit=limit, before=before)

    async def application(
        self, op: Operator, application_id: str, *, unmask: bool = False, why: str | None = None
    ) -> CaseDetail:
        op.require("view")
        if unmask:
            op.require("unmask")
            why = required_why(why)
        state = await self._store.cases.load(application_id) if len(application_id) <= 64 else None
        if state is None:
            raise NotFound(f"no application {application_id}")
        op.require_any(t.system for t in state.tasks)
        if unmask:
            await self._audit(op, "application.unmask", f"application:{application_id}", why)
        timeline = await self._store.cases.timeline(application_id)
        disclosures = await self._store.cases.disclosures(application_id)
        return CaseDetail(state, timeline, unmask, disclosures)

    async def overdue(self, op: Operator, *, limit: int = 1000) -> list[TaskRecord]:
        """Running tasks past ``due_soon_share`` of their budget (the ``tasks overdue`` list),
        only of the operator's systems."""
        op.require("view")
        return await self._ops.overdue_tasks(self._clock(), self._share, limit, op.scope)

    async def audit_trail(
        self, op: Operator, *, limit: int = 100, before: int | None = None
    ) -> list[AuditEntry]:
        op.require("view")
        actor = None if op.scope is None else op.name  # a scoped operator sees its own only
        return await self._ops.audit_trail(operator=actor, limit=limit, before=before)

    async def login_failed(self, what: str, detail: str, source: str | None = None) -> None:
        """Record a failed login (401, or a shell's unknown token) in the trail; who it was
        is unknown, so the row's operator is ``-``."""
        details = {"detail": detail, **({"from": source} if source else {})}
        await self._ops.audit(AuditEntry("-", "login.failed", what, self._clock(), None, details))

    async def denied(self, operator: str, what: str, detail: str) -> None:
        """Record a refused attempt (403) in the trail."""
        await self._ops.audit(
            AuditEntry(operator, "denied", what, at=self._clock(), details={"detail": detail})
        )

    # -- acting ------------------------------------------------------------------------
    async def replay(
        self, op: Operator, letter_id: int, reason: str, *, force: bool = False
    ) -> Replayed:
        op.require("replay")
        reason = required_reason(reason)
        letter = await self._visible(op, letter_id)
        if letter.status is LetterStatus.PURGED:
            raise Conflict(f"dead letter {letter_id} was purged: nothing left to replay")
        if letter.status is LetterStatus.REPLAYED and not force:
            raise Conflict(
                f"dead letter {letter_id} was replayed {letter.replays} time(s), last by "
                f"{letter.replayed_by}; replay with force to send it again"
            )
        d = letter.record.letter
        if d.exchange == INTAKE:
            return await self._replay_intake(op, letter_id, d, reason, force)
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
                await self._mark_replayed(tx, op, letter_id, reason, _queued(tr, request_id, force))

            tr, pending = await self._through_planner(d.application_id, order, mark)
            sent = any(o.exchange == TASKS for o in tr.outbox)
            note = "sent" if sent else "nothing sent: the task finished or moved on"
            if pending:
                note = "written to the outbox: the relay sends it once the broker confirms"
            return Replayed(letter_id, sent, request_id, note, pending)
        if d.exchange == RESULTS and (task := await self._blocking_task(d)) is not None:
            return await self._redispatch(op, letter_id, task, reason, force)
        await self._publish(d.exchange, d.routing_key, message)
        note = f"republished to {d.exchange} {d.routing_key}"
        details = {"sent": True, "key": request_id, "forced": force, "note": note}
        await self._store_marks(lambda tx: self._mark_replayed(tx, op, letter_id, reason, details))
        return Replayed(letter_id, True, request_id, note)

    async def _redispatch(
        self, op: Operator, letter_id: int, task: TaskRecord, reason: str, force: bool
    ) -> Replayed:
        """A department's answer that died dead-lettered its task: the orchestrator would
        drop the same answer republished, so the task is dispatched again under the same
        request id instead (the department is idempotent on it and answers again)."""
        key = task.request_id

        def plan(state: CaseState) -> Transition:
            ctx = self._context(state)
            current = next(t for t in state.tasks if t.id == task.id)
            outgoing, _ = planner.task_outgoing(state, ctx.catalogue, current)
            order = planner.ReplayOrder(
                task.id, task.attempt, op.name, reason, letter_id, outgoing, force=force
            )
            return planner.on_replay(state, ctx, order)

        async def mark(tx: Tx, tr: Transition) -> None:
            await self._mark_replayed(tx, op, letter_id, reason, _queued(tr, key, force))

        tr, pending = await self._transition(task.application_id, plan, mark)
        sent = any(o.exchange == TASKS for o in tr.outbox)
        note = f"task {task.id} dispatched again as {key}" if sent else "nothing sent"
        if pending:
            note = "written to the outbox: the relay sends it once the broker confirms"
        return Replayed(letter_id, sent, key, note, pending)

    async def _replay_intake(
        self, op: Operator, letter_id: int, d: DeadLetter, reason: str, force: bool
    ) -> Replayed:
        if self._resubmit is None:
            raise Conflict("this desk cannot submit to intake; replay it through the admin API")
        try:
            done = await self._resubmit(d)
        except Refused as exc:
            raise Conflict(f"dead letter {letter_id} cannot be replayed: {exc}") from None
        if done.new:
            note = f"accepted by intake as application {done.application_id}"
        else:
            note = f"accepted before as application {done.application_id}: nothing sent again"
        details = {"sent": done.new, "application": done.application_id, "forced": force}
        await self._store_marks(
            lambda tx: self._mark_replayed(tx, op, letter_id, reason, {**details, "note": note})
        )
        return Replayed(letter_id, done.new, None, note)

    async def replay_matching(
        self,
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
        letters = await self._ops.letters(
            replace(f, scope=op.scope), limit=limit + 1, after=after, oldest_first=True
        )
        more = len(letters) > limit
        letters = letters[:limit]
        replayed: list[Replayed] = []
        refused: list[tuple[int, str]] = []
        for letter in letters:
            try:
                replayed.append(await self.replay(op, letter.id, reason))
            except (Conflict, NotFound) as exc:
                refused.append((letter.id, str(exc)))
        await self._audit(
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

    async def edit(
        self,
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
        letter = await self._visible(op, letter_id)
        d = letter.record.letter
        if letter.status is LetterStatus.PURGED:
            raise Conflict(f"dead letter {letter_id} was purged: nothing left to edit")
        request_id = header_str(original_headers(d.headers_json).get(HEADER_TASK_ID))
        if d.exchange != TASKS or not request_id or not d.application_id:
            raise Conflict(f"dead letter {letter_id} is not a task message; only tasks are edited")
        task = await self._store.cases.task(task_of(request_id))
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
        edit = LetterEdit(letter_id, task.id, key, diff, body, reason, op.name, self._clock())
        paths = [c["path"] for c in diff]  # the values stay in the edit, not in the trail

        async def keep(tx: Tx, tr: Transition) -> None:
            # one audit row for the action (dlq.edit), with what a replay's row would say
            details = {**_queued(tr, key, force), "paths": paths}
            await marks.add_edit(tx, edit, self._entry(op, "dlq.edit", letter_id, reason, details))
            await self._mark_replayed(tx, op, letter_id, reason, None)

        _, pending = await self._through_planner(d.application_id, order, keep)
        note = f"edited copy sent as {key}"
        if pending:
            note = f"edited copy {key} written to the outbox: the relay sends it"
        return Replayed(letter_id, True, key, note, pending)

    async def purge(
        self, op: Operator, letter_id: int, reason: str, *, cancel_task: bool = False
    ) -> Purged:
        """Drop a letter with a reason. A letter whose task is still dead-lettered by it is
        refused unless ``cancel_task``: the task is then cancelled in the same transaction
        and the application moves on without it (``planner.on_cancel``)."""
        op.require("purge")
        reason = required_reason(reason)
        letter = await self._visible(op, letter_id)
        if letter.status is LetterStatus.PURGED:
            raise Conflict(f"dead letter {letter_id} was purged before")
        d = letter.record.letter
        task = await self._blocking_task(d)
        entry = self._entry(
            op, "dlq.purge", letter_id, reason, {"cancelled": task.id if task else None}
        )

        async def drop(tx: Tx, tr: Transition | None = None) -> None:
            if not await marks.mark_purged(
                tx, letter_id, op.name, reason, self._clock(), audit=entry
            ):
                raise Conflict(f"dead letter {letter_id} was purged before")

        if task is None:
            await self._store_marks(drop)
            return Purged(letter_id, None, None)
        if not cancel_task:
            raise Conflict(
                f"task {task.id} is still dead-lettered by dead letter {letter_id}: purging "
                "it alone would leave the application blocked for ever. Replay it, or purge "
                f"with {self._cancel_flag} to cancel the task (the application then goes on "
                "without it: rejected when the step is mandatory)"
            )
        order = planner.CancelOrder(task.id, task.attempt, op.name, reason, letter_id)

        def plan(state: CaseState) -> Transition:
            return planner.on_cancel(state, self._context(state), order)

        tr, _ = await self._transition(task.application_id, plan, drop)
        status = None if tr.status is None else tr.status.value
        return Purged(letter_id, task.id, status)

    async def _blocking_task(self, d: DeadLetter) -> TaskRecord | None:
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
        task = await self._store.cases.task(task_id)
        if task is None or task.status is not TaskStatus.DEAD_LETTERED:
            return None
        return task if task.attempt == attempt else None

    # -- internals ---------------------------------------------------------------------
    async def _visible(self, op: Operator, letter_id: int) -> ParkedLetter:
        letter = await self._ops.letter(letter_id)
        if letter is None:
            raise NotFound(f"no dead letter {letter_id}")
        op.require_system(letter.record.letter.system)
        return letter

    async def _mark_replayed(
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
            None if details is None else self._entry(op, "dlq.replay", letter_id, reason, details)
        )
        if not await marks.mark_replayed(
            tx, letter_id, op.name, reason, self._clock(), again=True, audit=entry
        ):
            raise Conflict(f"dead letter {letter_id} was purged meanwhile")

    async def _store_marks(self, write: Callable[[Tx], Awaitable[None]]) -> None:
        async with self._ops.database.transaction() as tx:
            await write(tx)

    async def _through_planner(
        self,
        application_id: str,
        order: planner.ReplayOrder,
        also: Callable[[Tx, Transition], Awaitable[None]],
    ) -> tuple[Transition, bool]:
        """Apply the replay on the locked case with ``also`` (the letter's marks, the audit
        row, an edit) in the same transaction; then publish its outbox rows, confirmed.
        True when a row stays in the outbox unconfirmed: the relay sends it."""

        def plan(state: CaseState) -> Transition:
            return planner.on_replay(state, self._context(state), order)

        return await self._transition(application_id, plan, also)

    async def _transition(
        self,
        application_id: str,
        plan: Callable[[CaseState], Transition],
        also: Callable[[Tx, Transition], Awaitable[None]],
    ) -> tuple[Transition, bool]:
        try:
            tr, rows = await self._store.cases.transition(
                application_id, plan, self._clock(), also=also
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
                await self._publish(o.exchange, o.routing_key, o.message)
                sent.append(row.id)
        finally:
            await self._store.cases.delete_outbox(sent)

    def _context(self, state: CaseState) -> Context:
        return Context(
            catalogue=load(state.catalogue_version or CURRENT_VERSION),
            now=self._clock(),
            timezone=self._tz,
            poll_seconds={},
            calendar=default_calendar(),
        )

    def _entry(
        self, op: Operator, action: str, letter_id: int, reason: str, details: Mapping[str, Any]
    ) -> AuditEntry:
        return AuditEntry(
            op.name, action, f"dead-letter:{letter_id}", self._clock(), reason, details
        )

    async def _audit(
        self,
        op: Operator,
        action: str,
        target: str,
        reason: str | None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        await self._ops.audit(
            AuditEntry(op.name, action, target, self._clock(), reason, details or {})
        )


def _queued(tr: Transition, key: str | None, force: bool) -> dict[str, Any]:
    """What a replay's audit row can say when it commits: the message is queued in the
    outbox (published next by the desk, or by the relay while the broker does not confirm),
    or nothing was sent. Never "sent": the row is written before the broker confirms."""
    queued = any(o.exchange == TASKS for o in tr.outbox)
    note = (
        "queued in the outbox: published by the desk, or by the relay once the broker confirms"
        if queued
        else "nothing sent: the task finished or moved on"
    )
    return {"queued": queued, "key": key, "forced": force, "note": note}
