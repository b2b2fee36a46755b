"""Canonical tasks ↔ the provincial one-matter platform's cases (``contracts/provincial/``).

Pure functions over typed values, no I/O beyond reading the table below once:

* ``case_request(request)``: a ``DepartmentRequest`` → the body of ``POST /cases``;
* ``decision(case)``: a platform case (``GET /cases/{case_no}`` or a callback's ``case``)
  → a ``Decision`` (``None`` while the case is merely accepted);
* ``canonical_field(matter, task, field)``: a gap's field in the platform's terms → the
  canonical dotted path it came from.

What goes where is data, ``mappings/data/provincial.json``: per catalogue step
(``<matter>.<task>``) the item code and, per target in the case request (``subject.name``,
``data.guardian.id_number``), the canonical path it is taken from. Adding an item is adding
an entry there and a schema under ``contracts/provincial/items/``.

Errors are ``Permanent`` and name fields, never values (names and ID numbers are personal).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any, cast, get_args

from connectors.base import Decision, DepartmentRequest, Gap, Outcome
from gateway.envelope import validators
from gateway.errors import Permanent

SYSTEM = "provincial"
TABLE = Path(__file__).with_name("data") / "provincial.json"
RESIDENT_ID_CARD = "111"
_CONVERSIONS = frozenset({"id_number", "heirs"})
_HEIR_KEYS = ("name", "id_type", "id_number", "relation")


@dataclass(frozen=True, slots=True)
class Source:
    """Where one target of the case request comes from."""

    target: str  # dotted path in the case request, e.g. "data.guardian.name"
    path: str | None = None  # dotted canonical path in DepartmentRequest.fields
    const: str | None = None
    optional: bool = False
    convert: str | None = None  # "id_number" | "heirs"
    infer_from: str | None = None  # ID number path an absent ID type is inferred from


@dataclass(frozen=True, slots=True)
class StepMapping:
    key: str  # "<matter>.<task>"
    item_code: str
    sources: tuple[Source, ...]


@dataclass(frozen=True, slots=True)
class Table:
    steps: Mapping[str, StepMapping]
    statuses: Mapping[str, Outcome | None]


def _fail(detail: str, code: str = "mapping") -> Permanent:
    return Permanent(detail, system=SYSTEM, code=code)


def _source(target: str, spec: object, where: str) -> Source:
    if isinstance(spec, str):
        return Source(target, path=spec)
    if not isinstance(spec, dict) or ("path" in spec) == ("const" in spec):
        raise _fail(f"{TABLE.name} {where}.{target}: give a path or a const", "table")
    convert = spec.get("as")
    if convert is not None and convert not in _CONVERSIONS:
        raise _fail(f"{TABLE.name} {where}.{target}: unknown conversion {convert!r}", "table")
    return Source(
        target,
        path=spec.get("path"),
        const=spec.get("const"),
        optional=bool(spec.get("optional", False)),
        convert=convert,
        infer_from=spec.get("infer_from"),
    )


@cache
def table() -> Table:
    """The mapping table, read and checked once."""
    raw = json.loads(TABLE.read_text(encoding="utf-8"))
    steps: dict[str, StepMapping] = {}
    for key, entry in raw["steps"].items():
        sources = tuple(_source(t, s, key) for t, s in entry.items() if t != "item_code")
        steps[key] = StepMapping(key, entry["item_code"], sources)
    outcomes = get_args(Outcome)
    statuses: dict[str, Outcome | None] = {}
    for status, outcome in raw["statuses"].items():
        if outcome is not None and outcome not in outcomes:
            raise _fail(f"{TABLE.name} statuses.{status}: unknown outcome", "table")
        statuses[status] = cast("Outcome | None", outcome)
    return Table(steps, statuses)


def step_mapping(matter: str, task: str) -> StepMapping:
    step = table().steps.get(f"{matter}.{task}")
    if step is None:
        raise _fail(f"no provincial mapping for step {matter}.{task}", "unknown_step")
    return step


# --- canonical → platform ------------------------------------------------------------


def _lookup(fields: Mapping[str, Any], path: str) -> Any:
    node: Any = fields
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _id_number(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value:
        raise _fail(f"{path} is not an ID number", "unmappable")
    return value.upper()  # GB 11643's check character is X; a portal may send x


def _heirs(value: Any, path: str) -> list[dict[str, str]]:
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise _fail(f"{path} is not a list of persons", "unmappable")
    heirs: list[dict[str, str]] = []
    for i, heir in enumerate(value):
        missing = [k for k in _HEIR_KEYS if not isinstance(heir, Mapping) or k not in heir]
        if missing:
            raise _fail(f"{path}.{i} lacks {', '.join(missing)}", "missing_field")
        heirs.append({k: str(heir[k]) for k in _HEIR_KEYS})
        heirs[-1]["id_number"] = _id_number(heir["id_number"], f"{path}.{i}.id_number")
    return heirs


def _inferred_id_type(fields: Mapping[str, Any], source: Source) -> str:
    number = _lookup(fields, source.infer_from or "")
    if isinstance(number, str):
        try:
            validators.citizen_id(number.upper())
        except ValueError:
            pass
        else:
            return RESIDENT_ID_CARD
    raise _fail(
        f"{source.path} is missing and the ID type cannot be told from {source.infer_from}; "
        "add it to the catalogue step's needs",
        "missing_field",
    )


def _value(fields: Mapping[str, Any], source: Source) -> Any:
    """The value for one target; None when an optional source is absent."""
    if source.const is not None:
        return source.const
    assert source.path is not None  # _source guarantees a path or a const
    value = _lookup(fields, source.path)
    if value is None:
        if source.infer_from is not None:
            return _inferred_id_type(fields, source)
        if source.optional:
            return None
        raise _fail(f"{source.path} is missing (needed for {source.target})", "missing_field")
    if source.convert == "id_number":
        return _id_number(value, source.path)
    if source.convert == "heirs":
        return _heirs(value, source.path)
    return value


def _put(body: dict[str, Any], target: str, value: Any) -> None:
    node = body
    *parents, last = target.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def case_request(request: DepartmentRequest, callback_url: str | None = None) -> dict[str, Any]:
    """The ``POST /cases`` body for one task; ``request_id`` is the task id (the idempotency
    key). Raises ``Permanent`` naming every missing field at once."""
    step = step_mapping(request.matter, request.task)
    if request.operation != step.item_code:
        raise _fail(
            f"step {step.key} is operation {request.operation!r} in the catalogue but item "
            f"{step.item_code!r} in {TABLE.name}; make them agree",
            "unknown_step",
        )
    body: dict[str, Any] = {
        "item_code": step.item_code,
        "request_id": request.task_id,
        "matter": request.matter,
        "application_ref": request.application_id,
        "subject": {},
        "data": {},
    }
    missing: list[str] = []
    for source in step.sources:
        try:
            value = _value(request.fields, source)
        except Permanent as exc:
            if exc.code != "missing_field":
                raise
            missing.append(exc.detail)
            continue
        if value is not None:
            _put(body, source.target, value)
    if missing:
        raise _fail("; ".join(missing), "missing_field")
    if callback_url is not None:
        body["callback_url"] = callback_url
    return body


# --- platform → canonical ------------------------------------------------------------


def canonical_field(matter: str, task: str, field: str) -> str:
    """The canonical path a platform field was taken from (``data.heirs.1.name`` →
    ``subjects.heirs.1.name``); the field unchanged when it has none (a constant,
    ``materials``, an unknown step)."""
    step = table().steps.get(f"{matter}.{task}")
    for source in step.sources if step else ():
        if source.path is None:
            continue
        if field == source.target:
            return source.path
        if field.startswith(source.target + "."):
            return source.path + field[len(source.target) :]
    return field


def _text(case: Mapping[str, Any], key: str) -> str:
    value = case.get(key)
    if not isinstance(value, str) or not value:
        raise _fail(f"platform case lacks a valid {key}", "bad_answer")
    return value


def _optional_text(case: Mapping[str, Any], key: str) -> str | None:
    return None if case.get(key) is None else _text(case, key)


def unix_seconds(value: str | None, key: str) -> float | None:
    """An RFC 3339 time with offset → unix seconds."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise _fail(f"platform case has an unreadable {key}", "bad_answer") from None
    if moment.tzinfo is None:
        raise _fail(f"platform case has {key} without a UTC offset", "bad_answer")
    return moment.timestamp()


