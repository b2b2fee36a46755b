"""mappings/hukou.py against fixture files; every request it builds, serialised by zeep from
the packaged WSDL, is checked against contracts/hukou/hukou.xsd by lxml (an independent
validator: zeep does not check patterns or enumerations)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from zeep import Client, Settings

from connectors.base import Decision, DepartmentRequest, Gap
from gateway.catalogue.fields import select
from gateway.catalogue.model import load
from gateway.envelope.model import ENVELOPE_ADAPTER, parse_envelope
from gateway.errors import ConfigurationError, Permanent
from mappings.hukou import (
    CaseGap,
    CaseStatus,
    HukouReceipt,
    decision,
    envelope_path,
    receipt,
    status_query,
    submission,
)

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "hukou"
EXAMPLES = ROOT / "contracts" / "envelope" / "examples" / "valid"
CONTRACT = ROOT / "contracts" / "hukou"
NS = "urn:cn:gov:police:hukou:2026"
PROVIDED = {"birth_certificate_no": "Q430012345", "death_certificate_no": "S4310222611180007"}
STEPS = [  # (example envelope, catalogue step) for every step the catalogue sends to hukou
    ("newborn-yizhang-window", "hukou"),
    ("newborn-minimal-online", "hukou"),
    ("after-death-mobile", "hukou_cancellation"),
    ("after-death-mobile", "kinship"),
]
HOUSEHOLD_CHANGES = ["housing-move-in", "marriage-marital-status"]
PERSONAL = ["431022199203150421", "431022199007080139", "刘芳", "王子轩", "43102219680921107X"]


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _envelope(example: str) -> dict[str, Any]:
    """The envelope as the gateway stores it (parsed, normalised, dumped)."""
    parsed = parse_envelope((EXAMPLES / f"{example}.json").read_bytes())
    data: dict[str, Any] = json.loads(ENVELOPE_ADAPTER.dump_json(parsed))
    return data


def _request(
    example: str, key: str, edit: Callable[[dict[str, Any]], None] | None = None
) -> DepartmentRequest:
    """The task exactly as the gateway builds it: the catalogue's needs cut from the envelope."""
    envelope = _envelope(example)
    if edit is not None:
        edit(envelope)
    step = load().matter(envelope["matter"]).step(key)
    fields = select(envelope, step.needs, PROVIDED)
    return DepartmentRequest(
        f"APP.{key}", "APP", envelope["matter"], key, step.system, step.operation, 1, fields
    )


def _change_request(
    name: str, edit: Callable[[dict[str, Any]], None] | None = None
) -> DepartmentRequest:
    data = _json(FIXTURES / "fields" / f"{name}.json")
    if edit is not None:
        edit(data["fields"])
    return DepartmentRequest(
        f"APP.{data['task']}", "APP", data["matter"], data["task"], "hukou",
        data["operation"], 1, data["fields"],
    )  # fmt: skip


def _plain(body: dict[str, Any]) -> Any:
    return json.loads(json.dumps(body, default=lambda v: v.isoformat()))


ALL_REQUESTS = [
    *[pytest.param(lambda e=e, k=k: _request(e, k), f"{e}.", id=f"{e}-{k}") for e, k in STEPS],
    *[pytest.param(lambda n=n: _change_request(n), f"{n}.", id=n) for n in HOUSEHOLD_CHANGES],
]


# --- canonical → police ------------------------------------------------------------------
@pytest.mark.parametrize(("build", "prefix"), ALL_REQUESTS)
def test_request_matches_fixture(build: Callable[[], DepartmentRequest], prefix: str) -> None:
    request = build()
    call = submission(request)
    expected = _json(FIXTURES / "requests" / f"{prefix}{request.operation}.json")
    assert call.operation == expected["operation"]
    assert _plain(call.body) == expected["body"]
    assert call.body["RequestId"] == request.task_id


def test_dates_are_typed_values_for_zeep() -> None:
    birth = submission(_request("newborn-yizhang-window", "hukou")).body
    assert isinstance(birth["Child"]["BirthDateTime"], datetime)
    death = submission(_request("after-death-mobile", "hukou_cancellation")).body
    assert type(death["Deceased"]["DateOfDeath"]) is date


@pytest.fixture(scope="module")
def zeep_service() -> Any:
    client = Client(str(CONTRACT / "hukou.wsdl"), settings=Settings(strict=True))
    return client, client.create_service(f"{{{NS}}}HukouBinding", "http://127.0.0.1:9/hukou")


@pytest.fixture(scope="module")
def schema() -> Any:
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    return etree.XMLSchema(etree.parse(str(CONTRACT / "hukou.xsd"), parser))


