"""Departments that consume a queue of ours directly (DESIGN: ``dept.<system>.inbox`` /
``dept.<system>.replies`` on the default exchange).

    QueueConnector     send: map the task, publish it to the inbox queue with a publisher
                       confirm, return a Receipt without case number (the department's
                       acceptance comes as a reply). ``polls = False``.
    QueueResultSource  consume the reply queue: validate each reply against the system's
                       reply schema, map it to a Decision, await ``report``, then ack.

Every request carries the task id as ``correlation_id``, as header ``x-task-id`` and in its
body (the department's idempotency key); ``message_id`` is unique per publish. Replies are
correlated by the same task id.

What happens to a reply that cannot be reported:

    not JSON, breaks the reply schema,     rejected without requeue: the queue dead-letters
    or its mapping raises Permanent        it into gw.dlx (x-death reason "rejected"), logged
    ``report`` raises                      requeued by the broker client; the queue's delivery
                                           limit dead-letters one that keeps failing

The broker client raises ``BrokerUnavailable`` (Retryable) when a publish is not confirmed;
a mapping error is ``Permanent``; nothing else crosses this boundary.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator  # type: ignore[import-untyped]  # ships no stubs

from connectors.base import Decision, DepartmentRequest, Receipt, Report
from connectors.limits import Limiter
from connectors.schema_compile import SchemaCheck, schema_check
from gateway.broker.client import BrokerClient
from gateway.broker.messages import Delivery, Message, header_str, new_traceparent
from gateway.broker.topology import HEADER_ATTEMPT, HEADER_TASK_ID, HEADER_TRACEPARENT
from gateway.errors import ConfigurationError, Permanent
from gateway.logs import get_logger
from gateway.settings import SystemConfig
from mappings import cdc

log = get_logger(__name__)
MAX_REPLY_BYTES = 1 << 20  # a reply is a few KiB; a bigger one is refused unread


@dataclass(frozen=True, slots=True)
class QueueContract:
    """How one queue department's messages are made and read."""

    to_request: Callable[[DepartmentRequest], dict[str, Any]]
    to_decision: Callable[[Mapping[str, Any]], Decision]
    reply_schema: str  # resource path under the ``contracts`` package


CONTRACTS: Mapping[str, QueueContract] = {
    "cdc": QueueContract(cdc.request_for, cdc.decision_from_reply, "cdc/reply.schema.json"),
}
"""The queue departments this module knows; add a line per new one."""


def _contract(system: str) -> QueueContract:
    try:
        return CONTRACTS[system]
    except KeyError:
        raise ConfigurationError(
            f"[systems.{system}] has kind 'amqp' but no queue contract is registered for it "
            f"in connectors/amqp.py (known: {', '.join(sorted(CONTRACTS))})",
            system=system,
            code="unknown_queue_system",
        ) from None


def inbox_queue(system: str, config: SystemConfig) -> str:
    return config.inbox_queue or f"dept.{system}.inbox"


def reply_queue(system: str, config: SystemConfig) -> str:
    return config.reply_queue or f"dept.{system}.replies"


