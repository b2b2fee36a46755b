"""The connector seam: how the gateway hands a task to a department system.

One module per transport kind (``soap``, ``rest``, ``filedrop``, ``amqp``) implements
``Connector``. The core never imports zeep, lxml or an HTTP client; each connector
translates its library's exceptions into ``gateway.errors`` at its own boundary:

    Retryable  timeouts, refused connections, 5xx, SOAP server faults, a full disk
    Permanent  4xx, SOAP client faults, contract violations, mapping errors

Decisions come back in one of two ways, announced by a capability attribute:

* ``polls = True``: the gateway keeps a timer row per pending task and calls ``check``
  (the police decide by hand, hours later: never a delivery held open);
* ``polls = False``: the connector's ``ResultSource`` (a callback route, an inbox folder,
  a reply queue) reports decisions as they arrive.

Every outbound request carries ``DepartmentRequest.task_id`` as its idempotency key.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

Outcome = Literal["in_progress", "completed", "denied", "correction_requested", "suspended"]


@dataclass(frozen=True, slots=True)
class DepartmentRequest:
    """One task for one department, with only the fields its catalogue step needs.

    ``fields`` is nested like the envelope (``{"subjects": {"child": {"name": …}}}``) plus a
    ``provided`` table of what earlier steps provided (``{"provided": {"citizen_id": …}}``).
    """

    task_id: str
    application_id: str
    matter: str
    task: str  # the catalogue step key, e.g. "hukou" or "birth_certificate"
    system: str
    operation: str  # the catalogue step's operation, e.g. "birth_registration"
    attempt: int
    fields: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Gap:
    """One thing a department needs corrected, gathered into the one notice (一次告知)."""

    field: str  # a dotted envelope path, e.g. "subjects.child.name", or "materials"
    message: str


@dataclass(frozen=True, slots=True)
class Decision:
    """What a department decided (or reports) about one task."""

    task_id: str
    outcome: Outcome
    case_number: str | None = None  # the department's own case number
    provides: Mapping[str, str] = field(default_factory=dict)  # e.g. {"citizen_id": "…"}
    certificate: str | None = None  # what goes in the results pack, e.g. a certificate no.
    reason: str | None = None  # required for denied / suspended
    gaps: Sequence[Gap] = ()  # for correction_requested
    decided_at: float | None = None  # unix seconds, the department's time if it gives one


@dataclass(frozen=True, slots=True)
class Receipt:
    """What a department answered when the request was handed over."""

    case_number: str | None = None
    accepted_at: float | None = None  # the department's acceptance: the task clock starts
    decision: Decision | None = None  # a department that decides at once says so here


class Connector(Protocol):
    """One department system reached over one transport."""

    system: str
    polls: bool  # True: call ``check`` from a timer; False: a ResultSource reports

    async def send(self, request: DepartmentRequest) -> Receipt:
        """Hand the request over (idempotent on ``request.task_id``)."""
        ...

    async def check(self, request: DepartmentRequest, case_number: str | None) -> Decision | None:
        """Ask for the decision on a submitted request; None while it is still pending."""
        ...

    async def close(self) -> None: ...


Report = Callable[[Decision], Awaitable[None]]


class ResultSource(Protocol):
    """Decisions that arrive on their own (files, reply queue, callbacks)."""

    async def run(self, report: Report) -> None:
        """Report each decision as it arrives until cancelled; ``report`` returning means it
        is recorded, so the source may then delete, archive or ack what it read."""
        ...


@dataclass(frozen=True, slots=True)
class Unreadable:
    """An answer a ``ResultSource`` could not read and set aside (a hospital file moved to
    its ``error/`` folder): the gateway blocks the task it names, or keeps a dead letter."""

    request_id: str | None  # the task's request id its name carries; None if it names none
    name: str  # what it was, e.g. the file's name (shown safely)
    reason: str


@runtime_checkable
class SetsAside(Protocol):
    """A source that tells the gateway about answers it could not read (``Unreadable``)."""

    on_unreadable: Callable[[Unreadable], Awaitable[None]] | None
