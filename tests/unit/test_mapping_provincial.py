"""mappings/provincial.py against fixture files and against the contract.

The contract is read here on its own: ``contracts/provincial/openapi.yaml`` through
openapi-spec-validator's reader, its JSON Schema files through ``referencing``, validated with
jsonschema — none of the connector's or simulator's loading code. The integration tests
import ``ContractCheck`` from here.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any, cast

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi
from openapi_spec_validator.readers import read_from_filename
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from connectors.base import Decision, DepartmentRequest
from gateway.catalogue.fields import select
from gateway.errors import Permanent
from gateway.signing import sign
from mappings import provincial

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = ROOT / "contracts" / "provincial"
FIXTURES = ROOT / "tests" / "fixtures" / "provincial"
CATALOGUE = ROOT / "gateway" / "catalogue" / "data" / "catalogue-2026.1.toml"
PERSONAL = ("张秀英", "李建华", "王子轩", "刘芳", "李国华", "431022", "6228480012345678912")


# --- the contract, read independently ---------------------------------------------------


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


class ContractCheck:
    """Validators for every body the contract describes, built from the files alone."""

    def __init__(self) -> None:
        self.document, self.uri = cast(
            tuple[dict[str, Any], str], read_from_filename(str(CONTRACT / "openapi.yaml"))
        )
        resources = [(self.uri, DRAFT202012.create_resource(self.document))]
        for path in CONTRACT.rglob("*.schema.json"):
            resource = DRAFT202012.create_resource(json.loads(path.read_text(encoding="utf-8")))
            resources += [(path.as_uri(), resource), (cast(str, resource.id()), resource)]
        self.registry: Registry[Any] = Registry().with_resources(resources)

    def _at(self, pointer: str) -> Draft202012Validator:
        return Draft202012Validator(
            {"$ref": f"{self.uri}#{pointer}"},
            registry=self.registry,
            format_checker=Draft202012Validator.FORMAT_CHECKER,
        )

    def errors(self, validator: Draft202012Validator, instance: Any) -> list[str]:
        return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in
                validator.iter_errors(instance)]  # fmt: skip

    def request(self, body: Any) -> list[str]:
        """A case request: the CaseRequest body, then its data against its item's schema."""
        pointer = "/paths/~1cases/post/requestBody/content/application~1json/schema"
        found = self.errors(self._at(pointer), body)
        item = CONTRACT / "items" / f"{body.get('item_code')}.schema.json"
        if not found and not item.is_file():
            return [f"no item schema {item.name}"]
        if not found:
            validator = Draft202012Validator(
                {"$ref": item.as_uri()},
                registry=self.registry,
                format_checker=Draft202012Validator.FORMAT_CHECKER,
            )
            found = self.errors(validator, body["data"])
        return found

    def response(self, path: str, method: str, status: int, body: Any) -> list[str]:
        """An answer against the schema documented for this operation and status."""
        base = f"/paths/{_escape(path)}/{method.lower()}/responses"
        response = self.document["paths"][path][method.lower()]["responses"].get(str(status))
        if response is None:
            return [f"{method} {path} does not document {status}"]
        if "$ref" in response:
            base, status_part = response["$ref"][1:], ""
            response = self.document["components"]["responses"][base.rsplit("/", 1)[-1]]
        else:
            status_part = f"/{status}"
        [(media, _)] = response["content"].items()
        return self.errors(self._at(f"{base}{status_part}/content/{_escape(media)}/schema"), body)

    def callback(self, body: Any) -> list[str]:
        pointer = "/webhooks/caseStatusChanged/post/requestBody/content/application~1json/schema"
        return self.errors(self._at(pointer), body)

    def case(self, body: Any) -> list[str]:
        return self.response("/cases/{case_no}", "get", 200, body)


@cache
def contract() -> ContractCheck:
    return ContractCheck()


# --- fixtures ---------------------------------------------------------------------------


def load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def step_names() -> list[str]:
    return sorted(p.stem for p in (FIXTURES / "requests").glob("*.json"))


def fixture_request(name: str) -> DepartmentRequest:
    return DepartmentRequest(**load(FIXTURES / "requests" / f"{name}.json")["request"])


def provincial_steps() -> dict[str, dict[str, Any]]:
    with CATALOGUE.open("rb") as f:
        catalogue = tomllib.load(f)
    return {
        f"{matter}.{step['key']}": step
        for matter, spec in catalogue["matters"].items()
        for step in spec["steps"]
        if step["system"] == "provincial"
    }


