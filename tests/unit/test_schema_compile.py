"""The compiled schema checks (``connectors.schema_compile``) against jsonschema, the oracle.

The same violations (instance path and failing keyword), in the same order where jsonschema's
order is defined, on: every contract schema the connectors check (the provincial answers and
callbacks, the CDC reply) with every fixture, every one-change breakage of it and random
changes to it; random schemas built from every keyword the compiler knows, against random
values. Then the compiler is broken on purpose, one way at a time, and these comparisons must
see each breakage.
"""

from __future__ import annotations

import copy
import json
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]  # ships no stubs
from structlog.testing import capture_logs

import connectors.schema_compile as sc
from connectors.amqp import QueueResultSource, reply_validator
from connectors.rest import referenced_schema, schema
from connectors.schema_compile import (
    CompiledSchema,
    Interpreted,
    NotCompilable,
    Violation,
    compile_schema,
    schema_check,
)
from gateway.broker.messages import Delivery
from gateway.settings import SystemConfig
from tests.unit.test_rest_schemas import CHECKED, broken

FORMATS = Draft202012Validator.FORMAT_CHECKER
CDC = Path(__file__).resolve().parents[1] / "fixtures" / "cdc" / "replies"
CDC_SCHEMA = Path(__file__).resolve().parents[2] / "contracts" / "cdc" / "reply.schema.json"
SCALARS: tuple[Any, ...] = (
    None,
    True,
    False,
    0,
    1,
    -1,
    1.0,
    2.5,
    -0.5,
    10**20,
    math.inf,
    "",
    "a",
    "ab",
    "0",
    "x" * 600,
    "2026-11-27",
    "2026-02-30",
    "2026-11-27T09:41:18+08:00",
    "2026-11-27T09:41:18",
    "2026-13-45T99:00:00+08:00",
    "a@b",
    [1, 1.0],  # equal items, or not: for uniqueItems
    [1, True],
    ["a", "a"],
    [{"a": 1}, {"a": 1}],
    [[1], [True]],
)


# -- random values -------------------------------------------------------------------------


def harvest(schema: Any) -> tuple[list[Any], list[str]]:
    """Values worth trying against ``schema``: its enum and const values, strings and numbers
    at each length and number bound; and the property names it knows."""
    values: list[Any] = []
    names: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item)
        if not isinstance(node, dict):
            return
        for key, value in node.items():
            if key == "enum":
                values.extend(value)
            elif key == "const":
                values.append(value)
            elif key in ("minLength", "maxLength"):
                values.extend(["a" * max(value - 1, 0), "a" * value, "a" * (value + 1)])
            elif key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
                values.extend([value - 1, value, value + 0.5])
            elif key in ("properties", "dependentRequired"):
                names.extend(value)
                if key == "properties":
                    walk(list(value.values()))
            elif key == "required":
                names.extend(value)
            elif isinstance(value, dict | list):
                walk(value)

    walk(schema)
    return values, sorted(set(names))


def random_value(rng: random.Random, pool: list[Any], names: list[str], depth: int = 3) -> Any:
    roll = rng.random()
    if depth <= 0 or roll < 0.55:
        return copy.deepcopy(
            rng.choice(pool) if pool and rng.random() < 0.5 else rng.choice(SCALARS)
        )
    if roll < 0.75:
        return [random_value(rng, pool, names, depth - 1) for _ in range(rng.randint(0, 3))]
    keys = [*names, "zz", "a", "b"] if names else ["zz", "a", "b"]
    return {
        rng.choice(keys): random_value(rng, pool, names, depth - 1)
        for _ in range(rng.randint(0, 5))
    }


