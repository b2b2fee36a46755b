"""Cross-field rules of the six matters typed after the first three (school entry, medical
care, housing, veteran, marriage & birth, disability): each reported at its field, and, where
the published schema can say it too, the schema agrees."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]  # no stubs in dev deps

from gateway.envelope import parse_envelope, validators
from gateway.errors import InvalidEnvelope

CONTRACT = Path(__file__).resolve().parents[2] / "contracts" / "envelope"
Edit = Callable[[dict[str, Any]], None]


def _example(name: str) -> dict[str, Any]:
    path = CONTRACT / "examples" / "valid" / f"{name}.json"
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _locs(doc: dict[str, Any]) -> list[str]:
    try:
        parse_envelope(json.dumps(doc, ensure_ascii=False).encode())
    except InvalidEnvelope as exc:
        return sorted(e.loc for e in exc.errors)
    return []


def _citizen_id(region: str, born: str, sequence: str) -> str:
    """A valid GB 11643 number, so that a case fails on its rule, not on its check digit."""
    body = region + born + sequence
    return validators.citizen_id(body + validators.citizen_id_check_char(body))


def _edited(name: str, edit: Edit) -> dict[str, Any]:
    doc = copy.deepcopy(_example(name))
    edit(doc["subjects"])
    return doc


def _set(path: str, value: Any) -> Edit:
    def edit(subjects: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = subjects
        for part in parents:
            node = node[part]
        node[last] = value

    return edit


def _drop(*paths: str) -> Edit:
    def edit(subjects: dict[str, Any]) -> None:
        for path in paths:
            *parents, last = path.split(".")
            node = subjects
            for part in parents:
                node = node[part]
            del node[last]

    return edit


def _both(*edits: Edit) -> Edit:
    def edit(subjects: dict[str, Any]) -> None:
        for e in edits:
            e(subjects)

    return edit


@pytest.fixture(scope="module")
def published() -> Draft202012Validator:
    schema = json.loads((CONTRACT / "envelope.schema.json").read_text(encoding="utf-8"))
    return Draft202012Validator(schema)


BUYER = _example("housing-window")["subjects"]["person"]
PERSON = _example("marriage-birth-window")["subjects"]["person"]
PASSPORT = {"name": "MARIA SILVA", "id_type": "414", "id_number": "FB1234567", "nationality": "PRT"}

# (example, edit, the one loc reported, does the published schema catch it too?)
BROKEN = [
    pytest.param(
        "school-entry-online",
        _drop("property_certificate_no"),
        "subjects.property_certificate_no",
        True,
        id="school-entry-no-home",
    ),
    pytest.param(
        "medical-care-window",
        _drop("insurance.employer"),
        "subjects.insurance.employer",
        True,
        id="employee-scheme-without-employer",
    ),
    pytest.param(
        "medical-care-window",
        _set("out_of_area.destination", "431022"),
        "subjects.out_of_area.destination",
        False,
        id="out-of-area-in-the-insuring-county",
    ),
    pytest.param(
        "medical-care-window",
        _set("out_of_area.until", "2026-11-30"),
        "subjects.out_of_area.until",
        False,
        id="out-of-area-ends-before-it-starts",
    ),
    pytest.param(
        "medical-care-window",
        _set("reimbursement.discharged_on", "2026-10-07"),
        "subjects.reimbursement.discharged_on",
        False,
        id="discharged-before-admitted",
    ),
    pytest.param(
        "housing-window",
        _set("seller", {k: BUYER[k] for k in ("name", "id_type", "id_number")}),
        "subjects.seller.id_number",
        False,
        id="buyer-sells-to-himself",
    ),
    pytest.param(
        "housing-window",
        _set("utilities", [{"kind": "gas", "account_no": "1"}, {"kind": "gas", "account_no": "2"}]),
        "subjects.utilities",
        False,
        id="one-utility-twice",
    ),
    pytest.param(
        "housing-window",
        _drop("household"),
        "subjects.household",
        False,
        id="previous-address-without-household",
    ),
    pytest.param(
        "veteran-window",
        _set("discharge.discharged_on", "2021-09-10"),
        "subjects.discharge.discharged_on",
        False,
        id="discharged-the-day-enlisted",
    ),
    pytest.param(
        "veteran-window",
        _drop("grant_account"),
        "subjects.grant_account",
        True,
        id="self-employment-without-grant-account",
    ),
    pytest.param(
        "marriage-birth-window",
        _set("spouse", {**PERSON}),
        "subjects.spouse.id_number",
        False,
        id="marrying-oneself",
    ),
    pytest.param(
        "marriage-birth-window",
        # a man born 2005-02-14 is 21 on 2026-11-27: one year short of 22
        _set("spouse.id_number", _citizen_id("431022", "20050214", "017")),
        "subjects.spouse.id_number",
        False,
        id="groom-under-22",
    ),
    pytest.param(
        "disability-mobile",
        _set("rehabilitation", ["surgery", "surgery"]),
        "subjects.rehabilitation",
        True,
        id="rehabilitation-service-twice",
    ),
]


@pytest.mark.parametrize(("example", "edit", "loc", "schema_sees_it"), BROKEN)
def test_rule_is_reported_at_its_field(
    example: str, edit: Edit, loc: str, schema_sees_it: bool, published: Draft202012Validator
) -> None:
    assert _locs(_example(example)) == []
    doc = _edited(example, edit)
    assert _locs(doc) == [loc]
    assert published.is_valid(doc) is not schema_sees_it


@pytest.mark.parametrize(
    ("example", "edit"),
    [
        pytest.param(
            "school-entry-online",
            _both(_drop("property_certificate_no"), _set("residence_permit_no", "湘4310220012")),
            id="renting-family-with-residence-permit",
        ),
        pytest.param(
            "medical-care-window",
            _both(_set("insurance.scheme", "resident"), _drop("insurance.employer")),
            id="resident-scheme-without-employer",
        ),
        pytest.param(
            "medical-care-window",
            _drop("out_of_area", "chronic_disease", "reimbursement"),
            id="insurance-change-only",
        ),
        pytest.param(
            "housing-window",
            _drop("utilities", "provident_fund", "household", "previous_address"),
            id="purchase-without-move-in",
        ),
        pytest.param(
            "veteran-window",
            _both(_set("discharge.resettlement", "job_placement"), _drop("grant_account")),
            id="job-placement-without-grant",
        ),
        pytest.param(
            "marriage-birth-window",
            _set("spouse", {**PERSON, **PASSPORT}),
            id="passport-spouse-age-not-read",
        ),
        pytest.param(
            "disability-mobile",
            _drop("guardian", "low_income_certificate_no", "care", "rehabilitation"),
            id="card-only",
        ),
    ],
)
def test_the_smaller_variants_are_accepted(
    example: str, edit: Edit, published: Draft202012Validator
) -> None:
    doc = _edited(example, edit)
    assert _locs(doc) == []
    assert published.is_valid(doc)


def test_marriage_age_is_counted_on_the_day_of_submission() -> None:
    """The groom (born 1995-02-14) is old enough; a bride born 2006-11-27 turns 20 on the
    day of submission (2026-11-27, Beijing time), one born a day later does not."""
    for born, ok in (("20061127", True), ("20061128", False)):
        number = _citizen_id("431022", born, "002")
        doc = _edited("marriage-birth-window", _set("person.id_number", number))
        assert (_locs(doc) == []) is ok, born
