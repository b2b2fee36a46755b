"""Hospital certificates: the gateway's request ↔ the hospital's files (``contracts/hospital``).

Pure translations over typed values, both ways (the XML steps live in ``hospital_xml``):

    DepartmentRequest ─to_hospital─▶ HospitalRequest ─render_request─▶ request XML bytes
    validated XML root ─read_document─▶ Ack | HospitalResult | Rejection ─to_decision─▶ Decision

The hospital's private code lists (sex, ID document, declarant relation, gap paths) are data in
``contracts/hospital/codes.json``, read once per process. Parsing bytes safely and checking them
against the XSDs is the connector's part (it holds the schemas): no I/O on the message path
here. Errors are ``Permanent`` naming the field, never the value (names and ID numbers are
personal data).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from importlib.resources import files
from typing import Any, Literal

from connectors.base import Decision, DepartmentRequest, Gap
from gateway.catalogue.fields import lookup
from gateway.envelope.validators import birth_certificate_no
from gateway.errors import Permanent

SYSTEM = "hospital"
NS = "urn:one-window:hospital:v1"
VERSION = "1.0"

Kind = Literal["BIRTH", "DEATH"]
Status = Literal["ISSUED", "REFUSED", "CORRECTION", "SUSPENDED"]


@dataclass(frozen=True, slots=True)
class CodeLists:
    operations: Mapping[str, str]  # catalogue operation → BIRTH | DEATH
    provides: Mapping[str, str]  # BIRTH | DEATH → the name the step provides
    sex: Mapping[str, str]
    id_type: Mapping[str, str]
    relation: Mapping[str, str]
    gap_fields: Mapping[str, str]  # hospital element path → envelope path


@cache
def code_lists() -> CodeLists:
    raw = json.loads(files("contracts").joinpath("hospital", "codes.json").read_text("utf-8"))
    return CodeLists(**{name: raw[name] for name in CodeLists.__slots__})


# --- the request, typed --------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Facility:
    name: str
    uscc: str


@dataclass(frozen=True, slots=True)
class Person:
    name: str
    id_type: str  # hospital code: ID | PP | HKMO
    id_number: str
    ethnicity: str | None = None
    nationality: str | None = None


@dataclass(frozen=True, slots=True)
class Child:
    name: str
    sex: str  # hospital code: M | F | U
    birth_time: datetime
    birth_place: str
    gestational_weeks: int
    weight_g: int
    length_cm: int


@dataclass(frozen=True, slots=True)
class Birth:
    child: Child
    mother: Person
    father: Person | None
    facility: Facility


@dataclass(frozen=True, slots=True)
class Death:
    deceased: Person
    date_of_death: date
    place_of_death: str
    known_certificate_no: str | None
    declarant_name: str
    declarant_relation: str  # hospital code: SPOUSE | CHILD | …
    facility: Facility | None


@dataclass(frozen=True, slots=True)
class HospitalRequest:
    task_id: str
    application_id: str
    body: Birth | Death


# --- what the hospital writes back ---------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Ack:
    task_id: str
    case_no: str
    accepted_at: datetime


@dataclass(frozen=True, slots=True)
class HospitalResult:
    task_id: str
    kind: Kind
    case_no: str
    status: Status
    decided_at: datetime
    certificate_no: str | None = None
    reason: str | None = None
    gaps: tuple[tuple[str, str], ...] = ()  # (hospital element path, message)


@dataclass(frozen=True, slots=True)
class Rejection:
    """The hospital refused the request file itself (contract violation): nothing decided."""

    request_file: str
    task_id: str | None
    code: str
    detail: str
    rejected_at: datetime


Document = Ack | HospitalResult | Rejection


def fail(detail: str) -> Permanent:
    """A mapping error: ``detail`` names the field, never its value."""
    return Permanent(detail, system=SYSTEM, code="mapping")


# --- canonical → hospital ------------------------------------------------------------------
def _value(fields: Mapping[str, Any], path: str) -> Any:
    value = lookup(fields, path)
    if value is None:
        raise fail(f"{path} is missing")
    return value


def _text(fields: Mapping[str, Any], path: str) -> str:
    value = _value(fields, path)
    if not isinstance(value, str):
        raise fail(f"{path} must be text")
    return value


def _maybe_text(fields: Mapping[str, Any], path: str) -> str | None:
    return None if lookup(fields, path) is None else _text(fields, path)


def _int(fields: Mapping[str, Any], path: str) -> int:
    value = _value(fields, path)
    if isinstance(value, bool) or not isinstance(value, int):
        raise fail(f"{path} must be a whole number")
    return value


def _code(table: Mapping[str, str], fields: Mapping[str, Any], path: str) -> str:
    code = table.get(_text(fields, path))
    if code is None:
        raise fail(f"{path} has no code in the hospital's code list")
    return code


def _person(fields: Mapping[str, Any], path: str) -> Person:
    codes = code_lists()
    return Person(
        name=_text(fields, f"{path}.name"),
        id_type=_code(codes.id_type, fields, f"{path}.id_type"),
        id_number=_text(fields, f"{path}.id_number").upper(),
        ethnicity=_maybe_text(fields, f"{path}.ethnicity"),
        nationality=_maybe_text(fields, f"{path}.nationality"),
    )


def _facility(fields: Mapping[str, Any], path: str) -> Facility:
    return Facility(name=_text(fields, f"{path}.name"), uscc=_text(fields, f"{path}.uscc"))


def _instant(fields: Mapping[str, Any], path: str) -> datetime:
    try:
        value = datetime.fromisoformat(_text(fields, path))
    except ValueError:
        raise fail(f"{path} is not an ISO 8601 date and time") from None
    if value.tzinfo is None:
        raise fail(f"{path} needs a UTC offset")
    return value


def _day(fields: Mapping[str, Any], path: str) -> date:
    try:
        return date.fromisoformat(_text(fields, path))
    except ValueError:
        raise fail(f"{path} is not an ISO 8601 date") from None


def _birth(f: Mapping[str, Any]) -> Birth:
    child = Child(
        name=_text(f, "subjects.child.name"),
        sex=_code(code_lists().sex, f, "subjects.child.sex"),
        birth_time=_instant(f, "subjects.child.birth_datetime"),
        birth_place=_text(f, "subjects.child.birth_place"),
        gestational_weeks=_int(f, "subjects.child.gestational_weeks"),
        weight_g=_int(f, "subjects.child.weight_g"),
        length_cm=_int(f, "subjects.child.length_cm"),
    )
    father = None if lookup(f, "subjects.father") is None else _person(f, "subjects.father")
    return Birth(child, _person(f, "subjects.mother"), father, _facility(f, "subjects.hospital"))


def _death(f: Mapping[str, Any]) -> Death:
    deceased = _person(f, "subjects.deceased")
    return Death(
        deceased=Person(deceased.name, deceased.id_type, deceased.id_number),
        date_of_death=_day(f, "subjects.deceased.date_of_death"),
        place_of_death=_text(f, "subjects.deceased.place_of_death"),
        known_certificate_no=_maybe_text(f, "subjects.deceased.death_certificate_no"),
        declarant_name=_text(f, "applicant.name"),
        declarant_relation=_code(code_lists().relation, f, "subjects.declarant_relation"),
        facility=None
        if lookup(f, "subjects.hospital") is None
        else _facility(f, "subjects.hospital"),
    )


def to_hospital(request: DepartmentRequest) -> HospitalRequest:
    """The hospital's view of one task; ``Permanent`` naming the first field it cannot map."""
    kind = code_lists().operations.get(request.operation)
    if kind is None:
        raise fail(f"operation {request.operation!r} is not a hospital operation")
    body = _birth(request.fields) if kind == "BIRTH" else _death(request.fields)
    return HospitalRequest(request.task_id, request.application_id, body)


