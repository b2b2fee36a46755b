"""The county CDC (vaccination records, 预防接种证): canonical task ↔ the CDC's queue messages.

    request_for(request)      DepartmentRequest → body for ``dept.cdc.inbox``
                              (contracts/cdc/request.schema.json)
    decision_from_reply(body) a reply from ``dept.cdc.replies`` (reply.schema.json) → Decision

Pure functions; the code tables (sex codes, vaccine codes, refusal kinds, the CDC's field
names as envelope paths) are data in ``contracts/cdc/codes.json``. A missing or unmappable
value raises ``Permanent`` naming the field, never the value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any

from connectors.base import Decision, DepartmentRequest, Gap
from gateway.catalogue.fields import lookup
from gateway.errors import Permanent

SYSTEM = "cdc"
SCHEMA_VERSION = "1.0"
OPERATIONS = frozenset({"vaccination_record"})  # what request.schema.json lets the CDC do
PROVIDES = "vaccination_record_no"

_BIRTH_CERTIFICATE_NO = re.compile(r"^[A-Z][0-9]{9}$")
_PHONE = re.compile(r"^1[3-9][0-9]{9}$")
_NAME_MAX = 50


@dataclass(frozen=True, slots=True)
class Codes:
    sex: Mapping[str, str]  # GB/T 2261.1 → CDC
    first_doses: Mapping[str, str]  # envelope key under subjects.vaccination → CDC vaccine
    refusals: Mapping[str, str]  # CDC error_code → "contract" | "decision"
    fields: Mapping[str, str]  # CDC field name → envelope path (for gaps)


def _load_codes() -> Codes:
    text = (resources.files("contracts") / "cdc" / "codes.json").read_text(encoding="utf-8")
    raw = json.loads(text)
    return Codes(
        sex=raw["sex"],
        first_doses=raw["first_doses"],
        refusals=raw["refusals"],
        fields=raw["fields"],
    )


CODES = _load_codes()


def _fail(detail: str, code: str) -> Permanent:
    return Permanent(detail, system=SYSTEM, code=code)


# -- canonical → CDC ----------------------------------------------------------------------
def request_for(request: DepartmentRequest) -> dict[str, Any]:
    """The CDC request for one task; ``request.fields`` as ``catalogue.fields.select`` gives."""
    if request.operation not in OPERATIONS:
        raise _fail(f"the CDC has no operation {request.operation!r}", "unknown_operation")
    f = request.fields
    return {
        "schema_version": SCHEMA_VERSION,
        "request_id": request.task_id,
        "application_id": request.application_id,
        "operation": request.operation,
        "child": {
            "name": _name(f, "subjects.child.name"),
            "sex": _code(f, "subjects.child.sex", CODES.sex),
            "birth_datetime": _instant(f, "subjects.child.birth_datetime"),
            "birth_certificate_no": _matching(
                f, "provided.birth_certificate_no", _BIRTH_CERTIFICATE_NO
            ),
        },
        "guardian": {
            "name": _name(f, "subjects.mother.name"),
            "relation": "mother",
            "phone": _matching(f, "applicant.phone", _PHONE),
        },
        "first_doses": _first_doses(f),
    }


def _required(fields: Mapping[str, Any], path: str) -> Any:
    value = lookup(fields, path)
    if value is None:
        raise _fail(f"{path} is missing; the CDC needs it", "missing_field")
    return value


def _name(fields: Mapping[str, Any], path: str) -> str:
    value = _required(fields, path)
    if not isinstance(value, str) or not value.strip() or len(value) > _NAME_MAX:
        raise _fail(f"{path} is not a name of 1 to {_NAME_MAX} characters", "unmappable_value")
    return value


def _matching(fields: Mapping[str, Any], path: str, pattern: re.Pattern[str]) -> str:
    value = _required(fields, path)
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise _fail(f"{path} does not match {pattern.pattern}", "unmappable_value")
    return value


def _code(fields: Mapping[str, Any], path: str, table: Mapping[str, str]) -> str:
    value = _required(fields, path)
    if not isinstance(value, str) or value not in table:
        raise _fail(f"{path} has a code the CDC code list does not map", "unmappable_value")
    return table[value]


def _instant(fields: Mapping[str, Any], path: str) -> str:
    value = _required(fields, path)
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise _fail(f"{path} is not a date-time with an offset", "unmappable_value")
    return parsed.isoformat(timespec="seconds")


def _first_doses(fields: Mapping[str, Any]) -> list[dict[str, Any]]:
    given = lookup(fields, "subjects.vaccination")
    if given is None:
        return []  # none given in hospital: the CDC schedules them
    if not isinstance(given, Mapping):
        raise _fail("subjects.vaccination is not a table of first doses", "unmappable_value")
    doses: list[dict[str, Any]] = []
    for key, vaccine in CODES.first_doses.items():
        if given.get(key) is not None:
            at = _instant(fields, f"subjects.vaccination.{key}")
            doses.append({"vaccine": vaccine, "dose_no": 1, "given_at": at})
    return doses


# -- CDC → Decision -----------------------------------------------------------------------
def decision_from_reply(reply: Mapping[str, Any]) -> Decision:
    """The decision a reply reports; ``received`` is the acceptance (``in_progress`` with the
    CDC's case number). A refusal of the request as breaking the contract raises
    ``Permanent``: the gateway sent something wrong, which an operator must see."""
    task_id = _reply_str(reply, "request_id")
    status = _reply_str(reply, "status")
    case_number = reply.get("case_no")
    if case_number is not None and not isinstance(case_number, str):
        raise _fail("reply case_no is not a string", "invalid_reply")
    decided_at = _unix(_reply_str(reply, "replied_at"))
    if status == "received":
        return Decision(task_id, "in_progress", case_number, decided_at=decided_at)
    if status == "completed":
        record_no = _reply_str(reply, "record_no")
        return Decision(
            task_id,
            "completed",
            case_number,
            provides={PROVIDES: record_no},
            certificate=record_no,
            decided_at=decided_at,
        )
    if status == "refused":
        return _refusal(reply, task_id, case_number, decided_at)
    if status == "correction":
        gaps = _gaps(reply.get("corrections"))
        return Decision(
            task_id, "correction_requested", case_number, gaps=gaps, decided_at=decided_at
        )
    if status == "suspended":
        reason = _reply_str(reply, "reason")
        return Decision(task_id, "suspended", case_number, reason=reason, decided_at=decided_at)
    raise _fail("reply status is not one the contract lists", "invalid_reply")


def _refusal(
    reply: Mapping[str, Any], task_id: str, case_number: str | None, decided_at: float
) -> Decision:
    code = _reply_str(reply, "error_code")
    kind = CODES.refusals.get(code)
    if kind == "decision":
        reason = f"{code}: {_reply_str(reply, 'reason')}"
        return Decision(task_id, "denied", case_number, reason=reason, decided_at=decided_at)
    if kind == "contract":
        problems = reply.get("problems") or []
        where = ", ".join(
            f"{p.get('path', '?')} ({p.get('rule', '?')})"
            for p in problems
            if isinstance(p, Mapping)
        )
        raise _fail(f"the CDC refused the request as breaking its contract: {where}", code)
    raise _fail("reply error_code is not one the code table maps", "invalid_reply")


def _gaps(corrections: Any) -> tuple[Gap, ...]:
    if not isinstance(corrections, Sequence) or not corrections:
        raise _fail("reply corrections is missing or empty", "invalid_reply")
    gaps: list[Gap] = []
    for i, item in enumerate(corrections):
        field = item.get("field") if isinstance(item, Mapping) else None
        message = item.get("message") if isinstance(item, Mapping) else None
        path = CODES.fields.get(field) if isinstance(field, str) else None
        if path is None or not isinstance(message, str):
            raise _fail(f"reply corrections[{i}] names no field the table maps", "invalid_reply")
        gaps.append(Gap(path, message))
    return tuple(gaps)


def _reply_str(reply: Mapping[str, Any], key: str) -> str:
    value = reply.get(key)
    if not isinstance(value, str) or not value:
        raise _fail(f"reply {key} is missing", "invalid_reply")
    return value


def _unix(value: str) -> float:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _fail("reply replied_at is not a date-time", "invalid_reply") from None
    if parsed.tzinfo is None:
        raise _fail("reply replied_at has no offset", "invalid_reply")
    return parsed.timestamp()
