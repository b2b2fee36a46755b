"""contracts/asyncapi/asyncapi.yaml against what the code declares.

The document is a contract written by hand; each test here reads it with PyYAML and checks
it with ``jsonschema`` against what the code builds, never the other way round:

- its structure: AsyncAPI 3 required fields, every ``$ref`` resolves, every ``{parameter}``
  of an address is declared (no AsyncAPI 3 validator exists offline for Python, so the
  structural rules are checked here);
- exchanges, queues (with their fixed arguments) and bindings equal
  ``gateway.broker.topology.build_topology()``'s, whatever queues the code adds (delay queues,
  per-portal queues): a queue the document lacks, or one it has that the code does not
  declare, fails naming it;
- the header names of each message equal the headers the code puts on it, and every
  ``HEADER_*`` constant of the topology module is documented;
- event names, matters and systems are the code's;
- messages built by the code validate against the documented payloads, and the payloads
  list exactly the keys the code writes.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from connectors.base import Decision, DepartmentRequest, Receipt
from gateway.broker import topology
from gateway.broker.messages import Delivery, Message
from gateway.deadletters import park
from gateway.events import EVENT_NAMES, event_message
from gateway.events import routing_key as event_key
from gateway.intake.service import accepted_message
from gateway.matters import MATTERS
from gateway.orchestration.messages import ResultMessage, routing_key, task_message
from gateway.store import ApplicationRecord, ApplicationStatus

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "contracts" / "asyncapi" / "asyncapi.yaml"
SAMPLE_PORTALS = ("window", "online")
APP = "0190a0b0-0000-7000-8000-000000000001"
_PARAM = re.compile(r"\{([a-z_]+)\}")


@cache
def document() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))
    return data


def _resolve(ref: str) -> Any:
    node: Any = document()
    for token in ref.removeprefix("#/").split("/"):
        node = node[token.replace("~1", "/").replace("~0", "~")]
    return node


def _refs(node: Any, at: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield at, value
            else:
                yield from _refs(value, f"{at}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _refs(value, f"{at}/{i}")


# --- structure ------------------------------------------------------------------------------
def test_the_document_has_the_asyncapi_3_shape() -> None:
    doc = document()
    assert doc["asyncapi"].startswith("3."), "not an AsyncAPI 3 document"
    assert doc["info"]["title"] and doc["info"]["version"]
    assert doc["servers"]["broker"]["protocol"] == "amqp"
    problems = []
    for name, channel in doc["channels"].items():
        address = channel.get("address")
        if not isinstance(address, str):
            problems.append(f"channel {name}: no address")
            continue
        amqp = channel.get("bindings", {}).get("amqp", {})
        names = [amqp.get("exchange", {}).get("name", ""), amqp.get("queue", {}).get("name", "")]
        used = set(_PARAM.findall(" ".join([address, *names])))
        declared = set(channel.get("parameters") or {})
        if used != declared:
            problems.append(f"channel {name}: address parameters {used} but declared {declared}")
        amqp = channel.get("bindings", {}).get("amqp", {})
        if amqp.get("is") not in ("routingKey", "queue"):
            problems.append(f"channel {name}: bindings.amqp.is must be routingKey or queue")
        if not channel.get("messages"):
            problems.append(f"channel {name}: no messages")
    for name, op in doc["operations"].items():
        if op.get("action") not in ("send", "receive"):
            problems.append(f"operation {name}: action must be send or receive")
        if not str(op.get("channel", {}).get("$ref", "")).startswith("#/channels/"):
            problems.append(f"operation {name}: channel must be a $ref to #/channels/…")
    for at, ref in _refs(doc):
        if ref.startswith("#"):
            try:
                _resolve(ref)
            except (KeyError, TypeError):
                problems.append(f"{at}: $ref {ref} resolves to nothing")
        elif not (DOCUMENT.parent / ref).is_file():
            problems.append(f"{at}: $ref {ref} names no file")
    for name, message in doc["components"]["messages"].items():
        if "payload" not in message:
            problems.append(f"message {name}: no payload")
    assert problems == []


def test_every_channel_is_used_by_an_operation_and_every_message_by_a_channel() -> None:
    doc = document()
    used = {op["channel"]["$ref"].rsplit("/", 1)[-1] for op in doc["operations"].values()}
    idle = {n for n, ch in doc["channels"].items() if ch.get("x-consumed") is False}
    assert set(doc["channels"]) - used - idle == set()
    carried = {
        ref["$ref"].rsplit("/", 1)[-1]
        for channel in doc["channels"].values()
        for ref in channel["messages"].values()
    }
    assert set(doc["components"]["messages"]) - carried == set()


# --- topology ---------------------------------------------------------------------------------
def _enum(channel: Mapping[str, Any], name: str) -> list[str] | None:
    spec = channel["parameters"][name]
    if "$ref" in spec:
        spec = _resolve(spec["$ref"])
    values = spec.get("enum")
    return list(values) if values is not None else None


def _pattern(channel: Mapping[str, Any], text: str) -> re.Pattern[str]:
    """``gw.tasks.{system}`` → a regex naming each parameter (enum values, or one word)."""
    out, last = "", 0
    for m in _PARAM.finditer(text):
        values = _enum(channel, m[1])
        alt = "|".join(map(re.escape, values)) if values else r"[^.]+"
        out += re.escape(text[last : m.start()]) + f"(?P<{m[1]}>{alt})"
        last = m.end()
    return re.compile(out + re.escape(text[last:]))


def _channels(kind: str) -> dict[str, Mapping[str, Any]]:
    return {
        name: ch
        for name, ch in document()["channels"].items()
        if ch["bindings"]["amqp"]["is"] == kind
    }


def code_topology() -> topology.Topology:
    return topology.build_topology(topology.DEFAULT_SYSTEMS, webhook_portals=SAMPLE_PORTALS)


def test_exchanges_are_the_codes() -> None:
    documented = {
        key: (_pattern(ch, ch["bindings"]["amqp"]["exchange"]["name"]), ch)
        for key, ch in _channels("routingKey").items()
    }
    declared = code_topology().exchanges
    problems = []
    for e in declared:
        found = [k for k, (p, _) in documented.items() if p.fullmatch(e.name)]
        if len(found) != 1:
            problems.append(f"exchange {e.name} (declared by the code) matches channels {found}")
        elif documented[found[0]][1]["bindings"]["amqp"]["exchange"]["type"] != e.type:
            problems.append(f"exchange {e.name}: type {e.type} in the code")
    for key, (pattern, _) in documented.items():
        if not any(pattern.fullmatch(e.name) for e in declared):
            problems.append(f"channel {key}: its exchange is not declared by the code")
    assert problems == []


def _queue_channel(name: str) -> tuple[str, Mapping[str, Any], dict[str, str]] | None:
    found = []
    for key, ch in _channels("queue").items():
        m = _pattern(ch, ch["bindings"]["amqp"]["queue"]["name"]).fullmatch(name)
        if m:
            found.append((key, ch, m.groupdict()))
    assert len(found) <= 1, f"queue {name} matches channels {[f[0] for f in found]}"
    return found[0] if found else None


def test_every_queue_the_code_declares_is_documented_with_its_arguments() -> None:
    problems = []
    for queue in code_topology().queues:
        match = _queue_channel(queue.name)
        if match is None:
            problems.append(f"queue {queue.name} (declared by the code) is not in {DOCUMENT.name}")
            continue
        key, channel, _ = match
        documented = channel.get("x-arguments") or {}
        if set(documented) != set(queue.arguments):
            problems.append(
                f"queue {queue.name} (channel {key}): arguments {sorted(queue.arguments)} in "
                f"the code, {sorted(documented)} in the document"
            )
        for arg, value in documented.items():
            if value is not None and queue.arguments.get(arg) != value:
                problems.append(
                    f"queue {queue.name}: {arg} is {queue.arguments.get(arg)!r} in the code, "
                    f"{value!r} in the document"
                )
    assert problems == []


def test_every_documented_queue_is_declared_by_the_code() -> None:
    names = [q.name for q in code_topology().queues]
    problems = []
    for key, ch in _channels("queue").items():
        pattern = _pattern(ch, ch["bindings"]["amqp"]["queue"]["name"])
        if not any(pattern.fullmatch(n) for n in names):
            problems.append(f"channel {key} ({ch['address']}): no such queue in the code")
        assert ch["address"] == ch["bindings"]["amqp"]["queue"]["name"], key
    assert problems == []


def _fill(text: str, values: Mapping[str, str]) -> str:
    return _PARAM.sub(lambda m: values[m[1]], text)


def test_bindings_are_the_codes() -> None:
    declared = {(b.exchange, b.queue, b.routing_key) for b in code_topology().bindings}
    documented = set()
    for queue in code_topology().queues:
        match = _queue_channel(queue.name)
        if match is None:
            continue  # reported by the queue test
        _, channel, values = match
        for b in channel.get("x-bindings") or []:
            documented.add(
                (_fill(b["exchange"], values), queue.name, _fill(b["routing_key"], values))
            )
    problems = [
        f"binding {e} -> {q} with key {k!r} (declared by the code) is not in {DOCUMENT.name}"
        for e, q, k in sorted(declared - documented)
    ] + [
        f"binding {e} -> {q} with key {k!r} (in {DOCUMENT.name}) is not declared by the code"
        for e, q, k in sorted(documented - declared)
    ]
    assert problems == []


def test_routing_keys_the_code_builds_fit_the_documented_addresses() -> None:
    channels = document()["channels"]
    for matter in MATTERS:
        for system in topology.DEFAULT_SYSTEMS:
            key = routing_key(system, matter, "some_step")
            assert _pattern(channels["tasks"], channels["tasks"]["address"]).fullmatch(key), key
            assert _pattern(channels["results"], channels["results"]["address"]).fullmatch(key)
        for event in EVENT_NAMES:
            key = event_key("window", matter, event)
            assert _pattern(channels["events"], channels["events"]["address"]).fullmatch(key), key


def test_parameter_code_lists_are_the_codes() -> None:
    params = document()["components"]["parameters"]
    assert params["event"]["enum"] == list(EVENT_NAMES)
    assert params["matter"]["enum"] == list(MATTERS)
    assert sorted(params["system"]["enum"]) == sorted(topology.DEFAULT_SYSTEMS)
    assert sorted(params["queue_system"]["enum"]) == sorted(topology.QUEUE_DEPARTMENTS)


# --- messages the code builds -----------------------------------------------------------
def _request() -> DepartmentRequest:
    return DepartmentRequest(
        f"{APP}.hukou", APP, "newborn", "hukou", "hukou", "birth_registration", 1,
        {"subjects": {"child": {"name": "王子轩"}}, "provided": {"birth_certificate_no": "Q1"}},
    )  # fmt: skip


def _parked() -> Message:
    sent: list[Message] = []

    async def publish(exchange: str, key: str, message: Message) -> None:
        sent.append(message)

    task = task_message(_request(), "2026.1")
    delivery = Delivery(
        task.body, topology.TASKS, "hukou.newborn.hukou", task.message_id, APP, None,
        dict(task.headers), task.content_type, False, lambda how: None,
    )  # fmt: skip
    asyncio.run(park(publish, delivery, reason="refused", extra={topology.HEADER_PORTAL: "w"}))
    return sent[0]


def code_messages() -> dict[str, Message]:
    app = ApplicationRecord(
        APP, "window", "key-1", "http", "newborn", "1.0", ApplicationStatus.RECEIVED,
        json.dumps({"schema_version": "1.0", "matter": "newborn"}), 1.0, 1.0, None, 1,
    )  # fmt: skip
    # a department that decided at once: the receipt carries the decision (every key)
    decided = Decision(f"{APP}.hukou", "completed", "P-1", provides={"hukou_no": "H1"})
    receipt = ResultMessage.of_receipt(_request(), Receipt("P-1", 2.0, decision=decided))
    return {
        "accepted": accepted_message(app),
        "task": task_message(_request(), "2026.1"),
        "result": receipt.message(),
        "event": event_message(
            "task.dispatched",
            portal_id="window",
            matter="newborn",
            subject=(APP, "1"),
            application_id=APP,
            data={"step": "hukou"},
            occurred_at=3.0,
        ),
        "deadLetter": _parked(),
    }


def _schema(node: Any) -> Any:
    return _resolve(node["$ref"]) if isinstance(node, Mapping) and "$ref" in node else node


@pytest.mark.parametrize("name", ["accepted", "task", "result", "event", "deadLetter"])
def test_documented_headers_are_the_ones_the_code_sets(name: str) -> None:
    message = document()["components"]["messages"][name]
    headers = _schema(message["headers"])
    built = code_messages()[name].headers
    documented = set(headers["properties"])
    if name == "deadLetter":  # a parked copy: what every parked message carries, at least
        assert set(built) <= documented, sorted(set(built) - documented)
    else:
        assert set(built) == documented, (sorted(set(built) - documented), sorted(documented))
    assert set(headers.get("required", ())) <= set(built)


def test_every_header_constant_is_documented() -> None:
    constants = {value for name, value in vars(topology).items() if name.startswith("HEADER_")}
    documented = set()
    for message in document()["components"]["messages"].values():
        if "headers" in message:
            documented |= set(_schema(message["headers"])["properties"])
    assert sorted(constants - documented) == [], "header constants missing from the document"


@cache
def _registry() -> Registry[Any]:
    resources: list[tuple[str, Resource[Any]]] = [
        (DOCUMENT.as_uri(), DRAFT202012.create_resource(document()))
    ]
    for path in (ROOT / "contracts").rglob("*.schema.json"):
        resource = DRAFT202012.create_resource(json.loads(path.read_text(encoding="utf-8")))
        resources.append((path.as_uri(), resource))
    return Registry().with_resources(resources)


def _validator(pointer: str) -> Draft202012Validator:
    return Draft202012Validator(
        {"$ref": f"{DOCUMENT.as_uri()}#{pointer}"},
        registry=_registry(),
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


@pytest.mark.parametrize("name", ["accepted", "task", "result", "event"])
def test_messages_the_code_builds_meet_the_documented_payload(name: str) -> None:
    message = code_messages()[name]
    body = json.loads(message.body)
    pointer = f"/components/messages/{name}/payload"
    if name == "accepted":  # the stand-in envelope above is not a full one
        body["envelope"] = json.loads(
            (ROOT / "contracts/envelope/examples/valid/newborn-minimal-online.json").read_text()
        )
    errors = [
        f"{list(e.absolute_path)}: {e.message}" for e in _validator(pointer).iter_errors(body)
    ]
    assert errors == []
    payload = document()["components"]["messages"][name]["payload"]
    assert set(payload["properties"]) == set(body), "payload keys differ from the code's"
    headers = _validator(f"/components/messages/{name}/headers")
    assert [e.message for e in headers.iter_errors(dict(message.headers))] == []


def test_a_receipt_without_a_decision_meets_the_documented_payload() -> None:
    body = json.loads(ResultMessage.of_receipt(_request(), Receipt("P-1", 2.0)).message().body)
    errors = list(_validator("/components/messages/result/payload").iter_errors(body))
    assert [e.message for e in errors] == []
    assert "decision" not in body  # optional: a receipt alone is what runners always sent


def test_a_receipt_decision_outside_the_documented_object_fails_the_payload() -> None:
    decided = Decision(f"{APP}.hukou", "completed", "P-1")
    body = json.loads(
        ResultMessage.of_receipt(_request(), Receipt("P-1", 2.0, decision=decided)).message().body
    )
    body["decision"]["task_id"] = f"{APP}.hukou"  # the receipt says that already
    errors = list(_validator("/components/messages/result/payload").iter_errors(body))
    assert errors, "a decision object with a receipt's own field must not validate"


def test_a_result_decision_meets_the_documented_payload() -> None:
    from connectors.base import Gap

    decision = Decision(
        f"{APP}.hukou", "correction_requested", gaps=(Gap("subjects.child.name", "illegible"),)
    )
    body = json.loads(ResultMessage.of_decision("hukou", 2, decision).message().body)
    errors = list(_validator("/components/messages/result/payload").iter_errors(body))
    assert [e.message for e in errors] == []
