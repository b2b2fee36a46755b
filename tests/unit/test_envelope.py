"""The canonical envelope against its examples, its error report and its personal data."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from gateway.envelope import (
    ENVELOPE_ADAPTER,
    TYPED_MATTERS,
    AfterDeathEnvelope,
    DisabilityEnvelope,
    HousingEnvelope,
    MarriageBirthEnvelope,
    MedicalCareEnvelope,
    NewbornEnvelope,
    RetirementEnvelope,
    SchoolEntryEnvelope,
    VeteranEnvelope,
    dump_envelope,
    envelope_json_schema,
    parse_envelope,
    personal_values,
)
from gateway.envelope.fields import PERSONAL
from gateway.errors import InvalidEnvelope
from gateway.matters import MATTERS

EXAMPLES = Path(__file__).resolve().parents[2] / "contracts" / "envelope" / "examples"
VALID = sorted((EXAMPLES / "valid").glob("*.json"))
INVALID = sorted(p for p in (EXAMPLES / "invalid").glob("*.json") if ".errors." not in p.name)
PERSONAL_KEYS = {"name", "id_number", "head_id_number", "phone"}
ORGANISATIONS = {"hospital", "employer", "assessment_hospital"}


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _dump(doc: Any) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode()


def _errors(body: bytes) -> InvalidEnvelope:
    with pytest.raises(InvalidEnvelope) as caught:
        parse_envelope(body)
    return caught.value


def _walk(doc: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every (path, value) in a JSON document, list indexes as strings."""
    yield path, doc
    items = (
        doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else []
    )
    for key, value in items:
        yield from _walk(value, (*path, str(key)))


def test_examples_are_there() -> None:
    matters = {_load(p)["matter"] for p in VALID}
    assert matters == set(TYPED_MATTERS) == set(MATTERS)  # every matter of DESIGN is typed
    assert len(INVALID) >= 8
    for path in INVALID:
        assert path.with_name(f"{path.stem}.errors.json").is_file(), path.name


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_valid_example_parses(path: Path) -> None:
    env = parse_envelope(path.read_bytes())
    expected = {
        "newborn": NewbornEnvelope,
        "school_entry": SchoolEntryEnvelope,
        "medical_care": MedicalCareEnvelope,
        "housing": HousingEnvelope,
        "veteran": VeteranEnvelope,
        "retirement": RetirementEnvelope,
        "after_death": AfterDeathEnvelope,
        "marriage_birth": MarriageBirthEnvelope,
        "disability": DisabilityEnvelope,
    }
    assert type(env) is expected[_load(path)["matter"]]
    # What the gateway stores and republishes parses back to the same envelope.
    assert parse_envelope(env.model_dump_json().encode()) == env


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_example_fails_with_exactly_its_locs(path: Path) -> None:
    expected = _load(path.with_name(f"{path.stem}.errors.json"))
    error = _errors(path.read_bytes())
    assert sorted(e.loc for e in error.errors) == sorted(expected)
    assert all(e.msg and e.type for e in error.errors)


def test_every_error_is_reported_at_once() -> None:
    error = _errors((EXAMPLES / "invalid" / "multiple-errors.json").read_bytes())
    assert len(error.errors) >= 3
    assert error.detail == f"the envelope has {len(error.errors)} invalid field(s)"


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_unknown_fields_rejected_at_every_level(path: Path) -> None:
    doc = _load(path)
    objects = [p for p, value in _walk(doc) if isinstance(value, dict)]
    assert len(objects) > 5
    for where in objects:
        changed = copy.deepcopy(doc)
        target = changed
        for key in where:
            target = target[int(key)] if isinstance(target, list) else target[key]
        target["surplus"] = "x"
        error = _errors(_dump(changed))
        assert [(e.loc, e.type) for e in error.errors] == [
            (".".join((*where, "surplus")), "extra_forbidden")
        ]