def _body_element(zeep_service: Any, operation: str, body: dict[str, Any]) -> Any:
    client, service = zeep_service
    message = client.create_message(service, operation, **body)
    return copy.deepcopy(message.find("{http://schemas.xmlsoap.org/soap/envelope/}Body")[0])


@pytest.mark.parametrize(("build", "prefix"), ALL_REQUESTS)
def test_request_validates_against_the_xsd(
    build: Callable[[], DepartmentRequest], prefix: str, zeep_service: Any, schema: Any
) -> None:
    call = submission(build())
    element = _body_element(zeep_service, call.operation, call.body)
    assert schema.validate(element), schema.error_log


@pytest.mark.parametrize("case_number", ["HK20261127000001", None])
def test_status_query_validates_against_the_xsd(
    case_number: str | None, zeep_service: Any, schema: Any
) -> None:
    call = status_query(_request("newborn-yizhang-window", "hukou"), case_number)
    assert call.body == ({"CaseNo": case_number} if case_number else {"RequestId": "APP.hukou"})
    assert schema.validate(_body_element(zeep_service, call.operation, call.body))


def test_the_xsd_refuses_what_the_police_refuse(zeep_service: Any, schema: Any) -> None:
    """The check above can fail: a code outside the police list does not validate."""
    body = submission(_request("newborn-yizhang-window", "hukou")).body
    body["Child"]["Sex"] = "3"
    assert not schema.validate(_body_element(zeep_service, "SubmitBirthRegistration", body))


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = data
        for part in parents:
            node = node[part]
        del node[last]

    return edit


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[last] = value

    return edit


DROP = object()
BROKEN = [  # (example, step, path, new value or DROP): the error must name the path
    ("newborn-yizhang-window", "hukou", "subjects.child.name", DROP),
    ("newborn-yizhang-window", "hukou", "subjects.household", DROP),
    ("newborn-yizhang-window", "hukou", "subjects.child.sex", "7"),
    ("newborn-yizhang-window", "hukou", "subjects.child.birth_datetime", "2026-11-20 06:42"),
    ("newborn-yizhang-window", "hukou", "subjects.mother.id_number", "431022199203150422"),
    ("newborn-yizhang-window", "hukou", "subjects.household.relation_to_head", "X1"),
    ("after-death-mobile", "hukou_cancellation", "subjects.deceased.date_of_death", "18/11"),
    ("after-death-mobile", "hukou_cancellation", "subjects.declarant_relation", DROP),
    ("after-death-mobile", "kinship", "subjects.heirs", []),
    ("after-death-mobile", "kinship", "subjects.heirs.1.id_type", "999"),
]


@pytest.mark.parametrize(("example", "key", "path", "value"), BROKEN)
def test_missing_or_unmappable_field_is_permanent_and_named(
    example: str, key: str, path: str, value: Any
) -> None:
    request = _request(example, key)
    fields = json.loads(json.dumps(request.fields))
    (_drop(path) if value is DROP else _set(path, value))(fields)
    broken = DepartmentRequest(
        request.task_id, "APP", request.matter, key, "hukou", request.operation, 1, fields
    )
    with pytest.raises(Permanent) as caught:
        submission(broken)
    assert path in str(caught.value)
    assert caught.value.system == "hukou"
    assert not any(value in str(caught.value) for value in PERSONAL)


def test_provided_birth_certificate_is_needed() -> None:
    request = _request("newborn-yizhang-window", "hukou")
    fields = {k: v for k, v in request.fields.items() if k != "provided"}
    with pytest.raises(Permanent, match=r"provided\.birth_certificate_no"):
        submission(DepartmentRequest("APP.hukou", "APP", "newborn", "hukou", "hukou",
                                     "birth_registration", 1, fields))  # fmt: skip


def test_household_change_needs_its_parts() -> None:
    with pytest.raises(Permanent, match=r"subjects\.household"):
        submission(_change_request("housing-move-in", _drop("subjects.household")))
    with pytest.raises(Permanent, match=r"subjects\.marital_status"):
        submission(_change_request("marriage-marital-status", _drop("subjects.marital_status")))


def test_household_change_type_from_the_fields_when_the_step_is_unknown() -> None:
    request = _change_request(
        "marriage-marital-status", _set("subjects.change_type", "marital_status")
    )
    other = DepartmentRequest(
        "APP.hukou_x",
        "APP",
        "disability",
        "hukou_x",
        "hukou",
        "household_change",
        1,
        request.fields,
    )
    assert submission(other).body["ChangeType"] == "0701"
    unknown = DepartmentRequest(
        "APP.hukou_x", "APP", "disability", "hukou_x", "hukou", "household_change", 1, {}
    )
    with pytest.raises(Permanent, match=r"subjects\.change_type"):
        submission(unknown)


