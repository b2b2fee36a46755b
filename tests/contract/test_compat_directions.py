"""The guard weighs a change by who writes the document, and sees conditional constraints.

On the real contract files, read from disk and changed in memory, compared through
``compare`` exactly as ``gateway contracts check`` compares two revisions:

- what the gateway writes (provincial case-request, every item, hospital request.xsd, hukou's
  requests): a narrowing (new required field) breaks us;
- what a department writes and the gateway reads (hospital result.xsd, cdc reply, provincial
  answers and events, hukou's Receipt): a widening (new enum value, lowered minOccurs, opened
  additionalProperties, widened type) breaks us, a narrowing does not;
- the envelope's if/then/else, not, dependentRequired and uniqueItems are compared too.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.compat.check import DIRECTIONS, classify, compare
from gateway.compat.report import Change, Changes, render
from gateway.compat.schema import diff_schemas
from gateway.compat.xsd import diff_xsd

ROOT = Path(__file__).resolve().parents[2]


class Files:
    """A revision held in memory: {repository path: bytes}."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files

    def paths(self) -> list[str]:
        return sorted(self.files)

    def read(self, path: str) -> bytes:
        return self.files[path]


def changed(path: str, edit: Callable[[Any], Any]) -> list[Change]:
    """``path`` as released against ``path`` after ``edit`` (JSON edited as data, XML as text)."""
    old = (ROOT / path).read_bytes()
    if path.endswith(".json"):
        data = json.loads(old)
        edit(data)
        new = json.dumps(data).encode()
    else:
        new = edit(old)
        assert new != old, "the edit changed nothing"
    return compare(Files({path: old}), Files({path: new}))


def breaking(found: list[Change]) -> list[str]:
    return [f"{c.party} {c.where}: {c.what}" for c in found if c.breaking]


# --- what the gateway writes ---------------------------------------------------------------
CASE_REQUEST = "contracts/provincial/schemas/case-request.schema.json"


def test_a_new_required_field_in_the_case_request_breaks_us() -> None:
    def edit(s: dict[str, Any]) -> None:
        s["properties"]["priority"] = {"type": "string", "maxLength": 10}
        s["required"].append("priority")

    assert breaking(changed(CASE_REQUEST, edit)) == [
        "department provincial priority: new required field"
    ]


def test_a_new_enum_value_in_the_case_request_is_additive() -> None:
    path = "contracts/cdc/request.schema.json"
    found = changed(path, lambda s: s["properties"].update(schema_version={"enum": ["1.0", "1.1"]}))
    assert found and breaking(found) == []


# --- what a department writes and the gateway reads ----------------------------------------
CDC_REPLY = "contracts/cdc/reply.schema.json"

WIDENINGS = [
    (
        "new enum value",
        lambda s: s["properties"]["status"]["enum"].append("lost"),
        "status: enum value(s) ['lost'] added",
    ),
    (
        "type widened",
        lambda s: s["properties"]["request_id"].update(type=["string", "integer"]),
        "request_id: type widened with ['integer']",
    ),
    (
        "additionalProperties opened",
        lambda s: s.update(additionalProperties=True),
        "/: unknown fields now allowed",
    ),
    (
        "field no longer required",
        lambda s: s["required"].remove("case_no"),
        "case_no: field no longer always present",
    ),
    (
        "pattern dropped",
        lambda s: s["properties"]["request_id"].pop("pattern"),
        "request_id: pattern",
    ),
]


@pytest.mark.parametrize(("name", "edit", "line"), WIDENINGS, ids=[w[0] for w in WIDENINGS])
def test_a_widened_reply_breaks_the_gateway_reading_it(
    name: str, edit: Callable[[Any], None], line: str
) -> None:
    if name == "additionalProperties opened":
        reply = json.loads((ROOT / CDC_REPLY).read_bytes())
        assert reply.get("additionalProperties") is False
    found = breaking(changed(CDC_REPLY, edit))
    assert any(f.startswith(f"department cdc {line}") for f in found), found
    assert all("readers may get what they do not expect" in f for f in found)


def test_a_narrowed_reply_is_additive_for_the_gateway_reading_it() -> None:
    found = changed(CDC_REPLY, lambda s: s["properties"]["status"]["enum"].remove("suspended"))
    assert found and breaking(found) == []


RESULT_XSD = "contracts/hospital/result.xsd"


