"""The dead-letter desk: what an operator does with what failed, for the CLI and the API.

Every method takes the ``Operator`` asking, checks its role and its systems first, and
writes the audit trail for every action (and for every unmasked read, see ``audit.py``).

Replay is safe by construction:

* a **task message** is replayed through the planner (``planner.on_replay``) in one guarded
  transaction that moves the task back to ``dispatched``, the application from ``blocked``
  to ``in_progress`` and puts the message in the outbox; it is published with the broker's
  confirm before the letter is marked replayed. The department is idempotent on the task's
  request id, and the connector drops a message for a finished or superseded task, so a
  second replay — or a replay of a task that completed meanwhile — has no second effect;
* an **edited copy** is a new attempt under ``<task id>.r<n>`` (``n`` = the attempt it
  replaces), with the diff stored beside the untouched original; it goes only to a task
  that is still dead-lettered, and only for a letter the department refused (a letter that
  died of timeouts may have reached it: ``force`` to say you checked);
* any **other message** (``gw.accepted``, ``gw.results``, ``gw.intake``) is republished to
  its original exchange and routing key; its consumers are idempotent on its content.
"""

from __future__ import annotations

import datetime as dt
import time
import zoneinfo
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from gateway.admin.auth import Operator
from gateway.admin.copies import edited_copy, original_headers, required_reason
from gateway.broker.messages import Message, header_str, uuid7
from gateway.broker.topology import HEADER_ATTEMPT, HEADER_TASK_ID, INTAKE, TASKS
from gateway.calendar import default_calendar
from gateway.catalogue.model import CURRENT_VERSION, load
from gateway.orchestration import planner
from gateway.orchestration.messages import attempt_of, task_of
from gateway.orchestration.records import (
    CaseState,
    Context,
    Outgoing,
    TaskRecord,
    TimelineEntry,
    Transition,
)
from gateway.store import Store, operators_of
from gateway.store.cases import OutboxRow, UnknownApplication
from gateway.store.disclosures import Disclosure
from gateway.store.operators import (
    AppFilter,
    AuditEntry,
    LetterEdit,
    LetterFilter,
    LetterGroup,
    LetterStatus,
    OperatorStore,
    ParkedLetter,
)
from gateway.store.records import ApplicationRecord

Publish = Callable[[str, str, Message], Awaitable[None]]
REFUSED_KINDS = frozenset({"permanent", "rejected"})  # the department (or a consumer) said no


class NotFound(LookupError):
    """No such dead letter or application (→ 404)."""


class Conflict(Exception):
    """Not allowed in the state it is in (→ 409): purged, replayed before, task moved on."""


@dataclass(frozen=True, slots=True)
class Replayed:
    letter_id: int
    sent: bool  # False: the task finished or moved on, nothing needed sending
    key: str | None  # the idempotency key the department sees, for a task message
    note: str


@dataclass(frozen=True, slots=True)
class BatchReplay:
    replayed: list[Replayed] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)  # (letter id, why)


@dataclass(frozen=True, slots=True)
class LetterDetail:
    letter: ParkedLetter
    edits: list[LetterEdit]
    unmasked: bool


