"""The dead-letter store's intake: ``gw.dead-letters`` → rows an operator can find.

Two kinds of message arrive here. Those the gateway parked itself carry ``x-reason``,
``x-error-kind`` and the original exchange and routing key in headers. Those RabbitMQ
dead-lettered (delivery limit reached, rejected without requeue) carry only ``x-death``; the
reason is read from it, but never a count (their meaning changed in 3.13): attempts come
from the gateway's own ``x-attempt`` header.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from gateway.broker.messages import Delivery, Message, header_str, uuid7
from gateway.broker.topology import (
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
)
from gateway.errors import StoreUnavailable
from gateway.logs import get_logger
from gateway.matters import MATTERS
from gateway.metrics import Metrics
from gateway.store import DeadLetter, Store

log = get_logger(__name__)
STORE_DOWN_PAUSE_SECONDS = 2.0


def dead_letter_from(delivery: Delivery, now: float) -> DeadLetter:
    """Read a dead-lettered delivery into a record; pure, so it is tested without a broker."""
    headers = delivery.headers
    death = _first_death(headers)
    reason = header_str(headers.get(HEADER_REASON))
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
        attempts=_int(headers.get(HEADER_ATTEMPT), 1),
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
    """Stores each dead letter once; when it belonged to a task (a task message, a
    department's reply), tells the orchestrator, which blocks the application with the
    reason — so no application waits silently on a message that will never be handled."""

    def __init__(
        self,
        store: Store,
        metrics: Metrics,
        publish: Callable[[str, str, Message], Awaitable[None]] | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._publish = publish
        self._clock = clock

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
        if task_id and letter.exchange != RESULTS and self._publish is not None:
            await self._block_task(task_id, letter)
        delivery.ack()

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
        result = ResultMessage(
            task_id=task.id,
            application_id=task.application_id,
            system=task.system,
            kind="dead_lettered",
            attempt=attempt_of(request_id),  # the attempt that died, not the current one
            reason=f"dead letter {letter.message_id}: {letter.reason}",
        )
        await self._publish(
            RESULTS, routing_key(task.system, task.matter, task.step), result.message()
        )


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