def test_lower_case_x_is_normalised_in_the_envelope() -> None:
    doc = _load(EXAMPLES / "valid" / "after-death-mobile.json")
    assert doc["applicant"]["id_number"].endswith("x")
    env = parse_envelope(_dump(doc))
    assert env.applicant.id_number == doc["applicant"]["id_number"].upper()
    assert isinstance(env, AfterDeathEnvelope)
    assert env.subjects.heirs[0].id_number.endswith("X")


NEWBORN = _load(EXAMPLES / "valid" / "newborn-yizhang-window.json")


@pytest.mark.parametrize(
    ("edit", "loc", "type_"),
    [
        ({"subjects": {"child": {"weight_g": "3350"}}}, "subjects.child.weight_g", "int_type"),
        ({"subjects": {"child": {"weight_g": 3350.0}}}, "subjects.child.weight_g", "int_type"),
        ({"subjects": {"child": {"sex": 1}}}, "subjects.child.sex", "literal_error"),
        ({"consent": {"granted": "true"}}, "consent.granted", "literal_error"),
        ({"channel": {"kind": "window", "window_id": None}}, "channel.window_id", "value_error"),
        ({"materials": [{"kind": "document"}]}, "materials.0.sha256", "missing"),
        (
            {"consent": {"scope": ["notify_by_sms", "notify_by_sms"]}},
            "consent.scope",
            "value_error",
        ),
        ({"consent": {"scope": []}}, "consent.scope", "too_short"),
    ],
)
def test_strict_types(edit: dict[str, Any], loc: str, type_: str) -> None:
    doc = copy.deepcopy(NEWBORN)

    def merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
        for key, value in patch.items():
            if isinstance(value, dict) and isinstance(target.get(key), dict):
                merge(target[key], value)
            else:
                target[key] = value

    merge(doc, edit)
    assert (loc, type_) in [(e.loc, e.type) for e in _errors(_dump(doc)).errors]


@pytest.mark.parametrize(
    ("body", "loc", "type_"),
    [
        (b"not json", "", "json_invalid"),
        (b"[]", "", "dict_type"),
        (b"{}", "matter", "missing"),
        (b'{"matter": "passport"}', "matter", "union_tag_invalid"),
    ],
)
def test_whole_body_errors(body: bytes, loc: str, type_: str) -> None:
    assert [(e.loc, e.type) for e in _errors(body).errors] == [(loc, type_)]


def test_envelope_is_immutable() -> None:
    env = parse_envelope(_dump(NEWBORN))
    with pytest.raises(ValidationError):
        env.submitted_at = env.submitted_at  # type: ignore[misc]  # frozen on purpose


# --- personal data ------------------------------------------------------------------------


def _personal_in(doc: Any) -> set[str]:
    """Names, ID numbers and phones of persons (organisations' names are not personal)."""
    return {
        value
        for path, value in _walk(doc)
        if path
        and path[-1] in PERSONAL_KEYS
        and isinstance(value, str)
        and not ORGANISATIONS & set(path)
    }


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_errors_never_carry_personal_data(path: Path) -> None:
    doc = _load(path)
    secrets = _personal_in(doc)
    assert secrets
    error = _errors(path.read_bytes())
    assert error.__cause__ is None
    assert error.__context__ is None  # pydantic's own text (with inputs) is not chained
    text = json.dumps(error.as_dicts(), ensure_ascii=False) + str(error) + repr(error)
    leaked = {s for s in secrets if s in text or s.upper() in text}
    assert leaked == set()


def test_tag_errors_do_not_echo_the_input() -> None:
    error = _errors(_dump({**NEWBORN, "matter": "王建军"}))
    assert "王建军" not in json.dumps(error.as_dicts(), ensure_ascii=False)
    kinds = _dump({**NEWBORN, "materials": [{"kind": "刘芳"}]})
    assert "刘芳" not in json.dumps(_errors(kinds).as_dicts(), ensure_ascii=False)


