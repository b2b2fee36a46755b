"""JSON Schema before / after: which differences break a party and which only add.

The walk follows the instance: ``properties`` by name, ``items`` as ``[]``, the branches of
``oneOf`` / ``anyOf`` by the name of the definition they refer to. Local ``$ref`` are resolved
in the document they belong to (a recursive definition is compared once); a reference to
another file is compared as text, the other file being compared on its own.

Rules (``request``: the party writes; ``response``: the party reads):

    property removed (or renamed)                    breaking
    property added, required      (request)          breaking       optional: additive
    property made required        (request)          breaking
    property no longer required   (response)         breaking
    type narrowed (a type no longer allowed)         breaking
    enum value removed / const changed               breaking       enum value added: additive
    (a const is a one-value enum: const 1.0 → enum [1.1, 1.0] is additive)
    pattern added or changed, format added/changed   breaking       pattern removed: additive
    maxLength/maxItems/maximum lowered or added      breaking
    minLength/minItems/minimum raised or added       breaking
    additionalProperties closed                      breaking
    oneOf/anyOf branch removed                       breaking       branch added: additive
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.compat.report import Changes, Direction

_MAX_DEPTH = 40
_UPPER = ("maxLength", "maxItems", "maxProperties", "maximum", "exclusiveMaximum")
_LOWER = ("minLength", "minItems", "minProperties", "minimum", "exclusiveMinimum")


def resolve(root: Mapping[str, Any], ref: str) -> Any:
    """The node a local ``#/a/b`` pointer names in ``root``; None when it names nothing."""
    node: Any = root
    for token in ref.removeprefix("#").strip("/").split("/"):
        if not token:
            continue
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return None
    return node


