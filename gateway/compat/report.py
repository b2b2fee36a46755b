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

Direction = Literal["request", "response", "both"]
"""Who writes what a schema describes, hence which way a change breaks (``schema``):
``request``: the party writes it and the contract's owner reads it (a portal's envelope, the
gateway's request to a department) — a narrowing breaks the writer;
``response``: the owner writes it and the party reads it (an answer, an event, a reply, a
department's result file the gateway reads) — a widening breaks the reader;
``both``: shared types used on both ways — a narrowing and a widening both break."""


@dataclass(frozen=True, slots=True)
class Change:
    breaking: bool
    party: str  # who is affected: "portals", "department hukou", …
    document: str  # repository path of the contract file
    where: str  # field path, JSON pointer or element path inside the document
    what: str  # the change in plain words

    def line(self, others: int = 0) -> str:
        label = "BREAKING" if self.breaking else "additive"
        more = f" (and {others} more place{'s' if others > 1 else ''})" if others else ""
        return f"{label:<8}  {self.party}: {self.document} {self.where}{more}: {self.what}"


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


def grouped(changes: Iterable[Change]) -> list[tuple[Change, int]]:
    """One line per identical change: the same words about a field of the same name in the
    same document for the same party — a shared definition changed once but reached through
    40 references, or one rule copied into every envelope — with the count of the other
    places. Breaking ones first."""
    groups: dict[tuple[bool, str, str, str, str], list[Change]] = {}
    for c in changes:
        place = c.where
        if "." in place or "[]" in place:
            place = place.replace("[]", ".").rstrip(".").rsplit(".", 1)[-1]
        groups.setdefault((c.breaking, c.party, c.document, place, c.what), []).append(c)
    found = [(min(g, key=lambda c: (len(c.where), c.where)), len(g) - 1) for g in groups.values()]
    return sorted(found, key=lambda f: (not f[0].breaking, f[0].party, f[0].document, f[0].where))


def render(changes: Iterable[Change], against: str) -> str:
    """The report: breaking changes first, then additive ones, then a verdict line."""
    found = grouped(changes)
    breaking = sum(1 for c, _ in found if c.breaking)
    lines = [c.line(others) for c, others in found]
    if breaking:
        lines.append(
            f"{breaking} breaking change(s) against {against}: the parties named above would "
            "fail; keep the old form beside the new one, or agree a new major version"
        )
    else:
        lines.append(f"no breaking change against {against} ({len(found)} additive)")
    return "\n".join(lines)
