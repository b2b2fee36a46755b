"""The REST connector's schema checks: each is built once with its ``$ref``s inlined
(``connectors.schema_inline``) and compiled (``connectors.schema_compile``), and it finds exactly
what jsonschema's registry-resolving validator finds, on every fixture and on every way of
breaking one (a field dropped, a value of the wrong type or length, a field added). Random
changes, random schemas and a compiler broken on purpose: ``test_schema_compile``."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from connectors.rest import contract_errors, referenced_schema, schema
from connectors.schema_inline import NotInlinable, inline_refs

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "provincial"
BAD_VALUES: tuple[Any, ...] = (None, 12345, "", "x" * 600, "not a date", {"unexpected": 1}, [])


def load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def cases() -> list[dict[str, Any]]:
    return [load(p) for p in sorted((FIXTURES / "cases").glob("*.json"))]


def receipt(case: dict[str, Any]) -> dict[str, Any]:
    return {k: case[k] for k in ("case_no", "status", "accepted_at")}


def event(case: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_id": f"{case['case_no']}-E1",
        "event_type": "case.status_changed",
        "occurred_at": "2026-11-27T09:41:18+08:00",
        "case": case,
    }


def requests() -> list[dict[str, Any]]:
    return [load(p) for p in sorted((FIXTURES / "expected").glob("*.json"))]


def broken(instance: Any) -> Iterator[Any]:
    """Every copy of ``instance`` with one thing wrong: a key dropped, a value replaced by a
    bad one, an unknown key added; at every depth."""

    def paths(node: Any, at: tuple[Any, ...]) -> Iterator[tuple[Any, ...]]:
        yield at
        if isinstance(node, dict | list):
            for key, child in node.items() if isinstance(node, dict) else enumerate(node):
                yield from paths(child, (*at, key))

    for path in paths(instance, ()):
        if not path:
            yield from (value for value in BAD_VALUES if not isinstance(value, dict))
            continue
        *parents, last = path
        for change in ("drop", *range(len(BAD_VALUES)), "add"):
            copied = copy.deepcopy(instance)
            node = copied
            for part in parents:
                node = node[part]
            if change == "drop":
                if not isinstance(node, dict):
                    continue
                del node[last]
            elif change == "add":
                if not isinstance(node[last], dict):
                    continue
                node[last]["unexpected_field"] = "x"
            else:
                node[last] = BAD_VALUES[change]
            yield copied


CHECKED = [
    ("case-receipt", [receipt(c) for c in cases()]),
    ("case", cases()),
    ("case-event", [event(c) for c in cases()]),
    ("case-request", requests()),
]


@pytest.mark.parametrize(("name", "instances"), CHECKED, ids=[name for name, _ in CHECKED])
def test_the_compiled_schema_finds_what_the_referencing_one_finds(
    name: str, instances: list[Any]
) -> None:
    fast, reference = schema(name), referenced_schema(name)
    compared = refused = 0
    for original in instances:
        for instance in (original, *broken(original)):
            expected = contract_errors(reference, instance)
            assert contract_errors(fast, instance) == expected, (name, instance)
            compared += 1
            refused += bool(expected)
    assert refused > compared / 2  # the breakages are seen, so agreeing says something


@pytest.mark.parametrize("name", [name for name, _ in CHECKED])
def test_the_validator_is_built_once_and_refers_to_nothing(name: str) -> None:
    assert schema(name) is schema(name)
    text = json.dumps(schema(name).schema)
    assert '"$ref"' not in text and '"$id"' not in text


def test_every_fixture_case_keeps_the_contract() -> None:
    for case in cases():
        assert contract_errors(schema("case"), case) == []
        assert contract_errors(schema("case-receipt"), receipt(case)) == []
        assert contract_errors(schema("case-event"), event(case)) == []


def test_formats_are_still_checked() -> None:
    [case, *_] = cases()
    bad = {**receipt(case), "accepted_at": "2026-13-45T99:00:00+08:00"}  # a string, not a time
    assert contract_errors(schema("case-receipt"), bad) == ["accepted_at"]
    assert contract_errors(referenced_schema("case-receipt"), bad) == ["accepted_at"]


def _registry(*schemas: dict[str, Any]) -> Registry[Any]:
    return Registry().with_resources((s["$id"], DRAFT202012.create_resource(s)) for s in schemas)


def test_a_reference_beside_other_keywords_keeps_both() -> None:
    common = {
        "$id": "urn:test:common",
        "$defs": {"code": {"type": "string", "pattern": "^[A-Z]+$"}},
    }
    root = {"$id": "urn:test:root", "$ref": "urn:test:common#/$defs/code", "maxLength": 3}
    inlined = inline_refs(root, _registry(common, root))
    assert inlined == {"maxLength": 3, "allOf": [{"type": "string", "pattern": "^[A-Z]+$"}]}


def test_a_recursive_schema_is_left_to_the_registry() -> None:
    tree = {
        "$id": "urn:test:tree",
        "type": "object",
        "properties": {"children": {"type": "array", "items": {"$ref": "#"}}},
    }
    with pytest.raises(NotInlinable):
        inline_refs(tree, _registry(tree))
    dynamic = {"$id": "urn:test:dynamic", "$dynamicRef": "#node"}
    with pytest.raises(NotInlinable):
        inline_refs(dynamic, _registry(dynamic))