def test_unknown_operation_is_a_configuration_error() -> None:
    request = _request("newborn-yizhang-window", "hukou")
    wrong = DepartmentRequest("APP.hukou", "APP", "newborn", "hukou", "hukou", "passport", 1,
                              request.fields)  # fmt: skip
    with pytest.raises(ConfigurationError, match="passport"):
        submission(wrong)


# --- police → canonical ------------------------------------------------------------------
def test_receipt_starts_the_clock_at_acceptance() -> None:
    aware = receipt(HukouReceipt("HK1", datetime.fromisoformat("2026-11-27T10:30:00+08:00")))
    naive = receipt(HukouReceipt("HK1", datetime.fromisoformat("2026-11-27T10:30:00")))
    assert aware.case_number == "HK1"
    assert aware.accepted_at == naive.accepted_at == 1795746600.0  # Beijing time assumed
    assert aware.decision is None


def _status(data: dict[str, Any]) -> CaseStatus:
    return CaseStatus(
        case_no=data["case_no"],
        request_id=data["request_id"],
        status=data["status"],
        citizen_id=data.get("citizen_id"),
        result_no=data.get("result_no"),
        reason=data.get("reason"),
        gaps=tuple(CaseGap(g["field"], g["message"]) for g in data.get("gaps", [])),
        decided_at=datetime.fromisoformat(data["decided_at"]) if "decided_at" in data else None,
    )


def _decision(task_id: str, data: dict[str, Any]) -> Decision:
    gaps = tuple(Gap(g["field"], g["message"]) for g in data.pop("gaps", []))
    return Decision(task_id=task_id, gaps=gaps, **data)


@pytest.mark.parametrize("name", sorted(p.stem for p in (FIXTURES / "case-status").glob("*.json")))
def test_decision_matches_fixture(name: str) -> None:
    data = _json(FIXTURES / "case-status" / f"{name}.json")
    r = data["request"]
    task_id = f"APP.{r['task']}"
    request = DepartmentRequest(
        task_id, "APP", r["matter"], r["task"], "hukou", r["operation"], 1, {}
    )
    expected = None if data["decision"] is None else _decision(task_id, data["decision"])
    assert decision(request, _status(data["status"])) == expected


def _birth_request() -> DepartmentRequest:
    return DepartmentRequest("APP.hukou", "APP", "newborn", "hukou", "hukou",
                             "birth_registration", 1, {})  # fmt: skip


@pytest.mark.parametrize("citizen_id", [None, "431022202611200016", "4310222026112000"])
def test_approved_birth_needs_a_valid_citizen_id(citizen_id: str | None) -> None:
    status = CaseStatus("HK1", "APP.hukou", "APPROVED", citizen_id=citizen_id, result_no="CS1")
    with pytest.raises(Permanent, match="CitizenId"):
        decision(_birth_request(), status)


def test_approved_without_result_number_is_outside_the_contract() -> None:
    request = DepartmentRequest("APP.kinship", "APP", "after_death", "kinship", "hukou",
                                "kinship_verification", 1, {})  # fmt: skip
    with pytest.raises(Permanent, match="ResultNo"):
        decision(request, CaseStatus("HK1", "APP.kinship", "APPROVED"))


def test_answer_for_another_request_is_refused() -> None:
    with pytest.raises(Permanent, match="another request"):
        decision(_birth_request(), CaseStatus("HK1", "OTHER.hukou", "PENDING"))


@pytest.mark.parametrize(
    ("operation", "field", "path"),
    [
        ("birth_registration", "Mother/IdNumber", "subjects.mother.id_number"),
        ("birth_registration", "/hk:Child/hk:Sex", "subjects.child.sex"),
        ("birth_registration", "Child.BirthPlace", "subjects.child.birth_place"),
        ("birth_registration", "", "subjects"),
        ("birth_registration", "???", "subjects"),
        ("deregistration", "Declarant/Relation", "subjects.declarant_relation"),
        ("deregistration", "Declarant/IdNumber", "applicant.id_number"),
        ("deregistration", "DeathCertificateNo", "provided.death_certificate_no"),
        ("kinship_verification", "Relatives/Relative[3]/Name", "subjects.heirs.2.name"),
        ("household_change", "PreviousAddress/Detail", "subjects.previous_address.detail"),
        ("household_change", "Household/Floor", "subjects.household"),
    ],
)
def test_envelope_path(operation: Any, field: str, path: str) -> None:
    assert envelope_path(operation, field) == path