@pytest.mark.parametrize(
    ("text", "found"),
    [("a\u0000b", "U+0000 at position 1"), ("\u202egnaw", "U+202E at position 0"),
     ("ok\x7f", "U+007F at position 2"), ("王\u2066芳", "U+2066 at position 1"),
     ("x\u009fy\u0001", "U+009F at position 1")],
)  # fmt: skip
def test_an_unprintable_text_names_the_character_and_where_not_the_text(
    text: str, found: str
) -> None:
    doc = copy.deepcopy(NEWBORN)
    doc["applicant"]["name"] = text  # PersonName
    doc["subjects"]["hospital"]["name"] = text  # Text100
    doc["subjects"]["insured_address"]["detail"] = text  # Text200
    doc["materials"][0]["title"] = text  # Text100 in a material
    errors = _errors(_dump(doc)).as_dicts()
    message = f"must not contain control or direction-override characters (found {found})"
    assert errors == [
        {"loc": loc, "msg": message, "type": "value_error"}
        for loc in (
            "applicant.name",
            "subjects.hospital.name",
            "subjects.insured_address.detail",
            "materials.0.title",
        )
    ]


def test_a_long_or_empty_text_says_so_before_its_characters() -> None:
    doc = copy.deepcopy(NEWBORN)
    doc["applicant"]["name"] = "\u0000" * 51
    doc["subjects"]["hospital"]["name"] = ""
    errors = _errors(_dump(doc)).as_dicts()
    assert [(e["loc"], e["type"]) for e in errors] == [
        ("applicant.name", "string_too_long"),
        ("subjects.hospital.name", "string_too_short"),
    ]


def test_personal_values_lists_names_ids_and_phones() -> None:
    env = parse_envelope(_dump(NEWBORN))
    found = personal_values(env)
    subjects = NEWBORN["subjects"]
    assert _personal_in(NEWBORN) <= found
    assert subjects["child"]["name"] in found
    assert subjects["household"]["head_id_number"] in found
    assert subjects["hospital"]["name"] not in found  # organisations are not personal data
    assert subjects["hospital"]["uscc"] not in found


def test_personal_values_covers_accounts_and_every_matter() -> None:
    for path in VALID:
        doc = _load(path)
        found = personal_values(parse_envelope(path.read_bytes()))
        assert {s.upper() for s in _personal_in(doc)} <= {s.upper() for s in found}
        if doc["matter"] in ("retirement", "disability"):
            assert doc["subjects"]["bank_account"] in found


def _every_marked_value(value: object) -> set[str]:
    """Every text under a PERSONAL field, by walking every field of every model."""
    found: set[str] = set()
    if isinstance(value, BaseModel):
        schema = type(value).model_json_schema()["properties"]
        for name in type(value).model_fields:
            item = getattr(value, name)
            marked = _marked_in(schema[name])
            if marked and isinstance(item, str):
                found.add(item)
            elif marked and isinstance(item, list):
                found |= {v for v in item if isinstance(v, str)}
            found |= _every_marked_value(item)
    elif isinstance(value, list):
        for item in value:
            found |= _every_marked_value(item)
    return found


def _marked_in(property_schema: dict[str, Any]) -> bool:
    branches = [property_schema, *property_schema.get("anyOf", [])]
    return any(
        b.get("x-personal") is True or b.get("items", {}).get("x-personal") for b in branches
    )


def test_personal_values_finds_what_a_walk_of_every_field_finds() -> None:
    assert PERSONAL.keywords == {"x-personal": True}
    for path in VALID:
        env = parse_envelope(path.read_bytes())
        assert personal_values(env) == _every_marked_value(env), path.name


def test_dump_envelope_writes_what_the_union_adapter_writes() -> None:
    for path in VALID:
        env = parse_envelope(path.read_bytes())
        assert dump_envelope(env) == ENVELOPE_ADAPTER.dump_json(env).decode(), path.name
        assert parse_envelope(dump_envelope(env).encode()) == env


def test_personal_fields_are_marked_in_the_schema() -> None:
    marked = {
        path[-1]
        for path, value in _walk(envelope_json_schema())
        if isinstance(value, dict) and value.get("x-personal") is True
    }
    assert marked >= PERSONAL_KEYS
    assert "uscc" not in marked
