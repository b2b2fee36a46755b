"""The store seam: one Protocol, a SQLite implementation and a PostgreSQL one.

Both are held to the same test suite (``tests/store``). Every state change is one
transaction guarded by the row it changes, so any number of gateway processes may share
one store (DESIGN "Scale").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from gateway.store.records import (
    ApplicationRecord,
    ApplicationStatus,
    Claim,
    DeadLetter,
    DeadLetterRecord,
    NewApplication,
)

if TYPE_CHECKING:
    from gateway.store.cases import CaseStore


@dataclass(frozen=True, slots=True)
class Answer:
    """A response stored for an idempotency key (202 and 422 are stored; 5xx never)."""

    status_code: int
    body: bytes
    content_type: str


@dataclass(frozen=True, slots=True)
class Nonce:
    """A request's nonce, recorded in the transaction that claims its idempotency key."""

    value: str
    now: float  # when the request was authenticated
    ttl: float  # the nonce may not be used again within this many seconds


class NonceReused(Exception):
    """The portal used this nonce within its ttl: nothing was claimed or stored."""


class Store(Protocol):
    """What the gateway asks of its database. All times are unix seconds (float)."""

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        ...

    @property
    def cases(self) -> CaseStore:
        """Tasks, timeline, outbox and timers of the internal push."""
        ...

    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless a trivial query succeeds (used by /readyz)."""

    async def close(self) -> None: ...

    # -- replay protection -------------------------------------------------------------
    async def remember_nonce(self, portal_id: str, nonce: str, now: float, ttl: float) -> bool:
        """Record a request nonce; False when this portal used it within ``ttl`` seconds."""
        ...

    # -- idempotency -------------------------------------------------------------------
    async def claim_idempotency(
        self, portal_id: str, key: str, fingerprint: str, now: float, lease_seconds: float
    ) -> Claim:
        """Look up (portal, key) and take the in-flight lease when nobody holds it.

        In this order: new key → insert and return ``Fresh(None)``; a different
        fingerprint → ``Mismatch``; a stored response → ``Replay``; lease held and not
        expired → ``InFlight``; lease expired or released → take it over and return
        ``Fresh(application_id_of_the_earlier_attempt)``.
        """
        ...

    async def admit(
        self,
        portal_id: str,
        key: str,
        fingerprint: str,
        now: float,
        lease_seconds: float,
        *,
        new: NewApplication | None,
        refusal: Answer | None = None,
        nonce: Nonce | None = None,
    ) -> tuple[Claim, ApplicationRecord | None]:
        """``claim_idempotency`` and what intake does next, in one transaction (its hot path).

        ``nonce`` given → recorded first as ``remember_nonce`` does; when the portal used it
        within its ttl, ``NonceReused`` is raised and nothing else happens.

        Not ``Fresh`` → the claim and None. ``Fresh`` with an earlier attempt's application
        still stored → that application. Otherwise, ``new`` given → it is created as with
        ``create_application`` and returned; else ``refusal`` (the 422 for an invalid
        envelope), when given, is stored as the key's response, and None is returned.
        """
        ...

    async def complete_idempotency(
        self, portal_id: str, key: str, status_code: int, body: bytes, content_type: str
    ) -> None:
        """Store the final response for (portal, key) and drop the lease."""

    async def release_idempotency(self, portal_id: str, key: str) -> None:
        """Drop the lease without a stored response (5xx): the same key may try again."""

    # -- applications ------------------------------------------------------------------
    async def create_application(self, app: NewApplication) -> ApplicationRecord:
        """Insert the application as ``received`` and link it to its idempotency record,
        in one transaction; the record as stored."""
        ...

    async def mark_accepted(self, application_id: str, now: float) -> bool:
        """``received`` → ``accepted``; False when the row was not ``received``."""
        ...

    async def accept_and_answer(
        self,
        application_id: str,
        now: float,
        portal_id: str,
        key: str,
        status_code: int,
        body: bytes,
        content_type: str,
    ) -> bool:
        """``mark_accepted`` and ``complete_idempotency`` in one transaction (intake's hot
        path); True when the row moved from ``received``."""
        ...

    async def get_application(self, application_id: str) -> ApplicationRecord | None: ...

    async def find_application(self, portal_id: str, key: str) -> ApplicationRecord | None:
        """The application created under this portal's idempotency key, if any."""
        ...

    async def list_applications(
        self,
        *,
        status: ApplicationStatus | None = None,
        matter: str | None = None,
        portal_id: str | None = None,
        created_from: float | None = None,
        created_to: float | None = None,
        limit: int = 100,
    ) -> Sequence[ApplicationRecord]: ...

    async def claim_unpublished(
        self, now: float, older_than: float, lease_seconds: float, limit: int
    ) -> Sequence[ApplicationRecord]:
        """Applications still ``received`` whose last change is older than ``now -
        older_than`` and whose relay lease is free; each returned row is leased to the
        caller for ``lease_seconds`` so two relays never republish the same row at once."""
        ...

    # -- dead letters ------------------------------------------------------------------
    async def add_dead_letter(self, letter: DeadLetter, now: float) -> int | None:
        """Store a dead letter; None when one with the same ``message_id`` is already kept."""
        ...

    async def list_dead_letters(
        self, *, system: str | None = None, limit: int = 100
    ) -> Sequence[DeadLetterRecord]: ...
