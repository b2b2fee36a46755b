"""Intake over AMQP: portals publish envelopes to ``gw.intake``.

The portal is the broker-validated ``user_id`` (mapped by ``[portals.<id>] amqp_user``), the
idempotency key is the ``message_id``; validation and idempotency are intake's own. A message
that cannot be accepted is parked in ``gw.dlx`` with its reason and answered with
``application.rejected`` on the portal's ``gw.events`` key, then acked. Garbage never stops
the consumer: anything unexpected requeues the delivery and the queue's delivery limit
dead-letters a message that keeps failing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import structlog

from gateway import events
from gateway.broker.messages import Delivery, Message, header_str
from gateway.broker.topology import EVENTS, HEADER_PORTAL, HEADER_TRACEPARENT
from gateway.deadletters import HEADER_AMQP_USER, HEADER_IDEMPOTENCY_KEY, park
from gateway.intake.http import MAX_KEY_LENGTH
from gateway.intake.service import IntakeService, Outcome
from gateway.logs import get_logger
from gateway.matters import routing_segment
from gateway.settings import Settings

log = get_logger(__name__)

Publish = Callable[[str, str, Message], Awaitable[None]]
BUSY_PAUSE_SECONDS = 0.5
MAX_PAUSE_SECONDS = 30.0
KEPT_OF_OVERSIZED = 1024  # bytes of an oversized body kept in its dead letter
HOLD_SECONDS = 20 * 60.0  # RabbitMQ's consumer timeout is 30 min by default


class AmqpIntake:
    def __init__(
        self,
        service: IntakeService,
        settings: Settings,
        publish: Publish,
        *,
        clock: Callable[[], float] = time.time,
        hold_seconds: float = HOLD_SECONDS,
    ) -> None:
        self._hold_seconds = hold_seconds
        self._service = service
        self._settings = settings
        self._publish = publish
        self._clock = clock

    async def handle(self, delivery: Delivery) -> None:
        portal_id = self._settings.portal_for_amqp_user(delivery.user_id or "")
        if portal_id is None:
            await self._park(delivery, None, _no_portal_reason(delivery.user_id), [])
            return
        key = delivery.message_id or ""
        limit = self._settings.intake.max_body_bytes
        if len(delivery.body) > limit:
            digest = hashlib.sha256(delivery.body).hexdigest()
            await self._park(
                replace(delivery, body=delivery.body[:KEPT_OF_OVERSIZED]),
                portal_id,
                f"body of {len(delivery.body)} bytes exceeds the intake limit of {limit} bytes; "
                f"kept: its first {KEPT_OF_OVERSIZED} bytes and sha256 {digest}",
                [],
                key[:MAX_KEY_LENGTH] or None,
                oversized=digest,
            )
            delivery.ack()
            return
        if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
            await self._park(
                delivery,
                portal_id,
                "message_id missing, longer than 128 characters or not printable; it is the "
                "idempotency key: set a unique message_id per application",
                [],
            )
            return
        structlog.contextvars.bind_contextvars(portal_id=portal_id, message_id=key)
        outcome = await self._submit_holding(portal_id, key, delivery)
        if outcome is None:
            delivery.reject(requeue=True)  # held past the bound: let the broker count it
        elif outcome.status == 202:
            delivery.ack()
        else:
            await self._park(delivery, portal_id, _reason(outcome), _errors(outcome), key)

    async def _submit_holding(self, portal_id: str, key: str, delivery: Delivery) -> Outcome | None:
        """Submit; while the answer is 'try later' (409 in flight elsewhere, 503 store or
        broker down) keep the delivery and try again with capped backoff, so an outage
        does not spend the queue's delivery limit and dead-letter a valid application.
        None when still unanswered after ``hold_seconds`` (below the broker's consumer
        timeout)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._hold_seconds
        pause = BUSY_PAUSE_SECONDS
        while True:
            outcome = await self._service.submit(
                portal_id,
                key,
                delivery.body,
                channel="amqp",
                traceparent=header_str(delivery.header(HEADER_TRACEPARENT)),
            )
            if outcome.status not in (409, 503):
                return outcome
            if loop.time() + pause > deadline:
                log.warning("intake_held_too_long", status=outcome.status)
                return None
            log.info("intake_holding", status=outcome.status, retry_in=pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, MAX_PAUSE_SECONDS)

    async def _park(
        self,
        delivery: Delivery,
        portal_id: str | None,
        reason: str,
        errors: list[dict[str, Any]],
        key: str | None = None,
        *,
        oversized: str | None = None,
    ) -> None:
        """Dead-letter a copy with its reason, tell the portal, then ack the original.

        ``oversized``: the sha256 of an oversized body of which ``delivery`` is a copy
        carrying only the start; it is not read for its matter, and the caller acks the
        original."""
        now = self._clock()
        # A deterministic id: a redelivered message parks as the same dead letter, and
        # different keyless messages as different ones (the id of a body is its digest).
        who = portal_id or delivery.user_id or "-"
        if key:
            dedupe = f"intake:{who}:{key}"
        else:
            seen = (delivery.message_id or "").encode("utf-8", "replace")
            digest = oversized or hashlib.sha256(seen + b"\0" + delivery.body).hexdigest()
            dedupe = f"intake:{who}:sha256:{digest}"
        await park(
            self._publish,
            delivery,
            reason=reason,
            message_id=dedupe,
            now=now,
            extra={  # what a replay needs to submit it as this portal (admin/resubmit.py)
                k: v
                for k, v in (
                    (HEADER_PORTAL, portal_id),
                    (HEADER_AMQP_USER, delivery.user_id),
                    (HEADER_IDEMPOTENCY_KEY, key),
                )
                if v
            },
        )
        matter = routing_segment(None if oversized else _matter_of(delivery.body))
        if portal_id:
            await self._publish(
                EVENTS,
                events.routing_key(portal_id, matter, "application.rejected"),
                events.event_message(
                    "application.rejected",
                    portal_id=portal_id,
                    matter=matter,
                    subject=(portal_id, key or dedupe),
                    application_id=None,
                    occurred_at=now,
                    data={"idempotency_key": key, "reason": reason, "errors": errors},
                ),
            )
        log.info("intake_parked", portal_id=portal_id, reason=reason, errors=len(errors))
        if not oversized:
            delivery.ack()


def _no_portal_reason(user: str | None) -> str:
    if not user:
        return (
            "message has no user_id; publish with the user_id property set to your broker "
            "user so the gateway knows which portal sent it"
        )
    return (
        f"broker user {user[:64]!r} is not a configured portal; add amqp_user to "
        "[portals.<id>] in the gateway config"
    )


def _reason(outcome: Outcome) -> str:
    if outcome.problem is not None:
        fields = "; ".join(f"{e['loc']}: {e['msg']}" for e in outcome.problem.errors)
        reason = f"{outcome.problem.title}: {outcome.problem.detail}"
        return f"{reason} — {fields}"[:1000] if fields else reason
    try:
        body = json.loads(outcome.body)
        return f"{body.get('title', 'rejected')}: {body.get('detail', '')}"
    except (ValueError, AttributeError):
        return f"rejected with status {outcome.status}"


def _errors(outcome: Outcome) -> list[dict[str, Any]]:
    if outcome.problem is not None:
        return [dict(e) for e in outcome.problem.errors]
    try:
        errors = json.loads(outcome.body).get("errors", [])
        return [e for e in errors if isinstance(e, dict)]
    except (ValueError, AttributeError):
        return []


def _matter_of(body: bytes) -> object:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # garbage, or nested past Python's recursion limit
        return None
    return data.get("matter") if isinstance(data, dict) else None
