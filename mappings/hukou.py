"""Police household registration (``contracts/hukou``): canonical fields ↔ SOAP messages.

Pure functions over typed values; the code lists are data (``data/hukou-codes.json``, read
once). The connector hands ``SoapCall.body`` to zeep and turns zeep's answers into
``HukouReceipt`` / ``CaseStatus`` before calling back in here, so no zeep value reaches
this module and none leaves the connector.

    submission(request)             the Submit* operation and its body (RequestId = task id)
    status_query(request, case_no)  QueryCase by CaseNo, else by RequestId
    receipt(answer)                 Receipt → connectors.base.Receipt
    decision(request, status)       CaseStatus → Decision (None while PENDING)
    envelope_path(operation, field) a police request path → the envelope's dotted path

A missing needed field or a code the police list lacks raises ``Permanent`` naming the
field, never its value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Final, Literal, cast

from connectors.base import Decision, DepartmentRequest, Gap, Receipt
from gateway.envelope import validators
from gateway.errors import ConfigurationError, Permanent

__all__ = [
    "CaseGap",
    "CaseStatus",
    "CaseStatusCode",
    "HukouReceipt",
    "SoapCall",
    "decision",
    "envelope_path",
    "operation_of",
    "receipt",
    "status_query",
    "submission",
]

Operation = Literal[
    "birth_registration", "deregistration", "kinship_verification", "household_change"
]
ChangeType = Literal["move_in", "reinstatement", "marital_status"]
CaseStatusCode = Literal[
    "PENDING", "IN_PROGRESS", "APPROVED", "REJECTED", "CORRECTION", "SUSPENDED"
]
CHINA: Final = timezone(timedelta(hours=8), "CST")  # the police answer in Beijing time
RESIDENT_ID_CARD: Final = "111"
MAX_RELATIVES: Final = 20  # hukou.xsd RelativesType


def _without_about(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_about(v) for k, v in node.items() if k != "about"}
    return node


CODES: Final[Mapping[str, Any]] = _without_about(
    json.loads((Path(__file__).parent / "data" / "hukou-codes.json").read_text("utf-8"))
)


@dataclass(frozen=True, slots=True)
class SoapCall:
    """One WSDL operation and the child elements of its request element (XSD names)."""

    operation: str
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class HukouReceipt:
    case_no: str
    accepted_at: datetime


@dataclass(frozen=True, slots=True)
class CaseGap:
    field: str  # a path in the police request, e.g. "Child/Name", "Relatives/Relative[2]/IdNumber"
    message: str


@dataclass(frozen=True, slots=True)
class CaseStatus:
    """QueryCase's answer, typed."""

    case_no: str
    request_id: str
    status: CaseStatusCode
    citizen_id: str | None = None
    result_no: str | None = None
    reason: str | None = None
    gaps: tuple[CaseGap, ...] = ()
    decided_at: datetime | None = None


# --- which operation ---------------------------------------------------------------------
def operation_of(request: DepartmentRequest) -> tuple[Operation, ChangeType | None]:
    """The police operation (the catalogue step's) and, for a household change, its type:
    from the step table in the code lists, else ``subjects.change_type``."""
    if request.operation not in CODES["operations"]:
        raise ConfigurationError(
            f"step {request.matter}.{request.task}: the police have no operation "
            f"{request.operation!r}",
            system=request.system,
            code="unknown_operation",
        )
    change = None
    if request.operation == "household_change":
        change = CODES["household_change_steps"].get(f"{request.matter}.{request.task}")
        change = change or request.fields.get("subjects", {}).get("change_type")
        if change not in CODES["change_type"]:
            raise _refuse(request.system, "subjects.change_type", "is missing or not known")
    return cast(Operation, request.operation), cast(ChangeType | None, change)


# --- canonical → police ------------------------------------------------------------------
def _refuse(system: str, path: str, problem: str) -> Permanent:
    return Permanent(f"{path} {problem} (police household registration)", system, "mapping")


