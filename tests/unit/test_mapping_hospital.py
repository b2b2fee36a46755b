"""The hospital mapping against fixture files (tests/fixtures/hospital) and the contract's XSDs."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from connectors.base import DepartmentRequest, Gap
from gateway.catalogue.fields import select
from gateway.errors import Permanent
from mappings.hospital import Birth, Death, code_lists, gap_path, to_decision, to_hospital
from mappings.hospital_xml import read_document, render_request

ROOT = Path(__file__).parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "hospital"
CONTRACT = ROOT / "contracts" / "hospital"
EXAMPLES = ROOT / "contracts" / "envelope" / "examples" / "valid"
CATALOGUE = ROOT / "gateway" / "catalogue" / "data" / "catalogue-2026.1.toml"
APP = "0190a0b0-0000-7000-8000-000000000001"
BIRTH_NO = re.compile(r"^[A-Z]\d{9}$")
PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


def schema(name: str) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(CONTRACT / name), PARSER))


def department_request(example: str, matter: str, key: str) -> DepartmentRequest:
    """The request exactly as the gateway builds it: the catalogue step's needs, selected."""
    steps = tomllib.loads(CATALOGUE.read_text("utf-8"))["matters"][matter]["steps"]
    step = next(s for s in steps if s["key"] == key)
    envelope = json.loads((EXAMPLES / f"{example}.json").read_text("utf-8"))
    fields = select(envelope, step["needs"], {})
    return DepartmentRequest(
        f"{APP}.{key}", APP, matter, key, "hospital", step["operation"], 1, fields
    )


def birth() -> DepartmentRequest:
    return department_request("newborn-yizhang-window", "newborn", "birth_certificate")


def death() -> DepartmentRequest:
    return department_request("after-death-mobile", "after_death", "death_certificate")


def with_field(request: DepartmentRequest, path: str, value: Any) -> DepartmentRequest:
    fields = json.loads(json.dumps(request.fields))
    node = fields
    *parents, last = path.split(".")
    for part in parents:
        node = node[part]
    if value is None:
        del node[last]
    else:
        node[last] = value
    return DepartmentRequest(
        request.task_id, request.application_id, request.matter, request.task,
        request.system, request.operation, request.attempt, fields,
    )  # fmt: skip


def personal_values(request: DepartmentRequest) -> list[str]:
    found: list[str] = []

    def walk(node: Any, key: str = "") -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, k)
        elif isinstance(node, str) and (key.endswith("name") or key.endswith("id_number")):
            found.append(node)

    walk(request.fields)
    return found


# --- canonical → hospital -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("build", "golden"),
    [(birth, "birth.req.xml"), (death, "death.req.xml")],
    ids=["birth", "death"],
)
def test_request_matches_golden_file_and_validates(build: Any, golden: str) -> None:
    data = render_request(to_hospital(build()))
    assert data == (FIXTURES / golden).read_bytes()
    xsd = schema("request.xsd")
    assert xsd.validate(etree.fromstring(data, PARSER)), xsd.error_log


def test_birth_request_carries_mapped_codes() -> None:
    root = etree.fromstring(render_request(to_hospital(birth())), PARSER)
    ns = {"h": "urn:one-window:hospital:v1"}
    assert root.findtext("h:TaskId", namespaces=ns) == f"{APP}.birth_certificate"
    assert root.findtext("h:Birth/h:Child/h:Sex", namespaces=ns) == "M"  # GB/T 2261.1 "1"
    assert root.findtext("h:Birth/h:Mother/h:IdType", namespaces=ns) == "ID"  # GA/T "111"
    assert root.findtext("h:Birth/h:Child/h:WeightGrams", namespaces=ns) == "3350"


def test_death_request_maps_declarant_and_known_certificate() -> None:
    body = to_hospital(death()).body
    assert isinstance(body, Death)
    assert body.declarant_relation == "CHILD"  # GB/T 4761 "20" (son)
    assert body.known_certificate_no == "S4310222611180007"
    assert body.deceased.id_type == "ID"


def test_a_newborn_without_father_validates_without_father() -> None:
    request = department_request("newborn-minimal-online", "newborn", "birth_certificate")
    data = render_request(to_hospital(request))
    assert b"<Father>" not in data
    assert schema("request.xsd").validate(etree.fromstring(data, PARSER))


def test_lower_case_x_in_an_id_number_is_normalised() -> None:
    request = with_field(birth(), "subjects.mother.id_number", "43102219680921107x")
    body = to_hospital(request).body
    assert isinstance(body, Birth)
    assert body.mother.id_number == "43102219680921107X"


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("subjects.child.weight_g", None, "subjects.child.weight_g is missing"),
        ("subjects.child.weight_g", "3350", "subjects.child.weight_g must be a whole number"),
        ("subjects.child.weight_g", True, "subjects.child.weight_g must be a whole number"),
        ("subjects.child.sex", "7", "subjects.child.sex has no code"),
        ("subjects.mother.id_type", "999", "subjects.mother.id_type has no code"),
        ("subjects.child.birth_datetime", "2026-11-20T06:42:00", "needs a UTC offset"),
        ("subjects.child.birth_datetime", "yesterday", "not an ISO 8601"),
        ("subjects.mother.name", None, "subjects.mother.name is missing"),
        ("subjects.hospital", None, "subjects.hospital.name is missing"),
    ],
)
def test_unmappable_birth_fields_are_permanent_naming_the_field(
    path: str, value: Any, message: str
) -> None:
    request = with_field(birth(), path, value)
    with pytest.raises(Permanent) as caught:
        to_hospital(request)
    assert message in str(caught.value)
    assert caught.value.system == "hospital"
    for personal in personal_values(birth()):
        assert personal not in str(caught.value)


