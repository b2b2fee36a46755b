"""The topology as data: DESIGN's table, RabbitMQ 3.10 rules, and the exported definitions."""

from __future__ import annotations

import json
from pathlib import Path

from gateway.broker import topology as t
from gateway.exports import DEFINITIONS, broker_definitions, rabbit_password_hash, render
from gateway.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_design_exchanges_queues_and_bindings() -> None:
    topo = t.build_topology()
    assert {(e.name, e.type) for e in topo.exchanges if e.type != "fanout"} == {
        (n, "topic")
        for n in ("gw.intake", "gw.accepted", "gw.tasks", "gw.results", "gw.events", "gw.dlx")
    }
    queues = {q.name for q in topo.queues}
    assert queues >= {
        "gw.intake",
        "gw.accepted",
        "gw.results",
        "gw.dead-letters",
        "gw.tasks.hospital",
        "gw.tasks.hukou",
        "gw.tasks.provincial",
        "gw.tasks.cdc",
        "dept.cdc.inbox",
        "dept.cdc.replies",
    }
    bindings = {(b.exchange, b.queue, b.routing_key) for b in topo.bindings}
    assert ("gw.tasks", "gw.tasks.hukou", "hukou.#") in bindings
    assert ("gw.dlx", "gw.dead-letters", "#") in bindings
    # portals bind gw.events themselves; the gateway binds only its webhook queues, one per
    # portal with a webhook_url, on that portal's keys
    assert not [b for b in topo.bindings if b.exchange == "gw.events"]
    hooks = t.build_topology(webhook_portals=["window", "online"])
    assert sorted(
        (b.queue, b.routing_key) for b in hooks.bindings if b.exchange == "gw.events"
    ) == [("gw.webhooks.online", "online.#"), ("gw.webhooks.window", "window.#")]


def test_every_work_queue_dead_letters_at_least_once_after_an_explicit_limit() -> None:
    for q in t.build_topology(delivery_limit=7).queues:
        args = q.arguments
        assert args["x-queue-type"] == "quorum", q.name
        assert args["x-max-length"] > 0, q.name
        if q.name == "gw.dead-letters":
            assert "x-dead-letter-exchange" not in args  # the end of the line
            continue
        if q.name.startswith("gw.retry."):  # delay queues: tests/unit/test_retries.py
            continue
        assert args["x-delivery-limit"] == 7, q.name
        assert args["x-dead-letter-exchange"] == "gw.dlx", q.name
        assert args["x-dead-letter-strategy"] == "at-least-once", q.name
        assert args["x-overflow"] == "reject-publish", q.name  # required by at-least-once


def test_checked_in_definitions_match_the_code() -> None:
    checked_in = (ROOT / DEFINITIONS).read_text(encoding="utf-8")
    assert checked_in == render(broker_definitions(Settings())), (
        "deploy/rabbitmq/definitions.json drifted from gateway/broker/topology.py; "
        "run `make export`"
    )
    defs = json.loads(checked_in)
    assert {q["name"] for q in defs["queues"]} == {q.name for q in t.build_topology().queues}


def test_password_hash_is_rabbitmq_sha256_format() -> None:
    # RabbitMQ's documented example: salt 908D C60A, password "test12"
    assert rabbit_password_hash("test12", bytes.fromhex("908DC60A")) == (
        "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR"
    )
