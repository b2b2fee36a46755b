"""What a replay sends: the message as first published, or an operator's edited copy.

Pure functions, no I/O: the desk (``desk.py``) stores and publishes what they return.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from typing import Any

from gateway.catalogue.fields import lookup
from gateway.errors import Permanent
from gateway.orchestration.messages import parse_task

MAX_REASON = 500
MAX_CHANGES = 50
# headers the dead-lettering added; a replay sends the message as it was first published
DEATH_HEADERS = frozenset(
    {
        "x-death",
        "x-first-death-exchange",
        "x-first-death-queue",
        "x-first-death-reason",
        "x-last-death-exchange",
        "x-last-death-queue",
        "x-last-death-reason",
        "x-reason",
        "x-error-kind",
        "x-original-exchange",
        "x-original-routing-key",
        "x-first-failed-at",
        "x-system",
    }
)


class Invalid(ValueError):
    """The operator's request is wrong (→ 422); ``errors`` lists every problem."""

    def __init__(self, detail: str, errors: Sequence[Mapping[str, str]] = ()) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = list(errors)


def required_reason(reason: str | None) -> str:
    text = (reason or "").strip()
    if not text:
        raise Invalid(
            "say why: a reason is required",
            [{"loc": "reason", "msg": "required", "type": "missing"}],
        )
    return text[:MAX_REASON]


def original_headers(headers_json: str) -> dict[str, Any]:
    try:
        headers = json.loads(headers_json or "{}")
    except ValueError:
        return {}
    if not isinstance(headers, dict):
        return {}
    return {k: v for k, v in headers.items() if k not in DEATH_HEADERS}


def edited_copy(
    body: bytes,
    changes: Mapping[str, Any],
    key: str,
    attempt: int,
    *,
    add: Mapping[str, Any] | None = None,
) -> tuple[bytes, list[dict[str, Any]]]:
    """The task message with ``changes`` applied under ``fields.``, re-keyed; and the diff.

    A path in ``changes`` must exist in the message (a mistyped path is refused, not
    created); a new one goes in ``add``. Raises ``Invalid`` listing every bad path, or when
    the result is no task message."""
    add = add or {}
    every = {**changes, **add}
    if (
        not isinstance(changes, Mapping)
        or not isinstance(add, Mapping)
        or not every
        or len(changes) + len(add) > MAX_CHANGES
    ):
        raise Invalid(f'send 1 to {MAX_CHANGES} changes as {{"fields.<path>": value}}')
    try:
        original = json.loads(body)
    except ValueError:
        raise Invalid("the dead letter's body is not JSON; it cannot be edited") from None
    if not isinstance(original, dict):
        raise Invalid("the dead letter's body is not a task message")
    errors = [
        {"loc": str(p), "msg": "only paths under fields. may change", "type": "path"}
        for p in every
        if not str(p).startswith("fields.") or len(str(p).split(".")) > 10
    ]
    if errors:
        raise Invalid(f"{len(errors)} change(s) outside the task's fields", errors)
    unknown = [
        {"loc": str(p), "msg": "the message has no such path; give it as add", "type": "unknown"}
        for p in changes
        if not _has(original, str(p))
    ]
    if unknown:
        raise Invalid(f"{len(unknown)} path(s) not in the task message", unknown)
    data = copy.deepcopy(original)
    diff: list[dict[str, Any]] = []
    for path, value in every.items():
        before = lookup(original, str(path))
        _set(data, str(path), value)
        diff.append({"path": str(path), "before": before, "after": value})
    data["task_id"], data["attempt"] = key, attempt
    new = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    try:
        parse_task(new)
    except Permanent as exc:
        raise Invalid(f"the edited message is no task message: {exc.detail}") from None
    return new, diff


def _has(data: Mapping[str, Any], path: str) -> bool:
    node: Any = data
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def _set(data: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    if value is None:
        node.pop(parts[-1], None)
    else:
        node[parts[-1]] = value