def as_json(decision: Decision | None) -> Any:
    if decision is None:
        return None
    return {
        "task_id": decision.task_id,
        "outcome": decision.outcome,
        "case_number": decision.case_number,
        "provides": dict(decision.provides),
        "certificate": decision.certificate,
        "reason": decision.reason,
        "gaps": [[g.field, g.message] for g in decision.gaps],
        "decided_at": decision.decided_at,
    }


# --- the contract document --------------------------------------------------------------


def test_document_is_valid_openapi_and_its_examples_meet_its_schemas() -> None:
    check = contract()
    validate_openapi(check.document, base_uri=check.uri)
    post = check.document["paths"]["/cases"]["post"]
    [example] = post["requestBody"]["content"]["application/json"]["examples"].values()
    assert check.request(example["value"]) == []
    for example in check.document["paths"]["/cases/{case_no}"]["get"]["responses"]["200"][
        "content"
    ]["application/json"]["examples"].values():
        assert check.case(example["value"]) == []
    webhook = check.document["webhooks"]["caseStatusChanged"]["post"]["requestBody"]
    for example in webhook["content"]["application/json"]["examples"].values():
        assert check.callback(example["value"]) == []


def test_every_catalogue_step_on_the_platform_has_a_mapping_an_item_and_a_fixture() -> None:
    steps = provincial_steps()
    assert sorted(steps) == step_names()
    assert sorted(steps) == sorted(provincial.table().steps)
    for key, step in steps.items():
        mapping = provincial.table().steps[key]
        assert mapping.item_code == step["operation"], key
        item = load(CONTRACT / "items" / f"{mapping.item_code}.schema.json")
        assert item["x-item-code"] == mapping.item_code
        assert sorted(item["x-provides"]) == sorted(step["provides"]), key


def test_the_mapping_reads_only_what_the_step_needs() -> None:
    """Data minimisation: every canonical path a mapping reads lies under the step's needs
    (an ID type inferred when absent is the one exception: it is read only if present)."""
    for key, step in provincial_steps().items():
        for source in provincial.table().steps[key].sources:
            if source.path is None or source.infer_from is not None:
                continue
            assert any(
                source.path == need or source.path.startswith(need + ".") for need in step["needs"]
            ), f"{key}: {source.path} is not among the step's needs"


# --- canonical → platform ---------------------------------------------------------------


@pytest.mark.parametrize("name", step_names())
def test_fixture_fields_are_what_the_gateway_selects_for_the_step(name: str) -> None:
    fixture = load(FIXTURES / "requests" / f"{name}.json")
    needs = provincial_steps()[name]["needs"]
    fields = select(load(ROOT / fixture["envelope"]), needs, fixture["provided"])
    assert fields == fixture["request"]["fields"]


@pytest.mark.parametrize("name", step_names())
def test_case_request_matches_the_expected_file(name: str) -> None:
    body = provincial.case_request(fixture_request(name))
    assert body == load(FIXTURES / "expected" / f"{name}.json")


@pytest.mark.parametrize("name", step_names())
def test_case_request_meets_the_contract(name: str) -> None:
    body = provincial.case_request(
        fixture_request(name), "http://127.0.0.1:8080/v1/callbacks/provincial"
    )
    assert contract().request(body) == []


def test_a_portal_lower_case_x_is_sent_upper_case() -> None:
    request = fixture_request("after_death.pension_stop")
    assert request.fields["applicant"]["id_number"].endswith("x")
    body = provincial.case_request(request)
    assert body["data"]["claimant"]["id_number"] == "43102219680921107X"


def test_every_missing_field_is_named_at_once_without_values() -> None:
    request = fixture_request("newborn.medical_insurance")
    fields = dict(request.fields)
    fields.pop("provided")
    fields["subjects"] = {k: v for k, v in fields["subjects"].items() if k != "insured_address"}
    with pytest.raises(Permanent) as caught:
        provincial.case_request(replace(request, fields=fields))
    detail = caught.value.detail
    assert caught.value.code == "missing_field" and caught.value.system == "provincial"
    for path in ("provided.citizen_id", "subjects.insured_address.division",
                 "subjects.insured_address.detail"):  # fmt: skip
        assert path in detail
    assert not any(value in detail for value in PERSONAL)


def test_an_optional_field_is_left_out() -> None:
    request = fixture_request("newborn.social_security_card")
    fields = {**request.fields, "subjects": dict(request.fields["subjects"])}
    del fields["subjects"]["bank_branch"]
    body = provincial.case_request(replace(request, fields=fields))
    assert "bank_branch" not in body["data"]
    assert contract().request(body) == []


