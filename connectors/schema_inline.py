"""A JSON Schema (2020-12) with its ``$ref``s resolved once, into one self-contained schema.

jsonschema resolves a ``$ref`` through ``referencing`` every time an instance reaches it:
a URL join, a registry lookup and a JSON pointer walk, per reference, per validation. The
provincial platform's schemas refer to ``common.schema.json`` for nearly every field, so
that walk was about a third of checking an answer. ``inline_refs`` does it once, at start:

    {"$ref": "common.schema.json#/$defs/case_no"}       → the definition itself
    {"$ref": "…", "maxLength": 20}                      → {"maxLength": 20, "allOf": [definition]}

which is what a ``$ref`` means in 2020-12 (an applicator, like one more ``allOf`` entry), so
an instance breaks the inlined schema exactly where it breaks the original, at the same
instance paths. ``$id``, ``$schema``, ``$anchor`` and ``$defs`` are dropped: nothing is
left to resolve against them. A schema this cannot inline faithfully (``$dynamicRef``, or
references nested deeper than ``MAX_REF_DEPTH``, as a recursive schema would be) raises
``NotInlinable``; the caller then validates against the registry as before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from jsonschema import Draft202012Validator  # type: ignore[import-untyped]  # ships no stubs
from referencing import Registry
from referencing.jsonschema import DRAFT202012

if TYPE_CHECKING:
    from referencing._core import Resolver  # the class ``Registry.resolver`` returns

__all__ = ["MAX_REF_DEPTH", "NotInlinable", "inline_refs"]

MAX_REF_DEPTH: Final = 32  # the provincial schemas nest references 3 deep
# 2020-12 applicators: keywords whose value is a subschema or a list of them, and those whose
# value maps names to subschemas. Every other keyword's value is data (enum, const, required…),
# copied as is.
_SUBSCHEMAS: Final = frozenset(
    {
        "additionalProperties",
        "allOf",
        "anyOf",
        "contains",
        "contentSchema",
        "else",
        "if",
        "items",
        "not",
        "oneOf",
        "prefixItems",
        "propertyNames",
        "then",
        "unevaluatedItems",
        "unevaluatedProperties",
    }
)
_MAP: Final = frozenset({"dependentSchemas", "patternProperties", "properties"})
_DROPPED: Final = frozenset({"$anchor", "$defs", "$id", "$ref", "$schema"})
_NOT_INLINED: Final = frozenset(
    {"$dynamicAnchor", "$dynamicRef", "$recursiveAnchor", "$recursiveRef"}
)
_CHECKED: Final = frozenset(Draft202012Validator.VALIDATORS)  # keywords jsonschema acts on


class NotInlinable(Exception):
    """The schema keeps references that must be resolved while validating."""


def inline_refs(schema: Any, registry: Registry[Any]) -> Any:
    """``schema`` with every ``$ref`` replaced by what it refers to (in ``registry``, which
    holds every document referred to, by its ``$id``)."""
    return _inlined(schema, registry.resolver(), 0)


def _inlined(node: Any, resolver: Resolver[Any], depth: int) -> Any:
    if not isinstance(node, dict):
        return node  # true / false
    if depth > MAX_REF_DEPTH:
        raise NotInlinable(f"references nested deeper than {MAX_REF_DEPTH} (recursive?)")
    if not _NOT_INLINED.isdisjoint(node):
        raise NotInlinable("dynamic references are resolved while validating")
    resolver = resolver.in_subresource(DRAFT202012.create_resource(node))  # its own $id
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED:
            continue
        if key in _SUBSCHEMAS:
            out[key] = (
                [_inlined(item, resolver, depth) for item in value]
                if isinstance(value, list)
                else _inlined(value, resolver, depth)
            )
        elif key in _MAP and isinstance(value, dict):
            out[key] = {name: _inlined(sub, resolver, depth) for name, sub in value.items()}
        else:
            out[key] = value
    ref = node.get("$ref")
    if not isinstance(ref, str):
        return out
    resolved = resolver.lookup(ref)
    target = _inlined(resolved.contents, resolved.resolver, depth + 1)
    if _CHECKED.isdisjoint(out):  # the reference alone (and notes): the target stands for it
        return target
    out["allOf"] = [target, *out.get("allOf", [])]
    return out
