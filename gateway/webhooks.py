"""The ``webhooks`` role: every portal event on ``gw.events`` also POSTed to the portal's
``webhook_url``, signed the way portals sign their requests (DESIGN).

Each portal with a ``webhook_url`` has its own queue ``gw.webhooks.<portal>``, bound to
``gw.events`` with ``<portal>.#``: an event reaches only the portal its routing key names
(personal data never crosses portals), and one portal's outage holds back only its own. A 2xx
answer acks it; a 5xx, 408, 429 or a network failure is retried with capped, jittered
backoff while the delivery is held (an outage does not spend the queue's delivery limit);
any other 4xx parks the event in the dead-letter store with the portal's answer as reason.
The ``Idempotency-Key`` of each POST is the event's stable ``event_id``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import urlsplit

import aiohttp

from gateway import signing
from gateway.broker.messages import Delivery, Message, header_str
from gateway.deadletters import park
from gateway.logs import get_logger
from gateway.settings import PortalConfig

log = get_logger(__name__)
Publish = Callable[[str, str, Message], Awaitable[None]]
RETRYABLE = frozenset({408, 425, 429})
HOLD_SECONDS = 20 * 60.0


class WebhookSender:
    def __init__(
        self,
        portals: Mapping[str, PortalConfig],
        publish: Publish,
        *,
        timeout_seconds: float = 10.0,
        hold_seconds: float = HOLD_SECONDS,
        first_pause: float = 0.5,
        max_pause: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._portals = portals
        self._publish = publish
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._hold = hold_seconds
        self._first_pause = first_pause
        self._max_pause = max_pause
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def handle(self, delivery: Delivery) -> None:
        portal_id = delivery.routing_key.split(".", 1)[0]
        portal = self._portals.get(portal_id)
        if portal is None or not portal.webhook_url:
            delivery.ack()  # this portal takes its events from the broker only
            return
        event_id = header_str(delivery.header("event_id")) or delivery.message_id or ""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._hold
        pause = self._first_pause
        while True:
            status, detail = await self._post(portal_id, portal, event_id, delivery.body)
            if 200 <= status < 300:
                log.info("webhook_delivered", portal_id=portal_id, event_id=event_id, status=status)
                delivery.ack()
                return
            if status != 0 and status not in RETRYABLE and status < 500:
                reason = f"portal {portal_id} refused the webhook with {status}: {detail}"
                log.warning("webhook_refused", portal_id=portal_id, status=status)
                await park(self._publish, delivery, reason=reason, extra={"x-portal-id": portal_id})
                delivery.ack()
                return
            if loop.time() + pause > deadline:
                log.warning("webhook_held_too_long", portal_id=portal_id, event_id=event_id)
                delivery.reject(requeue=True)
                return
            log.info("webhook_retry", portal_id=portal_id, status=status, retry_in=pause)
            await asyncio.sleep(pause * random.uniform(0.8, 1.2))  # noqa: S311  # jitter
            pause = min(pause * 2, self._max_pause)

    async def _post(
        self, portal_id: str, portal: PortalConfig, event_id: str, body: bytes
    ) -> tuple[int, str]:
        """(HTTP status, detail); status 0 for a network failure."""
        url = portal.webhook_url or ""
        parts = urlsplit(url)
        path_qs = parts.path or "/"
        if parts.query:
            path_qs += "?" + parts.query
        headers = signing.signed_headers(
            portal_id,
            portal.secret.get_secret_value(),
            "POST",
            path_qs,
            body,
            event_id,
            now=self._clock(),
        )
        headers["Content-Type"] = "application/json"
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.post(url, data=body, headers=headers) as resp:
                return resp.status, (await resp.text())[:200]
        except (aiohttp.ClientError, TimeoutError) as exc:
            return 0, repr(exc)
