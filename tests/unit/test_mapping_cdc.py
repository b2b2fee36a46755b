"""mappings/cdc.py against fixture files, and the fixtures against contracts/cdc/ checked by
the independent ``jsonschema`` validator."""

from __future__ import annotations

import copy
import json
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]  # no stubs in dev deps

from connectors.base import Decision, DepartmentRequest, Gap
from gateway.catalogue.fields import select
from gateway.errors import Permanent
from mappings.cdc import decision_from_reply, request_for

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = ROOT / "contracts" / "cdc"
FIXTURES = ROOT / "tests" / "fixtures" / "cdc"
EXAMPLES = ROOT / "contracts" / "envelope" / "examples" / "valid"
CATALOGUE = ROOT / "gateway" / "catalogue" / "data" / "catalogue-2026.1.toml"
APP = "01936f0e-7a4b-7c3d-8e9f-0123456789ab"
TASK = f"{APP}.vaccination"
BIRTH_CERTIFICATE_NO = "Q430012345"


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _validator(name: str) -> Draft202012Validator:
    schema = _load(CONTRACT / f"{name}.schema.json")
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


REQUEST_SCHEMA = _validator("request")
REPLY_SCHEMA = _validator("reply")


def _step() -> dict[str, Any]:
    catalogue = tomllib.loads(CATALOGUE.read_text(encoding="utf-8"))
    steps = [s for s in catalogue["matters"]["newborn"]["steps"] if s["system"] == "cdc"]
    assert len(steps) == 1
    step: dict[str, Any] = steps[0]
    return step


def _request(
    example: str, edit: Callable[[dict[str, Any]], None] | None = None
) -> DepartmentRequest:
    """The task exactly as the gateway builds it: the catalogue's needs cut from the envelope."""
    envelope = _load(EXAMPLES / f"{example}.json")
    if edit is not None:
        edit(envelope)
    step = _step()
    fields = select(envelope, step["needs"], {"birth_certificate_no": BIRTH_CERTIFICATE_NO})
    return DepartmentRequest(TASK, APP, "newborn", step["key"], "cdc", step["operation"], 1, fields)


@pytest.mark.parametrize(
    ("example", "fixture"),
    [
        ("newborn-yizhang-window", "request-window.json"),
        ("newborn-minimal-online", "request-online-minimal.json"),
    ],
)
def test_request_matches_the_fixture_and_the_contract(example: str, fixture: str) -> None:
    body = request_for(_request(example))
    assert body == _load(FIXTURES / fixture)
    assert list(REQUEST_SCHEMA.iter_errors(body)) == []


def test_request_carries_the_task_id_as_idempotency_key_and_codes_of_the_cdc() -> None:
    body = request_for(_request("newborn-yizhang-window"))
    assert body["request_id"] == TASK and body["application_id"] == APP
    assert body["child"]["sex"] == "M"  # GB/T 2261.1 "1"
    assert [d["vaccine"] for d in body["first_doses"]] == ["HepB", "BCG"]


@pytest.mark.parametrize(("code", "expected"), [("1", "M"), ("2", "F"), ("0", "U"), ("9", "U")])
def test_sex_code_list(code: str, expected: str) -> None:
    body = request_for(
        _request("newborn-yizhang-window", lambda e: e["subjects"]["child"].update(sex=code))
    )
    assert body["child"]["sex"] == expected


def test_only_the_doses_given_are_sent() -> None:
    body = request_for(
        _request("newborn-yizhang-window", lambda e: e["subjects"]["vaccination"].pop("bcg_at"))
    )
    assert [d["vaccine"] for d in body["first_doses"]] == ["HepB"]
    assert list(REQUEST_SCHEMA.iter_errors(body)) == []