def places(node: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield at
    if isinstance(node, dict | list):
        for key, child in node.items() if isinstance(node, dict) else enumerate(node):
            yield from places(child, (*at, key))


def randomly_changed(rng: random.Random, instance: Any, pool: list[Any], names: list[str]) -> Any:
    """``instance`` with one to three random changes: a value replaced (by one the schema
    names, or any), a key dropped, a key the schema knows (or not) added."""
    changed = copy.deepcopy(instance)
    for _ in range(rng.randint(1, 3)):
        at = rng.choice(list(places(changed)))
        if not at:
            return random_value(rng, pool, names)
        *parents, last = at
        node = changed
        for part in parents:
            node = node[part]
        what = rng.random()
        if what < 0.2 and isinstance(node, dict):
            del node[last]
        elif what < 0.4 and isinstance(node[last], dict):
            node[last][rng.choice([*names, "unexpected"])] = random_value(rng, pool, names, 1)
        else:
            node[last] = random_value(rng, pool, names, 2)
    return changed


# -- random schemas ------------------------------------------------------------------------

NAMES = ["a", "b", "c", "d"]
ENUMS: tuple[Any, ...] = ("a", "b", 1, 1.0, True, False, None, 0, [1], [True], {"a": 1}, "")
TYPES = ("array", "boolean", "integer", "null", "number", "object", "string")


def random_schema(rng: random.Random, depth: int = 3) -> Any:
    if depth <= 0 or rng.random() < 0.12:
        return rng.choice([True, False, {}, {"type": "string"}, {"enum": ["a", 1]}])

    def sub() -> Any:
        return random_schema(rng, depth - 1)

    def subs() -> list[Any]:
        return [sub() for _ in range(rng.randint(1, 3))]

    makers: dict[str, Callable[[], Any]] = {
        "type": lambda: rng.choice(TYPES) if rng.random() < 0.6 else rng.sample(TYPES, 2),
        "enum": lambda: rng.sample(ENUMS, rng.randint(1, 3)),
        "const": lambda: rng.choice(ENUMS),
        "pattern": lambda: rng.choice(["^a", "b$", "^[0-9]+$", "a|b", ""]),
        "format": lambda: rng.choice(["date", "date-time", "email", "uri"]),
        "minLength": lambda: rng.randint(0, 3),
        "maxLength": lambda: rng.randint(0, 3),
        "minimum": lambda: rng.choice([0, 1, 1.5, -1]),
        "maximum": lambda: rng.choice([0, 1, 1.5, -1]),
        "exclusiveMinimum": lambda: rng.choice([0, 1, 1.5]),
        "exclusiveMaximum": lambda: rng.choice([0, 1, 1.5]),
        "minItems": lambda: rng.randint(0, 3),
        "maxItems": lambda: rng.randint(0, 3),
        "uniqueItems": lambda: rng.choice([True, False]),
        "items": lambda: False if rng.random() < 0.2 else sub(),
        "properties": lambda: {n: sub() for n in rng.sample(NAMES, rng.randint(1, 3))},
        "required": lambda: rng.sample(NAMES, rng.randint(1, 3)),
        "additionalProperties": lambda: rng.choice([False, True, sub()]),
        "propertyNames": lambda: rng.choice([{"pattern": "^[ab]"}, {"maxLength": 0}, sub()]),
        "dependentRequired": lambda: {rng.choice(NAMES): rng.sample(NAMES, 2)},
        "minProperties": lambda: rng.randint(0, 3),
        "maxProperties": lambda: rng.randint(0, 3),
        "allOf": subs,
        "anyOf": subs,
        "oneOf": subs,
        "not": sub,
        "if": sub,
    }
    # in random order: the keyword order decides the order of the violations
    made = {keyword: makers[keyword]() for keyword in rng.sample(sorted(makers), rng.randint(1, 4))}
    if "if" in made:
        for branch in ("then", "else"):
            if rng.random() < 0.7:
                made[branch] = sub()
    return made


# -- the corpus: instances and what jsonschema says of them ----------------------------------


def order_free(schema: Any) -> bool:
    """Whether jsonschema's order is not defined: it checks the extra properties against an
    ``additionalProperties`` schema in a set's order."""
    return '"additionalProperties": {' in json.dumps(schema)


@dataclass(frozen=True)
class Case:
    label: str
    schema: Any  # what the compiler gets
    formats: Any
    instance: Any
    expected: list[Violation]  # jsonschema's
    ordered: bool


def _ordered(violations: list[Violation]) -> list[Violation]:
    return sorted(violations, key=repr)


def _cases(
    label: str, compiled: Any, oracle: Any, formats: Any, instances: list[Any], ordered: bool
) -> list[Case]:
    return [
        Case(label, compiled, formats, x, oracle.errors(x), ordered and not order_free(compiled))
        for x in instances
    ]


def cdc_replies() -> list[Any]:
    return [json.loads(p.read_text()) for p in sorted(CDC.glob("*/*.json"))]


@cache
def corpus() -> tuple[Case, ...]:
    rng = random.Random(20261127)
    found: list[Case] = []
    contract: list[tuple[str, Any, Any, Any, list[Any], bool]] = [
        # the provincial schemas: held to the registry-resolving validator, in any order (the
        # inliner moves a $ref's siblings; the connector sorts the paths anyway)
        *(
            (name, schema(name).schema, referenced_schema(name), FORMATS, instances, False)
            for name, instances in CHECKED
        ),
        # the CDC reply, formats unchecked as before, in jsonschema's order (logged as is)
        (
            "cdc-reply",
            reply_validator("cdc/reply.schema.json").schema,
            Interpreted(Draft202012Validator(json.loads(CDC_SCHEMA.read_text()))),
            None,
            cdc_replies(),
            True,
        ),
    ]
    for label, compiled, oracle, formats, fixtures, ordered in contract:
        pool, names = harvest(compiled)
        instances = [y for x in fixtures for y in (x, *broken(x))]
        instances += [randomly_changed(rng, rng.choice(fixtures), pool, names) for _ in range(1000)]
        instances += [random_value(rng, pool, names) for _ in range(200)]
        found += _cases(label, compiled, oracle, formats, instances, ordered)
    for _ in range(600):
        made = random_schema(rng)
        oracle = Interpreted(Draft202012Validator(made, format_checker=FORMATS))
        pool, names = harvest(made)
        values = [random_value(rng, [*pool, *ENUMS], NAMES) for _ in range(8)]
        found += _cases("random", made, oracle, FORMATS, values, True)
    return tuple(found)


def disagreements(limit: int = 5) -> list[tuple[str, Any, list[Violation], list[Violation]]]:
    """Where the compiler, as it is now, says other than jsonschema."""
    compiled: dict[int, CompiledSchema] = {}
    found = []
    for case in corpus():
        key = id(case.schema)
        if key not in compiled:
            compiled[key] = compile_schema(case.schema, case.formats)
        got = compiled[key].errors(case.instance)
        same = got == case.expected if case.ordered else _ordered(got) == _ordered(case.expected)
        if not same or compiled[key].is_valid(case.instance) != (not case.expected):
            found.append((case.label, case.instance, got, case.expected))
            if len(found) >= limit:
                break
    return found


# -- equivalence ---------------------------------------------------------------------------


def test_the_corpus_is_broad_enough_to_say_something() -> None:
    cases = corpus()
    by_label: dict[str, list[Case]] = {}
    for case in cases:
        by_label.setdefault(case.label, []).append(case)
    assert set(by_label) == {*(name for name, _ in CHECKED), "cdc-reply", "random"}
    for label, group in by_label.items():
        refused = sum(bool(c.expected) for c in group)
        assert 0.1 * len(group) < refused < len(group), label  # both answers are seen
    keywords = {v.keyword for c in cases for v in c.expected}
    assert keywords >= {
        "type", "enum", "const", "pattern", "format", "minLength", "maxLength", "minimum",
        "maximum", "exclusiveMinimum", "exclusiveMaximum", "minItems", "maxItems",
        "uniqueItems", "items", "required", "additionalProperties", "dependentRequired",
        "minProperties", "maxProperties", "anyOf", "oneOf", "not", None,
    }  # fmt: skip


def test_the_compiled_checks_say_what_jsonschema_says() -> None:
    assert disagreements() == []


def test_the_connectors_use_the_compiled_checks() -> None:
    for name, _ in CHECKED:
        assert isinstance(schema(name), CompiledSchema), name
    assert isinstance(reply_validator("cdc/reply.schema.json"), CompiledSchema)


MUTATIONS: dict[str, Callable[[pytest.MonkeyPatch], None]] = {
    "enum not checked": lambda mp: mp.setattr(sc._Compiler, "_k_enum", lambda *a: sc.ALWAYS),
    "const not checked": lambda mp: mp.setattr(sc._Compiler, "_k_const", lambda *a: sc.ALWAYS),
    "format not checked": lambda mp: mp.setattr(sc._Compiler, "_k_format", lambda *a: sc.ALWAYS),
    "maxLength one too long": lambda mp: mp.setattr(
        sc._Compiler,
        "_k_maxLength",
        lambda self, n, s: sc._leaf(
            "maxLength", lambda x: not isinstance(x, str) or len(x) <= n + 1
        ),
    ),
    "only the first missing name reported": lambda mp: mp.setattr(
        sc._Compiler,
        "_k_required",
        lambda self, v, s: (lambda c: sc._Check(c.valid, lambda x: c.collect(x)[:1]))(
            _original("_k_required")(self, v, s)
        ),
    ),
    "extra properties let through": lambda mp: mp.setattr(
        sc._Compiler,
        "_k_additionalProperties",
        lambda self, v, s: (
            sc.ALWAYS if v is False else _original("_k_additionalProperties")(self, v, s)
        ),
    ),
    "else ignored": lambda mp: mp.setattr(
        sc._Compiler, "_k_if", lambda self, v, s: _original("_k_if")(self, v, {**s, "else": True})
    ),
    "booleans taken for integers": lambda mp: mp.setitem(
        sc._TYPE_TESTS,
        "integer",
        lambda x: isinstance(x, int),
    ),
    "paths not prefixed": lambda mp: mp.setattr(
        sc, "_within", lambda key, check, value: check.collect(value)
    ),
    "anyOf taken as allOf": lambda mp: mp.setattr(
        sc._Compiler,
        "_k_anyOf",
        lambda self, v, s: sc._leaf("anyOf", _original("_k_allOf")(self, v, s).valid),
    ),
    "a false schema named by its parent": lambda mp: mp.setattr(
        sc, "NEVER", sc._Check(lambda x: False, lambda x: [Violation((), "items")])
    ),
}
_ORIGINALS = {name: getattr(sc._Compiler, name) for name in dir(sc._Compiler)}


def _original(name: str) -> Any:
    return _ORIGINALS[name]


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_a_compiler_broken_on_purpose_is_caught(
    mutation: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus()  # jsonschema's answers, gathered unmutated
    MUTATIONS[mutation](monkeypatch)
    assert disagreements(limit=1) != []


# -- what falls back to jsonschema ---------------------------------------------------------


@pytest.mark.parametrize(
    "uncompilable",
    [
        {"patternProperties": {"^a": {"type": "string"}}},
        {"prefixItems": [{"type": "string"}], "items": False},
        {"contains": {"type": "string"}},
        {"unevaluatedProperties": False},
        {"multipleOf": 3},
        {"$ref": "#/$defs/a", "$defs": {"a": {"type": "string"}}},
        {"type": "strange"},
        {"typo_keyword": 1},
    ],
)
def test_what_the_compiler_does_not_know_is_not_compiled(uncompilable: dict[str, Any]) -> None:
    with pytest.raises(NotCompilable):
        compile_schema(uncompilable)


def test_schema_check_falls_back_to_jsonschema_with_the_same_answers() -> None:
    pattern = {"type": "object", "patternProperties": {"^a": {"type": "string"}}}
    tree = {
        "$id": "urn:test:tree",
        "type": "object",
        "properties": {"children": {"type": "array", "items": {"$ref": "#"}}},
    }
    for made, bad in ((pattern, {"ab": 1}), (tree, {"children": [{"children": 1}]})):
        check = schema_check(made)
        assert isinstance(check, Interpreted)
        assert check.errors(bad) != [] and check.errors({}) == []
    inlinable = {"$id": "urn:test:x", "$defs": {"s": {"type": "string"}}, "$ref": "#/$defs/s"}
    check = schema_check(inlinable)
    assert isinstance(check, CompiledSchema)
    assert check.errors(1) == [Violation((), "type")] and check.errors("a") == []


def test_jsonschema_details_kept() -> None:
    checked = compile_schema(
        {
            "properties": {
                "n": {"type": "integer"},
                "e": {"enum": [1, "1"]},
                "f": False,
                "o": {"propertyNames": {"maxLength": 1}},
            }
        }
    )
    assert checked.errors({"n": 1.0, "e": 1.0}) == []  # 1.0 is an integer; 1.0 equals 1
    assert checked.errors({"n": True, "e": True}) == [
        Violation(("n",), "type"),
        Violation(("e",), "enum"),  # true is not 1
    ]
    # a false schema: no keyword, and (jsonschema's descend) no path of its own
    assert checked.errors({"f": 0}) == [Violation((), None)]
    assert Interpreted(Draft202012Validator(checked.schema)).errors({"f": 0}) == [
        Violation((), None)
    ]
    assert checked.errors({"o": {"ab": 1}}) == [Violation(("o",), "maxLength")]  # at the object


# -- what the CDC connector logs -------------------------------------------------------------


def _delivery(body: Any) -> Delivery:
    return Delivery(
        body=json.dumps(body).encode(),
        exchange="",
        routing_key="dept.cdc.replies",
        message_id="m1",
        correlation_id=None,
        user_id=None,
        headers={},
        content_type="application/json",
        redelivered=False,
        _settle=lambda how: None,
    )


@pytest.mark.parametrize("path", sorted((CDC / "invalid").glob("*.json")), ids=lambda p: p.stem)
def test_an_invalid_reply_is_logged_as_before(path: Path) -> None:
    reply = json.loads(path.read_text())
    before = [  # what _valid_reply logged with jsonschema's validator
        f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.validator}"
        for e in Draft202012Validator(json.loads(CDC_SCHEMA.read_text())).iter_errors(reply)
    ]
    source = QueueResultSource("cdc", SystemConfig(kind="amqp"), broker=None)  # type: ignore[arg-type]
    with capture_logs() as logs:
        assert source._valid_reply(_delivery(reply)) is None
    [line] = [line for line in logs if line["event"] == "dept_reply_invalid"]
    assert line["problems"] == before and before
