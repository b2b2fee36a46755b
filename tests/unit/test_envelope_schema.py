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


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def test_checked_in_schema_matches_the_models() -> None:
    # Regenerate with: python -c "from gateway.envelope import write_schema as w;
    #   w('contracts/envelope/envelope.schema.json')"
    assert SCHEMA_FILE.read_text(encoding="utf-8") == render_schema()
    assert _load(SCHEMA_FILE) == envelope_json_schema()


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


def test_schema_blind_names_exist() -> None:
    assert set(SCHEMA_BLIND) <= {p.stem for p in INVALID}
