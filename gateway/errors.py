"""Errors grouped by what the caller should do next.

    GatewayError                    base; carries data, not just a message
    ├── Retryable                   try again later: nothing is wrong with the message
    │   ├── BrokerUnavailable       RabbitMQ down, connection lost, publish not confirmed
    │   └── StoreUnavailable        database unreachable or locked beyond the busy timeout
    └── Permanent                   retrying cannot help: park it with its reason
        ├── InvalidEnvelope         the portal's payload breaks the canonical envelope
        ├── ConfigurationError      the settings or catalogue are wrong; fix the file and restart
        └── BrokerTooOld            RabbitMQ older than the version the gateway relies on

Connectors translate their library's exceptions into this tree at their own boundary;
nothing above ``connectors/`` catches a zeep or aiohttp exception.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(eq=False)
class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""

    detail: str
    system: str | None = None
    code: str | None = None

    def __post_init__(self) -> None:
        super().__init__(self.detail)

    def __str__(self) -> str:
        where = f"[{self.system}] " if self.system else ""
        code = f" ({self.code})" if self.code else ""
        return f"{where}{self.detail}{code}"


class Retryable(GatewayError):
    """A transient failure: the same message may succeed later."""


class BrokerUnavailable(Retryable):
    """RabbitMQ could not be reached or did not confirm a publish."""


class StoreUnavailable(Retryable):
    """The store could not be reached."""


class Permanent(GatewayError):
    """A failure that retrying cannot fix; the message is parked with its reason."""


@dataclass(eq=False)
class FieldError:
    """One problem with one field, as the problem+json body lists it."""

    loc: str
    msg: str
    type: str


@dataclass(eq=False)
class InvalidEnvelope(Permanent):
    """The payload is not a valid canonical envelope; ``errors`` lists every field at once."""

    errors: list[FieldError] = field(default_factory=list)

    def as_dicts(self) -> list[dict[str, Any]]:
        return [{"loc": e.loc, "msg": e.msg, "type": e.type} for e in self.errors]


class ConfigurationError(Permanent):
    """Settings, catalogue or contracts are wrong: the message names the file and key to fix."""


class BrokerTooOld(Permanent):
    """The broker is older than RabbitMQ 3.10 (quorum-queue delivery limits, at-least-once DLX)."""
