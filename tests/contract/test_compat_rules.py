"""The breaking-change guard's rules on synthetic before/after documents, one rule a test."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from gateway.compat.asyncapi import diff_asyncapi
from gateway.compat.check import classify
from gateway.compat.openapi import diff_openapi
from gateway.compat.report import Change, Changes, Direction, render
from gateway.compat.schema import diff_schemas
from gateway.compat.xsd import diff_wsdl, diff_xsd

SCHEMA: dict[str, Any] = {
    "$defs": {
        "Person": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "maxLength": 50},
                "sex": {"type": "string", "enum": ["1", "2"]},
                "id_number": {"type": "string", "pattern": "^[0-9X]{18}$"},
                "age": {"type": "integer", "minimum": 0, "maximum": 150},
            },
        }
    },
    "type": "object",
    "required": ["person"],
    "properties": {
        "person": {"$ref": "#/$defs/Person"},
        "children": {"type": "array", "items": {"$ref": "#/$defs/Person"}, "maxItems": 10},
        "note": {"type": ["string", "null"]},
    },
}


def schema_changes(
    edit: Callable[[dict[str, Any]], None], direction: Direction = "request"
) -> list[Change]:
    after = copy.deepcopy(SCHEMA)
    edit(after)
    out = Changes("portals", "contracts/envelope/envelope.schema.json")
    diff_schemas(out, SCHEMA, after, direction)
    return out.found


def person(d: dict[str, Any]) -> dict[str, Any]:
    node: dict[str, Any] = d["$defs"]["Person"]
    return node


BREAKING = [
    ("removed field", lambda d: person(d)["properties"].pop("sex"), "person.sex", "removed"),
    (
        "renamed field",
        lambda d: person(d)["properties"].update(gender=person(d)["properties"].pop("sex")),
        "person.sex",
        "removed (or renamed)",
    ),
    (
        "new required field",
        lambda d: (
            person(d)["properties"].update(phone={"type": "string"}),
            person(d)["required"].append("phone"),
        ),
        "person.phone",
        "new required field",
    ),
    (
        "made required",
        lambda d: person(d)["required"].append("sex"),
        "person.sex",
        "made required",
    ),
    ("narrowed type", lambda d: d["properties"]["note"].update(type="string"), "note", "narrowed"),
    (
        "enum value removed",
        lambda d: person(d)["properties"]["sex"].update(enum=["1"]),
        "person.sex",
        "['2'] removed",
    ),
    (
        "pattern tightened",
        lambda d: person(d)["properties"]["id_number"].update(pattern="^[0-9]{18}$"),
        "person.id_number",
        "pattern now",
    ),
    (
        "maxLength lowered",
        lambda d: person(d)["properties"]["name"].update(maxLength=30),
        "person.name",
        "maxLength lowered to 30 (was 50)",
    ),
    (
        "minimum raised",
        lambda d: person(d)["properties"]["age"].update(minimum=18),
        "person.age",
        "minimum raised",
    ),
    ("maxItems lowered", lambda d: d["properties"]["children"].update(maxItems=2), "children", ""),
    (
        "through items",
        lambda d: person(d)["properties"].pop("age"),
        "children[].age",
        "removed",
    ),
    (
        "closed",
        lambda d: d.update(additionalProperties=False),
        "/",
        "unknown fields now refused",
    ),
]


@pytest.mark.parametrize(("name", "edit", "where", "what"), BREAKING, ids=[b[0] for b in BREAKING])
def test_a_breaking_schema_change_is_named_with_its_field_and_party(
    name: str, edit: Callable[[dict[str, Any]], None], where: str, what: str
) -> None:
    found = [c for c in schema_changes(edit) if c.breaking]
    assert any(c.where == where and what in c.what for c in found), found
    assert all(c.party == "portals" for c in found)


ADDITIVE = [
    ("optional field", lambda d: person(d)["properties"].update(phone={"type": "string"})),
    ("enum value", lambda d: person(d)["properties"]["sex"]["enum"].append("9")),
    ("pattern dropped", lambda d: person(d)["properties"]["id_number"].pop("pattern")),
    ("maxLength raised", lambda d: person(d)["properties"]["name"].update(maxLength=80)),
    ("type widened", lambda d: person(d)["properties"]["age"].update(type=["integer", "null"])),
    ("no longer required", lambda d: d.update(required=[])),
]


@pytest.mark.parametrize(("name", "edit"), ADDITIVE, ids=[a[0] for a in ADDITIVE])
def test_an_additive_schema_change_passes(
    name: str, edit: Callable[[dict[str, Any]], None]
) -> None:
    found = schema_changes(edit)
    assert [c for c in found if c.breaking] == []
    if name != "no longer required":
        assert found, "the change should be reported as additive"


def test_for_readers_a_field_no_longer_guaranteed_breaks_and_a_new_required_one_does_not() -> None:
    dropped = schema_changes(lambda d: person(d)["required"].remove("name"), "response")
    assert [(c.where, c.breaking) for c in dropped] == [
        ("person.name", True),
        ("children[].name", True),
    ]
    added = schema_changes(
        lambda d: (
            person(d)["properties"].update(phone={"type": "string"}),
            person(d)["required"].append("phone"),
        ),
        "response",
    )
    assert added and not any(c.breaking for c in added)


@pytest.mark.parametrize(
    ("after", "breaking"),
    [({"enum": ["1.1", "1.0"]}, False), ({"const": "1.1"}, True), ({"enum": ["1.1"]}, True)],
)
def test_a_const_is_a_one_value_enum(after: dict[str, Any], breaking: bool) -> None:
    out = Changes("portals", "envelope.schema.json")
    before = {"properties": {"schema_version": {"type": "string", "const": "1.0"}}}
    diff_schemas(
        out, before, {"properties": {"schema_version": {"type": "string", **after}}}, "request"
    )
    assert out.found and any(c.breaking for c in out.found) is breaking
    assert {c.where for c in out.found} == {"schema_version"}


# --- OpenAPI ---------------------------------------------------------------------------------
OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "paths": {
        "/cases": {
            "post": {
                "parameters": [{"name": "X-Nonce", "in": "header", "required": True}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Req"}}
                    },
                },
                "responses": {"201": {"description": "ok"}, "422": {"description": "no"}},
            },
            "get": {"responses": {"200": {"description": "list"}}},
        }
    },
    "components": {
        "schemas": {
            "Req": {
                "type": "object",
                "required": ["item_code"],
                "properties": {"item_code": {"type": "string"}, "data": {"type": "object"}},
            }
        }
    },
}


def openapi_changes(edit: Callable[[dict[str, Any]], None]) -> list[Change]:
    after = copy.deepcopy(OPENAPI)
    edit(after)
    out = Changes("department provincial", "contracts/provincial/openapi.yaml")
    diff_openapi(out, OPENAPI, after)
    return out.found


def test_openapi_removed_operation_is_breaking() -> None:
    found = openapi_changes(lambda d: d["paths"]["/cases"].pop("get"))
    assert [(c.breaking, c.where, c.what) for c in found] == [
        (True, "GET /cases", "operation removed")
    ]


def test_openapi_added_operation_and_optional_parameter_are_additive() -> None:
    def edit(d: dict[str, Any]) -> None:
        d["paths"]["/cases/{id}"] = {"get": {"responses": {"200": {"description": "one"}}}}
        d["paths"]["/cases"]["post"]["parameters"].append({"name": "page", "in": "query"})

    found = openapi_changes(edit)
    assert found and not any(c.breaking for c in found)


def test_openapi_body_field_removed_and_required_parameter_added_are_breaking() -> None:
    def edit(d: dict[str, Any]) -> None:
        d["components"]["schemas"]["Req"]["properties"].pop("data")
        d["paths"]["/cases"]["post"]["parameters"].append(
            {"name": "X-Sign", "in": "header", "required": True}
        )
        d["paths"]["/cases"]["post"]["responses"].pop("422")

    found = {(c.where, c.what) for c in openapi_changes(edit) if c.breaking}
    assert found == {
        ("POST /cases body application/json.data", "field removed (or renamed)"),
        ("POST /cases header parameter X-Sign", "new required parameter"),
        ("POST /cases → 422", "documented answer removed"),
    }


# --- AsyncAPI --------------------------------------------------------------------------------
ASYNCAPI: dict[str, Any] = {
    "asyncapi": "3.0.0",
    "channels": {
        "events": {
            "address": "{portal_id}.{matter}.{event}",
            "x-party": "portals",
            "messages": {"event": {"$ref": "#/components/messages/event"}},
            "bindings": {"amqp": {"is": "routingKey", "exchange": {"name": "gw.events"}}},
        },
        "tasks": {
            "address": "{system}.{matter}.{task}",
            "x-party": "connectors",
            "messages": {"task": {"$ref": "#/components/messages/task"}},
            "bindings": {"amqp": {"is": "routingKey", "exchange": {"name": "gw.tasks"}}},
        },
    },
    "operations": {
        "sendEvent": {"action": "send", "channel": {"$ref": "#/channels/events"}},
        "receiveTask": {"action": "receive", "channel": {"$ref": "#/channels/tasks"}},
    },
    "components": {
        "messages": {
            "event": {
                "payload": {
                    "type": "object",
                    "required": ["event_id"],
                    "properties": {"event_id": {"type": "string"}, "data": {"type": "object"}},
                }
            },
            "task": {"payload": {"type": "object", "properties": {"task_id": {}}}},
        }
    },
}


def asyncapi_changes(edit: Callable[[dict[str, Any]], None]) -> list[Change]:
    after = copy.deepcopy(ASYNCAPI)
    edit(after)
    parties: dict[str, Changes] = {}
    diff_asyncapi(parties, "contracts/asyncapi/asyncapi.yaml", ASYNCAPI, after)
    return [c for changes in parties.values() for c in changes.found]


def test_a_changed_routing_key_breaks_the_channels_party() -> None:
    found = asyncapi_changes(
        lambda d: d["channels"]["events"].update(address="{portal_id}.{event}")
    )
    assert [(c.breaking, c.party, c.where) for c in found] == [(True, "portals", "channels.events")]
    assert "address changed" in found[0].what


def test_a_renamed_exchange_and_a_removed_operation_are_breaking() -> None:
    def edit(d: dict[str, Any]) -> None:
        d["channels"]["tasks"]["bindings"]["amqp"]["exchange"]["name"] = "gw.jobs"
        del d["operations"]["sendEvent"]

    found = {(c.party, c.where) for c in asyncapi_changes(edit) if c.breaking}
    assert found == {
        ("connectors", "channels.tasks.bindings.amqp"),
        ("portals", "operations.sendEvent"),
    }


def test_an_event_payload_field_removed_breaks_subscribers_and_one_added_does_not() -> None:
    removed = asyncapi_changes(
        lambda d: d["components"]["messages"]["event"]["payload"]["properties"].pop("data")
    )
    assert [(c.breaking, c.party, c.where) for c in removed] == [
        (True, "portals", "components.messages.event.payload.data")
    ]
    added = asyncapi_changes(
        lambda d: d["components"]["messages"]["event"]["payload"]["properties"].update(
            step={"type": "string"}
        )
    )
    assert added and not any(c.breaking for c in added)


def test_a_new_channel_is_additive() -> None:
    def edit(d: dict[str, Any]) -> None:
        d["channels"]["retry"] = {"address": "gw.retry.{delay}", "messages": {}}

    found = asyncapi_changes(edit)
    assert [(c.breaking, c.where) for c in found] == [(False, "channels.retry")]


# --- XSD and WSDL ---------------------------------------------------------------------------
XSD = b"""<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:t">
  <xs:simpleType name="SexCode"><xs:restriction base="xs:string">
    <xs:enumeration value="1"/><xs:enumeration value="2"/></xs:restriction></xs:simpleType>
  <xs:simpleType name="NameType"><xs:restriction base="xs:string">
    <xs:maxLength value="50"/></xs:restriction></xs:simpleType>
  <xs:element name="BirthRequest"><xs:complexType><xs:sequence>
    <xs:element name="Name" type="NameType"/>
    <xs:element name="Sex" type="SexCode"/>
    <xs:element name="Weight" type="xs:int" minOccurs="0"/>
  </xs:sequence></xs:complexType></xs:element>
