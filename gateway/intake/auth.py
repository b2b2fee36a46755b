"""Portal authentication for the HTTP API (DESIGN "Portal authentication").

Checks, in order: a known ``X-Portal-Id``; an ``X-Timestamp`` within the allowed skew; an
``X-Signature`` made with the portal's secret or, during a rotation, its previous secret;
and a nonce not used before within the window. The nonce is recorded only after the
signature is good, so nobody can burn another portal's nonces. Every failure is 401 with a
detail naming what is wrong.

``verify`` does it all. Intake's hot path splits it: ``check`` (everything but the nonce),
then the nonce is recorded in the transaction that claims the idempotency key
(``Store.admit``), or by ``remember`` when the request is refused before it gets there.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from gateway import signing
from gateway.settings import PortalConfig
from gateway.store import Store
from gateway.store.base import Nonce

MAX_NONCE_LENGTH = 128
_REQUIRED = (
    signing.HEADER_PORTAL,
    signing.HEADER_TIMESTAMP,
    signing.HEADER_NONCE,
    signing.HEADER_SIGNATURE,
)
NONCE_REUSED = "X-Nonce was already used; send a fresh nonce with every request"


@dataclass(eq=False)
class AuthError(Exception):
    detail: str

    def __post_init__(self) -> None:
        super().__init__(self.detail)


class PortalAuth:
    def __init__(
        self,
        portals: Mapping[str, PortalConfig],
        store: Store,
        *,
        skew_seconds: int = 300,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._portals = portals
        self._store = store
        self._skew = skew_seconds
        self._clock = clock

    async def verify(
        self, headers: Mapping[str, str], method: str, path_qs: str, body: bytes
    ) -> str:
        """Return the authenticated portal id or raise ``AuthError``."""
        portal_id, nonce = self.check(headers, method, path_qs, body)
        await self.remember(portal_id, nonce)
        return portal_id

    def check(
        self,
        headers: Mapping[str, str],
        method: str,
        path_qs: str,
        body: bytes,
        *,
        digest: str | None = None,
    ) -> tuple[str, Nonce]:
        """Every check but the nonce's reuse: the portal id and the nonce still to record,
        or ``AuthError``. ``digest``: ``signing.body_digest(body)`` if computed already."""
        portal_id = headers.get(signing.HEADER_PORTAL, "")
        timestamp = headers.get(signing.HEADER_TIMESTAMP, "")
        nonce = headers.get(signing.HEADER_NONCE, "")
        signature = headers.get(signing.HEADER_SIGNATURE, "")
        if not (portal_id and timestamp and nonce and signature):
            given = (portal_id, timestamp, nonce, signature)
            missing = [h for h, v in zip(_REQUIRED, given, strict=True) if not v]
            raise AuthError(f"missing header(s): {', '.join(missing)}")
        portal = self._portals.get(portal_id)
        if portal is None:
            raise AuthError(f"unknown portal {portal_id[:64]!r}")
        if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 12:
            raise AuthError("X-Timestamp must be unix seconds (digits only)")
        now = self._clock()
        if abs(int(timestamp) - now) > self._skew:
            raise AuthError(
                f"X-Timestamp is more than {self._skew} s away from the gateway's clock; "
                "check the portal's clock (NTP)"
            )
        if len(nonce) > MAX_NONCE_LENGTH:
            raise AuthError(f"X-Nonce longer than {MAX_NONCE_LENGTH} characters")
        secrets = [portal.secret.get_secret_value()]
        if portal.previous_secret is not None:
            secrets.append(portal.previous_secret.get_secret_value())
        key = headers.get(signing.HEADER_IDEMPOTENCY_KEY, "")
        if not signing.matches(
            signature, secrets, timestamp, nonce, method, path_qs, key, body=body, digest=digest
        ):
            raise AuthError(
                "X-Signature does not match: sign timestamp, nonce, method, path with query, "
                "Idempotency-Key and the body's SHA-256 as DESIGN describes"
            )
        return portal_id, Nonce(nonce, now, 2 * self._skew + 1)

    async def remember(self, portal_id: str, nonce: Nonce) -> None:
        """Record the nonce; ``AuthError`` when the portal used it within the window."""
        if not await self._store.remember_nonce(portal_id, nonce.value, nonce.now, nonce.ttl):
            raise AuthError(NONCE_REUSED)
