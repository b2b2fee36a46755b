"""The hospital's XML files, built and read with lxml (``contracts/hospital/*.xsd``).

Pure like ``mappings.hospital``: a typed ``HospitalRequest`` in, request bytes out; an XML root
the connector has already parsed with its safe parser and checked against the XSD in, a typed
``Ack | HospitalResult | Rejection`` out. No lxml value leaves this module or the connector.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from lxml import etree
from lxml.builder import ElementMaker

from mappings.hospital import (
    NS,
    VERSION,
    Ack,
    Birth,
    Document,
    Facility,
    HospitalRequest,
    HospitalResult,
    Kind,
    Person,
    Rejection,
    Status,
    fail,
)


def render_request(request: HospitalRequest) -> bytes:
    """The request document (UTF-8, with declaration); the connector checks it against the XSD."""
    e = ElementMaker(namespace=NS, nsmap={None: NS})

    def opt(tag: str, value: str | None) -> list[Any]:
        return [] if value is None else [getattr(e, tag)(value)]

    def person(tag: str, p: Person, *extra: Any) -> Any:
        return getattr(e, tag)(
            e.Name(p.name),
            e.IdType(p.id_type),
            e.IdNumber(p.id_number),
            *opt("Ethnicity", p.ethnicity),
            *opt("Nationality", p.nationality),
            *extra,
        )

    def facility(f: Facility | None) -> list[Any]:
        return [] if f is None else [e.Facility(e.Name(f.name), e.Uscc(f.uscc))]

    b = request.body
    if isinstance(b, Birth):
        c = b.child
        body = e.Birth(
            e.Child(
                e.Name(c.name),
                e.Sex(c.sex),
                e.BirthTime(c.birth_time.isoformat()),
                e.BirthPlace(c.birth_place),
                e.GestationalWeeks(str(c.gestational_weeks)),
                e.WeightGrams(str(c.weight_g)),
                e.LengthCm(str(c.length_cm)),
            ),
            person("Mother", b.mother),
            *([] if b.father is None else [person("Father", b.father)]),
            *facility(b.facility),
        )
    else:
        d = b.deceased
        body = e.Death(
            e.Deceased(
                e.Name(d.name),
                e.IdType(d.id_type),
                e.IdNumber(d.id_number),
                e.DateOfDeath(b.date_of_death.isoformat()),
                e.PlaceOfDeath(b.place_of_death),
                *opt("KnownCertificateNo", b.known_certificate_no),
            ),
            e.Declarant(e.Name(b.declarant_name), e.Relation(b.declarant_relation)),
            *facility(b.facility),
        )
    root = e.CertificateRequest(
        e.TaskId(request.task_id),
        e.ApplicationId(request.application_id),
        body,
        version=VERSION,
    )
    return cast(
        bytes, etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
    )


# --- hospital → gateway --------------------------------------------------------------------
def _child_text(root: Any, tag: str) -> str | None:
    found = root.find(f"{{{NS}}}{tag}")
    return None if found is None else str(found.text or "")


def _required(root: Any, tag: str) -> str:
    value = _child_text(root, tag)
    if not value:
        raise fail(f"{tag} is missing")
    return value


def _zoned(root: Any, tag: str) -> datetime:
    try:
        value = datetime.fromisoformat(_required(root, tag))
    except ValueError:
        raise fail(f"{tag} is not a date and time this gateway can read") from None
    if value.tzinfo is None:
        raise fail(f"{tag} needs a UTC offset")
    return value


def read_document(root: Any) -> Document:
    """The typed document behind an XML root the connector has parsed and validated."""
    tag = etree.QName(root)
    if tag.namespace != NS:
        raise fail("document is not in the hospital namespace")
    if tag.localname == "Acknowledgement":
        return Ack(_required(root, "TaskId"), _required(root, "CaseNo"), _zoned(root, "AcceptedAt"))
    if tag.localname == "RequestRejected":
        return Rejection(
            request_file=_required(root, "RequestFile"),
            task_id=_child_text(root, "TaskId"),
            code=_required(root, "Code"),
            detail=_required(root, "Detail"),
            rejected_at=_zoned(root, "RejectedAt"),
        )
    if tag.localname != "CertificateResult":
        raise fail(f"unknown document {tag.localname!r}")
    gaps = tuple(
        (str(gap.get("field")), str(gap.text or ""))
        for gap in root.iterfind(f"{{{NS}}}Gaps/{{{NS}}}Gap")
    )
    return HospitalResult(
        task_id=_required(root, "TaskId"),
        kind=cast(Kind, _required(root, "Kind")),
        case_no=_required(root, "CaseNo"),
        status=cast(Status, _required(root, "Status")),
        decided_at=_zoned(root, "DecidedAt"),
        certificate_no=_child_text(root, "CertificateNo"),
        reason=_child_text(root, "Reason"),
        gaps=gaps,
    )