def gap_path(field: str) -> str:
    """The envelope path for a hospital element path (``Child/WeightGrams``); an element the
    table does not list maps to its nearest listed parent."""
    parts = field.split("/")
    if parts and parts[0] in ("Birth", "Death"):
        parts = parts[1:]
    table = code_lists().gap_fields
    for end in range(len(parts), 0, -1):
        path = table.get("/".join(parts[:end]))
        if path is not None:
            return path
    raise fail(f"gap field {field!r} is not in the hospital's gap table")


def to_decision(document: Document) -> Decision:
    """The gateway's ``Decision``; a ``Rejection`` or a result breaking the contract's
    co-occurrence rules raises ``Permanent``."""
    if isinstance(document, Rejection):
        raise Permanent(
            f"hospital rejected request file {document.request_file} ({document.code}): "
            f"{document.detail}",
            system=SYSTEM,
            code="request_rejected",
        )
    if isinstance(document, Ack):
        return Decision(
            document.task_id,
            "in_progress",
            case_number=document.case_no,
            decided_at=document.accepted_at.timestamp(),
        )
    r = document
    common: dict[str, Any] = {"case_number": r.case_no, "decided_at": r.decided_at.timestamp()}
    if r.status == "ISSUED":
        number = r.certificate_no
        if not number:
            raise fail("CertificateNo is required when Status is ISSUED")
        if r.kind == "BIRTH":
            try:
                birth_certificate_no(number)
            except ValueError as exc:
                raise fail(f"CertificateNo: {exc}") from None
        provides = {code_lists().provides[r.kind]: number}
        return Decision(r.task_id, "completed", provides=provides, certificate=number, **common)
    if r.status == "CORRECTION":
        if not r.gaps:
            raise fail("Gaps are required when Status is CORRECTION")
        gaps = tuple(Gap(gap_path(field), message) for field, message in r.gaps)
        return Decision(r.task_id, "correction_requested", reason=r.reason, gaps=gaps, **common)
    if not r.reason:
        raise fail(f"Reason is required when Status is {r.status}")
    outcome: Literal["denied", "suspended"] = "denied" if r.status == "REFUSED" else "suspended"
    return Decision(r.task_id, outcome, reason=r.reason, **common)