def test_a_declarant_who_is_the_deceased_cannot_be_mapped() -> None:
    request = with_field(death(), "subjects.declarant_relation", "01")  # self
    with pytest.raises(Permanent, match=r"subjects\.declarant_relation has no code"):
        to_hospital(request)


def test_death_without_hospital_maps_without_facility() -> None:
    request = with_field(death(), "subjects.hospital", None)
    data = render_request(to_hospital(request))
    assert b"<Facility>" not in data
    assert schema("request.xsd").validate(etree.fromstring(data, PARSER))


def test_unknown_operation_is_permanent() -> None:
    request = birth()
    other = DepartmentRequest(
        request.task_id, APP, "newborn", "hukou", "hospital", "birth_registration", 1, {}
    )
    with pytest.raises(Permanent, match="birth_registration"):
        to_hospital(other)


def test_code_lists_only_use_codes_the_request_schema_allows() -> None:
    tree = etree.parse(str(CONTRACT / "request.xsd"), PARSER)
    xs = {"xs": "http://www.w3.org/2001/XMLSchema"}

    def enumeration(type_xpath: str) -> set[str]:
        return set(tree.xpath(f"{type_xpath}//xs:enumeration/@value", namespaces=xs))

    codes = code_lists()
    assert set(codes.sex.values()) <= enumeration("//xs:simpleType[@name='Sex']")
    assert set(codes.id_type.values()) <= enumeration("//xs:simpleType[@name='IdType']")
    assert set(codes.relation.values()) <= enumeration("//xs:element[@name='Relation']")
    assert set(codes.operations) == {"birth_certificate", "death_certificate"}


# --- hospital → gateway ---------------------------------------------------------------------
def read(name: str) -> Any:
    root = etree.fromstring((FIXTURES / name).read_bytes(), PARSER)
    xsd = schema("ack.xsd" if name == "ack.xml" else "result.xsd")
    assert xsd.validate(root), xsd.error_log  # every fixture is valid per the XSD
    return to_decision(read_document(root))


def test_ack_is_an_in_progress_receipt_with_case_number_and_time() -> None:
    decision = read("ack.xml")
    assert decision.outcome == "in_progress"
    assert decision.case_number == "H2026112700042"
    assert decision.decided_at == 1795742405.0  # 2026-11-27T09:20:05+08:00


def test_issued_birth_certificate_provides_birth_certificate_no() -> None:
    decision = read("result-issued-birth.xml")
    assert decision.outcome == "completed"
    assert decision.provides == {"birth_certificate_no": "R431022007"}
    assert decision.certificate == "R431022007"
    assert BIRTH_NO.match(decision.certificate)
    assert decision.case_number == "H2026112700042"
    assert decision.task_id == f"{APP}.birth_certificate"


def test_issued_death_certificate_provides_death_certificate_no() -> None:
    decision = read("result-issued-death.xml")
    assert decision.outcome == "completed"
    assert decision.provides == {"death_certificate_no": "S4310222611180007"}
    assert decision.decided_at == 1795707000.0  # 2026-11-26T15:30:00Z


def test_refused_is_denied_with_reason() -> None:
    decision = read("result-refused.xml")
    assert (decision.outcome, decision.reason) == ("denied", "本院无该新生儿分娩记录")
    assert decision.provides == {}


def test_suspended_keeps_reason() -> None:
    decision = read("result-suspended.xml")
    assert (decision.outcome, decision.reason) == ("suspended", "待亲子鉴定结果")


def test_correction_lists_every_gap_as_envelope_paths() -> None:
    decision = read("result-correction.xml")
    assert decision.outcome == "correction_requested"
    assert list(decision.gaps) == [
        Gap("subjects.child.weight_g", "出生体重与分娩记录不符"),
        Gap("subjects.mother.id_number", "母亲身份证号码与住院登记不符"),
        Gap("subjects.father", "父亲住址缺失"),  # unlisted element: its nearest listed parent
        Gap("materials", "缺少出生医学证明首次签发登记表"),
    ]


@pytest.mark.parametrize(
    ("fixture", "message"),
    [
        ("broken-issued-without-number.xml", "CertificateNo is required"),
        ("broken-issued-bad-birth-number.xml", "CertificateNo"),
        ("broken-refused-without-reason.xml", "Reason is required"),
        ("broken-correction-unknown-gap.xml", "Spouse/Name"),
        ("rejected.xml", "SCHEMA_INVALID"),
    ],
)
def test_answers_breaking_the_rules_the_xsd_cannot_say_are_permanent(
    fixture: str, message: str
) -> None:
    with pytest.raises(Permanent, match=message):
        read(fixture)


def test_gap_paths_accept_the_operation_prefix() -> None:
    assert gap_path("Death/Declarant/Relation") == "subjects.declarant_relation"
    assert gap_path("Deceased") == "subjects.deceased"
    with pytest.raises(Permanent):
        gap_path("Nothing/Here")


def test_invalid_fixtures_break_the_xsd() -> None:
    xsd = schema("result.xsd")
    assert not xsd.validate(etree.parse(str(FIXTURES / "invalid-status.xml"), PARSER))