def _task_of(task_id: str) -> str:
    parts = task_id.split(".")
    return parts[1] if len(parts) >= 2 else ""


def decision(case: Mapping[str, Any]) -> Decision | None:
    """What the platform decided, as a ``Decision`` for the case's ``request_id``; ``None``
    for a case that is only accepted (the receipt said so already)."""
    status = _text(case, "status")
    statuses = table().statuses
    if status not in statuses:
        raise _fail("platform case has an unknown status", "bad_answer")
    outcome = statuses[status]
    if outcome is None:
        return None
    task_id = _text(case, "request_id")
    base: dict[str, Any] = {
        "task_id": task_id,
        "outcome": outcome,
        "case_number": _text(case, "case_no"),
        "decided_at": unix_seconds(_optional_text(case, "decided_at"), "decided_at"),
    }
    if outcome == "completed":
        result = case.get("result")
        provides = result.get("provides") if isinstance(result, Mapping) else None
        if not isinstance(provides, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in provides.items()
        ):
            raise _fail("completed platform case lacks result.provides", "bad_answer")
        certificate = _optional_text(cast(Mapping[str, Any], result), "certificate_no")
        return Decision(**base, provides=dict(provides), certificate=certificate)
    if outcome in ("denied", "suspended"):
        return Decision(**base, reason=_text(case, "reason"))
    if outcome == "correction_requested":
        matter, task = _text(case, "matter"), _task_of(task_id)
        raw_gaps = case.get("gaps")
        if not isinstance(raw_gaps, list) or not raw_gaps:
            raise _fail("correction platform case lists no gaps", "bad_answer")
        gaps = []
        for gap in raw_gaps:
            if not isinstance(gap, Mapping):
                raise _fail("platform case has a malformed gap", "bad_answer")
            field = canonical_field(matter, task, _text(gap, "field"))
            gaps.append(Gap(field, _text(gap, "message")))
        return Decision(**base, gaps=tuple(gaps), reason=_optional_text(case, "reason"))
    return Decision(**base)  # in_progress
