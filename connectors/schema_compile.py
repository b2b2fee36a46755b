"""JSON Schema (2020-12) checks compiled, once, into plain Python functions.

jsonschema interprets a schema on every instance: per keyword and per subschema it evolves a
validator, looks the keyword up and runs a generator. ``compile_schema`` walks the schema once
and returns nested closures that do only the checks themselves, two per subschema:

    valid(instance) -> bool                   stops at the first fault (the common, valid case)
    collect(instance) -> list[Violation]      where and why, run only once ``valid`` said no

A ``Violation`` is what jsonschema's ``ValidationError`` says about where: the instance path
(``absolute_path``) and the keyword that failed (``validator``; None for a ``false`` schema),
in the order jsonschema yields them (schema keyword order; instance order for the extra
properties checked against an ``additionalProperties`` schema, where jsonschema's own order is
a set's). The tests hold it to jsonschema on the fixtures, every one-change breakage of them
and random values.

Only what the contracts use is compiled: ``type enum const pattern format min/maxLength
min/maxItems uniqueItems minimum maximum exclusiveMinimum/Maximum properties
additionalProperties required dependentRequired min/maxProperties propertyNames items allOf
anyOf oneOf not if/then/else``; annotations (``title``, ``x-…``…) are skipped, as jsonschema
skips them. Anything else (``$ref`` left over, ``$dynamicRef``, ``patternProperties``,
``prefixItems``, ``contains``, ``unevaluated*``, a keyword unknown here) raises
``NotCompilable``, and ``schema_check`` falls back to jsonschema itself (``Interpreted``).

Past the house's 500 lines on purpose, for now: one compiler per keyword, each a few lines,
all held to jsonschema by one differential test; the seam for a split (keyword compilers
apart from ``compile_schema``/``schema_check`` and the path bookkeeping) is noted for issue 6.
"""

from __future__ import annotations

import itertools
import numbers
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, NamedTuple, Protocol

from jsonschema import Draft202012Validator  # type: ignore[import-untyped]  # ships no stubs
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from connectors.schema_inline import NotInlinable, inline_refs

__all__ = [
    "CompiledSchema",
    "Interpreted",
    "NotCompilable",
    "SchemaCheck",
    "Violation",
    "compile_schema",
    "schema_check",
]


_ROOT: Final = "urn:schema-check:root"  # what a schema without an $id is known as


class Violation(NamedTuple):
    """Where an instance breaks a schema: jsonschema's ``absolute_path`` and ``validator``."""

    path: tuple[str | int, ...]
    keyword: str | None


class SchemaCheck(Protocol):
    @property
    def schema(self) -> Any:
        """The schema checked (inlined, when its references were)."""
        ...

    def errors(self, instance: object) -> list[Violation]:
        """Every violation, in jsonschema's order; [] when ``instance`` is valid."""
        ...


class NotCompilable(Exception):
    """The schema uses something the compiler does not do; let jsonschema interpret it."""


Test = Callable[[Any], bool]
Collect = Callable[[Any], list[Violation]]


class _Check(NamedTuple):
    valid: Test
    collect: Collect  # [] when ``valid`` is True; called only when a violation is expected


class CompiledSchema:
    """A schema's compiled check (``compile_schema``)."""

    __slots__ = ("_collect", "_valid", "schema")

    def __init__(self, schema: Any, check: _Check) -> None:
        self.schema = schema
        self._valid, self._collect = check

    def is_valid(self, instance: object) -> bool:
        return self._valid(instance)

    def errors(self, instance: object) -> list[Violation]:
        return [] if self._valid(instance) else self._collect(instance)


class Interpreted:
    """A jsonschema validator seen as a ``SchemaCheck`` (the fallback, and the tests' oracle)."""

    __slots__ = ("validator",)

    def __init__(self, validator: Any) -> None:
        self.validator = validator

    @property
    def schema(self) -> Any:
        return self.validator.schema

    def errors(self, instance: object) -> list[Violation]:
        return [
            Violation(tuple(e.absolute_path), e.validator)
            for e in self.validator.iter_errors(instance)
        ]


