"""Replaying a ``gw.intake`` dead letter: the envelope goes through the intake service in
this process, as the portal that sent it, under its own idempotency key.

Republishing it to ``gw.intake`` could never work: the AMQP intake names the portal by the
broker-validated ``user_id``, which only the portal's own connection can set. So the portal
is read from the letter (``x-portal-id``, or ``x-amqp-user`` through ``[portals.<id>]
amqp_user`` — the config may have been fixed since), the key is the ``message_id`` the
portal sent, and intake's idempotency rules decide: a key already accepted answers with its
application (nothing twice), a refused envelope is refused again (the portal must resend a
corrected one under a new ``message_id``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.broker.messages import header_str
from gateway.broker.topology import HEADER_PORTAL, HEADER_TRACEPARENT
from gateway.deadletters import HEADER_AMQP_USER, HEADER_IDEMPOTENCY_KEY
from gateway.errors import BrokerUnavailable
from gateway.intake.service import IntakeService
from gateway.store import DeadLetter

PortalForUser = Callable[[str], str | None]


class Refused(Exception):
    """Intake cannot take this letter again; the reason says what the portal must do."""


@dataclass(frozen=True, slots=True)
class Resubmitted:
    application_id: str | None
    new: bool  # False: the key was accepted before; nothing was sent again


class Resubmit:
    def __init__(
        self, service: IntakeService, portal_for_user: PortalForUser, *, max_body_bytes: int
    ) -> None:
        self._service = service
        self._portal_for_user = portal_for_user
        self._max_body = max_body_bytes

    async def __call__(self, letter: DeadLetter) -> Resubmitted:
        headers = _headers(letter.headers_json)
        user = header_str(headers.get(HEADER_AMQP_USER))
        portal = header_str(headers.get(HEADER_PORTAL)) or letter.portal_id
        if portal is None and user:
            portal = self._portal_for_user(user)
        if portal is None:
            raise Refused(
                "the portal that sent it is unknown (no user_id, or a broker user no portal "
                "has as amqp_user): the portal must resend it with its user_id set"
            )
        if len(letter.body) > self._max_body:
            raise Refused(
                f"its body of {len(letter.body)} bytes exceeds the intake limit of "
                f"{self._max_body} bytes: the portal must send a smaller envelope"
            )
        key = header_str(headers.get(HEADER_IDEMPOTENCY_KEY)) or _original_key(letter)
        if key is None:
            raise Refused(
                "it has no usable message_id, which is its idempotency key: the portal must "
                "resend it with a unique message_id"
            )
        outcome = await self._service.submit(
            portal,
            key,
            letter.body,
            channel="amqp",
            traceparent=header_str(headers.get(HEADER_TRACEPARENT)),
        )
        if outcome.status == 202:
            return Resubmitted(outcome.application_id, not outcome.replayed)
        if outcome.status == 503:
            raise BrokerUnavailable("intake could not store or publish it now; try again")
        if outcome.status == 409:
            raise Refused("intake is handling this key right now; look again in a minute")
        detail = outcome.problem.detail if outcome.problem is not None else str(outcome.status)
        raise Refused(
            f"intake refuses it again ({outcome.status}: {detail}); the portal must resend a "
            "corrected envelope under a new message_id"
        )


def _headers(headers_json: str) -> dict[str, Any]:
    try:
        headers = json.loads(headers_json or "{}")
    except ValueError:
        return {}
    return headers if isinstance(headers, dict) else {}


def _original_key(letter: DeadLetter) -> str | None:
    """A letter RabbitMQ dead-lettered (delivery limit) keeps the portal's message_id."""
    if letter.error_kind in ("delivery_limit", "rejected", "broker"):
        return letter.message_id or None
    return None
