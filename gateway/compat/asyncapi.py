"""AsyncAPI 3 before / after: channels (exchanges, queues, routing keys), operations and
the headers and payloads of messages.

    channel removed, or its address (routing key / queue name) changed     breaking
    AMQP binding changed: exchange name or type, queue name               breaking
    operation removed, or its action or channel changed                   breaking
    message removed from a channel or from the components                 breaking
    headers and payloads: JSON Schema rules (``schema``) — ``request`` for
    what the gateway receives, ``response`` for what it sends             per rule
    channel, operation or message added                                   additive

A change to a channel names the channel's ``x-party`` (who binds to it or publishes to it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.compat.report import Changes, Direction
from gateway.compat.schema import SchemaDiff, resolve

GATEWAY_ROLES = "gateway roles"


def party_of(document: Mapping[str, Any], channel: str) -> str:
    spec = (document.get("channels") or {}).get(channel) or {}
    return str(spec.get("x-party") or GATEWAY_ROLES)


def _amqp(spec: Mapping[str, Any]) -> dict[str, Any]:
    amqp = (spec.get("bindings") or {}).get("amqp") or {}
    found: dict[str, Any] = {"is": amqp.get("is")}
    if "exchange" in amqp:
        found["exchange"] = {k: amqp["exchange"].get(k) for k in ("name", "type")}
    if "queue" in amqp:
        found["queue"] = amqp["queue"].get("name")
    return found


def diff_asyncapi(
    parties: dict[str, Changes], document: str, before: Mapping[str, Any], after: Mapping[str, Any]
) -> None:
    """Changes land in ``parties`` (one ``Changes`` per party, created as needed)."""

    def out(party: str) -> Changes:
        if party not in parties:
            parties[party] = Changes(party, document)
        return parties[party]

    old_ch: Mapping[str, Any] = before.get("channels") or {}
    new_ch: Mapping[str, Any] = after.get("channels") or {}
    for name, spec in old_ch.items():
        party = party_of(before, name)
        where = f"channels.{name}"
        if name not in new_ch:
            out(party).breaking(where, f"channel {spec.get('address')!r} removed")
            continue
        new = new_ch[name]
        if spec.get("address") != new.get("address"):
            out(party).breaking(
                where, f"address changed from {spec.get('address')!r} to {new.get('address')!r}"
            )
        if _amqp(spec) != _amqp(new):
            out(party).breaking(f"{where}.bindings.amqp", f"{_amqp(spec)} → {_amqp(new)}")
        for message in spec.get("messages") or {}:
            if message not in (new.get("messages") or {}):
                out(party).breaking(f"{where}.messages.{message}", "message removed")
    for name in new_ch:
        if name not in old_ch:
            out(party_of(after, name)).additive(f"channels.{name}", "channel added")

    received = _received_messages(after)
    old_ops: Mapping[str, Any] = before.get("operations") or {}
    new_ops: Mapping[str, Any] = after.get("operations") or {}
    for name, op in old_ops.items():
        party = party_of(before, _channel_name(op))
        where = f"operations.{name}"
        if name not in new_ops:
            out(party).breaking(where, "operation removed")
            continue
        if op.get("action") != new_ops[name].get("action"):
            out(party).breaking(where, f"action changed to {new_ops[name].get('action')!r}")
        if _channel_name(op) != _channel_name(new_ops[name]):
            out(party).breaking(where, f"now on channel {_channel_name(new_ops[name])!r}")
    for name, op in new_ops.items():
        if name not in old_ops:
            out(party_of(after, _channel_name(op))).additive(f"operations.{name}", "added")

    old_msgs: Mapping[str, Any] = (before.get("components") or {}).get("messages") or {}
    new_msgs: Mapping[str, Any] = (after.get("components") or {}).get("messages") or {}
    for name, message in old_msgs.items():
        party = _message_party(after if name in new_msgs else before, name)
        where = f"components.messages.{name}"
        if name not in new_msgs:
            out(party).breaking(where, "message removed")
            continue
        direction: Direction = "request" if name in received else "response"
        for part in ("headers", "payload"):
            SchemaDiff(out(party), before, after, direction).compare(
                message.get(part), new_msgs[name].get(part), f"{where}.{part}"
            )
    for name in new_msgs:
        if name not in old_msgs:
            out(_message_party(after, name)).additive(f"components.messages.{name}", "added")


def _channel_name(op: Mapping[str, Any]) -> str:
    ref = str((op.get("channel") or {}).get("$ref", ""))
    return ref.rsplit("/", 1)[-1]


def _received_messages(document: Mapping[str, Any]) -> set[str]:
    """Messages the gateway receives (operations with ``action: receive``)."""
    names: set[str] = set()
    for op in (document.get("operations") or {}).values():
        if op.get("action") != "receive":
            continue
        channel = resolve(document, str((op.get("channel") or {}).get("$ref", "#/none")))
        for ref in ((channel or {}).get("messages") or {}).values():
            target = str(ref.get("$ref", "")) if isinstance(ref, Mapping) else ""
            names.add(target.rsplit("/", 1)[-1])
    return names


def _message_party(document: Mapping[str, Any], message: str) -> str:
    """The parties of the channels that carry the message, joined."""
    parties = set()
    for name, spec in (document.get("channels") or {}).items():
        for ref in (spec.get("messages") or {}).values():
            if isinstance(ref, Mapping) and str(ref.get("$ref", "")).endswith(f"/{message}"):
                parties.add(party_of(document, name))
    return " / ".join(sorted(parties)) or GATEWAY_ROLES
