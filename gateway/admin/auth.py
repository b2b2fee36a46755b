"""Who is asking: an operator's Bearer token → ``Operator`` (name, roles, systems).

    Unauthenticated   no token, or one no operator holds   → 401
    Forbidden         a role missing, or a system out of scope → 403, naming which

Tokens are compared in constant time against every configured operator's, so the time an
answer takes says nothing about which token came close.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from gateway.settings import OperatorConfig, OperatorRole

ROLES: tuple[OperatorRole, ...] = ("view", "replay", "edit", "purge", "unmask")


class Unauthenticated(Exception):
    """No operator token, or an unknown one (→ 401)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class Forbidden(Exception):
    """The operator lacks a role or acts outside its systems (→ 403)."""

    def __init__(
        self, operator: str, detail: str, *, role: str | None = None, system: str | None = None
    ) -> None:
        super().__init__(detail)
        self.operator = operator
        self.detail = detail
        self.role = role
        self.system = system


@dataclass(frozen=True, slots=True)
class Operator:
    name: str
    roles: frozenset[str]
    systems: frozenset[str]  # empty: every system

    @property
    def scope(self) -> frozenset[str] | None:
        """The systems this operator may see; None for every system."""
        return self.systems or None

    def require(self, role: OperatorRole) -> None:
        if role not in self.roles:
            raise Forbidden(
                self.name,
                f"operator {self.name!r} lacks the {role!r} role "
                f"(has: {', '.join(sorted(self.roles)) or 'none'})",
                role=role,
            )

    def sees(self, system: str | None) -> bool:
        """A message with no system (intake, orchestrator) is visible to unscoped operators."""
        return not self.systems or (system is not None and system in self.systems)

    def require_system(self, system: str | None) -> None:
        if not self.sees(system):
            raise Forbidden(
                self.name,
                f"operator {self.name!r} acts only for {', '.join(sorted(self.systems))}; "
                f"this belongs to {system or 'no department system'}",
                system=system or "",
            )

    def require_any(self, systems: Iterable[str]) -> None:
        """For an application: one of its systems must be in scope."""
        if self.systems and not self.systems.intersection(systems):
            raise Forbidden(
                self.name,
                f"operator {self.name!r} acts only for {', '.join(sorted(self.systems))}; "
                "this application has no task there",
                system="",
            )


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _configured(c: OperatorConfig) -> bytes:
    """The token's digest: given as ``token_sha256`` (so the file holds no token), or
    computed from ``token``."""
    if c.token_sha256 is not None:
        return bytes.fromhex(c.token_sha256)
    assert c.token is not None  # OperatorConfig holds exactly one of the two
    return _digest(c.token.get_secret_value())


class OperatorAuth:
    def __init__(self, operators: Mapping[str, OperatorConfig]) -> None:
        self._known = [
            (_configured(c), Operator(name, frozenset(c.roles), c.systems))
            for name, c in sorted(operators.items())
        ]

    def identify(self, token: str) -> Operator:
        presented = _digest(token)
        found: Operator | None = None
        for digest, operator in self._known:  # no early exit: every token is compared
            if hmac.compare_digest(presented, digest):
                found = operator
        if found is None or not token:
            raise Unauthenticated("unknown operator token")
        return found

    def from_header(self, authorization: str | None) -> Operator:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("send Authorization: Bearer <operator token>")
        return self.identify(token.strip())
