"""The RabbitMQ topology, declared as data in this one module.

The gateway declares it at every (re)connect; ``deploy/rabbitmq/definitions.json`` is
exported from it (``gateway contracts export``) and a test checks the two agree.

Every work queue is a quorum queue with an explicit delivery limit (quorum queues have none
by default on 3.10) and at-least-once dead-lettering into ``gw.dlx``, which needs
``x-overflow=reject-publish``. Arguments fixed at declaration cannot change without
re-creating the queue, so the gateway refuses to start when a queue exists with other
arguments and says which.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

INTAKE = "gw.intake"
ACCEPTED = "gw.accepted"
TASKS = "gw.tasks"
RESULTS = "gw.results"
EVENTS = "gw.events"
DLX = "gw.dlx"
DEAD_LETTERS = "gw.dead-letters"
WEBHOOKS = "gw.webhooks"

DEFAULT_SYSTEMS = ("hospital", "hukou", "provincial", "cdc")
"""DESIGN's department systems; each gets ``gw.tasks.<system>``."""

QUEUE_DEPARTMENTS = ("cdc",)
"""Systems that consume a queue of ours directly (``dept.<system>.inbox`` / ``.replies``)."""

HEADER_TASK_ID = "x-task-id"
HEADER_ATTEMPT = "x-attempt"
HEADER_TRACEPARENT = "traceparent"
HEADER_REASON = "x-reason"
HEADER_ERROR_KIND = "x-error-kind"
HEADER_ORIGINAL_EXCHANGE = "x-original-exchange"
HEADER_ORIGINAL_ROUTING_KEY = "x-original-routing-key"
HEADER_PORTAL = "x-portal-id"
HEADER_FIRST_FAILED_AT = "x-first-failed-at"


@dataclass(frozen=True, slots=True)
class Exchange:
    name: str
    type: str = "topic"


@dataclass(frozen=True, slots=True)
class Queue:
    name: str
    arguments: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Binding:
    exchange: str
    queue: str
    routing_key: str


@dataclass(frozen=True, slots=True)
class Topology:
    exchanges: tuple[Exchange, ...]
    queues: tuple[Queue, ...]
    bindings: tuple[Binding, ...]

    def queue(self, name: str) -> Queue:
        for q in self.queues:
            if q.name == name:
                return q
        raise KeyError(name)


def work_queue_arguments(delivery_limit: int, max_length: int) -> dict[str, Any]:
    """Arguments of every queue whose failures must reach the dead-letter store."""
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": delivery_limit,
        "x-dead-letter-exchange": DLX,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
        "x-max-length": max_length,
    }


def build_topology(
    systems: Iterable[str] = DEFAULT_SYSTEMS,
    *,
    webhook_portals: Iterable[str] = (),
    delivery_limit: int = 5,
    max_length: int = 1_000_000,
) -> Topology:
    """DESIGN's exchange table as data, for the given department systems."""
    systems = sorted(set(systems))
    work = work_queue_arguments(delivery_limit, max_length)
    exchanges = tuple(Exchange(n) for n in (INTAKE, ACCEPTED, TASKS, RESULTS, EVENTS, DLX))
    queues: list[Queue] = [
        Queue(INTAKE, work),
        Queue(ACCEPTED, work),
        Queue(RESULTS, work),
        # one webhook queue per portal with a webhook_url: a portal that is down holds
        # back only its own events
        *(Queue(f"{WEBHOOKS}.{p}", work) for p in sorted(set(webhook_portals))),
        *(Queue(f"{TASKS}.{s}", work) for s in systems),
        # The end of the line: no dead-lettering out of it, so nothing is ever dropped.
        Queue(
            DEAD_LETTERS,
            {"x-queue-type": "quorum", "x-max-length": max_length, "x-overflow": "reject-publish"},
        ),
    ]
    for s in systems:
        if s in QUEUE_DEPARTMENTS:
            queues += [Queue(f"dept.{s}.inbox", work), Queue(f"dept.{s}.replies", work)]
    bindings = [
        Binding(INTAKE, INTAKE, "#"),
        Binding(ACCEPTED, ACCEPTED, "#"),
        Binding(RESULTS, RESULTS, "#"),
        *(Binding(EVENTS, f"{WEBHOOKS}.{p}", f"{p}.#") for p in sorted(set(webhook_portals))),
        *(Binding(TASKS, f"{TASKS}.{s}", f"{s}.#") for s in systems),
        Binding(DLX, DEAD_LETTERS, "#"),
    ]
    return Topology(exchanges, tuple(queues), tuple(bindings))


def definitions(topology: Topology, vhost: str = "/") -> dict[str, Any]:
    """The topology in RabbitMQ's definitions format (``load_definitions``)."""
    return {
        "vhosts": [{"name": vhost}],
        "exchanges": [
            {
                "name": e.name,
                "vhost": vhost,
                "type": e.type,
                "durable": True,
                "auto_delete": False,
                "internal": False,
                "arguments": {},
            }
            for e in topology.exchanges
        ],
        "queues": [
            {
                "name": q.name,
                "vhost": vhost,
                "durable": True,
                "auto_delete": False,
                "arguments": dict(q.arguments),
            }
            for q in topology.queues
        ],
        "bindings": [
            {
                "source": b.exchange,
                "vhost": vhost,
                "destination": b.queue,
                "destination_type": "queue",
                "routing_key": b.routing_key,
                "arguments": {},
            }
            for b in topology.bindings
        ],
    }