class _Fields:
    """Reads ``DepartmentRequest.fields`` by dotted path (list items by index)."""

    def __init__(self, request: DepartmentRequest) -> None:
        self._data = request.fields
        self._system = request.system

    def get(self, path: str) -> Any:
        node: Any = self._data
        for part in path.split("."):
            if isinstance(node, Mapping) and part in node:
                node = node[part]
            elif isinstance(node, Sequence) and not isinstance(node, str) and part.isdigit():
                node = node[int(part)] if int(part) < len(node) else None
            else:
                return None
        return node

    def refuse(self, path: str, problem: str) -> Permanent:
        return _refuse(self._system, path, problem)

    def text(self, path: str) -> str:
        value = self.get(path)
        if not isinstance(value, str) or not value.strip():
            raise self.refuse(path, "is required")
        return value.strip()

    def optional_text(self, path: str) -> str | None:
        return None if self.get(path) in (None, "") else self.text(path)

    def code(self, table: str, path: str) -> str:
        codes: Mapping[str, str] = CODES[table]
        value = self.text(path)
        if value not in codes:
            raise self.refuse(path, f"has a code the police {table} list does not have")
        return codes[value]

    def instant(self, path: str) -> datetime:
        try:
            value = datetime.fromisoformat(self.text(path))
        except ValueError:
            raise self.refuse(path, "is not an ISO 8601 date-time") from None
        if value.tzinfo is None:
            raise self.refuse(path, "has no UTC offset")
        return value

    def day(self, path: str) -> date:
        try:
            return date.fromisoformat(self.text(path))
        except ValueError:
            raise self.refuse(path, "is not an ISO 8601 date") from None

    def county(self, path: str) -> str:
        value = self.text(path)
        if not re.fullmatch(r"[0-9]{6}([0-9]{6})?", value):
            raise self.refuse(path, "is not a GB/T 2260 division code")
        return value[:6]

    def division(self, path: str) -> str:
        self.county(path)
        return self.text(path)

    def id_number(self, person: str) -> str:
        """``<person>.id_number``; checked as GB 11643 when ``<person>.id_type`` is 111."""
        path = f"{person}.id_number"
        value = self.text(path).upper()
        if self.get(f"{person}.id_type") == RESIDENT_ID_CARD:
            try:
                return validators.citizen_id(value)
            except ValueError:
                raise self.refuse(path, "is not a valid citizen ID number (GB 11643)") from None
        if not re.fullmatch(r"[0-9A-Z]{1,30}", value):
            raise self.refuse(path, "is not an ID document number the police accept")
        return value

    def person(self, base: str) -> dict[str, Any]:
        return {
            "Name": self.text(f"{base}.name"),
            "IdType": self.code("id_type", f"{base}.id_type"),
            "IdNumber": self.id_number(base),
        }

    def household(self) -> dict[str, Any]:
        h = "subjects.household"
        try:
            head = validators.citizen_id(self.text(f"{h}.head_id_number").upper())
        except ValueError:
            raise self.refuse(f"{h}.head_id_number", "is not a valid citizen ID number") from None
        return {
            "HeadIdNumber": head,
            "RelationToHead": self.code("relation", f"{h}.relation_to_head"),
            "AddressDivision": self.division(f"{h}.address_division"),
            "AddressDetail": self.text(f"{h}.address_detail"),
        }


def _birth_registration(f: _Fields) -> dict[str, Any]:
    certificate = f.text("provided.birth_certificate_no")
    try:
        validators.birth_certificate_no(certificate)
    except ValueError:
        raise f.refuse(
            "provided.birth_certificate_no", "is not a birth certificate number"
        ) from None
    body: dict[str, Any] = {
        "Child": {
            "Name": f.text("subjects.child.name"),
            "Sex": f.code("sex", "subjects.child.sex"),
            "BirthDateTime": f.instant("subjects.child.birth_datetime"),
            "BirthPlace": f.county("subjects.child.birth_place"),
        },
        "Mother": f.person("subjects.mother"),
        "Household": f.household(),
        "BirthCertificateNo": certificate,
    }
    if f.get("subjects.father") is not None:
        body["Father"] = f.person("subjects.father")
    if (marriage := f.optional_text("subjects.marriage_certificate_no")) is not None:
        body["MarriageCertificateNo"] = marriage
    return body


def _deregistration(f: _Fields) -> dict[str, Any]:
    d = "subjects.deceased"
    return {
        "Reason": CODES["deregistration_reason"]["death"],
        "Deceased": {
            **f.person(d),
            "DateOfDeath": f.day(f"{d}.date_of_death"),
            "PlaceOfDeath": f.county(f"{d}.place_of_death"),
        },
        "Declarant": {
            "Name": f.text("applicant.name"),
            "IdNumber": f.id_number("applicant"),
            "Relation": f.code("relation", "subjects.declarant_relation"),
        },
        "DeathCertificateNo": f.text("provided.death_certificate_no"),
    }


def _kinship_verification(f: _Fields) -> dict[str, Any]:
    heirs = f.get("subjects.heirs")
    if not isinstance(heirs, Sequence) or isinstance(heirs, str) or not heirs:
        raise f.refuse("subjects.heirs", "must list at least one heir")
    if len(heirs) > MAX_RELATIVES:
        raise f.refuse("subjects.heirs", f"lists more than {MAX_RELATIVES} heirs")
    relatives = [
        {
            **f.person(f"subjects.heirs.{i}"),
            "Relation": f.code("relation", f"subjects.heirs.{i}.relation"),
        }
        for i in range(len(heirs))
    ]
    return {
        "Deceased": {
            "Name": f.text("subjects.deceased.name"),
            "IdNumber": f.id_number("subjects.deceased"),
        },
        "Relatives": {"Relative": relatives},
    }