@cache
def reply_validator(resource: str) -> SchemaCheck:
    """The Draft 2020-12 check of a reply schema shipped under ``contracts/``, made once: its
    ``$ref``s inlined and compiled to Python (``schema_compile``), else jsonschema's validator.
    Formats are not checked (they were not before either)."""
    node = resources.files("contracts")
    for part in resource.split("/"):
        node = node / part
    schema = json.loads(node.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return schema_check(schema)


class QueueConnector:
    """Hands tasks to a department that consumes ``inbox_queue``."""

    polls = False

    def __init__(self, system: str, config: SystemConfig, broker: BrokerClient) -> None:
        self.system = system
        self._contract = _contract(system)
        self._queue = inbox_queue(system, config)
        self._timeout = config.timeout_seconds
        self._broker = broker
        self._limiter = Limiter(config.concurrency, config.rate_per_second)

    async def send(self, request: DepartmentRequest) -> Receipt:
        """Publish the request and wait for the broker's confirm.

        Raises ``Permanent`` when the task cannot be mapped, ``BrokerUnavailable`` (Retryable)
        when the broker does not confirm in ``timeout_seconds``.
        """
        body = self._contract.to_request(request)
        message = Message(
            body=json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8"),
            correlation_id=request.task_id,
            headers={
                HEADER_TASK_ID: request.task_id,
                HEADER_ATTEMPT: request.attempt,
                HEADER_TRACEPARENT: new_traceparent(),
            },
            type=f"{request.operation}.request",
        )
        async with self._limiter.slot():
            await self._broker.publish("", self._queue, message, timeout=self._timeout)
        log.debug(  # task_handed_over says it at INFO (same application, task, system)
            "dept_request_published",
            system=self.system,
            task_id=request.task_id,
            queue=self._queue,
            message_id=message.message_id,
        )
        return Receipt()

    async def check(self, request: DepartmentRequest, case_number: str | None) -> Decision | None:
        return None  # decisions arrive on the reply queue (QueueResultSource)

    async def close(self) -> None:
        return None  # the broker client belongs to the gateway


class QueueResultSource:
    """Reports the decisions a queue department publishes on ``reply_queue``.

    Within one process the replies of one task are reported one at a time, in the order
    they were delivered (``received`` before ``completed``); across competing processes the
    orchestrator must still ignore a late ``in_progress`` after a final outcome.
    """

    def __init__(
        self, system: str, config: SystemConfig, broker: BrokerClient, prefetch: int = 32
    ) -> None:
        self.system = system
        self._contract = _contract(system)
        self._validator = reply_validator(self._contract.reply_schema)
        self._queue = reply_queue(system, config)
        self._broker = broker
        self._prefetch = prefetch
        self._report: Report | None = None
        self._consuming = False
        self._locks: dict[str, asyncio.Lock] = {}
        self._waiting: Counter[str] = Counter()

    async def run(self, report: Report) -> None:
        """Consume until cancelled. Replies delivered after cancellation are left unsettled
        until the broker connection closes (the broker then redelivers them elsewhere)."""
        self._report = report
        if not self._consuming:
            self._consuming = True
            await self._broker.consume(self._queue, self._on_delivery, prefetch=self._prefetch)
        try:
            await asyncio.get_running_loop().create_future()  # until cancelled
        finally:
            self._report = None

    async def _on_delivery(self, delivery: Delivery) -> None:
        report = self._report
        if report is None:
            # Stopped: settling would only bring the reply straight back (and count against
            # the delivery limit); held, it returns to the queue when the connection closes.
            await asyncio.get_running_loop().create_future()
            return
        reply = self._valid_reply(delivery)
        if reply is None:
            delivery.reject(requeue=False)
            return
        task_id: str = reply["request_id"]
        try:
            decision = self._contract.to_decision(reply)
        except Permanent as exc:
            log.warning(
                "dept_reply_parked",
                system=self.system,
                queue=self._queue,
                task_id=task_id,
                message_id=delivery.message_id,
                code=exc.code,
                reason=exc.detail,
            )
            delivery.reject(requeue=False)
            return
        async with self._in_order(task_id):
            await report(decision)  # raising: the broker client requeues the delivery
        delivery.ack()
        (log.info if delivery.redelivered else log.debug)(  # result_applied says it at INFO
            "dept_reply_reported",
            system=self.system,
            task_id=task_id,
            outcome=decision.outcome,
            redelivered=delivery.redelivered,
        )

    def _valid_reply(self, delivery: Delivery) -> dict[str, Any] | None:
        """The reply as a dict, or None (logged with where it breaks the contract)."""
        problems: list[str]
        reply: Any = None
        try:
            if len(delivery.body) > MAX_REPLY_BYTES:
                raise ValueError(f"larger than {MAX_REPLY_BYTES} bytes")
            reply = json.loads(delivery.body)
            problems = [
                f"{'/'.join(str(p) for p in error.path) or '(root)'}: {error.keyword}"
                for error in self._validator.errors(reply)
            ]
        except (UnicodeDecodeError, json.JSONDecodeError):
            problems = ["(body): not UTF-8 JSON"]
        except ValueError as exc:  # the size cap
            problems = [f"(body): {exc}"]
        except RecursionError:  # nested past Python's limit, in the parser or the schema walk
            problems = ["(body): nested too deeply"]
        if not problems and delivery.correlation_id not in (None, reply["request_id"]):
            problems = ["correlation_id: differs from request_id"]
        if problems:
            log.warning(
                "dept_reply_invalid",
                system=self.system,
                queue=self._queue,
                message_id=delivery.message_id,
                task_id=header_str(delivery.header(HEADER_TASK_ID)) or delivery.correlation_id,
                problems=problems[:20],
            )
            return None
        return dict(reply)

    @asynccontextmanager
    async def _in_order(self, task_id: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(task_id, asyncio.Lock())
        self._waiting[task_id] += 1
        try:
            async with lock:
                yield
        finally:
            self._waiting[task_id] -= 1
            if not self._waiting[task_id]:
                del self._waiting[task_id]
                del self._locks[task_id]