@pytest.mark.parametrize(
    ("old", "new", "line"),
    [
        (
            b'<xs:enumeration value="SUSPENDED"/>',
            b'<xs:enumeration value="SUSPENDED"/><xs:enumeration value="WITHDRAWN"/>',
            "CertificateResult/Status: enumeration value(s) ['WITHDRAWN'] added",
        ),
        (
            b'<xs:element name="DecidedAt" type="ZonedDateTime"/>',
            b'<xs:element name="DecidedAt" type="ZonedDateTime" minOccurs="0"/>',
            "CertificateResult/DecidedAt: now optional (minOccurs 1 → 0)",
        ),
        (
            b'<xs:element name="Gap" maxOccurs="50">',
            b'<xs:element name="Gap" maxOccurs="unbounded">',
            "CertificateResult/Gaps/Gap: maxOccurs raised to unbounded",
        ),
    ],
)
def test_a_widened_result_file_breaks_the_gateway_reading_it(
    old: bytes, new: bytes, line: str
) -> None:
    found = breaking(changed(RESULT_XSD, lambda text: text.replace(old, new, 1)))
    assert any(f.startswith(f"department hospital {line}") for f in found), found


def test_a_new_required_element_in_a_result_file_is_additive() -> None:
    old = b'<xs:element name="DecidedAt" type="ZonedDateTime"/>'
    new = old + b'<xs:element name="Ward" type="xs:string"/>'
    found = changed(RESULT_XSD, lambda text: text.replace(old, new, 1))
    assert [(c.breaking, c.where) for c in found] == [(False, "CertificateResult/Ward")]


HUKOU_XSD = "contracts/hukou/hukou.xsd"


def test_hukou_requests_and_answers_each_break_their_own_way() -> None:
    # CaseStatusCode is used only by the CaseStatus answer: a new code breaks us reading it
    pending = b'<xs:enumeration value="PENDING"/>'
    status = breaking(
        changed(HUKOU_XSD, lambda t: t.replace(pending, pending + b'<xs:enumeration value="X"/>'))
    )
    assert any("CaseStatusCode: enumeration value(s) ['X'] added" in f for f in status), status
    # SexCode is used only by requests: a new code is additive
    unknown = b'<xs:enumeration value="0"/>'
    sex = changed(HUKOU_XSD, lambda t: t.replace(unknown, unknown + b'<xs:enumeration value="8"/>'))
    assert [(c.breaking, c.where) for c in sex] == [(False, "SexCode")], sex


def test_every_department_contract_file_names_who_writes_it() -> None:
    unnamed = []
    for path in sorted(ROOT.glob("contracts/*/**/*")):
        rel = path.relative_to(ROOT).as_posix()
        contract = classify(rel)
        if contract is None or contract.kind == "openapi" or not contract.party.startswith("dep"):
            continue
        if rel not in DIRECTIONS and not any(
            p.endswith("/") and rel.startswith(p) for p in DIRECTIONS
        ):
            unnamed.append(rel)
    assert unnamed == [], "add each to gateway.compat.check.DIRECTIONS"


# --- conditional constraints: the envelope's ID-number patterns, the window channel -------
ENVELOPE = "contracts/envelope/envelope.schema.json"


def _conditionals(schema: dict[str, Any]) -> list[dict[str, Any]]:
    return [d for d in schema["$defs"].values() if "if" in d]


def test_narrowing_every_conditional_id_pattern_breaks_portals() -> None:
    count = 0

    def edit(s: dict[str, Any]) -> None:
        nonlocal count
        for node in _conditionals(s):
            for key in ("then", "else"):
                id_number = (node.get(key) or {}).get("properties", {}).get("id_number")
                if id_number and "pattern" in id_number:
                    id_number["pattern"] = id_number["pattern"].replace("Xx", "X")
                    id_number["pattern"] = id_number["pattern"].replace("{1,30}", "{1,20}")
                    count += 1

    found = breaking(changed(ENVELOPE, edit))
    assert count >= 12
    patterns = [f for f in found if "id_number: pattern now" in f]
    assert len(patterns) >= count, found
    assert all(f.startswith("portals ") for f in found)
    assert any("(in 'then' constraint)" in f for f in patterns)
    assert any("(in 'else' constraint)" in f for f in patterns)


def test_a_window_channel_needing_one_more_field_breaks_portals() -> None:
    def edit(s: dict[str, Any]) -> None:
        then = s["$defs"]["Channel"]["then"]
        then["properties"]["desk_id"] = {"type": "string"}
        then["required"].append("desk_id")

    found = breaking(changed(ENVELOPE, edit))
    line = "channel.desk_id: field made required (in 'then' constraint)"
    assert any(f.startswith("portals ") and f.endswith(line) for f in found), found


def test_a_changed_condition_or_not_breaks() -> None:
    found = breaking(
        changed(
            ENVELOPE,
            lambda s: s["$defs"]["Channel"]["if"]["properties"]["kind"].update(const="desk"),
        )
    )
    assert any(f.startswith("portals ") and ".channel: 'if' changed" in f for f in found), found


SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "a": {"type": "string"},
        "b": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "code": {"type": "string", "not": {"const": "000"}},
    },
}


def schema_changes(edit: Callable[[dict[str, Any]], None], direction: Any) -> list[Change]:
    after = copy.deepcopy(SCHEMA)
    edit(after)
    out = Changes("portals", "x.schema.json")
    diff_schemas(out, SCHEMA, after, direction)
    return out.found


@pytest.mark.parametrize(
    ("name", "edit", "where"),
    [
        ("dependentRequired", lambda s: s.update(dependentRequired={"a": ["b"]}), "a"),
        ("uniqueItems", lambda s: s["properties"]["tags"].update(uniqueItems=True), "tags"),
        ("not", lambda s: s["properties"]["code"]["not"].update(const="999"), "code"),
        ("unknown keyword", lambda s: s.update(propertyNames={"maxLength": 3}), "/"),
        ("allOf entry added", lambda s: s.update(allOf=[{"required": ["a"]}]), "/"),
    ],
)
def test_other_constraints_break_a_writer(
    name: str, edit: Callable[[dict[str, Any]], None], where: str
) -> None:
    found = [c for c in schema_changes(edit, "request") if c.breaking]
    assert [c.where for c in found] == [where], found


def test_shared_types_break_both_ways() -> None:
    wider = schema_changes(lambda s: s["properties"]["a"].update(maxLength=10), "both")
    assert [c.breaking for c in wider] == [True]
    narrower = schema_changes(lambda s: s["properties"]["tags"].pop("items"), "both")
    assert [c.breaking for c in narrower] == [True]


def test_a_result_file_in_an_unlisted_xsd_counts_both_ways() -> None:
    xsd = b"""<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">
      <xs:element name="R"><xs:complexType><xs:sequence>
        <xs:element name="S" type="xs:string" minOccurs="1"/>
      </xs:sequence></xs:complexType></xs:element></xs:schema>"""
    out = Changes("department x", "contracts/x/r.xsd")
    diff_xsd(out, xsd, xsd.replace(b'minOccurs="1"', b'minOccurs="0"'), "both")
    assert [(c.breaking, c.where) for c in out.found] == [(True, "R/S")]


def test_one_change_to_a_shared_definition_is_reported_once_with_its_places() -> None:
    """The intake's Problem schema is referred to by every error answer: one new problem type
    is one line, not one per answer."""
    path = "contracts/intake/openapi.yaml"
    old = (ROOT / path).read_bytes()
    anchor = b"                - https://one-window.example/problems/unauthenticated\n"
    new = old.replace(anchor, anchor + anchor.replace(b"unauthenticated", b"gone-fishing"))
    found = compare(Files({path: old}), Files({path: new}))
    text = render(found, "REF")
    lines = [ln for ln in text.splitlines() if "gone-fishing" in ln]
    assert len(found) > 10 and len(lines) == 1, text
    assert f"(and {len(found) - 1} more places)" in lines[0]
    # the enum is x-extensible (clients handle an unknown type by its status): not breaking
    assert lines[0].startswith("additive  portals: contracts/intake/openapi.yaml ")


def test_a_value_added_to_an_answer_enum_breaks_readers_unless_extensible() -> None:
    before = {"properties": {"kind": {"enum": ["a"]}}}
    for extensible, breaks in ((False, True), (True, False)):
        after = {"properties": {"kind": {"enum": ["a", "b"], "x-extensible": extensible}}}
        out = Changes("portals", "answer.schema.json")
        diff_schemas(out, before, after, "response")
        assert [(c.where, c.breaking) for c in out.found] == [("kind", breaks)]


def test_an_optional_object_made_mandatory_is_one_change_not_a_new_object() -> None:
    defs = {"P": {"type": "object", "properties": {"a": {"type": "string"}}}}
    optional = {
        "$defs": defs,
        "properties": {"f": {"anyOf": [{"$ref": "#/$defs/P"}, {"type": "null"}]}},
    }
    mandatory = {"$defs": defs, "properties": {"f": {"$ref": "#/$defs/P"}}}
    out = Changes("portals", "x.schema.json")
    diff_schemas(out, optional, mandatory, "request")
    assert [(c.where, c.breaking, c.what) for c in out.found] == [
        ("f", True, "null no longer allowed")
    ]
    out = Changes("portals", "x.schema.json")
    diff_schemas(out, mandatory, optional, "request")
    assert [(c.where, c.breaking, c.what) for c in out.found] == [("f", False, "may now be null")]