def schema_check(
    schema: Any, registry: Registry[Any] | None = None, format_checker: Any = None
) -> SchemaCheck:
    """The fastest faithful check of ``schema``: ``$ref``s inlined (``registry`` holds the
    documents referred to; a schema with an ``$id`` may refer within itself without one) and
    compiled; else jsonschema, resolving references while validating."""
    if registry is None:
        uri = schema.get("$id", _ROOT) if isinstance(schema, dict) else _ROOT
        registry = Registry().with_resource(uri, DRAFT202012.create_resource(schema))
        root = {"$ref": uri}
    else:
        root = schema
    try:
        inlined = inline_refs(root, registry)
    except NotInlinable:
        return Interpreted(
            Draft202012Validator(root, registry=registry, format_checker=format_checker)
        )
    try:
        return compile_schema(inlined, format_checker)
    except NotCompilable:
        return Interpreted(Draft202012Validator(inlined, format_checker=format_checker))


def compile_schema(schema: Any, format_checker: Any = None) -> CompiledSchema:
    """``schema`` (no ``$ref`` left) compiled; ``format`` is checked when ``format_checker``
    (a jsonschema ``FormatChecker``) is given, as jsonschema does. Raises ``NotCompilable``."""
    return CompiledSchema(schema, _Compiler(format_checker).node(schema))


# -- equality and uniqueness as jsonschema has them (1 is not true, [1] equals (1,)) --------


def _unbool(value: Any) -> Any:
    return _TRUE if value is True else _FALSE if value is False else value


_TRUE: Final = object()
_FALSE: Final = object()


def _equal(one: Any, two: Any) -> bool:
    if one is two:
        return True
    if isinstance(one, str) or isinstance(two, str):
        return bool(one == two)
    if isinstance(one, Sequence) and isinstance(two, Sequence):
        return len(one) == len(two) and all(_equal(a, b) for a, b in zip(one, two, strict=True))
    if isinstance(one, Mapping) and isinstance(two, Mapping):
        return len(one) == len(two) and all(
            key in two and _equal(value, two[key]) for key, value in one.items()
        )
    return bool(_unbool(one) == _unbool(two))


def _unique(items: list[Any]) -> bool:
    try:
        ordered = sorted(_unbool(item) for item in items)
        return not any(_equal(a, b) for a, b in itertools.pairwise(ordered))
    except (NotImplementedError, TypeError):
        seen: list[Any] = []
        for item in items:
            value = _unbool(item)
            if any(_equal(other, value) for other in seen):
                return False
            seen.append(value)
        return True


# -- types -----------------------------------------------------------------------------------


def _is_number(x: Any) -> bool:
    return isinstance(x, numbers.Number) and not isinstance(x, bool)


def _is_integer(x: Any) -> bool:
    if isinstance(x, bool):
        return False
    return isinstance(x, int) or (isinstance(x, float) and x.is_integer())


_CLASSES: Final[Mapping[str, type]] = {
    "array": list,
    "boolean": bool,
    "null": type(None),
    "object": dict,
    "string": str,
}
_TYPE_TESTS: Final[Mapping[str, Test]] = {"integer": _is_integer, "number": _is_number}


def _type_test(types: list[str]) -> Test:
    if not all(isinstance(t, str) and (t in _CLASSES or t in _TYPE_TESTS) for t in types):
        raise NotCompilable(f"type {types!r}")
    classes = tuple(_CLASSES[t] for t in types if t in _CLASSES)
    tests = [_TYPE_TESTS[t] for t in types if t in _TYPE_TESTS]
    if not tests:
        return lambda x: isinstance(x, classes)
    return lambda x: isinstance(x, classes) or any(test(x) for test in tests)


# -- the compiler ----------------------------------------------------------------------------

