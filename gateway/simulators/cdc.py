"""The county CDC (vaccination records) as the gateway meets it: a consumer of
``dept.cdc.inbox`` that answers on ``dept.cdc.replies`` (contracts/cdc/).

Per request, as the contract says:

* it checks the request with ``jsonschema`` against ``request.schema.json`` and the message
  properties (correlation id and ``x-task-id`` = ``request_id``); a request that breaks the
  contract is answered ``refused`` / ``invalid_request`` listing where (never the values);
  one it cannot even correlate is rejected without requeue (dead-lettered);
* it is idempotent on ``request_id``: the same id gets the same ``received`` (same case
  number) and, once decided, the same final reply; the record is opened at most once
  (``EffectLedger.apply``). A request changed after a ``correction`` is decided again;
* it replies ``received`` at once, then the final reply after
  ``Behaviour.decision_delay_seconds`` per ``Behaviour.verdict``: ``completed`` (record
  number ``JZ<county><year><serial>``), ``refused`` / ``not_eligible``, ``correction``
  (the verdict's gaps, in the CDC's field names), ``suspended``;
* down (``Behaviour.down()``) it does not take the request: during an outage window it holds
  the delivery until the window ends (so an outage costs one attempt of the queue's delivery
  limit, not one per retry), on a random failure it pauses, then rejects with requeue.

Every delivery and every applied effect goes into the ledger under (cdc, application, task).
Pending decisions live in memory: a simulator stopped before deciding does not decide. A
decided case is written to the ledger (``keep_case``) before its final reply, and only the
newest ``retain`` decided cases stay in memory too (``Retention``); a request sent again for an
older one is answered from the ledger. ``requests`` and ``replies`` keep the newest ``retain``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from importlib import resources
from typing import Any, cast

from jsonschema import Draft202012Validator  # type: ignore[import-untyped]  # ships no stubs

from gateway.broker.client import BrokerClient
from gateway.broker.messages import Delivery, Message, header_str
from gateway.broker.topology import HEADER_TASK_ID, Topology
from gateway.errors import BrokerUnavailable, ConfigurationError
from gateway.logs import get_logger
from gateway.settings import SystemConfig
from gateway.simulators.behaviour import Behaviour, Verdict, application_of, names_in
from gateway.simulators.jsonchecks import Prechecked
from gateway.simulators.ledger import EffectLedger, LedgerCalls
from gateway.simulators.retention import DEFAULT_RETAIN, Retention

log = get_logger(__name__)

SYSTEM = "cdc"
CHINA = timezone(timedelta(hours=8))
_TASK_ID = re.compile(
    r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.[a-z][a-z0-9_]*(\.r[0-9]+)*$"
)
_OUTAGE_POLL_SECONDS = 0.1
_KEPT = ("task_id", "application_id", "task", "case_no", "received_at", "fingerprint", "final")


def _request_validator() -> Any:
    text = (resources.files("contracts") / "cdc" / "request.schema.json").read_text("utf-8")
    schema = json.loads(text)
    return Prechecked(Draft202012Validator(schema), schema)  # valid: jsonschema not run


@dataclass
class _Case:
    task_id: str
    application_id: str
    task: str
    case_no: str
    received_at: str
    fingerprint: str
    final: dict[str, Any] | None = None
    deciding: asyncio.Task[None] | None = None
    received_sent: asyncio.Event = field(default_factory=asyncio.Event)


class CdcSimulator:
    """Consumes the CDC inbox on a connection of its own; the queues must exist already (the
    gateway's topology declares them)."""

    def __init__(
        self,
        amqp_url: str,
        config: SystemConfig,
        behaviour: Behaviour,
        ledger: EffectLedger,
        *,
        county: str = "431022",
        requeue_pause_seconds: float = 1.0,
        max_hold_seconds: float = 1200.0,  # under RabbitMQ's 30 min consumer timeout
        prefetch: int = 32,
        clock: Callable[[], float] = time.time,
        retain: int = DEFAULT_RETAIN,
    ) -> None:
        self._client = BrokerClient(amqp_url, Topology((), (), ()), name="cdc-simulator")
        self._inbox = config.inbox_queue or f"dept.{SYSTEM}.inbox"
        self._replies = config.reply_queue or f"dept.{SYSTEM}.replies"
        self._behaviour = behaviour
        self._ledger = ledger
        self._county = county
        self._pause = requeue_pause_seconds
        self._max_hold = max_hold_seconds
        self._prefetch = prefetch
        self._clock = clock
        self._validator = _request_validator()
        self._cases: dict[str, _Case] = {}  # open ones, and the newest decided ones
        self._retention = Retention(retain)
        self._lock = asyncio.Lock()
        self._serial: int | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.requests: list[Any] = []  # the newest request bodies that parsed as JSON
        self.replies: list[dict[str, Any]] = []  # the newest replies published

    async def start(self) -> None:
        await self._client.start()
        try:
            await self._client.consume(self._inbox, self._on_request, prefetch=self._prefetch)
        except Exception as exc:
            await self._client.close(drain_seconds=0)
            raise ConfigurationError(
                f"the CDC simulator cannot consume {self._inbox!r} ({exc}); the gateway "
                "declares the queue: start it (or its topology) first",
                system=SYSTEM,
                code="queue_missing",
            ) from exc
        log.info("cdc_simulator_started", inbox=self._inbox, replies=self._replies)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks))
        await self._client.close(drain_seconds=2)

    # -- one request -----------------------------------------------------------------------
    async def _on_request(self, delivery: Delivery) -> None:
        body = _json(delivery.body)
        task_id = _task_id(body, delivery)
        if task_id is None:
            log.warning("cdc_request_uncorrelated", message_id=delivery.message_id)
            delivery.reject(requeue=False)  # nothing to answer to: dead-lettered
            return
        application_id, task = application_of(task_id)
        if await self._unavailable(application_id, task, task_id):
            delivery.reject(requeue=True)
            return
        _append(self.requests, body, self._retention.limit)
        problems = self._problems(body, delivery, task_id)
        if problems:
            await self._ledger.record_delivery(
                SYSTEM, application_id, task, task_id, "refused: invalid_request"
            )
            await self._publish(self._invalid_request(task_id, problems))
            delivery.ack()
            return
        request = cast(dict[str, Any], body)  # an object: the schema says so
        async with self._lock:
            case, detail = await self._case_for(task_id, application_id, task, request)
            idle = case.deciding is None or case.deciding.done()
            if case.final is None and idle:
                case.deciding = self._spawn(self._decide(case, request))
        await self._ledger.record_delivery(SYSTEM, application_id, task, task_id, detail)
        await self._publish(self._received(case))
        case.received_sent.set()
        if case.final is not None:
            await self._publish(case.final)
        delivery.ack()

    async def _unavailable(self, application_id: str, task: str, task_id: str) -> bool:
        if self._in_outage():
            await self._ledger.record_delivery(
                SYSTEM, application_id, task, task_id, "unavailable: outage"
            )
            loop = asyncio.get_running_loop()
            until = loop.time() + self._max_hold
            # Behaviour is plain data that tests and the demo change: nothing to wait on.
            while self._in_outage() and loop.time() < until:  # noqa: ASYNC110
                await asyncio.sleep(_OUTAGE_POLL_SECONDS)
            return True
        if self._behaviour.down(self._clock()):
            await self._ledger.record_delivery(
                SYSTEM, application_id, task, task_id, "unavailable: failure"
            )
            await asyncio.sleep(self._pause)
            return True
        return False

    def _in_outage(self) -> bool:
        now = self._clock()
        return any(start <= now < end for start, end in self._behaviour.outages)

    def _problems(self, body: Any, delivery: Delivery, task_id: str) -> list[dict[str, str]]:
        if body is None:
            return [{"path": "(body)", "rule": "json"}]
        problems = [_problem(error) for error in self._validator.iter_errors(body)]
        if delivery.correlation_id != task_id:
            problems.append({"path": "(properties).correlation_id", "rule": "equals request_id"})
        header = header_str(delivery.header(HEADER_TASK_ID))
        if header != task_id:
            problems.append({"path": "(headers).x-task-id", "rule": "equals request_id"})
        if isinstance(body, dict) and body.get("application_id") != task_id.split(".")[0]:
            problems.append({"path": "application_id", "rule": "prefix of request_id"})
        return problems[:50]

    async def _case_for(
        self, task_id: str, application_id: str, task: str, body: dict[str, Any]
    ) -> tuple[_Case, str]:
        fingerprint = hashlib.sha256(
            json.dumps(body, sort_keys=True, ensure_ascii=False).encode()
        ).hexdigest()
        case = self._cases.get(task_id) or await self._kept(task_id)
        if case is not None:
            corrected = case.fingerprint != fingerprint
            if case.final is not None and case.final["status"] == "correction" and corrected:
                # the request corrected after a "correction" reply: decide it again
                case.fingerprint, case.final, case.deciding = fingerprint, None, None
                case.received_at = _stamp(self._now())
                case.received_sent = asyncio.Event()
                self._retention.reopened(task_id)
                return case, "accepted: corrected"
            return case, "duplicate"
        stored = await self._ledger.applied(SYSTEM, task_id)
        if stored is not None:  # decided before a restart of the simulator
            case = _Case(task_id, application_id, task, stored["case_no"], stored["received_at"],
                         fingerprint, final=stored["reply"])  # fmt: skip
            self._hold(case)
            return case, "duplicate"
        now = self._now()
        serial = await self._next_serial()
        case_no = f"CDC{now:%Y%m%d}-{serial:06d}"
        case = _Case(task_id, application_id, task, case_no, _stamp(now), fingerprint)
        self._cases[task_id] = case
        return case, "accepted"

    async def _kept(self, task_id: str) -> _Case | None:
        """A decided case no longer in memory, from the ledger."""
        kept = await self._ledger.case(SYSTEM, key=task_id)
        if kept is None:
            return None
        case = _Case(**kept)
        self._hold(case)
        return case

    def _hold(self, case: _Case) -> None:
        """Hold a decided case in memory, dropping the oldest ones beyond the retention."""
        self._cases[case.task_id] = case
        for task_id in self._retention.decided(case.task_id):
            self._cases.pop(task_id, None)

    # -- deciding --------------------------------------------------------------------------
    async def _decide(self, case: _Case, body: dict[str, Any]) -> None:
        await case.received_sent.wait()
        received = datetime.fromisoformat(case.received_at).timestamp()
        delay = received + self._behaviour.decision_delay_seconds - self._clock()
        if delay > 0:
            await asyncio.sleep(delay)
        verdict = self._behaviour.verdict(case.application_id, names_in(body))
        reply, result = await self._final(case, verdict)

        def settle(calls: LedgerCalls) -> dict[str, Any]:
            """A record applied once per task id (the one that stands) and the case kept, in
            one hop to the ledger's thread."""
            final = reply
            if result is not None:
                stored = calls.apply(SYSTEM, case.application_id, case.task, case.task_id, result)
                final = stored["reply"]  # the record that stands
            kept = {name: getattr(case, name) for name in _KEPT if name != "final"}
            calls.keep_case(SYSTEM, case.task_id, case.case_no, {**kept, "final": final})
            return final

        final = await self._ledger.run(settle)
        case.final = final
        self._hold(case)
        await self._publish(final, retry=True)

    async def _final(
        self, case: _Case, verdict: Verdict
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The reply and, for a record issued, the effect for the ledger to apply."""
        reply = self._reply(case.task_id, case.case_no)
        if verdict.outcome == "completed":
            serial = await self._next_serial()
            record_no = f"JZ{self._county}{self._now():%Y}{serial:06d}"
            reply.update(status="completed", record_no=record_no)
            return reply, {"case_no": case.case_no, "received_at": case.received_at, "reply": reply}
        if verdict.outcome == "denied":
            reason = verdict.reason or "the child is not eligible for a record at this CDC"
            reply.update(status="refused", error_code="not_eligible", reason=reason)
        elif verdict.outcome == "correction_requested":
            gaps = verdict.gaps or [
                ("child.birth_certificate_no", verdict.reason or "could not be verified")
            ]
            corrections = [{"field": f, "message": m} for f, m in gaps]
            reply.update(status="correction", corrections=corrections)
        else:
            reason = verdict.reason or "awaiting a medical assessment"
            reply.update(status="suspended", reason=reason)
        return reply, None

    async def _next_serial(self) -> int:
        if self._serial is None:
            self._serial = await self._ledger.effect_count(SYSTEM)
        self._serial += 1
        return self._serial

    # -- replies ---------------------------------------------------------------------------
    def _reply(self, task_id: str, case_no: str | None) -> dict[str, Any]:
        return {
            "schema_version": "1.0",
            "request_id": task_id,
            "case_no": case_no,
            "replied_at": _stamp(self._now()),
        }

    def _received(self, case: _Case) -> dict[str, Any]:
        reply = self._reply(case.task_id, case.case_no)
        reply.update(status="received", replied_at=case.received_at)
        return reply

    def _invalid_request(self, task_id: str, problems: list[dict[str, str]]) -> dict[str, Any]:
        reply = self._reply(task_id, None)
        reason = f"the request breaks the CDC contract in {len(problems)} place(s)"
        reply.update(
            status="refused", error_code="invalid_request", reason=reason, problems=problems
        )
        return reply

    async def _publish(self, reply: dict[str, Any], *, retry: bool = False) -> None:
        task_id = reply["request_id"]
        message = Message(
            body=json.dumps(reply, ensure_ascii=False).encode("utf-8"),
            correlation_id=task_id,
            headers={HEADER_TASK_ID: task_id},
            type=f"cdc.reply.{reply['status']}",
        )
        while True:
            try:
                await self._client.publish("", self._replies, message)
            except BrokerUnavailable:
                if not retry:
                    raise  # the request is requeued and answered again
                await asyncio.sleep(self._pause)
                continue
            _append(self.replies, reply, self._retention.limit)
            return

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("cdc_simulator_decision_failed", error=repr(task.exception()))

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC).astimezone(CHINA)


def _append(newest: list[Any], item: Any, limit: int) -> None:
    """Append ``item``, keeping the newest ``limit`` items."""
    newest.append(item)
    if len(newest) > limit:
        del newest[: len(newest) - limit]


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None


def _task_id(body: Any, delivery: Delivery) -> str | None:
    """The request id to answer to: the body's, else the message's correlation."""
    candidates = [
        body.get("request_id") if isinstance(body, dict) else None,
        delivery.correlation_id,
        header_str(delivery.header(HEADER_TASK_ID)),
    ]
    for candidate in candidates:
        if isinstance(candidate, str) and len(candidate) <= 100 and _TASK_ID.match(candidate):
            return candidate
    return None


def _problem(error: Any) -> dict[str, str]:
    """Where a request breaks the schema and which rule, never the value."""
    path = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [k for k in error.validator_value if k not in error.instance]
        path = ".".join(p for p in (path, missing[0] if missing else "") if p)
    return {"path": path or "(root)", "rule": str(error.validator)}


def _stamp(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")
