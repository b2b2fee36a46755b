"""What the breaking-change guard finds: one ``Change`` per difference, and the report.

A change is *breaking* when a party that relies on the contract as it was could fail with
it as it is (a field it sends is refused, a field it reads is gone, a queue it binds to
moved); *additive* when every such party keeps working (a new optional field, a new enum
value, a new operation).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Direction = Literal["request", "response"]
"""``request``: the party writes what the schema describes and its owner reads it (a
portal's envelope, the gateway's request to a department) — narrowing breaks the writer.
``response``: the owner writes, the party reads (an answer, an event) — a field gone or no
longer guaranteed breaks the reader."""


@dataclass(frozen=True, slots=True)
class Change:
    breaking: bool
    party: str  # who is affected: "portals", "department hukou", …
    document: str  # repository path of the contract file
    where: str  # field path, JSON pointer or element path inside the document
    what: str  # the change in plain words

    def line(self) -> str:
        label = "BREAKING" if self.breaking else "additive"
        return f"{label:<8}  {self.party}: {self.document} {self.where}: {self.what}"


class Changes:
    """Collects changes for one document and one party."""

    def __init__(self, party: str, document: str) -> None:
        self.party = party
        self.document = document
        self.found: list[Change] = []

    def breaking(self, where: str, what: str) -> None:
        self.found.append(Change(True, self.party, self.document, where or "/", what))

    def additive(self, where: str, what: str) -> None:
        self.found.append(Change(False, self.party, self.document, where or "/", what))

    def extend(self, changes: Iterable[Change]) -> None:
        self.found.extend(changes)


def render(changes: Iterable[Change], against: str) -> str:
    """The report: breaking changes first, then additive ones, then a verdict line."""
    found = sorted(changes, key=lambda c: (not c.breaking, c.party, c.document, c.where))
    breaking = sum(1 for c in found if c.breaking)
    lines = [c.line() for c in found]
    if breaking:
        lines.append(
            f"{breaking} breaking change(s) against {against}: the parties named above would "
            "fail; keep the old form beside the new one, or agree a new major version"
        )
    else:
        lines.append(f"no breaking change against {against} ({len(found)} additive)")
    return "\n".join(lines)