class SchemaDiff:
    """Compares two schemas living in two (possibly equal) documents."""

    def __init__(
        self,
        out: Changes,
        root_before: Mapping[str, Any],
        root_after: Mapping[str, Any],
        direction: Direction = "request",
    ) -> None:
        self.out = out
        self.roots = (root_before, root_after)
        self.direction = direction
        self._seen: set[tuple[str, str, str]] = set()

    def compare(self, before: Any, after: Any, where: str = "") -> None:
        if where.count(".") + where.count("[]") > _MAX_DEPTH:
            return  # a recursive definition: compared far enough
        before = self._deref(before, 0, where, after)
        after = self._deref(after, 1, where, before)
        if before is None or after is None:
            return
        if not isinstance(before, Mapping) or not isinstance(after, Mapping):
            if before != after:
                self.out.breaking(where, "schema changed")
            return
        self._types(before, after, where)
        self._values(before, after, where)
        self._bounds(before, after, where)
        self._objects(before, after, where)
        if "items" in before and "items" in after:
            self.compare(before["items"], after["items"], f"{where}[]")
        for key in ("oneOf", "anyOf"):
            self._branches(before.get(key), after.get(key), where, key)
        for b, a in zip(before.get("allOf", []), after.get("allOf", []), strict=False):
            self.compare(b, a, where)

    # -- references ------------------------------------------------------------------------
    def _deref(self, node: Any, side: int, where: str, other: Any) -> Any:
        """Follow local references; None when this pair was already compared."""
        hops = 0
        while isinstance(node, Mapping) and "$ref" in node and hops < 50:
            ref = str(node["$ref"])
            if not ref.startswith("#"):
                other_ref = other.get("$ref") if isinstance(other, Mapping) else None
                if side == 0 and other_ref != ref:
                    self.out.breaking(where, f"now refers to {other_ref!r} instead of {ref!r}")
                return None  # the other file is compared on its own
            key = (where, ref, str(side))
            if key in self._seen:
                return None
            self._seen.add(key)
            target = resolve(self.roots[side], ref)
            if target is None:
                return None
            siblings = {k: v for k, v in node.items() if k != "$ref"}
            node = {**target, **siblings} if siblings and isinstance(target, Mapping) else target
            hops += 1
        return node

    # -- the rules -------------------------------------------------------------------------
    def _types(self, before: Mapping[str, Any], after: Mapping[str, Any], where: str) -> None:
        old, new = _type_set(before), _type_set(after)
        if old is None or new is None:
            if old is None and new is not None:
                self.out.breaking(where, f"type now restricted to {sorted(new)}")
            return
        lost = {t for t in old - new if not (t == "integer" and "number" in new)}
        if lost:
            self.out.breaking(where, f"type narrowed: {sorted(lost)} no longer allowed")
        elif new - old:
            self.out.additive(where, f"type widened with {sorted(new - old)}")

    def _values(self, before: Mapping[str, Any], after: Mapping[str, Any], where: str) -> None:
        old, new = _allowed(before), _allowed(after)  # a const is a one-value enum
        if new is not None:
            if old is None:
                self.out.breaking(where, f"now limited to the values {new}")
            else:
                removed = [v for v in old if v not in new]
                added = [v for v in new if v not in old]
                if removed:
                    self.out.breaking(where, f"enum value(s) {removed} removed")
                if added:
                    self.out.additive(where, f"enum value(s) {added} added")
        elif old is not None:
            self.out.additive(where, f"no longer limited to the values {old}")
        for key in ("pattern", "format"):
            then, now = before.get(key), after.get(key)
            if now is not None and then != now:
                was = f" (was {then!r})" if then is not None else ""
                self.out.breaking(where, f"{key} now {now!r}{was}")
            elif then is not None and now is None:
                self.out.additive(where, f"{key} {then!r} dropped")

    def _bounds(self, before: Mapping[str, Any], after: Mapping[str, Any], where: str) -> None:
        for key in _UPPER:
            old, new = before.get(key), after.get(key)
            if _number(new) and (old is None or (_number(old) and new < old)):
                self.out.breaking(where, f"{key} lowered to {new}" + _was(old))
            elif _number(old) and (new is None or (_number(new) and new > old)):
                self.out.additive(where, f"{key} raised to {new}" + _was(old))
        for key in _LOWER:
            old, new = before.get(key), after.get(key)
            if _number(new) and (old is None or (_number(old) and new > old)):
                self.out.breaking(where, f"{key} raised to {new}" + _was(old))
            elif _number(old) and (new is None or (_number(new) and new < old)):
                self.out.additive(where, f"{key} lowered to {new}" + _was(old))

    def _objects(self, before: Mapping[str, Any], after: Mapping[str, Any], where: str) -> None:
        old_props: Mapping[str, Any] = before.get("properties") or {}
        new_props: Mapping[str, Any] = after.get("properties") or {}
        old_req = set(before.get("required") or ())
        new_req = set(after.get("required") or ())
        for name in old_props:
            if name not in new_props:
                self.out.breaking(_join(where, name), "field removed (or renamed)")
        for name in new_props:
            path = _join(where, name)
            if name not in old_props:
                if name in new_req and self.direction == "request":
                    self.out.breaking(path, "new required field")
                else:
                    self.out.additive(path, "new optional field")
                continue
            if self.direction == "request" and name in new_req and name not in old_req:
                self.out.breaking(path, "field made required")
            if self.direction == "response" and name in old_req and name not in new_req:
                self.out.breaking(path, "field no longer always present")
            self.compare(old_props[name], new_props[name], path)
        if before.get("additionalProperties") is not False and (
            after.get("additionalProperties") is False and self.direction == "request"
        ):
            self.out.breaking(where, "unknown fields now refused (additionalProperties: false)")

    def _branches(self, before: Any, after: Any, where: str, key: str) -> None:
        if not before or not after:
            if before and not after:
                self.out.breaking(where, f"{key} alternatives replaced")
            return
        if _optional(before) and _optional(after):  # X | None: compare X in place
            self.compare(_optional(before), _optional(after), where)
            return
        old = {_label(b, i): b for i, b in enumerate(before)}
        new = {_label(a, i): a for i, a in enumerate(after)}
        for label, branch in old.items():
            if label not in new:
                self.out.breaking(_join(where, label), f"{key} alternative removed")
            else:
                self.compare(branch, new[label], _join(where, label))
        for label in new:
            if label not in old:
                self.out.additive(_join(where, label), f"{key} alternative added")


def diff_schemas(
    out: Changes, before: Mapping[str, Any], after: Mapping[str, Any], direction: Direction
) -> None:
    """Two whole JSON Schema documents."""
    SchemaDiff(out, before, after, direction).compare(before, after)


def _type_set(node: Mapping[str, Any]) -> set[str] | None:
    value = node.get("type")
    if value is None:
        return None
    return {value} if isinstance(value, str) else {str(v) for v in value}


def _optional(branches: Any) -> Any:
    """The one branch of ``X | None`` that is not null; None for any other union."""
    rest = [b for b in branches if not (isinstance(b, Mapping) and b.get("type") == "null")]
    return rest[0] if len(rest) == 1 and len(branches) == 2 else None


def _allowed(node: Mapping[str, Any]) -> list[Any] | None:
    if "enum" in node:
        return list(node["enum"])
    if "const" in node:
        return [node["const"]]
    return None


def _label(branch: Any, index: int) -> str:
    if isinstance(branch, Mapping):
        if "$ref" in branch:
            return str(branch["$ref"]).rsplit("/", 1)[-1]
        if "title" in branch:
            return str(branch["title"])
    return f"<{index}>"


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _was(old: Any) -> str:
    return f" (was {old})" if old is not None else " (was unbounded)"


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name
