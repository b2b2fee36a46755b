"""Picking exactly the fields a step needs: data minimisation as one pure function."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

PROVIDED = "provided"


class MissingField(ValueError):
    """A ``provided.<name>`` no earlier step provided (a department completed a step without
    what the catalogue says it provides)."""


def select(
    envelope: Mapping[str, Any], needs: Iterable[str], provided: Mapping[str, str]
) -> dict[str, Any]:
    """The envelope (JSON form) cut down to ``needs``, plus ``provided.<name>`` values.

    ``needs`` are dotted paths; a path to a table takes the whole table. An optional field
    that is absent (or null) is left out; a ``provided.<name>`` that no earlier step
    provided raises ``MissingField``. The result keeps the envelope's nesting:
    ``{"subjects": {"child": {...}}, "provided": {"citizen_id": "…"}}``.
    """
    out: dict[str, Any] = {}
    for path in needs:
        head, _, rest = path.partition(".")
        if head == PROVIDED:
            if rest not in provided:
                raise MissingField(f"{path} was not provided by an earlier step")
            out.setdefault(PROVIDED, {})[rest] = provided[rest]
            continue
        value = lookup(envelope, path)
        if value is None:
            continue
        _put(out, path.split("."), value)
    return out


def lookup(data: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path, or None when any part is absent."""
    node: Any = data
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def present(data: Mapping[str, Any], path: str) -> bool:
    """True when the path holds something not empty (a ``when`` condition)."""
    value = lookup(data, path)
    return value is not None and value != [] and value != {} and value != ""


def _put(out: dict[str, Any], parts: list[str], value: Any) -> None:
    node = out
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
