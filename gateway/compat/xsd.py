"""XML Schema and WSDL before / after.

Every declaration gets a path of names: a global element or named type is ``Name``, a
local element or attribute is ``Parent/Name`` (anonymous types take their element's path),
so ``BirthRegistrationRequest/Child/Name``. Compared per path, with the direction of who
writes it (``Direction``; a named type takes the directions of the global elements using it):
a narrowing breaks a writer (``request``), a widening breaks a reader (``response``), both
break ``both``; the rest always breaks.

    narrowing                                       widening
    element added with minOccurs ≥ 1, use required  (optional element added: always additive)
    minOccurs raised, maxOccurs lowered             minOccurs lowered, maxOccurs raised
    enumeration value removed, values now limited   enumeration value added, limit dropped
    pattern added                                   pattern dropped
    length, maxLength, maxInclusive … lowered;      raised; min* lowered; a facet dropped
    min* raised; a facet added
    xs:any wildcard removed                          xs:any wildcard added

    always breaking: element, attribute or named type removed (or renamed); type or
    restriction base changed; pattern changed; WSDL operation removed (added: additive)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from connectors import xmlsafe
from gateway.compat.report import Changes, Direction

XS = "{http://www.w3.org/2001/XMLSchema}"
WSDL = "{http://schemas.xmlsoap.org/wsdl/}"
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


def _root(text: bytes) -> Any:
    """A contract file read under the gateway's one XML policy (``connectors.xmlsafe``: no
    DTD, entity or network, size and depth capped); a refusal is a ``ValueError`` to the
    checker, as lxml's own syntax errors are."""
    try:
        return xmlsafe.parse(text, what="contract")
    except xmlsafe.UnsafeXml as exc:
        raise ValueError(exc.detail) from None


def declarations(text: bytes, uses: dict[str, set[str]] | None = None) -> dict[str, Decl]:
    """Every element, attribute and named type of an XSD (or of a WSDL's embedded schemas);
    ``uses`` (when given) gets, per global declaration, the names of the types and elements
    it refers to."""
    root = _root(text)
    found: dict[str, Decl] = {}
    for schema in [root] if root.tag == f"{XS}schema" else root.iter(f"{XS}schema"):
        for child in schema:
            _walk(child, "", found, {} if uses is None else uses)
    return found


def _walk(node: Any, parent: str, found: dict[str, Decl], uses: dict[str, set[str]]) -> None:
    if not isinstance(node.tag, str):
        return  # a comment
    tag = node.tag.removeprefix(XS)
    name = node.get("name")
    path = parent
    for attr in ("type", "ref", "base"):
        if parent and node.get(attr):
            uses.setdefault(parent.split("/", 1)[0], set()).add(_local(node.get(attr)))
    if tag == "any":
        path = _path(parent, "*any")
        found[path] = Decl("wildcard", min_occurs=int(node.get("minOccurs", "1")))
    elif tag in ("element", "attribute") and (name or node.get("ref")):
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
        if not parent and node.get("type"):
            uses.setdefault(path, set()).add(_local(node.get("type")))
    elif tag in ("complexType", "simpleType") and name:
        path = _path(parent, name)
        found[path] = Decl("type")
        if not parent and node.get("type"):
            uses.setdefault(path, set()).add(_local(node.get("type")))
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
        _walk(child, path, found, uses)


def diff_xsd(
    out: Changes,
    before: bytes,
    after: bytes,
    direction: Direction = "request",
    elements: dict[str, Direction] | None = None,
) -> None:
    """``direction``: who writes the documents; ``elements`` overrides it per global element
    (an XSD with requests and answers)."""
    uses: dict[str, set[str]] = {}
    old, new = declarations(before, uses), declarations(after, uses)
    ways = _directions(old | new, uses, direction, elements or {})
    for path, decl in old.items():
        rules = _Rules(out, ways.get(path.split("/", 1)[0], direction))
        if path not in new:
            out.breaking(path, f"{decl.kind} removed (or renamed)")
        else:
            rules.compare(path, decl, new[path])
    for path, decl in new.items():
        if path in old:
            continue
        rules = _Rules(out, ways.get(path.split("/", 1)[0], direction))
        parent_known = "/" in path and path.rsplit("/", 1)[0] in old
        if decl.kind == "wildcard":
            rules.widened(path, "any element now allowed (xs:any)")
        elif decl.kind != "type" and decl.min_occurs >= 1 and parent_known:
            rules.narrowed(path, f"new required {decl.kind}")
        else:
            out.additive(path, f"{decl.kind} added")


