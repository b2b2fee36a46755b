"""The orchestrator role: ``gw.accepted`` and ``gw.results`` in, tasks and events out.

Each delivery becomes one guarded transaction (``CaseStore.transition``) over the pure
planner; what it decided to send is published from the outbox after the commit; only then
is the delivery acked. Any number of orchestrators may run: the application row serialises
them, and the planner ignores duplicate and late results.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import replace

import structlog

from gateway.broker.messages import Delivery, Message
from gateway.calendar import WorkCalendar, default_calendar
from gateway.catalogue.model import CURRENT_VERSION, load
from gateway.deadletters import park
from gateway.errors import Permanent
from gateway.logs import get_logger
from gateway.orchestration import planner
from gateway.orchestration.messages import ResultMessage
from gateway.orchestration.outbox import Outbox
from gateway.orchestration.records import CaseState, Context, Transition
from gateway.store import Store
from gateway.store.cases import UnknownApplication
from gateway.store.records import ApplicationStatus

log = get_logger(__name__)
Publish = Callable[[str, str, Message], Awaitable[None]]
Plan = Callable[[CaseState, Context], Transition]


class Orchestrator:
    def __init__(
        self,
        store: Store,
        outbox: Outbox,
        publish: Publish,
        *,
        timezone: dt.tzinfo,
        poll_seconds: Mapping[str, float],
        clock: Callable[[], float] = time.time,
        calendar: WorkCalendar | None = None,
    ) -> None:
        self._calendar = calendar or default_calendar()
        self._store = store
        self._outbox = outbox
        self._publish = publish
        self._tz = timezone
        self._poll = dict(poll_seconds)
        self._clock = clock

    def context(self, state: CaseState) -> Context:
        """The planner's view, with the catalogue version the application was accepted under."""
        return Context(
            catalogue=load(state.catalogue_version or CURRENT_VERSION),
            now=self._clock(),
            timezone=self._tz,
            poll_seconds=self._poll,
            calendar=self._calendar,
        )

    async def apply(self, application_id: str, plan: Plan) -> Transition:
        """Run one planner step on the locked case, then publish what it produced."""
        tr, rows = await self._store.cases.transition(
            application_id, lambda state: plan(state, self.context(state)), self._clock()
        )
        await self._outbox.flush(rows)
        return tr

    async def on_accepted(self, delivery: Delivery) -> None:
        try:
            app_id = str(json.loads(delivery.body)["application_id"])
        except (ValueError, KeyError, TypeError):
            await self._park(delivery, "gw.accepted message without an application_id")
            return
        structlog.contextvars.bind_contextvars(application_id=app_id)
        try:
            tr = await self.apply(app_id, start_or_resume)
        except UnknownApplication:
            await self._park(delivery, f"application {app_id} is not in this gateway's store")
            return
        if tr.changed:
            log.info(
                "application_started",
                tasks=len(tr.tasks),
                dispatched=sum(1 for o in tr.outbox if o.exchange == "gw.tasks"),
            )
        delivery.ack()

    async def on_result(self, delivery: Delivery) -> None:
        try:
            result = ResultMessage.parse(delivery.body)
        except Permanent as exc:
            await self._park(delivery, str(exc))
            return
        structlog.contextvars.bind_contextvars(
            application_id=result.application_id, task_id=result.task_id, system=result.system
        )
        try:
            tr = await self.apply(
                result.application_id, lambda s, c: planner.on_result(s, c, result)
            )
        except UnknownApplication:
            await self._park(delivery, f"result for unknown application {result.application_id}")
            return
        if not tr.changed:  # no state change: at debug, off the hot path at INFO
            log.debug(
                "result_ignored",
                kind=result.kind,
                outcome=result.outcome,
                reason="duplicate, late or for an older attempt",
            )
        else:
            log.info(
                "result_applied",
                kind=result.kind,
                outcome=result.outcome,
                status=tr.status.value if tr.status else None,
            )
        delivery.ack()

    async def _park(self, delivery: Delivery, reason: str) -> None:
        log.warning("message_parked", reason=reason, queue=delivery.routing_key)
        await park(self._publish, delivery, reason=reason)
        delivery.ack()


def start_or_resume(state: CaseState, ctx: Context) -> Transition:
    """``planner.start``; also for an application the dead-letter store blocked because its
    ``gw.accepted`` message died (no task yet): replaying that letter starts it."""
    app = state.application
    if app.status is ApplicationStatus.BLOCKED and not state.tasks:
        state = replace(state, application=replace(app, status=ApplicationStatus.ACCEPTED))
    return planner.start(state, ctx)


def changed_paths(
    before: Mapping[str, object], after: Mapping[str, object], prefix: str = ""
) -> Iterable[str]:
    """Dotted paths whose values differ between two envelopes (for the timeline)."""
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key), after.get(key)
        path = f"{prefix}{key}"
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            yield from changed_paths(a, b, path + ".")
        elif a != b:
            yield path