def test_id_type_is_inferred_only_from_a_valid_citizen_id() -> None:
    request = fixture_request("retirement.pension")
    assert "id_type" not in request.fields["subjects"]["retiree"]
    assert provincial.case_request(request)["subject"]["id_type"] == "111"
    passport = {**request.fields["subjects"]["retiree"], "id_number": "E12345678"}
    fields = {**request.fields, "subjects": {**request.fields["subjects"], "retiree": passport}}
    with pytest.raises(Permanent, match=r"subjects\.retiree\.id_type") as caught:
        provincial.case_request(replace(request, fields=fields))
    assert "E12345678" not in caught.value.detail


def test_an_operation_the_table_does_not_know_for_the_step_is_refused() -> None:
    request = replace(fixture_request("retirement.pension"), operation="pension_stop")
    with pytest.raises(Permanent, match="make them agree"):
        provincial.case_request(request)
    with pytest.raises(Permanent, match="no provincial mapping"):
        provincial.case_request(replace(request, task="nonexistent"))


# --- platform → canonical ---------------------------------------------------------------


def case_names() -> list[str]:
    return sorted(p.stem for p in (FIXTURES / "cases").glob("*.json"))


@pytest.mark.parametrize("name", case_names())
def test_case_fixture_meets_the_contract(name: str) -> None:
    assert contract().case(load(FIXTURES / "cases" / f"{name}.json")) == []


@pytest.mark.parametrize("name", case_names())
def test_decision_matches_the_expected_file(name: str) -> None:
    decision = provincial.decision(load(FIXTURES / "cases" / f"{name}.json"))
    assert as_json(decision) == load(FIXTURES / "decisions" / f"{name}.json")


def test_the_same_platform_field_maps_back_per_matter() -> None:
    """provident_fund_withdrawal runs in two matters: subject.name is the retiree in one and
    the deceased in the other."""
    assert provincial.canonical_field("retirement", "provident_fund", "subject.name") == (
        "subjects.retiree.name"
    )
    assert provincial.canonical_field("after_death", "provident_fund", "subject.name") == (
        "subjects.deceased.name"
    )
    assert provincial.canonical_field("unknown", "step", "data.x") == "data.x"


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"status": "WITHDRAWN"}, "unknown status"),
        ({"result": None}, "result.provides"),
        ({"result": {"provides": {"cremation_certificate_no": 7}}}, "result.provides"),
        ({"decided_at": "2026-11-27T09:41:17"}, "without a UTC offset"),
        ({"request_id": ""}, "request_id"),
    ],
)
def test_an_answer_that_cannot_be_read_is_permanent(
    change: Mapping[str, Any], complaint: str
) -> None:
    case = {**load(FIXTURES / "cases" / "completed-cremation.json"), **change}
    with pytest.raises(Permanent, match=complaint) as caught:
        provincial.decision(case)
    assert caught.value.code == "bad_answer"


def test_a_correction_without_gaps_or_a_denial_without_reason_is_permanent() -> None:
    correction = {**load(FIXTURES / "cases" / "correction-medical-insurance.json"), "gaps": []}
    with pytest.raises(Permanent, match="no gaps"):
        provincial.decision(correction)
    denied = dict(load(FIXTURES / "cases" / "denied-pension.json"))
    del denied["reason"]
    with pytest.raises(Permanent, match="reason"):
        provincial.decision(denied)


def test_the_contract_check_catches_what_the_platform_would_refuse() -> None:
    """The checker above is not vacuous: it sees a broken envelope, a broken item and an
    inconsistent case."""
    body = load(FIXTURES / "expected" / "newborn.medical_insurance.json")
    assert contract().request(body) == []
    assert contract().request({**body, "data": {**body["data"], "insured_division": "43"}})
    assert contract().request({**body, "item_code": "no_such_item"})
    assert contract().request({**body, "subject": {**body["subject"], "id_type": "999"}})
    assert contract().request({k: v for k, v in body.items() if k != "matter"})
    completed = load(FIXTURES / "cases" / "completed-cremation.json")
    assert contract().case({k: v for k, v in completed.items() if k != "result"})
    assert contract().case({**completed, "status": "CORRECTION"})
    assert contract().response("/cases", "post", 201, {"case_no": "lower-case"})


def test_the_worked_signing_example_in_the_readme_is_what_gateway_signing_computes() -> None:
    readme = (CONTRACT / "README.md").read_text(encoding="utf-8")
    path = "/platform/v1/cases/HN-20261127-3F9A0C12D4"
    signature = sign("provincial-secret-0123456789", "1795743603", "3f9a0c12d4e5b6a7", "GET",
                     path, "", b"")  # fmt: skip
    assert f"X-Signature: {signature}" in readme
