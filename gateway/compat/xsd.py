"""XML Schema and WSDL before / after.

Every declaration gets a path of names: a global element or named type is ``Name``, a
local element or attribute is ``Parent/Name`` (anonymous types take their element's path),
so ``BirthRegistrationRequest/Child/Name``. Compared per path:

    element, attribute or named type removed (or renamed)   breaking
    element added with minOccurs ≥ 1, attribute required    breaking   optional: additive
    minOccurs raised, maxOccurs lowered, use → required      breaking
    type or restriction base changed                         breaking
    enumeration value removed                                breaking   added: additive
    pattern added or changed                                 breaking
    length, maxLength, maxInclusive … lowered; min* raised  breaking
    WSDL operation removed                                   breaking   added: additive
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from gateway.compat.report import Changes

XS = "{http://www.w3.org/2001/XMLSchema}"
WSDL = "{http://schemas.xmlsoap.org/wsdl/}"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
_UPPER = ("maxLength", "length", "maxInclusive", "maxExclusive", "totalDigits", "fractionDigits")
_LOWER = ("minLength", "minInclusive", "minExclusive")
_UNBOUNDED = 1 << 30


@dataclass
class Decl:
    kind: str  # element | attribute | type
    type: str | None = None
    min_occurs: int = 1
    max_occurs: int = 1
    required: bool = False  # attributes: use="required"
    base: str | None = None
    enums: list[str] = field(default_factory=list)
    patterns: list[str] = field(default_factory=list)
    facets: dict[str, float] = field(default_factory=dict)


def declarations(text: bytes) -> dict[str, Decl]:
    """Every element, attribute and named type of an XSD (or of a WSDL's embedded schemas)."""
    root = etree.fromstring(text, _PARSER)
    found: dict[str, Decl] = {}
    for schema in [root] if root.tag == f"{XS}schema" else root.iter(f"{XS}schema"):
        for child in schema:
            _walk(child, "", found)
    return found


def _walk(node: Any, parent: str, found: dict[str, Decl]) -> None:
    if not isinstance(node.tag, str):
        return  # a comment
    tag = node.tag.removeprefix(XS)
    name = node.get("name")
    path = parent
    if tag in ("element", "attribute") and (name or node.get("ref")):
        path = _path(parent, name or _local(node.get("ref")))
        decl = Decl(tag, type=node.get("type") or node.get("ref"))
        if tag == "element":
            decl.min_occurs = int(node.get("minOccurs", "1"))
            top = node.get("maxOccurs", "1")
            decl.max_occurs = _UNBOUNDED if top == "unbounded" else int(top)
        else:
            decl.required = node.get("use") == "required"
            decl.min_occurs = 1 if decl.required else 0
        found[path] = decl
    elif tag in ("complexType", "simpleType") and name:
        path = _path(parent, name)
        found[path] = Decl("type")
    elif tag in ("restriction", "extension"):
        decl = found.setdefault(parent, Decl("type"))
        decl.base = node.get("base")
        for facet in node:
            if not isinstance(facet.tag, str):
                continue
            ftag = facet.tag.removeprefix(XS)
            value = facet.get("value")
            if ftag == "enumeration" and value is not None:
                decl.enums.append(value)
            elif ftag == "pattern" and value is not None:
                decl.patterns.append(value)
            elif ftag in (*_UPPER, *_LOWER) and value is not None:
                decl.facets[ftag] = float(value)
    for child in node:
        _walk(child, path, found)


def diff_xsd(out: Changes, before: bytes, after: bytes) -> None:
    old, new = declarations(before), declarations(after)
    for path, decl in old.items():
        if path not in new:
            out.breaking(path, f"{decl.kind} removed (or renamed)")
        else:
            _compare(out, path, decl, new[path])
    for path, decl in new.items():
        if path in old:
            continue
        parent_known = "/" in path and path.rsplit("/", 1)[0] in old
        if decl.kind != "type" and decl.min_occurs >= 1 and parent_known:
            out.breaking(path, f"new required {decl.kind}")
        else:
            out.additive(path, f"{decl.kind} added")


def _compare(out: Changes, path: str, old: Decl, new: Decl) -> None:
    if old.type != new.type:
        out.breaking(path, f"type changed from {old.type} to {new.type}")
    if old.base != new.base:
        out.breaking(path, f"restriction base changed from {old.base} to {new.base}")
    if new.min_occurs > old.min_occurs:
        out.breaking(path, f"now required (minOccurs {old.min_occurs} → {new.min_occurs})")
    if new.max_occurs < old.max_occurs:
        out.breaking(path, f"maxOccurs lowered to {new.max_occurs}")
    if old.enums or new.enums:
        removed = [v for v in old.enums if v not in new.enums]
        added = [v for v in new.enums if v not in old.enums]
        if not old.enums:
            out.breaking(path, f"now limited to the values {new.enums}")
        elif removed:
            out.breaking(path, f"enumeration value(s) {removed} removed")
        if added and old.enums:
            out.additive(path, f"enumeration value(s) {added} added")
    if new.patterns and new.patterns != old.patterns:
        out.breaking(path, f"pattern now {new.patterns} (was {old.patterns or 'none'})")
    for facet in _UPPER:
        if facet in new.facets and new.facets[facet] < old.facets.get(facet, float("inf")):
            out.breaking(path, f"{facet} lowered to {new.facets[facet]:g}")
    for facet in _LOWER:
        if facet in new.facets and new.facets[facet] > old.facets.get(facet, float("-inf")):
            out.breaking(path, f"{facet} raised to {new.facets[facet]:g}")


def operations(text: bytes) -> dict[str, tuple[str | None, str | None]]:
    """WSDL portType operations: name → (input message, output message)."""
    root = etree.fromstring(text, _PARSER)
    found: dict[str, tuple[str | None, str | None]] = {}
    for port in root.iter(f"{WSDL}portType"):
        for op in port.iter(f"{WSDL}operation"):
            inp, outp = op.find(f"{WSDL}input"), op.find(f"{WSDL}output")
            found[f"{port.get('name')}/{op.get('name')}"] = (
                None if inp is None else inp.get("message"),
                None if outp is None else outp.get("message"),
            )
    return found


def diff_wsdl(out: Changes, before: bytes, after: bytes) -> None:
    old, new = operations(before), operations(after)
    for name, messages in old.items():
        if name not in new:
            out.breaking(name, "operation removed")
        elif new[name] != messages:
            out.breaking(name, f"operation messages changed from {messages} to {new[name]}")
    for name in new:
        if name not in old:
            out.additive(name, "operation added")
    diff_xsd(out, before, after)  # the schemas a WSDL may embed


def _path(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


def _local(qname: str | None) -> str:
    return (qname or "?").rsplit(":", 1)[-1]