@dataclass(frozen=True, slots=True)
class CaseDetail:
    state: CaseState
    timeline: list[TimelineEntry]
    unmasked: bool
    disclosures: Sequence[Disclosure] = ()  # which system received which personal fields


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
    ) -> None:
        self._store = store
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
        rows = await self._store.cases.deadline_tasks(
            self._clock(), self._share, limit, pending=False
        )
        return [t for t in rows if op.sees(t.system)]

    async def audit_trail(
        self, op: Operator, *, limit: int = 100, before: int | None = None
    ) -> list[AuditEntry]:
        op.require("view")
        actor = None if op.scope is None else op.name  # a scoped operator sees its own only
        return await self._ops.audit_trail(operator=actor, limit=limit, before=before)

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
        headers = original_headers(d.headers_json)
        request_id = header_str(headers.get(HEADER_TASK_ID))
        if request_id:  # a fresh retry budget: the connector counts tries from x-attempt
            headers[HEADER_ATTEMPT] = attempt_of(request_id)
        message = Message(
            body=d.body,
            message_id=(header_str(d.message_id) or uuid7()) if d.exchange == INTAKE else uuid7(),
            correlation_id=d.application_id,
            headers=headers,
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
            sent = await self._through_planner(d.application_id, order)
            note = "sent" if sent else "nothing sent: the task finished or moved on"
        else:
            await self._publish(d.exchange, d.routing_key, message)
            sent, note = True, f"republished to {d.exchange} {d.routing_key}"
        outcome = Replayed(letter_id, sent, request_id, note)
        await self._ops.mark_replayed(
            letter_id,
            op.name,
            reason,
            self._clock(),
            again=True,
            audit=self._entry(
                op,
                "dlq.replay",
                letter_id,
                reason,
                {"sent": sent, "key": request_id, "forced": force, "note": note},
            ),
        )
        return outcome

    async def replay_matching(
        self, op: Operator, f: LetterFilter, reason: str, *, limit: int = 500
    ) -> BatchReplay:
        """Replay every parked letter the filter matches (at most ``limit``), one by one."""
        op.require("replay")
        reason = required_reason(reason)
        letters = await self.letters(op, f, limit=limit)
        batch = BatchReplay()
        for letter in reversed(letters):  # oldest first, as they failed
            try:
                batch.replayed.append(await self.replay(op, letter.id, reason))
            except (Conflict, NotFound) as exc:
                batch.refused.append((letter.id, str(exc)))
        await self._audit(
            op,
            "dlq.replay_filter",
            "dead-letters",
            reason,
            {
                "filter": {k: v for k, v in asdict(f).items() if v is not None and k != "scope"},
                "replayed": [r.letter_id for r in batch.replayed],
                "refused": [i for i, _ in batch.refused],
            },
        )
        return batch

    async def edit(
        self,
        op: Operator,
        letter_id: int,
        changes: Mapping[str, Any],
        reason: str,
        *,
        force: bool = False,
    ) -> Replayed:
        """Replay an edited copy of a dead-lettered task message under ``<task id>.r<n>``.

        ``changes`` maps dotted paths under ``fields.`` to new values (``None`` removes)."""
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
        body, diff = edited_copy(d.body, changes, key, task.attempt + 1)
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
        entry = self._entry(op, "dlq.edit", letter_id, reason, {"key": key, "paths": paths})

        async def keep_edit() -> None:
            await self._ops.add_edit(edit, entry)

        await self._through_planner(d.application_id, order, keep_edit)
        await self._ops.mark_replayed(
            letter_id,
            op.name,
            reason,
            self._clock(),
            again=True,
            audit=self._entry(
                op, "dlq.replay", letter_id, reason, {"sent": True, "key": key, "edited": True}
            ),
        )
        return Replayed(letter_id, True, key, f"edited copy sent as {key}")

    async def purge(self, op: Operator, letter_id: int, reason: str) -> None:
        op.require("purge")
        reason = required_reason(reason)
        await self._visible(op, letter_id)
        entry = self._entry(op, "dlq.purge", letter_id, reason, {})
        if not await self._ops.mark_purged(letter_id, op.name, reason, self._clock(), audit=entry):
            raise Conflict(f"dead letter {letter_id} was purged before")

    # -- internals ---------------------------------------------------------------------
    async def _visible(self, op: Operator, letter_id: int) -> ParkedLetter:
        letter = await self._ops.letter(letter_id)
        if letter is None:
            raise NotFound(f"no dead letter {letter_id}")
        op.require_system(letter.record.letter.system)
        return letter

    async def _through_planner(
        self,
        application_id: str,
        order: planner.ReplayOrder,
        on_commit: Callable[[], Awaitable[None]] | None = None,
    ) -> bool:
        """Apply the replay on the locked case; publish its outbox rows, confirmed. A row
        left unconfirmed stays in the outbox for the relay, and the error reaches the caller
        (the letter is then not marked replayed)."""

        def plan(state: CaseState) -> Transition:
            return planner.on_replay(state, self._context(state), order)

        try:
            tr, rows = await self._store.cases.transition(application_id, plan, self._clock())
        except UnknownApplication:
            raise NotFound(f"no application {application_id}") from None
        except planner.NotAllowed as exc:
            raise Conflict(str(exc)) from None
        if on_commit is not None:
            await on_commit()
        await self._flush(rows)
        return any(o.exchange == TASKS for o in tr.outbox)

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