def test_a_utc_instant_keeps_its_offset_form() -> None:
    body = request_for(
        _request(
            "newborn-yizhang-window",
            lambda e: e["subjects"]["child"].update(birth_datetime="2026-11-19T22:42:00Z"),
        )
    )
    assert body["child"]["birth_datetime"] == "2026-11-19T22:42:00+00:00"
    assert list(REQUEST_SCHEMA.iter_errors(body)) == []


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def edit(envelope: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = envelope
        for part in parents:
            node = node[part]
        del node[last]

    return edit


@pytest.mark.parametrize(
    "path",
    ["subjects.child.name", "subjects.child.sex", "subjects.child.birth_datetime",
     "subjects.mother.name", "applicant.phone"],
)  # fmt: skip
def test_a_missing_needed_field_is_permanent_and_named(path: str) -> None:
    with pytest.raises(Permanent) as caught:
        request_for(_request("newborn-yizhang-window", _drop(path)))
    assert path in str(caught.value) and caught.value.code == "missing_field"


def test_a_missing_provided_birth_certificate_no_is_permanent() -> None:
    request = _request("newborn-yizhang-window")
    fields = {k: v for k, v in request.fields.items() if k != "provided"}
    bare = DepartmentRequest(
        TASK, APP, "newborn", "vaccination", "cdc", "vaccination_record", 1, fields
    )
    with pytest.raises(Permanent, match=r"provided\.birth_certificate_no"):
        request_for(bare)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("subjects.child.sex", "7"),
        ("subjects.child.birth_datetime", "2026-11-20T06:42:00"),
        ("subjects.child.birth_datetime", "20 Nov 2026"),
        ("applicant.phone", "0735-1234567"),
        ("subjects.child.name", "王" * 51),
        ("subjects.vaccination.hepb_at", "yesterday"),
    ],
)
def test_an_unmappable_value_is_permanent_names_the_field_and_not_the_value(
    path: str, value: str
) -> None:
    def edit(envelope: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = envelope
        for part in parents:
            node = node[part]
        node[last] = value

    with pytest.raises(Permanent) as caught:
        request_for(_request("newborn-yizhang-window", edit))
    assert path in str(caught.value)
    assert value not in str(caught.value)


def test_a_malformed_birth_certificate_no_is_permanent() -> None:
    request = _request("newborn-yizhang-window")
    fields = dict(request.fields)
    fields["provided"] = {"birth_certificate_no": "q43001234"}
    bad = DepartmentRequest(
        TASK, APP, "newborn", "vaccination", "cdc", "vaccination_record", 1, fields
    )
    with pytest.raises(Permanent, match=r"provided\.birth_certificate_no"):
        request_for(bad)


def test_an_operation_the_cdc_does_not_offer_is_permanent() -> None:
    request = _request("newborn-yizhang-window")
    other = DepartmentRequest(TASK, APP, "newborn", "vaccination", "cdc", "birth_registration", 1,
                              request.fields)  # fmt: skip
    with pytest.raises(Permanent) as caught:
        request_for(other)
    assert caught.value.code == "unknown_operation"


# -- the request schema refuses what it must ------------------------------------------------
def _mutations() -> list[tuple[str, Callable[[dict[str, Any]], None]]]:
    return [
        ("bad birth certificate no", lambda b: b["child"].update(birth_certificate_no="12345")),
        ("sex not in the CDC list", lambda b: b["child"].update(sex="1")),
        ("naive birth datetime", lambda b: b["child"].update(birth_datetime="2026-11-20T06:42")),
        ("guardian without phone", lambda b: b["guardian"].pop("phone")),
        ("unknown vaccine", lambda b: b["first_doses"][0].update(vaccine="OPV")),
        ("second dose", lambda b: b["first_doses"][0].update(dose_no=2)),
        ("extra field", lambda b: b.update(citizen_id="431022202611200011")),
        ("request id not a task id", lambda b: b.update(request_id="task-1")),
        ("other operation", lambda b: b.update(operation="birth_registration")),
    ]


@pytest.mark.parametrize(("name", "mutate"), _mutations(), ids=[m[0] for m in _mutations()])
def test_the_request_schema_refuses(name: str, mutate: Callable[[dict[str, Any]], None]) -> None:
    body = copy.deepcopy(_load(FIXTURES / "request-window.json"))
    mutate(body)
    assert list(REQUEST_SCHEMA.iter_errors(body)) != []


# -- replies --------------------------------------------------------------------------------
VALID_REPLIES = sorted((FIXTURES / "replies" / "valid").glob("*.json"))
INVALID_REPLIES = sorted((FIXTURES / "replies" / "invalid").glob("*.json"))


@pytest.mark.parametrize("path", VALID_REPLIES, ids=lambda p: p.stem)
def test_valid_reply_fixtures_meet_the_contract(path: Path) -> None:
    assert list(REPLY_SCHEMA.iter_errors(_load(path))) == []


@pytest.mark.parametrize("path", INVALID_REPLIES, ids=lambda p: p.stem)
def test_invalid_reply_fixtures_break_the_contract(path: Path) -> None:
    assert list(REPLY_SCHEMA.iter_errors(_load(path))) != []


def _reply(name: str) -> dict[str, Any]:
    reply: dict[str, Any] = _load(FIXTURES / "replies" / "valid" / f"{name}.json")
    return reply


def test_received_is_the_acceptance_with_the_case_number() -> None:
    assert decision_from_reply(_reply("received")) == Decision(
        TASK, "in_progress", "CDC20261127-000042", decided_at=1795742403.0
    )


def test_completed_provides_the_vaccination_record_no() -> None:
    decision = decision_from_reply(_reply("completed"))
    assert decision.outcome == "completed" and decision.task_id == TASK
    assert decision.provides == {"vaccination_record_no": "JZ4310222026000123"}
    assert decision.certificate == "JZ4310222026000123"
    assert decision.case_number == "CDC20261127-000042"
    assert decision.decided_at == 1795743670.0


def test_a_refusal_on_the_merits_is_denied_with_its_reason() -> None:
    decision = decision_from_reply(_reply("refused-not-eligible"))
    assert decision.outcome == "denied"
    assert decision.reason == "not_eligible: the family's residence is outside this county"


def test_a_refusal_of_the_request_as_invalid_is_permanent() -> None:
    with pytest.raises(Permanent) as caught:
        decision_from_reply(_reply("refused-invalid-request"))
    assert caught.value.code == "invalid_request"
    assert "child.birth_certificate_no (pattern)" in caught.value.detail


def test_correction_lists_every_gap_as_envelope_paths() -> None:
    decision = decision_from_reply(_reply("correction"))
    assert decision.outcome == "correction_requested"
    assert list(decision.gaps) == [
        Gap("subjects.child.name", "differs from the birth certificate"),
        Gap(
            "subjects.vaccination.bcg_at",
            "batch number of the BCG dose missing on the hospital record",
        ),
    ]


def test_every_correctable_cdc_field_maps_to_an_envelope_path() -> None:
    fields = _load(CONTRACT / "reply.schema.json")["properties"]["corrections"]["items"][
        "properties"
    ]["field"]["enum"]
    for field in fields:
        reply = _reply("correction")
        reply["corrections"] = [{"field": field, "message": "check"}]
        (gap,) = decision_from_reply(reply).gaps
        assert gap.field.startswith(("subjects.", "applicant.", "provided."))


def test_suspended_carries_its_reason_and_a_utc_time() -> None:
    decision = decision_from_reply(_reply("suspended"))
    assert decision.outcome == "suspended"
    assert decision.reason == "awaiting a paediatric assessment before BCG"
    assert decision.decided_at == 1795772470.0


@pytest.mark.parametrize(
    "name", ["unknown-status", "correction-unknown-field", "completed-without-record-no"]
)
def test_replies_the_mapping_cannot_read_are_permanent(name: str) -> None:
    with pytest.raises(Permanent):
        decision_from_reply(_load(FIXTURES / "replies" / "invalid" / f"{name}.json"))