def _household_change(f: _Fields, change: ChangeType) -> dict[str, Any]:
    body: dict[str, Any] = {
        "ChangeType": CODES["change_type"][change],
        "Person": f.person("subjects.person"),
    }
    if f.get("subjects.household") is not None or change in ("move_in", "reinstatement"):
        body["Household"] = f.household()
    if f.get("subjects.previous_address") is not None:
        body["PreviousAddress"] = {
            "Division": f.division("subjects.previous_address.division"),
            "Detail": f.text("subjects.previous_address.detail"),
        }
    if f.get("subjects.marital_status") is not None or change == "marital_status":
        body["MaritalStatus"] = f.code("marital_status", "subjects.marital_status")
    # A marriage registered in the same application (marriage_birth) is provided by its step;
    # one registered before is in the envelope.
    marriage = f.optional_text("provided.marriage_certificate_no")
    if marriage is None:
        marriage = f.optional_text("subjects.marriage_certificate_no")
    if marriage is not None:
        body["MarriageCertificateNo"] = marriage
    return body


def submission(request: DepartmentRequest) -> SoapCall:
    """The Submit* call for the request's step; ``RequestId`` is the task id."""
    operation, change = operation_of(request)
    f = _Fields(request)
    if operation == "birth_registration":
        body = _birth_registration(f)
    elif operation == "deregistration":
        body = _deregistration(f)
    elif operation == "kinship_verification":
        body = _kinship_verification(f)
    else:
        body = _household_change(f, cast(ChangeType, change))
    return SoapCall(CODES["operations"][operation]["soap"], {"RequestId": request.task_id, **body})


def status_query(request: DepartmentRequest, case_number: str | None) -> SoapCall:
    """QueryCase by the case number from the receipt, else by the idempotency key."""
    if case_number:
        return SoapCall("QueryCase", {"CaseNo": case_number})
    return SoapCall("QueryCase", {"RequestId": request.task_id})


# --- police → canonical ------------------------------------------------------------------
def _seconds(moment: datetime) -> float:
    return (moment if moment.tzinfo else moment.replace(tzinfo=CHINA)).timestamp()


def receipt(answer: HukouReceipt) -> Receipt:
    """The acceptance receipt: the task clock starts at ``AcceptedAt``."""
    return Receipt(case_number=answer.case_no, accepted_at=_seconds(answer.accepted_at))


_STEP = re.compile(r"(?:[A-Za-z_][\w.-]*:)?([A-Za-z]+)(?:\[([1-9][0-9]*)\])?")


def envelope_path(operation: Operation, field: str) -> str:
    """``Relatives/Relative[2]/IdNumber`` → ``subjects.heirs.1.id_number``; a path the table
    does not know falls back to its nearest known parent, then to the operation's subject."""
    table: Mapping[str, str] = CODES["gap_fields"][operation]
    names: list[str] = []
    indexes: list[int] = []
    for step in re.split(r"[/.]", field.strip().strip("/")):
        match = _STEP.fullmatch(step)
        if match is None:
            break
        names.append(match[1])
        if match[2]:
            indexes.append(int(match[2]) - 1)  # XPath counts from 1, the envelope from 0
    while names and "/".join(names) not in table:
        names.pop()
    target = table["/".join(names)] if names else table[""]
    for index in indexes:
        target = target.replace("*", str(index), 1)
    return target.split(".*", 1)[0]


def _completed(request: DepartmentRequest, operation: Operation, status: CaseStatus) -> Decision:
    name: str = CODES["operations"][operation]["provides"]
    if operation == "birth_registration":
        try:
            value = validators.citizen_id(status.citizen_id or "")
        except ValueError:
            raise Permanent(
                f"case {status.case_no} APPROVED without a valid CitizenId",
                request.system,
                "answer",
            ) from None
    elif status.result_no:
        value = status.result_no
    else:
        raise Permanent(
            f"case {status.case_no} APPROVED without a ResultNo", request.system, "answer"
        )
    return Decision(
        task_id=request.task_id,
        outcome="completed",
        case_number=status.case_no,
        provides={name: value},
        certificate=status.result_no or value,
        decided_at=_seconds(status.decided_at) if status.decided_at else None,
    )


def decision(request: DepartmentRequest, status: CaseStatus) -> Decision | None:
    """What the police decided; ``None`` while the case is PENDING (not yet taken up)."""
    if status.request_id != request.task_id:
        raise Permanent(
            f"case {status.case_no} belongs to another request", request.system, "answer"
        )
    operation, _ = operation_of(request)
    decided_at = _seconds(status.decided_at) if status.decided_at else None
    common: dict[str, Any] = {"task_id": request.task_id, "case_number": status.case_no}
    match status.status:
        case "PENDING":
            return None
        case "IN_PROGRESS":
            return Decision(outcome="in_progress", **common)
        case "APPROVED":
            return _completed(request, operation, status)
        case "REJECTED":
            reason = status.reason or "rejected by the police without a stated reason"
            return Decision(outcome="denied", reason=reason, decided_at=decided_at, **common)
        case "SUSPENDED":
            reason = status.reason or "suspended by the police without a stated reason"
            return Decision(outcome="suspended", reason=reason, decided_at=decided_at, **common)
        case "CORRECTION":
            gaps = tuple(Gap(envelope_path(operation, g.field), g.message) for g in status.gaps)
            if not gaps:
                message = status.reason or "the police ask for a correction"
                gaps = (Gap(envelope_path(operation, ""), message),)
            return Decision(
                outcome="correction_requested",
                reason=status.reason,
                gaps=gaps,
                decided_at=decided_at,
                **common,
            )
