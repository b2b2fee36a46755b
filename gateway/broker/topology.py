"""The RabbitMQ topology, declared as data in this one module.

The gateway declares it at every (re)connect; ``deploy/rabbitmq/definitions.json`` is
exported from it (``gateway contracts export``) and a test checks the two agree.

Every work queue is a quorum queue with an explicit delivery limit (quorum queues have none
by default on 3.10) and at-least-once dead-lettering into ``gw.dlx``, which needs
``x-overflow=reject-publish``. Arguments fixed at declaration cannot change without
re-creating the queue, so the gateway refuses to start when a queue exists with other
arguments and says which.

Retries wait in delay queues (``gw.retry.<level>``, one per level of the retry ladder, each
behind a fanout exchange of the same name): quorum queues with a message TTL that
dead-letter back into ``gw.tasks`` under the task's own routing key.
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
RETRY = "gw.retry"
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

DEFAULT_RETRY_LADDER = (1.0, 5.0, 30.0, 120.0, 300.0)
"""Seconds a task waits in each broker delay queue (``RetryPolicy.ladder``'s default)."""


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


def retry_name(seconds: float) -> str:
    """The delay queue (and its fanout exchange) of one ladder level: ``gw.retry.30s``,
    ``gw.retry.250ms``."""
    ms = round(seconds * 1000)
    return f"{RETRY}.{ms // 1000}s" if ms % 1000 == 0 else f"{RETRY}.{ms}ms"


def retry_queue_arguments(seconds: float, max_length: int) -> dict[str, Any]:
    """A delay queue: nobody consumes it; each message expires after ``seconds`` and is
    dead-lettered (at least once) into ``gw.tasks`` under its own routing key. One TTL per
    queue, never a per-message expiration: RabbitMQ expires messages only at the head of a
    queue, so mixed expirations would hold short waits behind long ones."""
    return {
        "x-queue-type": "quorum",
        "x-message-ttl": round(seconds * 1000),
        "x-dead-letter-exchange": TASKS,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
        "x-max-length": max_length,
    }


def retry_topology(
    ladder: Iterable[float], max_length: int
) -> tuple[list[Exchange], list[Queue], list[Binding]]:
    """Per level a fanout exchange and its delay queue: publishing to the exchange keeps the
    task's routing key, which the queue's dead-lettering routes back by."""
    names = {retry_name(s): s for s in sorted(set(ladder))}
    return (
        [Exchange(n, "fanout") for n in names],
        [Queue(n, retry_queue_arguments(s, max_length)) for n, s in names.items()],
        [Binding(n, n, "") for n in names],
    )


def build_topology(
    systems: Iterable[str] = DEFAULT_SYSTEMS,
    *,
    webhook_portals: Iterable[str] = (),
    delivery_limit: int = 5,
    max_length: int = 1_000_000,
    retry_ladder: Iterable[float] = DEFAULT_RETRY_LADDER,
) -> Topology:
    """DESIGN's exchange table as data, for the given department systems, plus the delay
    queues of ``retry_ladder`` (the union of the systems' retry ladders)."""
    systems = sorted(set(systems))
    work = work_queue_arguments(delivery_limit, max_length)
    retry_exchanges, retry_queues, retry_bindings = retry_topology(retry_ladder, max_length)
    exchanges = (
        *(Exchange(n) for n in (INTAKE, ACCEPTED, TASKS, RESULTS, EVENTS, DLX)),
        *retry_exchanges,
    )
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
        *retry_queues,
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
        *retry_bindings,
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