_IGNORED: Final = frozenset(  # annotations: jsonschema does not check them either
    {
        "$anchor",
        "$comment",
        "$defs",
        "$id",
        "$schema",
        "default",
        "deprecated",
        "description",
        "else",  # read by "if"; alone, jsonschema ignores it
        "examples",
        "readOnly",
        "then",
        "title",
        "writeOnly",
    }
)


def _always(x: Any) -> bool:
    return True


def _never(x: Any) -> bool:
    return False


def _no_violations(x: Any) -> list[Violation]:
    return []


ALWAYS: Final = _Check(_always, _no_violations)
NEVER: Final = _Check(_never, lambda x: [Violation((), None)])  # jsonschema: validator None


def _leaf(keyword: str, test: Test) -> _Check:
    """A keyword that fails at the instance itself, once."""
    return _Check(test, lambda x: [] if test(x) else [Violation((), keyword)])


def _within(key: str | int, check: _Check, value: Any) -> list[Violation]:
    """``check``'s violations of ``value``, found under ``key`` of its parent. But a ``false``
    schema's violation stays at the parent: jsonschema's ``descend`` adds no path to it."""
    if check is NEVER:
        return NEVER.collect(value)
    return [Violation((key, *v.path), v.keyword) for v in check.collect(value)]


class _Compiler:
    def __init__(self, format_checker: Any) -> None:
        self._formats: Mapping[str, Any] = (
            {} if format_checker is None else dict(format_checker.checkers)
        )

    def node(self, schema: Any) -> _Check:
        if schema is True:
            return ALWAYS
        if schema is False:
            return NEVER
        if not isinstance(schema, dict):
            raise NotCompilable(f"not a schema: {type(schema).__name__}")
        parts: list[_Check] = []
        for keyword, value in schema.items():
            if keyword in _IGNORED or keyword.startswith("x-"):
                continue
            make = getattr(self, f"_k_{keyword}", None)
            if make is None:
                raise NotCompilable(f"keyword {keyword!r}")
            part = make(value, schema)
            if part is not ALWAYS:
                parts.append(part)
        if not parts:
            return ALWAYS
        if len(parts) == 1:
            return parts[0]
        tests = tuple(part.valid for part in parts)
        checks = tuple(parts)

        def valid(x: Any) -> bool:
            for test in tests:  # noqa: SIM110  # a loop, not all(genexpr): half the cost here
                if not test(x):
                    return False
            return True

        def collect(x: Any) -> list[Violation]:
            found: list[Violation] = []
            for part in checks:
                if not part.valid(x):
                    found += part.collect(x)
            return found

        return _Check(valid, collect)

    # -- any instance --------------------------------------------------------------------
    def _k_type(self, value: Any, schema: Any) -> _Check:
        return _leaf("type", _type_test([value] if isinstance(value, str) else list(value)))

    def _k_enum(self, value: Any, schema: Any) -> _Check:
        if not isinstance(value, list):
            raise NotCompilable("enum is not a list")
        if all(isinstance(each, str) for each in value):
            strings = frozenset(value)
            return _leaf("enum", lambda x: isinstance(x, str) and x in strings)
        return _leaf("enum", lambda x: any(_equal(each, x) for each in value))

    def _k_const(self, value: Any, schema: Any) -> _Check:
        if isinstance(value, str):
            return _leaf("const", lambda x: isinstance(x, str) and x == value)
        return _leaf("const", lambda x: _equal(x, value))

    def _k_format(self, value: Any, schema: Any) -> _Check:
        if value not in self._formats:
            return ALWAYS  # a format jsonschema's checker does not know: not checked there either
        func, raises = self._formats[value]

        def conforms(x: Any) -> bool:
            try:
                return bool(func(x))
            except raises:
                return False

        return _leaf("format", conforms)

    # -- strings -------------------------------------------------------------------------
    def _k_pattern(self, value: Any, schema: Any) -> _Check:
        try:
            search = re.compile(value).search
        except (re.error, TypeError) as exc:
            raise NotCompilable(f"pattern {value!r}") from exc
        return _leaf("pattern", lambda x: not isinstance(x, str) or search(x) is not None)

    def _k_minLength(self, value: Any, schema: Any) -> _Check:
        return _leaf("minLength", lambda x: not isinstance(x, str) or len(x) >= value)

    def _k_maxLength(self, value: Any, schema: Any) -> _Check:
        return _leaf("maxLength", lambda x: not isinstance(x, str) or len(x) <= value)

    # -- numbers -------------------------------------------------------------------------
    def _k_minimum(self, value: Any, schema: Any) -> _Check:
        return _leaf("minimum", lambda x: not _is_number(x) or not x < value)

    def _k_maximum(self, value: Any, schema: Any) -> _Check:
        return _leaf("maximum", lambda x: not _is_number(x) or not x > value)

    def _k_exclusiveMinimum(self, value: Any, schema: Any) -> _Check:
        return _leaf("exclusiveMinimum", lambda x: not _is_number(x) or not x <= value)

    def _k_exclusiveMaximum(self, value: Any, schema: Any) -> _Check:
        return _leaf("exclusiveMaximum", lambda x: not _is_number(x) or not x >= value)

    # -- arrays --------------------------------------------------------------------------
    def _k_minItems(self, value: Any, schema: Any) -> _Check:
        return _leaf("minItems", lambda x: not isinstance(x, list) or len(x) >= value)

    def _k_maxItems(self, value: Any, schema: Any) -> _Check:
        return _leaf("maxItems", lambda x: not isinstance(x, list) or len(x) <= value)

    def _k_uniqueItems(self, value: Any, schema: Any) -> _Check:
        if not value:
            return ALWAYS
        return _leaf("uniqueItems", lambda x: not isinstance(x, list) or _unique(x))

    def _k_items(self, value: Any, schema: Any) -> _Check:
        if "prefixItems" in schema:
            raise NotCompilable("prefixItems")
        if value is False:
            return _leaf("items", lambda x: not isinstance(x, list) or not x)
        item = self.node(value)
        if item is ALWAYS:
            return ALWAYS
        each = item.valid

        def valid(x: Any) -> bool:
            return not isinstance(x, list) or all(each(v) for v in x)

        def collect(x: Any) -> list[Violation]:
            found: list[Violation] = []
            if isinstance(x, list):
                for index, v in enumerate(x):
                    if not each(v):
                        found += _within(index, item, v)
            return found

        return _Check(valid, collect)

    # -- objects -------------------------------------------------------------------------
    def _k_required(self, value: Any, schema: Any) -> _Check:
        if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
            raise NotCompilable("required is not a list of names")
        needed = frozenset(value)

        def valid(x: Any) -> bool:
            return not isinstance(x, dict) or x.keys() >= needed

        def collect(x: Any) -> list[Violation]:
            if not isinstance(x, dict):
                return []
            return [Violation((), "required") for name in value if name not in x]

        return _Check(valid, collect)

    def _k_dependentRequired(self, value: Any, schema: Any) -> _Check:
        if not isinstance(value, dict):
            raise NotCompilable("dependentRequired is not an object")
        pairs = [(name, list(needs)) for name, needs in value.items()]

        def collect(x: Any) -> list[Violation]:
            if not isinstance(x, dict):
                return []
            return [
                Violation((), "dependentRequired")
                for name, needs in pairs
                if name in x
                for each in needs
                if each not in x
            ]

        return _Check(lambda x: not collect(x), collect)

    def _k_minProperties(self, value: Any, schema: Any) -> _Check:
        return _leaf("minProperties", lambda x: not isinstance(x, dict) or len(x) >= value)

    def _k_maxProperties(self, value: Any, schema: Any) -> _Check:
        return _leaf("maxProperties", lambda x: not isinstance(x, dict) or len(x) <= value)

    def _k_properties(self, value: Any, schema: Any) -> _Check:
        if not isinstance(value, dict):
            raise NotCompilable("properties is not an object")
        named = tuple(
            (name, check) for name, sub in value.items() if (check := self.node(sub)) is not ALWAYS
        )
        if not named:
            return ALWAYS

        def valid(x: Any) -> bool:
            if isinstance(x, dict):
                for name, check in named:
                    if name in x and not check.valid(x[name]):
                        return False
            return True

        def collect(x: Any) -> list[Violation]:
            found: list[Violation] = []
            if isinstance(x, dict):
                for name, check in named:
                    if name in x and not check.valid(x[name]):
                        found += _within(name, check, x[name])
            return found

        return _Check(valid, collect)

    def _k_additionalProperties(self, value: Any, schema: Any) -> _Check:
        if "patternProperties" in schema:
            raise NotCompilable("patternProperties")
        known = frozenset(schema.get("properties", {}))
        if value is False:
            return _leaf(
                "additionalProperties", lambda x: not isinstance(x, dict) or x.keys() <= known
            )
        other = self.node(value)
        if other is ALWAYS:
            return ALWAYS

        def valid(x: Any) -> bool:
            if isinstance(x, dict):
                for name, v in x.items():
                    if name not in known and not other.valid(v):
                        return False
            return True

        def collect(x: Any) -> list[Violation]:
            found: list[Violation] = []
            if isinstance(x, dict):
                for name, v in x.items():
                    if name not in known and not other.valid(v):
                        found += _within(name, other, v)
            return found

        return _Check(valid, collect)

    def _k_propertyNames(self, value: Any, schema: Any) -> _Check:
        names = self.node(value)
        if names is ALWAYS:
            return ALWAYS

        def valid(x: Any) -> bool:
            return not isinstance(x, dict) or all(names.valid(name) for name in x)

        def collect(x: Any) -> list[Violation]:
            found: list[Violation] = []
            if isinstance(x, dict):
                for name in x:
                    if not names.valid(name):
                        found += names.collect(name)  # at the object: a name has no path
            return found

        return _Check(valid, collect)

    # -- combinations --------------------------------------------------------------------
    def _subschemas(self, keyword: str, value: Any) -> list[_Check]:
        if not isinstance(value, list) or not value:
            raise NotCompilable(f"{keyword} is not a non-empty list")
        return [self.node(sub) for sub in value]

    def _k_allOf(self, value: Any, schema: Any) -> _Check:
        subs = [sub for sub in self._subschemas("allOf", value) if sub is not ALWAYS]
        if not subs:
            return ALWAYS

        def valid(x: Any) -> bool:
            return all(sub.valid(x) for sub in subs)

        def collect(x: Any) -> list[Violation]:
            found: list[Violation] = []
            for sub in subs:
                if not sub.valid(x):
                    found += sub.collect(x)
            return found

        return _Check(valid, collect)

    def _k_anyOf(self, value: Any, schema: Any) -> _Check:
        tests = [sub.valid for sub in self._subschemas("anyOf", value)]
        return _leaf("anyOf", lambda x: any(test(x) for test in tests))

    def _k_oneOf(self, value: Any, schema: Any) -> _Check:
        tests = [sub.valid for sub in self._subschemas("oneOf", value)]

        def valid(x: Any) -> bool:
            passing = (True for test in tests if test(x))
            return next(passing, False) and not next(passing, False)

        return _leaf("oneOf", valid)

    def _k_not(self, value: Any, schema: Any) -> _Check:
        test = self.node(value).valid
        return _leaf("not", lambda x: not test(x))

    def _k_if(self, value: Any, schema: Any) -> _Check:
        then = self.node(schema.get("then", True))
        otherwise = self.node(schema.get("else", True))
        if then is ALWAYS and otherwise is ALWAYS:
            return ALWAYS
        condition = self.node(value).valid

        def valid(x: Any) -> bool:
            return then.valid(x) if condition(x) else otherwise.valid(x)

        def collect(x: Any) -> list[Violation]:
            return then.collect(x) if condition(x) else otherwise.collect(x)

        return _Check(valid, collect)
