"""The dead-letter store's intake: ``gw.dead-letters`` → rows an operator can find.

Two kinds of message arrive here. Those the gateway parked itself carry ``x-reason``,
``x-error-kind`` and the original exchange and routing key in headers. Those RabbitMQ
dead-lettered (delivery limit reached, rejected without requeue) carry only ``x-death``; the
reason is read from it, but never a count (their meaning changed in 3.13): attempts come
from the gateway's own ``x-attempt`` header.

A letter's ``attempts`` has one meaning: the tries made for this task attempt (a spent budget:
all of them; a permanent refusal: the tries up to it; a task message past the delivery limit:
those spent before plus the one that died). A message that is not a task: 1.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from gateway.broker.messages import Delivery, Message, header_str, uuid7
from gateway.broker.topology import (
    ACCEPTED,
    DLX,
    HEADER_ATTEMPT,
    HEADER_ERROR_KIND,
    HEADER_FIRST_FAILED_AT,
    HEADER_ORIGINAL_EXCHANGE,
    HEADER_ORIGINAL_ROUTING_KEY,
    HEADER_PORTAL,
    HEADER_REASON,
    HEADER_TASK_ID,
    RESULTS,
    TASKS,
)
from gateway.errors import StoreUnavailable
from gateway.logs import get_logger
from gateway.matters import MATTERS
from gateway.metrics import Metrics
from gateway.store import DeadLetter, Store

if TYPE_CHECKING:
    from gateway.orchestration.records import CaseState, Context, Transition

log = get_logger(__name__)
STORE_DOWN_PAUSE_SECONDS = 2.0
# kept with an intake letter, so that a replay can submit it as its portal (admin/resubmit.py)
HEADER_AMQP_USER = "x-amqp-user"
HEADER_IDEMPOTENCY_KEY = "x-idempotency-key"


def dead_letter_from(delivery: Delivery, now: float) -> DeadLetter:
    """Read a dead-lettered delivery into a record; pure, so it is tested without a broker."""
    headers = delivery.headers
    if delivery.user_id and HEADER_AMQP_USER not in headers:  # RabbitMQ dead-lettered it
        headers = {**headers, HEADER_AMQP_USER: delivery.user_id}
    death = _first_death(headers)
    reason = reason_said = header_str(headers.get(HEADER_REASON))
    kind = header_str(headers.get(HEADER_ERROR_KIND))
    if reason is None:
        broker_reason = header_str(death.get("reason")) or "unknown"
        reason = f"dead-lettered by RabbitMQ: {broker_reason}"
        kind = broker_reason if broker_reason in ("delivery_limit", "rejected") else "broker"
    exchange = (
        header_str(headers.get(HEADER_ORIGINAL_EXCHANGE))
        or header_str(death.get("exchange"))
        or delivery.exchange
    )
    routing_key = (
        header_str(headers.get(HEADER_ORIGINAL_ROUTING_KEY))
        or _first(death.get("routing-keys"))
        or delivery.routing_key
    )
    system, matter = _system_and_matter(exchange, routing_key)
    first = headers.get(HEADER_FIRST_FAILED_AT)
    return DeadLetter(
        message_id=delivery.message_id or _digest(delivery, death),
        exchange=exchange,
        routing_key=routing_key,
        headers_json=json.dumps(headers, default=_jsonable, sort_keys=True),
        body=delivery.body,
        reason=reason,
        error_kind=kind or "permanent",
        system=system,
        matter=matter,
        application_id=delivery.correlation_id,
        portal_id=header_str(headers.get(HEADER_PORTAL)),
        attempts=_attempts(headers, exchange, parked=reason_said is not None),
        first_failed_at=first / 1000 if isinstance(first, int) else now,  # header in ms
        last_failed_at=now,
    )


async def park(
    publish: Callable[[str, str, Message], Awaitable[None]],
    delivery: Delivery,
    *,
    reason: str,
    kind: str = "permanent",
    message_id: str | None = None,
    extra: Mapping[str, Any] | None = None,
    now: float | None = None,
) -> None:
    """Dead-letter a copy of ``delivery`` through ``gw.dlx`` with its reason, keeping the
    original exchange, routing key, headers and body for replay. The caller acks after."""
    headers = dict(delivery.headers)
    headers.update(
        {
            HEADER_REASON: reason[:2000],
            HEADER_ERROR_KIND: kind,
            HEADER_ORIGINAL_EXCHANGE: delivery.exchange,
            HEADER_ORIGINAL_ROUTING_KEY: delivery.routing_key,
            HEADER_ATTEMPT: _int(headers.get(HEADER_ATTEMPT), 1),
            HEADER_FIRST_FAILED_AT: int((time.time() if now is None else now) * 1000),
            **(extra or {}),
        }
    )
    await publish(
        DLX,
        delivery.routing_key,
        Message(
            body=delivery.body,
            message_id=message_id or delivery.message_id or uuid7(),
            correlation_id=delivery.correlation_id,
            headers=headers,
            content_type=delivery.content_type or "application/octet-stream",
        ),
    )


class DeadLetterSink:
    """Stores each dead letter once, then blocks its application with the reason — so no
    application waits silently on a message that will never be handled:

    * a task message: tells the orchestrator (a ``dead_lettered`` result on ``gw.results``);
    * a department's reply (``gw.results``): its task is dead-lettered here, in one guarded
      transaction (the orchestrator is what could not handle it);
    * a ``gw.accepted`` message: the application, not started, turns ``blocked``; replaying
      the letter starts it (``Orchestrator.on_accepted``).
    """

    def __init__(
        self,
        store: Store,
        metrics: Metrics,
        publish: Callable[[str, str, Message], Awaitable[None]] | None = None,
        *,
        clock: Callable[[], float] = time.time,
        timezone: dt.tzinfo = dt.UTC,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._publish = publish
        self._clock = clock
        self._tz = timezone

    async def handle(self, delivery: Delivery) -> None:
        letter = dead_letter_from(delivery, self._clock())
        try:
            stored = await self._store.add_dead_letter(letter, self._clock())
        except StoreUnavailable as exc:
            log.warning("dead_letter_store_down", error=str(exc))
            await asyncio.sleep(STORE_DOWN_PAUSE_SECONDS)
            delivery.reject(requeue=True)  # this queue never dead-letters: nothing is dropped
            return
        if stored is not None:
            self._metrics.dead_letters.labels(letter.error_kind).inc()
            log.warning(
                "dead_letter_stored",
                dead_letter_id=stored,
                reason=letter.reason,
                kind=letter.error_kind,
                system=letter.system,
                application_id=letter.application_id,
            )
        task_id = header_str(delivery.headers.get(HEADER_TASK_ID))
        if letter.exchange == RESULTS:
            await self._block_result(letter)
        elif letter.exchange == ACCEPTED:
            await self._block_unstarted(letter)
        elif task_id and self._publish is not None:
            await self._block_task(task_id, letter)
        delivery.ack()

    async def _apply(
        self, application_id: str, plan: Callable[[CaseState, Context], Transition]
    ) -> None:
        """One planner step on the locked case, its events published (or left to the relay)."""
        from gateway.orchestration.orchestrator import Orchestrator
        from gateway.orchestration.outbox import Outbox
        from gateway.store.cases import UnknownApplication

        if self._publish is None:
            return
        outbox = Outbox(self._store.cases, self._publish, self._metrics, clock=self._clock)
        orchestrator = Orchestrator(
            self._store, outbox, self._publish, timezone=self._tz, poll_seconds={},
            clock=self._clock,
        )  # fmt: skip
        try:
            await orchestrator.apply(application_id, plan)
        except UnknownApplication:
            log.warning("dead_letter_for_unknown_application", application_id=application_id)

    async def _block_result(self, letter: DeadLetter) -> None:
        from gateway.errors import Permanent
        from gateway.orchestration import planner
        from gateway.orchestration.messages import ResultMessage

        try:
            said = ResultMessage.parse(letter.body)
        except Permanent:
            if letter.application_id:
                await self._block_unstarted(letter)
            return
        dead = ResultMessage.dead_lettered(
            said.task_id, said.application_id, said.system, said.attempt, _why(letter)
        )
        await self._apply(said.application_id, lambda s, c: planner.on_result(s, c, dead))

    async def _block_unstarted(self, letter: DeadLetter) -> None:
        app_id = letter.application_id or _application_of(letter.body)
        if not app_id:
            return  # nothing to block: the letter is all an operator will see
        reason = _why(letter)
        await self._apply(app_id, lambda s, c: block_unstarted(s, c, reason))

    async def _block_task(self, request_id: str, letter: DeadLetter) -> None:
        from gateway.orchestration.messages import (
            ResultMessage,
            attempt_of,
            routing_key,
            task_of,
        )

        task = await self._store.cases.task(task_of(request_id))
        if task is None or self._publish is None:
            return
        # the attempt that died, not the current one
        result = ResultMessage.dead_lettered(
            task.id, task.application_id, task.system, attempt_of(request_id), _why(letter)
        )
        await self._publish(
            RESULTS, routing_key(task.system, task.matter, task.step), result.message()
        )


def block_unstarted(state: CaseState, ctx: Context, reason: str) -> Transition:
    """An application whose ``gw.accepted`` message died turns ``blocked`` with the reason
    (its timeline and an ``application.blocked`` event say it); pure."""
    from gateway.orchestration import notices
    from gateway.orchestration.records import TimelineEntry, Transition
    from gateway.store.records import ApplicationStatus

    app = state.application
    if state.tasks or app.status not in (ApplicationStatus.RECEIVED, ApplicationStatus.ACCEPTED):
        return Transition()  # started meanwhile, withdrawn, or blocked already
    tr = Transition(status=ApplicationStatus.BLOCKED)
    tr.timeline.append(TimelineEntry(ctx.now, "application.blocked", detail={"reason": reason}))
    notices.event(tr, state, ctx, "application.blocked", (app.id,), {"reason": reason})
    return tr


def _application_of(body: bytes) -> str | None:
    try:
        value = json.loads(body).get("application_id")
    except (ValueError, AttributeError):
        return None
    return str(value) if value else None


def _why(letter: DeadLetter) -> str:
    """The reason an application is blocked with: which letter, and why it died."""
    return f"dead letter {letter.message_id}: {letter.reason}"


def _first_death(headers: dict[str, Any]) -> dict[str, Any]:
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        return deaths[0]
    return {}


def _first(value: Any) -> str | None:
    if isinstance(value, list) and value:
        return header_str(value[0])
    return None


def _system_and_matter(exchange: str, routing_key: str) -> tuple[str | None, str | None]:
    parts = routing_key.split(".")
    if exchange in ("gw.tasks", "gw.results") and len(parts) >= 2:
        return parts[0], parts[1] if parts[1] in MATTERS else None
    if exchange == "gw.accepted":
        return None, routing_key if routing_key in MATTERS else None
    return None, None


def _attempts(headers: Mapping[str, Any], exchange: str, *, parked: bool) -> int:
    """Tries made for this task attempt: the gateway says so when it parks a task; a task
    message RabbitMQ dead-lettered carries ``x-attempt`` = the task's attempt + tries spent
    before this delivery, which made one more. Any other message: 1."""
    said = _int(headers.get(HEADER_ATTEMPT), 1)
    task_id = header_str(headers.get(HEADER_TASK_ID))
    if parked or exchange != TASKS or not task_id:
        return said
    from gateway.orchestration.messages import attempt_of

    return max(said - attempt_of(task_id), 0) + 1


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _digest(delivery: Delivery, death: dict[str, Any]) -> str:
    """An id for a message published without one: same message, same death → same id."""
    seen = json.dumps(death, default=_jsonable, sort_keys=True).encode()
    return "sha256:" + hashlib.sha256(delivery.body + b"\0" + seen).hexdigest()


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)
