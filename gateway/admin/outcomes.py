"""What the desk answers (``desk.py``): its outcomes and its typed refusals.

NotFound   no such dead letter or application  → 404
Conflict   not allowed in the state it is in   → 409
Invalid    (copies.py) the request is wrong   → 422
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from gateway.admin.copies import Invalid
from gateway.orchestration.records import CaseState, TimelineEntry
from gateway.store.disclosures import Disclosure
from gateway.store.letters import ParkedLetter
from gateway.store.marks import LetterEdit


class NotFound(LookupError):
    """No such dead letter or application (→ 404)."""


class Conflict(Exception):
    """Not allowed in the state it is in (→ 409): purged, replayed before, task moved on."""


@dataclass(frozen=True, slots=True)
class Replayed:
    letter_id: int
    sent: bool  # False: the task finished or moved on, nothing needed sending
    key: str | None  # the idempotency key the department sees, for a task message
    note: str
    pending: bool = False  # written to the outbox; the relay sends it (broker unconfirmed)


@dataclass(frozen=True, slots=True)
class BatchReplay:
    replayed: list[Replayed] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)  # (letter id, why)
    more: bool = False  # more letters match: call again with ``after=next_after``
    next_after: int | None = None


@dataclass(frozen=True, slots=True)
class Purged:
    letter_id: int
    cancelled: str | None  # the task cancelled with it
    application_status: str | None  # where that left the application


@dataclass(frozen=True, slots=True)
class LetterDetail:
    letter: ParkedLetter
    edits: list[LetterEdit]
    unmasked: bool


@dataclass(frozen=True, slots=True)
class CaseDetail:
    state: CaseState
    timeline: list[TimelineEntry]
    unmasked: bool
    disclosures: Sequence[Disclosure] = ()  # which system received which personal fields


def required_why(why: str | None) -> str:
    """An unmasked read says why (it goes to the audit trail)."""
    text = (why or "").strip()
    if not text:
        raise Invalid(
            "say why you need the full data: why is required with unmask",
            [{"loc": "why", "msg": "required with unmask", "type": "missing"}],
        )
    return text[:500]