</xs:schema>"""


def xsd_changes(old: bytes, new: bytes) -> list[Change]:
    out = Changes("department hospital", "contracts/hospital/request.xsd")
    diff_xsd(out, XSD, XSD.replace(old, new))
    return out.found


@pytest.mark.parametrize(
    ("old", "new", "where", "what"),
    [
        (b'<xs:element name="Sex" type="SexCode"/>', b"", "BirthRequest/Sex", "removed"),
        (b'<xs:enumeration value="2"/>', b"", "SexCode", "['2'] removed"),
        (b'value="50"', b'value="20"', "NameType", "maxLength lowered to 20"),
        (b'minOccurs="0"', b"", "BirthRequest/Weight", "now required"),
        (b'type="xs:int"', b'type="xs:string"', "BirthRequest/Weight", "type changed"),
        (
            b'<xs:element name="Weight"',
            b'<xs:element name="Length" type="xs:int"/><xs:element name="Weight"',
            "BirthRequest/Length",
            "new required element",
        ),
    ],
)
def test_a_breaking_xsd_change_names_the_element(
    old: bytes, new: bytes, where: str, what: str
) -> None:
    found = [c for c in xsd_changes(old, new) if c.breaking]
    assert any(c.where == where and what in c.what for c in found), found


def test_an_optional_element_and_an_enumeration_value_added_are_additive() -> None:
    found = xsd_changes(
        b'<xs:enumeration value="2"/>',
        b'<xs:enumeration value="2"/><xs:enumeration value="9"/>',
    ) + xsd_changes(
        b'<xs:element name="Weight"',
        b'<xs:element name="Note" type="xs:string" minOccurs="0"/><xs:element name="Weight"',
    )
    assert len(found) == 2 and not any(c.breaking for c in found)


WSDL = b"""<wsdl:definitions xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/" name="t">
  <wsdl:portType name="HukouPortType">
    <wsdl:operation name="SubmitBirthRegistration">
      <wsdl:input message="tns:BirthIn"/><wsdl:output message="tns:Receipt"/></wsdl:operation>
    <wsdl:operation name="QueryCase">
      <wsdl:input message="tns:QueryIn"/><wsdl:output message="tns:Status"/></wsdl:operation>
  </wsdl:portType>
