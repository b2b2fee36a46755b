"""The ``connector:<system>`` role: tasks in from ``gw.tasks.<system>``, answers to
``gw.results``.

A delivery is acked as soon as the department has the request (the receipt is published
first); waiting for a decision never holds a delivery open. Decisions arrive by polling
(timer rows in the store, claimed by whichever runner is up) or from the connector's
``ResultSource`` (files, reply queue, callbacks).

Failures: a ``Permanent`` one (the department refused the request, the mapping failed)
parks the task message in the dead-letter store and tells the orchestrator, which blocks
the application with the reason. A ``Retryable`` one is retried by the system's
``RetryPolicy`` (``gateway.orchestration.retries``): a few quick tries in process, then a
copy of the task waits in a broker delay queue (``gw.retry.<level>``) and the delivery is
acked once the copy is confirmed; when the budget is spent the task is parked like a
permanent failure, the reason naming the tries and the last error. A message that crashes
the worker is requeued by the broker client until the queue's delivery limit dead-letters it.

A polled department that decides at once (no officer in the loop) is asked once more,
right after its receipt and within the same timeout (``poll_on_receipt``): when it has
decided, the one receipt result carries the decision and no poll timer waits for it. That
question is a bonus: unanswered, refused or failed, it changes nothing — the receipt alone
is reported and the poll timer asks later, as without it.

During one of the system's maintenance windows the department is not called: each task is
sent round a delay queue until the window ends, its ``x-attempt`` untouched (no retry is
spent), and polling waits.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import structlog
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    stop_before_delay,
)

from connectors.base import (
    Connector,
    Decision,
    DepartmentRequest,
    Receipt,
    ResultSource,
    SetsAside,
    Unreadable,
)
from gateway.broker.messages import Delivery, Message
from gateway.broker.topology import (
    HEADER_ATTEMPT,
    HEADER_FIRST_FAILED_AT,
    RESULTS,
    retry_name,
)
from gateway.deadletters import park
from gateway.errors import BrokerUnavailable, Permanent, Retryable
from gateway.logs import get_logger
from gateway.orchestration.maintenance import Maintenance
from gateway.orchestration.messages import (
    ResultMessage,
    attempt_of,
    parse_task,
    routing_key,
    task_of,
)
from gateway.orchestration.records import TERMINAL, PollTimer, TaskRecord, TaskStatus
from gateway.orchestration.retries import (
    GiveUp,
    TryAgainLater,
    backoff,
    ladder_level,
    next_step,
    quick_tries,
    tries_spent,
)
from gateway.periodic import repeat
from gateway.settings import RetryPolicy
from gateway.store.cases import CaseStore

log = get_logger(__name__)
Publish = Callable[[str, str, Message], Awaitable[None]]
POLL_LEASE_MARGIN_SECONDS = 5.0
ROUND_PUBLISH_TRIES = 4  # a refused delay-queue publish, tried again in place
POLLED = frozenset(
    {TaskStatus.SUBMITTED, TaskStatus.IN_PROGRESS, TaskStatus.SUSPENDED, TaskStatus.DISPATCHED}
)
ROUTES_KEPT = 8192  # tasks whose matter and step a reporter remembers


class TaskRoutes:
    """Matter and step per task id, as the runner saw them in task messages: a decision
    names only its task, and its ``gw.results`` routing key needs both. A task's matter and
    step never change, so a remembered pair is never stale; the oldest are forgotten past
    ``size``, and a forgotten or never seen task is read from the store."""

    def __init__(self, size: int = ROUTES_KEPT) -> None:
        self._size = size
        self._known: dict[str, tuple[str, str]] = {}

    def remember(self, task_id: str, matter: str, step: str) -> None:
        self._known[task_id] = (matter, step)
        if len(self._known) > self._size:
            del self._known[next(iter(self._known))]  # the oldest (dicts keep their order)

    def get(self, task_id: str) -> tuple[str, str] | None:
        return self._known.get(task_id)


# One per process, shared by every reporter: the callback routes' reporters (built by the
# intake) learn from the tasks the runners of the same process sent.
SEEN_TASKS = TaskRoutes()


class Reporter:
    """Turns a department's decision into a ``gw.results`` message (confirmed).

    Used by the connector runner and by the intake's callback routes, which need no
    connector of their own."""

    def __init__(
        self, system: str, cases: CaseStore, publish: Publish, routes: TaskRoutes = SEEN_TASKS
    ) -> None:
        self.system = system
        self._cases = cases
        self._publish = publish
        self.routes = routes

    async def report(self, decision: Decision) -> None:
        result = ResultMessage.of_decision(self.system, attempt_of(decision.task_id), decision)
        route = self.routes.get(result.task_id)
        if route is None:
            task = await self._cases.task(result.task_id)
            route = (task.matter, task.step) if task else ("unknown", "unknown")
        await self.publish(*route, result)

    async def publish(self, matter: str, step: str, result: ResultMessage) -> None:
        await self._publish(RESULTS, routing_key(self.system, matter, step), result.message())


class ConnectorRunner:
    def __init__(
        self,
        system: str,
        connector: Connector,
        cases: CaseStore,
        publish: Publish,
        *,
        poll_seconds: float,
        clock: Callable[[], float] = time.time,
        retry: RetryPolicy | None = None,
        timeout_seconds: float = 30.0,
        maintenance: Maintenance | None = None,
        rng: random.Random | None = None,
        poll_batch: int = 4,
        poll_on_receipt: bool = True,
    ) -> None:
        self.system = system
        self._connector = connector
        self._cases = cases
        self._publish = publish
        self._poll = poll_seconds
        self._clock = clock
        self._reporter = Reporter(system, cases, publish)
        self._retry = retry or RetryPolicy()
        self._timeout = timeout_seconds  # the quick tries of one delivery stay within it
        self._maintenance = maintenance
        # Timers claimed at once are asked about together, so a batch takes about one
        # timeout; the lease outlives that by a margin. A runner killed mid-poll delays
        # those decisions by at most one lease, never loses them.
        self._poll_batch = poll_batch
        self._poll_lease = timeout_seconds + POLL_LEASE_MARGIN_SECONDS
        self._rng = rng or random.Random()  # noqa: S311  # jitter, not cryptography
        self._poll_on_receipt = poll_on_receipt and connector.polls

    async def on_task(self, delivery: Delivery) -> None:
        try:
            request = parse_task(delivery.body)
        except Permanent as exc:
            await park(self._publish, delivery, reason=str(exc))
            delivery.ack()
            return
        structlog.contextvars.bind_contextvars(
            application_id=request.application_id, task_id=request.task_id, system=self.system
        )
        task = await self._cases.task(task_of(request.task_id))
        if task is not None:
            self._reporter.routes.remember(task.id, task.matter, task.step)
        if task is not None and (task.attempt != request.attempt or task.status in TERMINAL):
            log.info("task_superseded", status=task.status.value, attempt=task.attempt)
            delivery.ack()  # withdrawn, cancelled, or re-dispatched since: do not send it
            return
        now = self._clock()
        ends = self._maintenance.ends_at(now) if self._maintenance is not None else None
        if ends is not None:
            await self._hold(delivery, ends - now)
            return
        spent = tries_spent(delivery.header(HEADER_ATTEMPT), request.attempt)
        tries, started, budget_from = 0, now, time.monotonic()
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(quick_tries(self._retry, spent))
                | stop_before_delay(self._timeout),
                wait=lambda state: backoff(self._retry, spent + state.attempt_number, self._rng),
                retry=retry_if_exception_type(Retryable),
                before_sleep=self._quick_retry,
                reraise=True,
            ):
                with attempt:
                    tries += 1
                    receipt = await self._connector.send(request)
        except Retryable as exc:
            await self._retry_later(delivery, request, spent + tries, exc, started)
            return
        except Permanent as exc:
            log.warning("department_refused", error=str(exc))
            made = {HEADER_ATTEMPT: spent + tries}  # tries made for this task attempt
            await self._dead_letter(delivery, request, str(exc), "permanent", made)
            return
        receipt = await self._asked_at_once(request, receipt, budget_from)
        # one message: the receipt, with the decision when the department decided at once
        await self._report(request.matter, request.task, ResultMessage.of_receipt(request, receipt))
        delivery.ack()
        decided = receipt.decision.outcome if receipt.decision is not None else None
        log.info("task_handed_over", case_number=receipt.case_number, decided=decided)

    async def _asked_at_once(
        self, request: DepartmentRequest, receipt: Receipt, budget_from: float
    ) -> Receipt:
        """The receipt, with the decision when asking the department once right away finds
        one (``poll_on_receipt``), within what is left of the timeout since ``budget_from``
        (``time.monotonic``). Anything else — not decided yet, only taken up
        (``in_progress``), a failed or refused question, no time left, a maintenance window —
        leaves the receipt as it was; the poll timer the receipt sets asks again later."""
        if not self._poll_on_receipt or receipt.decision is not None:
            return receipt
        if self._maintenance is not None and self._maintenance.ends_at(self._clock()) is not None:
            return receipt  # the window began during the submission: no more calls now
        left = self._timeout - (time.monotonic() - budget_from)
        if left <= 0:
            log.info("decision_query_skipped", reason="the submission used the whole timeout")
            return receipt
        try:
            async with asyncio.timeout(left):
                decision = await self._connector.check(request, receipt.case_number)
        except TimeoutError:
            log.info("decision_query_skipped", reason=f"no answer within {left:.3f}s")
            return receipt
        except (Retryable, Permanent) as exc:  # the poll timer asks again (and judges)
            log.warning("decision_query_failed", error=str(exc), kind=type(exc).__name__)
            return receipt
        except Exception as exc:  # a bug in check: an extra question must not fail the task
            log.warning("decision_query_failed", error=repr(exc), exc_info=True)
            return receipt
        if decision is None or decision.outcome == "in_progress":
            return receipt  # not decided yet: the timer asks at poll_seconds
        return replace(receipt, decision=decision)

    # -- retries and maintenance ---------------------------------------------------------
    def _quick_retry(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        log.info(
            "department_retry_in_process",
            error=str(error),
            tries=state.attempt_number,
            pause=round(state.upcoming_sleep, 3),
        )

    async def _retry_later(
        self,
        delivery: Delivery,
        request: DepartmentRequest,
        tries: int,
        exc: Retryable,
        started: float,
    ) -> None:
        first = delivery.header(HEADER_FIRST_FAILED_AT)
        if not isinstance(first, int):  # failed for the first time in this delivery
            first = int(started * 1000)  # milliseconds, as gateway.deadletters reads it
        step = next_step(self._retry, tries, str(exc), self._rng)
        if isinstance(step, GiveUp):
            log.warning("retry_budget_spent", error=str(exc), tries=tries)
            extra = {HEADER_ATTEMPT: tries, HEADER_FIRST_FAILED_AT: first}
            await self._dead_letter(delivery, request, step.reason, "retryable", extra)
            return
        level = (
            step.level
            if isinstance(step, TryAgainLater)
            else ladder_level(self._retry.ladder, step.delay)  # the quick tries ran out of time
        )
        headers = {HEADER_ATTEMPT: request.attempt + tries, HEADER_FIRST_FAILED_AT: first}
        await self._send_round(delivery, level, headers)
        log.warning(
            "department_unavailable",
            error=str(exc),
            tries=tries,
            retry_in=level,
            backoff=step.delay,
        )

    async def _hold(self, delivery: Delivery, seconds_left: float) -> None:
        level = ladder_level(self._retry.ladder, seconds_left)
        await self._send_round(delivery, level, {})
        log.info("task_held_for_maintenance", seconds_left=round(seconds_left, 3), retry_in=level)

    async def _send_round(self, delivery: Delivery, level: float, headers: dict[str, Any]) -> None:
        """A copy of the task into the delay queue of ``level`` seconds, confirmed, and only
        then the delivery acked. A publish the broker refuses (a full delay queue, no
        confirm in time) is tried again after the policy's backoff, the delivery held; if it
        still fails the error goes up unacked, and the broker client holds the delivery and
        runs it again — neither spends the queue's delivery limit."""
        kept = {k: v for k, v in delivery.headers.items() if k != "x-death"}  # broker's own
        copy = Message(
            body=delivery.body,
            correlation_id=delivery.correlation_id,
            headers={**kept, **headers},
            content_type=delivery.content_type or "application/json",
        )
        for n in range(1, ROUND_PUBLISH_TRIES + 1):
            try:
                await self._publish(retry_name(level), delivery.routing_key, copy)
                break
            except BrokerUnavailable as exc:
                if n == ROUND_PUBLISH_TRIES:
                    raise
                pause = backoff(self._retry, n, self._rng)
                log.warning("delay_publish_failed", error=str(exc), tries=n, pause=pause)
                await asyncio.sleep(pause)
        delivery.ack()

    async def _dead_letter(
        self,
        delivery: Delivery,
        request: DepartmentRequest,
        reason: str,
        kind: str,
        extra: dict[str, Any],
    ) -> None:
        await park(
            self._publish,
            delivery,
            reason=reason,
            kind=kind,
            extra={"x-system": self.system, **extra},
        )
        await self._report(
            request.matter,
            request.task,
            ResultMessage.dead_lettered(
                task_of(request.task_id),
                request.application_id,
                self.system,
                request.attempt,
                reason,
            ),
        )
        delivery.ack()

    async def report(self, decision: Decision) -> None:
        await self._reporter.report(decision)

    async def _report(self, matter: str, step: str, result: ResultMessage) -> None:
        await self._reporter.publish(matter, step, result)

    # -- polling -------------------------------------------------------------------------
    async def poll_once(self) -> int:
        now = self._clock()
        if self._maintenance is not None and self._maintenance.ends_at(now) is not None:
            return 0  # the timers stay due and are claimed once the window is over
        timers = await self._cases.claim_timers(
            self.system, now, self._poll_lease, self._poll_batch
        )
        await asyncio.gather(*(self._poll_timer(timer) for timer in timers))
        return len(timers)

    async def _poll_timer(self, timer: PollTimer) -> None:
        lease = timer.lease_until  # only this claimed row: a receipt since writes a new one
        task = await self._cases.task(timer.task_id)
        if task is None or task.status not in POLLED:
            await self._cases.delete_timer(timer.task_id, lease)  # nothing left to ask about
            return
        request = DepartmentRequest(
            task_id=task.request_id,
            application_id=task.application_id,
            matter=task.matter,
            task=task.step,
            system=task.system,
            operation=task.operation,
            attempt=task.attempt,
            fields={},
        )
        try:
            decision = await self._connector.check(request, task.case_number)
        except Retryable as exc:
            log.warning("poll_failed", task_id=task.id, error=str(exc))
            decision = None
        except Permanent as exc:  # asking again cannot help: an operator must look
            log.warning("poll_refused", task_id=task.id, error=str(exc))
            await self._block_task(task, f"{self.system} refused the status query: {exc}")
            await self._cases.delete_timer(task.id, lease)
            return
        if decision is not None:  # the task is at hand: no need to read it again
            attempt = attempt_of(decision.task_id)
            result = ResultMessage.of_decision(self.system, attempt, decision)
            await self._reporter.publish(task.matter, task.step, result)
        if decision is None or decision.outcome in ("in_progress", "suspended"):
            await self._cases.reschedule_timer(task.id, self._clock() + self._poll, lease)

    async def _block_task(self, task: TaskRecord, reason: str) -> None:
        """Park the task's message for an operator and tell the orchestrator, which blocks
        the application with ``reason``."""
        await self._park_task(task, reason)
        await self._reporter.publish(
            task.matter,
            task.step,
            ResultMessage.dead_lettered(
                task.id, task.application_id, self.system, task.attempt, reason
            ),
        )

    async def _park_task(self, task: TaskRecord, reason: str) -> None:
        """A dead letter carrying the task's message, so that an operator's replay sends it
        again through ``planner.on_replay`` (the department is idempotent on its key)."""
        from gateway.catalogue.model import CURRENT_VERSION, load
        from gateway.orchestration import planner

        state = await self._cases.load(task.application_id)
        if state is None:
            return
        catalogue = load(state.catalogue_version or CURRENT_VERSION)
        outgoing, _ = planner.task_outgoing(state, catalogue, task)
        letter = planner.dead_letter_of(outgoing, reason, extra={"x-system": self.system})
        await self._publish(letter.exchange, letter.routing_key, letter.message)

    async def run_polling(self, interval: float, stop: asyncio.Event) -> None:
        await repeat(self.poll_once, interval, stop, name="poll", again_at_once_when_busy=True)

    async def run_source(self, source: ResultSource) -> None:
        if isinstance(source, SetsAside):
            source.on_unreadable = self.unreadable
        await source.run(self.report)

    async def unreadable(self, item: Unreadable) -> None:
        """An answer the source could not read (a hostile or broken hospital file, moved to
        ``error/``): the task it names — at its current attempt — is dead-lettered with the
        reason, so its application turns ``blocked`` and the operator finds it in
        ``gateway dlq``; an answer that names no task is kept as a dead letter alone."""
        reason = f"{self.system} answer {item.name} set aside: {item.reason}"
        task = await self._cases.task(task_of(item.request_id)) if item.request_id else None
        if (
            task is None
            or task.status in TERMINAL
            or attempt_of(item.request_id or "") != task.attempt
        ):
            log.warning("answer_unreadable", file=item.name, reason=item.reason, task=None)
            body = json.dumps({"system": self.system, "file": item.name, "reason": item.reason})
            await park(
                self._publish,
                Delivery(body.encode(), RESULTS, f"{self.system}.unknown.answer", None, None,
                         None, {}, "application/json", False, lambda _: None),
                reason=reason,
                message_id=f"unreadable:{self.system}:{item.name}",
                extra={"x-system": self.system},
            )  # fmt: skip
            return
        log.warning("answer_unreadable", file=item.name, reason=item.reason, task_id=task.id)
        await self._block_task(task, reason)
