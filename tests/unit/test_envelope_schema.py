"""The published JSON Schema: no drift from the models, and an independent validator agrees.

The ``jsonschema`` library (Draft 2020-12) checks the examples against the *checked-in*
file, the one portals download. Some rules cannot be written in JSON Schema; the invalid
examples that break only such rules are listed in ``SCHEMA_BLIND`` with the reason, and the
test insists the schema accepts exactly those, so the list stays true.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]  # no stubs in dev deps

from gateway.compat.report import Changes, render
from gateway.compat.schema import diff_schemas
from gateway.envelope import envelope_json_schema, render_schema, write_schema

CONTRACT = Path(__file__).resolve().parents[2] / "contracts" / "envelope"
SCHEMA_FILE = CONTRACT / "envelope.schema.json"
VALID = sorted((CONTRACT / "examples" / "valid").glob("*.json"))
INVALID = sorted(
    p for p in (CONTRACT / "examples" / "invalid").glob("*.json") if ".errors." not in p.name
)

# Invalid examples whose rule JSON Schema cannot express (the runtime rejects them all).
SCHEMA_BLIND = {
    "bad-check-digit": "GB 11643 check digit (weighted MOD 11)",
    "mother-id-not-female": "sex read from a digit of the mother's ID number",
    "unknown-division-code": "membership in the GB/T 2260 table (3,500 codes, not enumerated)",
    "future-birth": "compared with the clock",
    "birth-after-submission": "compares two fields (birth_datetime <= submitted_at)",
    "dose-before-birth": "compares two fields (vaccination after birth)",
    "retirement-birth-date-mismatch": "birth_date compared with digits of the ID number",
    "death-before-birth": "date_of_death compared with digits of the ID number",
}
# Single locations of otherwise schema-visible examples that only the runtime sees.
SCHEMA_BLIND_LOCATIONS = {
    ("bad-materials", "materials.0.identifier"): "GB 32100 check character of the issuer",
    ("multiple-errors", "subjects.hospital.uscc"): "GB 32100 check character",
}


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def drift(published: dict[str, Any], model: dict[str, Any]) -> str:
    """What the guard says of the model's schema against the published one: one line per
    change, naming the party and the field."""
    out = Changes("portals", "contracts/envelope/envelope.schema.json")
    diff_schemas(out, published, model, "request", versioned=True)
    return render(out.found, "the published contracts/envelope/envelope.schema.json")


def test_checked_in_schema_matches_the_models() -> None:
    """The model regenerated in memory against the checked-in file, compared by the guard:
    a model change fails here naming the field and the party, before anyone runs
    ``contracts export``. Regenerate with: python -c "from gateway.envelope import
    write_schema as w; w('contracts/envelope/envelope.schema.json')" once the change is
    meant (and additive, or a new major version)."""
    published, model = _load(SCHEMA_FILE), envelope_json_schema()
    assert published == model, "the envelope model no longer matches its schema:\n" + drift(
        published, model
    )
    assert SCHEMA_FILE.read_text(encoding="utf-8") == render_schema()


def test_a_drifted_model_is_reported_with_field_and_party() -> None:
    published = _load(SCHEMA_FILE)
    model = envelope_json_schema()
    model["$defs"]["Channel"]["properties"].pop("clerk_id", None)
    model["$defs"]["Channel"]["then"]["properties"].pop("clerk_id")
    model["$defs"]["Channel"]["then"]["required"].remove("clerk_id")
    model["$defs"]["NewbornSubjects"]["required"].append("father")
    report = drift(published, model).splitlines()
    assert any(
        ln.startswith("BREAKING  portals: contracts/envelope/envelope.schema.json ")
        and "NewbornEnvelope.subjects.father: field made required" in ln
        for ln in report
    ), report
    assert any(".channel.clerk_id" in ln and "removed" in ln for ln in report), report
    assert "breaking change(s) against the published" in report[-1]


def test_schema_header() -> None:
    schema = envelope_json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].endswith(":envelope:1.0")
    assert schema["title"]


def test_write_schema_is_deterministic(tmp_path: Path) -> None:
    first = write_schema(tmp_path / "a.json").read_bytes()
    second = write_schema(tmp_path / "b.json").read_bytes()
    assert first == second == SCHEMA_FILE.read_bytes()
    assert first.endswith(b"}\n")


def _nodes(node: Any, path: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _nodes(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _nodes(value, f"{path}/{i}")


def test_every_string_and_array_is_bounded() -> None:
    strings = arrays = 0
    unbounded = []
    for path, node in _nodes(envelope_json_schema()):
        if "/if/" in path or "/then/" in path or "/else/" in path:
            continue  # conditional patterns refine properties bounded elsewhere
        if node.get("type") == "string" and not {"enum", "const"} & node.keys():
            strings += 1
            if "maxLength" not in node:
                unbounded.append(path)
        if node.get("type") == "array":
            arrays += 1
            if "maxItems" not in node:
                unbounded.append(path)
    assert unbounded == []
    assert strings > 30 and arrays >= 4


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_valid_examples_pass_the_published_schema(
    validator: Draft202012Validator, path: Path
) -> None:
    errors = [e.message for e in validator.iter_errors(_load(path))]
    assert errors == []


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_examples_against_the_published_schema(
    validator: Draft202012Validator, path: Path
) -> None:
    rejected = not validator.is_valid(_load(path))
    if path.stem in SCHEMA_BLIND:
        assert not rejected, f"the schema now catches {path.stem}: drop it from SCHEMA_BLIND"
    else:
        assert rejected


def _locations(validator: Draft202012Validator, instance: Any) -> set[str]:
    """Every instance location jsonschema finds wrong, dotted like the runtime's ``loc``:
    a missing or unknown property is located at the property, as pydantic does. The branch
    of the ``matter`` discriminator is the one validated (an unknown matter is ``matter``)."""
    schema = validator.schema
    mapping = schema["discriminator"]["mapping"]
    matter = instance.get("matter") if isinstance(instance, dict) else None
    if matter not in mapping:
        return {"matter"}
    branch = Draft202012Validator({**schema, "oneOf": [{"$ref": mapping[matter]}]})
    found: set[str] = set()

    def add(error: Any) -> None:
        path = [str(p) for p in error.absolute_path]
        names: list[str] = []
        if error.validator == "required" and isinstance(error.instance, dict):
            names = [n for n in error.validator_value if n not in error.instance]
        elif error.validator == "additionalProperties" and isinstance(error.instance, dict):
            names = [n for n in error.instance if n not in error.schema.get("properties", {})]
        if names:
            found.update(".".join([*path, n]) for n in names)
        else:
            found.add(".".join(path))
        for sub in error.context or ():
            add(sub)

    for error in branch.iter_errors(instance):
        add(error)
    return found


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_the_independent_validator_finds_each_listed_error_where_it_is(
    validator: Draft202012Validator, path: Path
) -> None:
    """Not only rejected, but for the reasons listed: every location of ``.errors.json`` is
    among jsonschema's error locations, except those only the runtime can see."""
    if path.stem in SCHEMA_BLIND:
        return  # accepted by the schema: checked above
    expected = set(_load(path.with_suffix(".errors.json")))
    blind = {loc for (name, loc) in SCHEMA_BLIND_LOCATIONS if name == path.stem}
    found = _locations(validator, _load(path))
    assert sorted(expected - blind - found) == [], f"jsonschema found {sorted(found)}"
    assert blind & found == set(), "the schema now sees these: drop them from the list"
    assert blind <= expected


def test_schema_blind_names_exist() -> None:
    assert set(SCHEMA_BLIND) <= {p.stem for p in INVALID}
