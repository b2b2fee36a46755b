"""Records the store keeps and returns. Plain frozen dataclasses: no I/O, no ORM."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ApplicationStatus(StrEnum):
    """Application statuses, fixed by DESIGN.md "Public interface"."""

    RECEIVED = "received"
    ACCEPTED = "accepted"
    IN_PROGRESS = "in_progress"
    CORRECTION_REQUESTED = "correction_requested"
    BLOCKED = "blocked"
    COMPLETED = "completed"
    DELIVERED = "delivered"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"


@dataclass(frozen=True, slots=True)
class NewApplication:
    """An application as intake stores it, before the broker has confirmed it."""

    id: str  # UUIDv7, assigned by the gateway
    portal_id: str
    idempotency_key: str
    channel: str  # "http" or "amqp"
    matter: str
    schema_version: str
    envelope_json: str  # the canonical envelope, as validated and normalised
    fingerprint: str  # sha256 hex of the body as the portal sent it
    created_at: float  # unix seconds


@dataclass(frozen=True, slots=True)
class ApplicationRecord:
    id: str
    portal_id: str
    idempotency_key: str
    channel: str
    matter: str
    schema_version: str
    status: ApplicationStatus
    envelope_json: str
    created_at: float
    updated_at: float
    accepted_at: float | None
    version: int  # bumped by every state change; guards concurrent writers


# --- idempotency claims: what intake learns when it presents (portal, key, fingerprint) ---


@dataclass(frozen=True, slots=True)
class Fresh:
    """The caller now holds the in-flight lease for this key.

    ``application_id`` is set when an earlier attempt with the same key already stored the
    application (for instance the broker was down and the portal got 503): the caller must
    publish *that* application rather than create a second one.
    """

    application_id: str | None


@dataclass(frozen=True, slots=True)
class Replay:
    """The key was answered before: return the stored status and body unchanged."""

    status_code: int
    body: bytes
    content_type: str
    application_id: str | None


@dataclass(frozen=True, slots=True)
class InFlight:
    """Another request holds the lease for this key and it has not expired (→ 409)."""

    lease_until: float


@dataclass(frozen=True, slots=True)
class Mismatch:
    """The key was used before with a different body (→ 422)."""


Claim = Fresh | Replay | InFlight | Mismatch


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that could not be processed, kept with its reason for an operator."""

    message_id: str  # unique per publish; the store ignores a second copy of the same one
    exchange: str  # where the message was first published
    routing_key: str
    headers_json: str
    body: bytes
    reason: str
    error_kind: str  # "permanent" | "retryable" | "delivery_limit" | "rejected"
    system: str | None
    matter: str | None
    application_id: str | None
    portal_id: str | None
    attempts: int
    first_failed_at: float
    last_failed_at: float


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    id: int
    letter: DeadLetter
    stored_at: float