def _directions(
    decls: dict[str, Decl],
    uses: dict[str, set[str]],
    default: Direction,
    elements: dict[str, Direction],
) -> dict[str, Direction]:
    """The direction of every global declaration: a global element's own (``elements`` or
    the default); a named type, every direction of the global elements that reach it."""
    reached: dict[str, set[Direction]] = {}
    for name, decl in decls.items():
        if "/" in name or decl.kind != "element":
            continue
        way = elements.get(name, default)
        todo, seen = [name], {name}
        while todo:
            for used in uses.get(todo.pop(), ()):
                if used not in seen:
                    seen.add(used)
                    todo.append(used)
        for used in seen:
            reached.setdefault(used, set()).add(way)
    found: dict[str, Direction] = {}
    for name, ways in reached.items():
        found[name] = "both" if "both" in ways or len(ways) > 1 else next(iter(ways))
    for name, way in elements.items():
        found[name] = way
    return found


class _Rules:
    def __init__(self, out: Changes, direction: Direction) -> None:
        self.out = out
        self.direction = direction

    def narrowed(self, where: str, what: str) -> None:
        if self.direction == "response":
            self.out.additive(where, what)
        else:
            self.out.breaking(where, what)

    def widened(self, where: str, what: str) -> None:
        if self.direction == "request":
            self.out.additive(where, what)
        else:
            self.out.breaking(where, f"{what}: readers may get what they do not expect")

    def compare(self, path: str, old: Decl, new: Decl) -> None:
        out = self.out
        if old.type != new.type:
            out.breaking(path, f"type changed from {old.type} to {new.type}")
        if old.base != new.base:
            out.breaking(path, f"restriction base changed from {old.base} to {new.base}")
        if new.min_occurs > old.min_occurs:
            self.narrowed(path, f"now required (minOccurs {old.min_occurs} → {new.min_occurs})")
        elif new.min_occurs < old.min_occurs:
            self.widened(path, f"now optional (minOccurs {old.min_occurs} → {new.min_occurs})")
        if new.max_occurs < old.max_occurs:
            self.narrowed(path, f"maxOccurs lowered to {_occurs(new.max_occurs)}")
        elif new.max_occurs > old.max_occurs:
            self.widened(path, f"maxOccurs raised to {_occurs(new.max_occurs)}")
        if old.enums or new.enums:
            removed = [v for v in old.enums if v not in new.enums]
            added = [v for v in new.enums if v not in old.enums]
            if not old.enums:
                self.narrowed(path, f"now limited to the values {new.enums}")
            elif not new.enums:
                self.widened(path, f"no longer limited to the values {old.enums}")
            else:
                if removed:
                    self.narrowed(path, f"enumeration value(s) {removed} removed")
                if added:
                    self.widened(path, f"enumeration value(s) {added} added")
        if new.patterns != old.patterns:
            if old.patterns and new.patterns:
                out.breaking(path, f"pattern now {new.patterns} (was {old.patterns})")
            elif new.patterns:
                self.narrowed(path, f"pattern now {new.patterns}")
            else:
                self.widened(path, f"pattern {old.patterns} dropped")
        for facet in _UPPER:
            then, now = old.facets.get(facet, float("inf")), new.facets.get(facet, float("inf"))
            if now < then:
                self.narrowed(path, f"{facet} lowered to {now:g}")
            elif now > then:
                self.widened(path, f"{facet} raised to {now:g}")
        for facet in _LOWER:
            then, now = old.facets.get(facet, float("-inf")), new.facets.get(facet, float("-inf"))
            if now > then:
                self.narrowed(path, f"{facet} raised to {now:g}")
            elif now < then:
                self.widened(path, f"{facet} lowered to {now:g}")


def _occurs(value: int) -> str:
    return "unbounded" if value >= _UNBOUNDED else str(value)


def operations(text: bytes) -> dict[str, tuple[str | None, str | None]]:
    """WSDL portType operations: name → (input message, output message)."""
    root = _root(text)
    found: dict[str, tuple[str | None, str | None]] = {}
    for port in root.iter(f"{WSDL}portType"):
        for op in port.iter(f"{WSDL}operation"):
            inp, outp = op.find(f"{WSDL}input"), op.find(f"{WSDL}output")
            found[f"{port.get('name')}/{op.get('name')}"] = (
                None if inp is None else inp.get("message"),
                None if outp is None else outp.get("message"),
            )
    return found


def diff_wsdl(
    out: Changes,
    before: bytes,
    after: bytes,
    direction: Direction = "request",
    elements: dict[str, Direction] | None = None,
) -> None:
    old, new = operations(before), operations(after)
    for name, messages in old.items():
        if name not in new:
            out.breaking(name, "operation removed")
        elif new[name] != messages:
            out.breaking(name, f"operation messages changed from {messages} to {new[name]}")
    for name in new:
        if name not in old:
            out.additive(name, "operation added")
    diff_xsd(out, before, after, direction, elements)  # the schemas a WSDL may embed


def _path(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


def _local(qname: str | None) -> str:
    return (qname or "?").rsplit(":", 1)[-1]
