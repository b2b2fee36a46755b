"""JSON Schema before / after: which differences break a party and which only add.

The walk follows the instance: ``properties`` by name, ``items`` as ``[]``, the branches of
``oneOf`` / ``anyOf`` by the name of the definition they refer to, ``then`` / ``else`` /
``allOf`` / ``dependentSchemas`` in place (as constraints). Local ``$ref`` are resolved in the
document they belong to (a recursive definition is compared once); a reference to another file
is compared as text, the other file being compared on its own.

Which way a change breaks depends on who writes what the schema describes (``Direction``):

- a *narrowing* (a value valid before is refused now) breaks the writer: breaking for
  ``request`` and ``both``, additive for ``response``;
- a *widening* (a value refused before is valid now) breaks the reader: breaking for
  ``response`` and ``both``, additive for ``request``;
- a *change* (neither) breaks both: always breaking.

    narrowing                                        widening
    field made required, new required field          field no longer required
    type narrowed, now restricted to a type          type widened
    enum value removed, const added / changed        enum value added, limit dropped
    pattern / format added                           pattern / format dropped
    maxLength/maxItems/maximum lowered or added      bound raised or dropped
    minLength/minItems/minimum raised or added       bound lowered or dropped
    additionalProperties closed                      additionalProperties opened
    oneOf/anyOf branch removed                       oneOf/anyOf branch added
    uniqueItems set, dependentRequired name added    uniqueItems dropped, name removed
    allOf / then / else constraint added             constraint removed

    always breaking: a property removed (or renamed); a pattern or format changed; any
    change to ``if`` or ``not``; a change to a keyword the guard does not know.
    always additive: a new optional property; a value added to an enum marked
    ``x-extensible: true`` (its readers promise to accept values they do not know).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from gateway.compat.report import Changes, Direction

_MAX_DEPTH = 40
_UPPER = ("maxLength", "maxItems", "maxProperties", "maximum", "exclusiveMaximum")
_LOWER = ("minLength", "minItems", "minProperties", "minimum", "exclusiveMinimum")
_KNOWN = frozenset(
    {
        *_UPPER,
        *_LOWER,
        "type", "enum", "const", "pattern", "format", "properties", "required",
        "additionalProperties", "items", "oneOf", "anyOf", "allOf", "if", "then", "else",
        "not", "dependentRequired", "dependentSchemas", "uniqueItems", "$ref", "$defs",
        "definitions", "$schema", "$id", "$comment", "$anchor", "title", "description",
        "examples", "example", "default", "deprecated", "readOnly", "writeOnly",
        "discriminator", "contentMediaType", "contentEncoding", "nullable",
    }
)  # fmt: skip


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
        versioned: bool = False,
    ) -> None:
        """``versioned``: the document's ``schema_version`` follows the envelope's version rule
        (``_versions``)."""
        self.out = out
        self.versioned = versioned
        self.roots = (root_before, root_after)
        self.direction = direction
        self._seen: set[tuple[str, str, str, bool]] = set()
        self._within = ""  # " (in 'then' constraint)" while comparing one

    def changed(self, where: str, what: str) -> None:
        """Neither narrower nor wider: breaks both sides."""
        self.out.breaking(where, what + self._within)

    # -- how a change counts -------------------------------------------------------------
    def narrowed(self, where: str, what: str) -> None:
        """A value valid before is refused now: breaks whoever writes it."""
        if self.direction == "response":
            self.out.additive(where, what + self._within)
        else:
            self.out.breaking(where, what + self._within)

    def widened(self, where: str, what: str) -> None:
        """A value refused before is valid now: breaks whoever reads it."""
        if self.direction == "request":
            self.out.additive(where, what + self._within)
        else:
            what = f"{what}{self._within}: readers may get what they do not expect"
            self.out.breaking(where, what)

    def compare(self, before: Any, after: Any, where: str = "", constraint: bool = False) -> None:
        """``constraint``: the nodes refine another schema (``then``, ``allOf`` …), so a
        property they name is a constraint on it, not a field of its own."""
        if where.count(".") + where.count("[]") > _MAX_DEPTH:
            return  # a recursive definition: compared far enough
        before = self._deref(before, 0, where, after, constraint)
        after = self._deref(after, 1, where, before, constraint)
        if before is None or after is None:
            return
        if not isinstance(before, Mapping) or not isinstance(after, Mapping):
            if before != after:
                self.changed(where, "schema changed")
            return
        if _nullable(before) is not None and not _union(after):  # X | None → X
            self.narrowed(where, "null no longer allowed")
            self.compare(_nullable(before), after, where, constraint)
            return
        if _nullable(after) is not None and not _union(before):  # X → X | None
            self.widened(where, "may now be null")
            self.compare(before, _nullable(after), where, constraint)
            return
        self._types(before, after, where)
        self._values(before, after, where)
        self._bounds(before, after, where)
        self._objects(before, after, where, constraint)
        self._items(before, after, where, constraint)
        for key in ("oneOf", "anyOf"):
            self._branches(before.get(key), after.get(key), where, key)
        self._conditions(before, after, where, constraint)
        self._unknown(before, after, where)

    # -- references ------------------------------------------------------------------------
    def _deref(self, node: Any, side: int, where: str, other: Any, constraint: bool) -> Any:
        """Follow local references; None when this pair was already compared."""
        hops = 0
        while isinstance(node, Mapping) and "$ref" in node and hops < 50:
            ref = str(node["$ref"])
            if not ref.startswith("#"):
                other_ref = other.get("$ref") if isinstance(other, Mapping) else None
                if side == 0 and other_ref != ref:
                    self.changed(where, f"now refers to {other_ref!r} instead of {ref!r}")
                return None  # the other file is compared on its own
            key = (where, ref, str(side), constraint)
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
                self.narrowed(where, f"type now restricted to {sorted(new)}")
            elif old is not None and new is None:
                self.widened(where, f"type no longer restricted to {sorted(old)}")
            return
        lost = {t for t in old - new if not (t == "integer" and "number" in new)}
        gained = {t for t in new - old if not (t == "integer" and "number" in old)}
        if lost:
            self.narrowed(where, f"type narrowed: {sorted(lost)} no longer allowed")
        if gained:
            self.widened(where, f"type widened with {sorted(gained)}")

    def _values(self, before: Mapping[str, Any], after: Mapping[str, Any], where: str) -> None:
        old, new = _allowed(before), _allowed(after)  # a const is a one-value enum
        if old is not None and new is not None and self._versions(old, new, where):
            pass
        elif new is not None:
            if old is None:
                self.narrowed(where, f"now limited to the values {new}")
            else:
                removed = [v for v in old if v not in new]
                added = [v for v in new if v not in old]
                if removed:
                    self.narrowed(where, f"enum value(s) {removed} removed")
                if added and after.get("x-extensible") is True:
                    self.out.additive(where, f"enum value(s) {added} added (x-extensible)")
                elif added:
                    self.widened(where, f"enum value(s) {added} added")
        elif old is not None:
            self.widened(where, f"no longer limited to the values {old}")
        for key in ("pattern", "format"):
            then, now = before.get(key), after.get(key)
            if now is not None and then is not None and then != now:
                self.changed(where, f"{key} now {now!r} (was {then!r})")
            elif now is not None and then is None:
                self.narrowed(where, f"{key} now {now!r}")
            elif then is not None and now is None:
                self.widened(where, f"{key} {then!r} dropped")

    def _versions(self, old: list[Any], new: list[Any], where: str) -> bool:
        """``schema_version`` by its own rule: intake accepts the current version and the
        previous minor (``accepted_versions``), so when 1.2 arrives, 1.0 — two minors back —
        leaves as expected: reported as retired, not breaking. Any other removal breaks (a
        new major version is breaking by design). True when the values were weighed here."""
        if not self.versioned or where.rsplit(".", 1)[-1] != "schema_version":
            return False
        if not all(isinstance(v, str) and _version(v) >= (0, 0) for v in [*old, *new]):
            return False
        from gateway.envelope.model import accepted_versions

        current = max(new, key=_version)
        expected = set(accepted_versions(current))
        retired = [
            v
            for v in old
            if v not in new
            and v not in expected
            and _version(v)[0] == _version(current)[0]
            and _version(v) < _version(current)
        ]
        removed = [v for v in old if v not in new and v not in retired]
        added = [v for v in new if v not in old]
        if removed:
            self.narrowed(where, f"version(s) {removed} no longer accepted")
        if retired:
            self.out.additive(
                where,
                f"version(s) {retired} retired as the version rule says (intake accepts "
                f"{sorted(expected, reverse=True)}: the current and the previous minor)",
            )
        if added:
            self.out.additive(where, f"version(s) {added} added")
        return True

    def _bounds(self, before: Mapping[str, Any], after: Mapping[str, Any], where: str) -> None:
        for key in _UPPER:
            old, new = before.get(key), after.get(key)
            if _number(new) and (old is None or (_number(old) and new < old)):
                self.narrowed(where, f"{key} lowered to {new}" + _was(old))
            elif _number(old) and (new is None or (_number(new) and new > old)):
                self.widened(where, f"{key} raised to {new}" + _was(old))
        for key in _LOWER:
            old, new = before.get(key), after.get(key)
            if _number(new) and (old is None or (_number(old) and new > old)):
                self.narrowed(where, f"{key} raised to {new}" + _was(old))
            elif _number(old) and (new is None or (_number(new) and new < old)):
                self.widened(where, f"{key} lowered to {new}" + _was(old))
        if after.get("uniqueItems") is True and before.get("uniqueItems") is not True:
            self.narrowed(where, "items must now be unique (uniqueItems)")
        elif before.get("uniqueItems") is True and after.get("uniqueItems") is not True:
            self.widened(where, "items may now repeat (uniqueItems dropped)")

    def _objects(
        self, before: Mapping[str, Any], after: Mapping[str, Any], where: str, constraint: bool
    ) -> None:
        old_props: Mapping[str, Any] = before.get("properties") or {}
        new_props: Mapping[str, Any] = after.get("properties") or {}
        old_req = set(before.get("required") or ())
        new_req = set(after.get("required") or ())
        for name in old_props:
            if name not in new_props:
                if constraint:
                    self.widened(_join(where, name), "constraint on the field dropped")
                else:
                    self.changed(_join(where, name), "field removed (or renamed)")
        for name in new_props:
            path = _join(where, name)
            if name not in old_props:
                if constraint:
                    self.narrowed(path, "constraint on the field added")
                elif name not in new_req:
                    self.out.additive(path, "new optional field")
                continue
            self.compare(old_props[name], new_props[name], path, constraint)
        for name in sorted(new_req - old_req):
            new_field = name in new_props and name not in old_props and not constraint
            what = "new required field" if new_field else "field made required"
            self.narrowed(_join(where, name), what)
        for name in sorted(old_req - new_req):
            if name in new_props or name not in old_props or constraint:
                self.widened(_join(where, name), "field no longer always present")
        old_extra, new_extra = before.get("additionalProperties"), after.get("additionalProperties")
        if new_extra is False and old_extra is not False:
            self.narrowed(where, "unknown fields now refused (additionalProperties: false)")
        elif old_extra is False and new_extra is not False:
            self.widened(where, "unknown fields now allowed (additionalProperties opened)")
        elif isinstance(old_extra, Mapping) and isinstance(new_extra, Mapping):
            self.compare(old_extra, new_extra, _join(where, "*"), constraint)
        old_dep: Mapping[str, Any] = before.get("dependentRequired") or {}
        new_dep: Mapping[str, Any] = after.get("dependentRequired") or {}
        for name in sorted(set(old_dep) | set(new_dep)):
            then, now = set(old_dep.get(name, ())), set(new_dep.get(name, ()))
            if now - then:
                self.narrowed(_join(where, name), f"with it, {sorted(now - then)} now required")
            if then - now:
                self.widened(
                    _join(where, name), f"with it, {sorted(then - now)} no longer required"
                )

    def _items(
        self, before: Mapping[str, Any], after: Mapping[str, Any], where: str, constraint: bool
    ) -> None:
        if "items" in before and "items" in after:
            self.compare(before["items"], after["items"], f"{where}[]", constraint)
        elif "items" in after:
            self.narrowed(f"{where}[]", "items now constrained")
        elif "items" in before:
            self.widened(f"{where}[]", "items no longer constrained")

    def _branches(self, before: Any, after: Any, where: str, key: str) -> None:
        if not before or not after:
            if before and not after:
                self.widened(where, f"{key} alternatives dropped")
            elif after and not before:
                self.narrowed(where, f"now limited to {key} alternatives")
            return
        if _optional(before) and _optional(after):  # X | None: compare X in place
            self.compare(_optional(before), _optional(after), where)
            return
        old = {_label(b, i): b for i, b in enumerate(before)}
        new = {_label(a, i): a for i, a in enumerate(after)}
        for label, branch in old.items():
            if label not in new:
                self.narrowed(_join(where, label), f"{key} alternative removed")
            else:
                self.compare(branch, new[label], _join(where, label))
        for label in new:
            if label not in old:
                self.widened(_join(where, label), f"{key} alternative added")

    def _conditions(
        self, before: Mapping[str, Any], after: Mapping[str, Any], where: str, constraint: bool
    ) -> None:
        for key in ("if", "not"):
            if _text(before.get(key)) != _text(after.get(key)):
                self.changed(where, f"{key!r} changed: {_short(after.get(key))}")
        for key in ("then", "else"):
            self._constraint(before.get(key), after.get(key), where, f"{key!r} constraint")
        old_all = {_entry_label(e, i): e for i, e in enumerate(before.get("allOf") or ())}
        new_all = {_entry_label(e, i): e for i, e in enumerate(after.get("allOf") or ())}
        for label in old_all.keys() | new_all.keys():
            self._constraint(old_all.get(label), new_all.get(label), where, f"allOf {label}")
        old_dep: Mapping[str, Any] = before.get("dependentSchemas") or {}
        new_dep: Mapping[str, Any] = after.get("dependentSchemas") or {}
        for name in old_dep.keys() | new_dep.keys():
            self._constraint(
                old_dep.get(name), new_dep.get(name), _join(where, name), "dependent schema"
            )

    def _constraint(self, before: Any, after: Any, where: str, label: str) -> None:
        if before is None and after is not None:
            self.narrowed(where, f"{label} added")
        elif before is not None and after is None:
            self.widened(where, f"{label} removed")
        elif before is not None:
            outer, self._within = self._within, f" (in {label})"
            try:
                self.compare(before, after, where, constraint=True)
            finally:
                self._within = outer

    def _unknown(self, before: Mapping[str, Any], after: Mapping[str, Any], where: str) -> None:
        for key in sorted((before.keys() | after.keys()) - _KNOWN):
            if key.startswith("x-"):
                continue  # annotations of the party's own
            if _text(before.get(key)) != _text(after.get(key)):
                self.changed(where, f"{key!r} changed (a keyword the guard does not weigh)")


def diff_schemas(
    out: Changes,
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    direction: Direction,
    versioned: bool = False,
) -> None:
    """Two whole JSON Schema documents."""
    SchemaDiff(out, before, after, direction, versioned).compare(before, after)


def _version(value: str) -> tuple[int, int]:
    """``"1.2"`` → ``(1, 2)``; ``(-1, -1)`` for anything else."""
    major, dot, minor = value.partition(".")
    if not (dot and major.isdigit() and minor.isdigit()):
        return (-1, -1)
    return int(major), int(minor)


def _type_set(node: Mapping[str, Any]) -> set[str] | None:
    value = node.get("type")
    if value is None:
        return None
    return {value} if isinstance(value, str) else {str(v) for v in value}


def _optional(branches: Any) -> Any:
    """The one branch of ``X | None`` that is not null; None for any other union."""
    rest = [b for b in branches if not (isinstance(b, Mapping) and b.get("type") == "null")]
    return rest[0] if len(rest) == 1 and len(branches) == 2 else None


def _union(node: Mapping[str, Any]) -> Any:
    return node.get("anyOf") or node.get("oneOf")


def _nullable(node: Mapping[str, Any]) -> Any:
    """X of a node that is only ``anyOf`` / ``oneOf`` [X, null]; None for any other."""
    return _optional(_union(node) or ())


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


def _entry_label(entry: Any, index: int) -> str:
    """An ``allOf`` entry: by its reference, title or condition, else by position."""
    if isinstance(entry, Mapping) and "if" in entry:
        return f"if {_short(entry['if'])}"
    return _label(entry, index)


def _text(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _short(value: Any) -> str:
    text = _text(value) if value is not None else "removed"
    return text if len(text) <= 80 else text[:77] + "…"


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _was(old: Any) -> str:
    return f" (was {old})" if old is not None else " (was unbounded)"


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name
