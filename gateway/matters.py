"""The nine combined matters ("one matters"), fixed by DESIGN.md "Public interface"."""

from __future__ import annotations

MATTERS: tuple[str, ...] = (
    "newborn",
    "school_entry",
    "medical_care",
    "housing",
    "veteran",
    "retirement",
    "after_death",
    "marriage_birth",
    "disability",
)


def routing_segment(value: object) -> str:
    """A matter code safe to put in a routing key; anything else becomes ``unknown``."""
    return value if isinstance(value, str) and value in MATTERS else "unknown"
