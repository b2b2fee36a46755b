"""The dead-letter desk: what an operator does with what failed, for the CLI and the API.

Every method takes the ``Operator`` asking, checks its role and its systems first, and
writes the audit trail for every action and every unmasked read (``gateway/store/audit.py``).

The reads — letters, groups, one letter, applications, one application, overdue tasks, the
trail — are here; each action is in its own module, over the steps they share
(``casework.py``):

    replay.py   replay a letter, or every letter a filter matches, safe by construction:
                through the planner for a task message, through intake for a portal's
                envelope, a dispatch again for a department's answer
    edit.py     replay an edited copy of a task message under ``<task id>.r<n>``
    purge.py    drop a letter with a reason; ``cancel_task`` when its task is still blocked

What the desk answers, and its typed refusals, are in ``outcomes.py``.
"""

from __future__ import annotations

import datetime as dt
import time
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from gateway.admin.auth import Operator
from gateway.admin.casework import Casework, Publish
from gateway.admin.edit import replay_edited
from gateway.admin.outcomes import (
    BatchReplay,
    CaseDetail,
    LetterDetail,
    NotFound,
    Purged,
    Replayed,
    required_why,
)
from gateway.admin.purge import purge_letter
from gateway.admin.replay import replay_letter, replay_matching_letters
from gateway.admin.resubmit import Resubmit
from gateway.orchestration.records import TaskRecord
from gateway.store import Store, operators_of
from gateway.store.audit import AuditEntry
from gateway.store.letters import LetterFilter, LetterGroup, ParkedLetter
from gateway.store.operators import AppFilter, OperatorStore
from gateway.store.records import ApplicationRecord


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
        self._work = Casework(
            store=store,
            ops=operators_of(store),
            publish=publish,
            timezone=timezone or zoneinfo.ZoneInfo("Asia/Shanghai"),
            clock=clock,
            resubmit=resubmit,
            cancel_flag=cancel_flag,  # how the caller says it: --cancel-task in a shell
        )
        self._share = due_soon_share

    @property
    def operators(self) -> OperatorStore:
        return self._work.ops

    @property
    def store(self) -> Store:
        return self._work.store

    # -- reading -----------------------------------------------------------------------
    async def letters(
        self, op: Operator, f: LetterFilter, *, limit: int = 50, before: int | None = None
    ) -> list[ParkedLetter]:
        op.require("view")
        if f.system is not None:
            op.require_system(f.system)
        return await self._work.ops.letters(replace(f, scope=op.scope), limit=limit, before=before)

    async def groups(self, op: Operator, f: LetterFilter) -> list[LetterGroup]:
        op.require("view")
        if f.system is not None:
            op.require_system(f.system)
        return await self._work.ops.groups(replace(f, scope=op.scope))

    async def letter(
        self, op: Operator, letter_id: int, *, unmask: bool = False, why: str | None = None
    ) -> LetterDetail:
        op.require("view")
        if unmask:
            op.require("unmask")
            why = required_why(why)
        letter = await self._work.visible(op, letter_id)
        if unmask:
            await self._work.audit(op, "dead_letter.unmask", f"dead-letter:{letter_id}", why)
        return LetterDetail(letter, await self._work.ops.edits(letter_id), unmask)

    async def applications(
        self,
        op: Operator,
        f: AppFilter,
        *,
        limit: int = 50,
        before: tuple[float, str] | None = None,
    ) -> list[ApplicationRecord]:
        op.require("view")
        return await self._work.ops.applications(
            replace(f, scope=op.scope), limit=limit, before=before
        )

    async def application(
        self, op: Operator, application_id: str, *, unmask: bool = False, why: str | None = None
    ) -> CaseDetail:
        op.require("view")
        if unmask:
            op.require("unmask")
            why = required_why(why)
        cases = self._work.store.cases
        state = await cases.load(application_id) if len(application_id) <= 64 else None
        if state is None:
            raise NotFound(f"no application {application_id}")
        op.require_any(t.system for t in state.tasks)
        if unmask:
            await self._work.audit(op, "application.unmask", f"application:{application_id}", why)
        timeline = await cases.timeline(application_id)
        disclosures = await cases.disclosures(application_id)
        return CaseDetail(state, timeline, unmask, disclosures)

    async def overdue(self, op: Operator, *, limit: int = 1000) -> list[TaskRecord]:
        """Running tasks past ``due_soon_share`` of their budget (the ``tasks overdue`` list),
        only of the operator's systems."""
        op.require("view")
        return await self._work.ops.overdue_tasks(self._work.clock(), self._share, limit, op.scope)

    async def audit_trail(
        self, op: Operator, *, limit: int = 100, before: int | None = None
    ) -> list[AuditEntry]:
        op.require("view")
        actor = None if op.scope is None else op.name  # a scoped operator sees its own only
        return await self._work.ops.audit_trail(operator=actor, limit=limit, before=before)

    async def login_failed(self, what: str, detail: str, source: str | None = None) -> None:
        """Record a failed login (401, or a shell's unknown token) in the trail; who it was
        is unknown, so the row's operator is ``-``."""
        details = {"detail": detail, **({"from": source} if source else {})}
        await self._work.ops.audit(
            AuditEntry("-", "login.failed", what, self._work.clock(), None, details)
        )

    async def denied(self, operator: str, what: str, detail: str) -> None:
        """Record a refused attempt (403) in the trail."""
        await self._work.ops.audit(
            AuditEntry(operator, "denied", what, at=self._work.clock(), details={"detail": detail})
        )

    # -- acting (replay.py, edit.py, purge.py) -----------------------------------------
    async def replay(
        self, op: Operator, letter_id: int, reason: str, *, force: bool = False
    ) -> Replayed:
        """Replay one letter: see ``replay.py`` for what that sends, by its exchange."""
        return await replay_letter(self._work, op, letter_id, reason, force=force)

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
        return await replay_matching_letters(self._work, op, f, reason, limit=limit, after=after)

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
        return await replay_edited(self._work, op, letter_id, changes, reason, force=force, add=add)

    async def purge(
        self, op: Operator, letter_id: int, reason: str, *, cancel_task: bool = False
    ) -> Purged:
        """Drop a letter with a reason. A letter whose task is still dead-lettered by it is
        refused unless ``cancel_task``: the task is then cancelled in the same transaction
        and the application moves on without it (``planner.on_cancel``)."""
        return await purge_letter(self._work, op, letter_id, reason, cancel_task=cancel_task)