</wsdl:definitions>"""


def test_a_removed_wsdl_operation_is_breaking_and_an_added_one_is_not() -> None:
    out = Changes("department hukou", "contracts/hukou/hukou.wsdl")
    removed = WSDL.replace(b'name="QueryCase"', b'name="QueryCaseV2"')
    diff_wsdl(out, WSDL, removed)
    assert {(c.breaking, c.where) for c in out.found} == {
        (True, "HukouPortType/QueryCase"),
        (False, "HukouPortType/QueryCaseV2"),
    }


# --- which file is whose, and the report ----------------------------------------------------
@pytest.mark.parametrize(
    ("path", "kind", "party", "direction"),
    [
        ("contracts/envelope/envelope.schema.json", "jsonschema", "portals", "request"),
        ("contracts/intake/openapi.yaml", "openapi", "portals", "request"),
        ("contracts/hukou/hukou.wsdl", "wsdl", "department hukou", "request"),
        ("contracts/hospital/result.xsd", "xsd", "department hospital", "response"),
        ("contracts/hospital/ack.xsd", "xsd", "department hospital", "response"),
        ("contracts/hospital/request.xsd", "xsd", "department hospital", "request"),
        ("contracts/hukou/hukou.xsd", "xsd", "department hukou", "request"),
        ("contracts/cdc/reply.schema.json", "jsonschema", "department cdc", "response"),
        ("contracts/cdc/request.schema.json", "jsonschema", "department cdc", "request"),
        (
            "contracts/provincial/items/cremation.schema.json",
            "jsonschema",
            "department provincial",
            "request",
        ),
        (
            "contracts/provincial/schemas/case-event.schema.json",
            "jsonschema",
            "department provincial",
            "response",
        ),
        (
            "contracts/provincial/schemas/case-request.schema.json",
            "jsonschema",
            "department provincial",
            "request",
        ),
        (
            "contracts/provincial/schemas/common.schema.json",
            "jsonschema",
            "department provincial",
            "both",
        ),
        ("contracts/newdept/thing.schema.json", "jsonschema", "department newdept", "both"),
    ],
)
def test_files_are_classified_with_their_party(
    path: str, kind: str, party: str, direction: str
) -> None:
    contract = classify(path)
    assert contract is not None
    assert (contract.kind, contract.party, contract.direction) == (kind, party, direction)


@pytest.mark.parametrize(
    "path",
    [
        "contracts/envelope/examples/valid/housing-window.json",
        "contracts/hukou/README.md",
        "contracts/hukou/expectation.toml",
        "contracts/cdc/codes.json",
    ],
)
def test_examples_and_notes_are_not_contracts(path: str) -> None:
    assert classify(path) is None


def test_the_report_puts_breaking_changes_first_and_says_what_to_do() -> None:
    changes = [
        Change(False, "portals", "a.json", "x", "new optional field"),
        Change(True, "department hukou", "hukou.xsd", "BirthRequest/Sex", "element removed"),
    ]
    text = render(changes, "abc123")
    assert text.splitlines()[0].startswith("BREAKING  department hukou: hukou.xsd BirthRequest/Sex")
    assert "1 breaking change(s) against abc123" in text.splitlines()[-1]
    assert render(changes[:1], "abc123").endswith("no breaking change against abc123 (1 additive)")


def test_an_optional_object_is_compared_in_place() -> None:
    before = {
        "$defs": {"G": {"properties": {"name": {"type": "string", "maxLength": 50}}}},
        "properties": {"guardian": {"anyOf": [{"$ref": "#/$defs/G"}, {"type": "null"}]}},
    }
    after = copy.deepcopy(before)
    after["$defs"]["G"]["properties"]["name"]["maxLength"] = 30
    out = Changes("portals", "envelope.schema.json")
    diff_schemas(out, before, after, "request")
    assert [(c.breaking, c.where) for c in out.found] == [(True, "guardian.name")]
