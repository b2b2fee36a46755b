"""The ``connector:<system>`` role: tasks in from ``gw.tasks.<system>``, answers to
``gw.results``.

A delivery is acked as soon as the department has the request (the receipt is published
first); waiting for a decision never holds a delivery open. Decisions arrive by polling
(timer rows in the store, claimed by whichever runner is up) or from the connector's
``ResultSource`` (files, reply queue, callbacks).

Failures: a ``Permanent`` one (the department refused the request, the mapping failed)
parks the task message in the dead-letter store and tells the orchestrator, which blocks
the application with the reason. A ``Retryable`` one requeues the delivery after a pause;
the queue's delivery limit dead-letters a task that keeps failing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import structlog

from connectors.base import Connector, Decision, DepartmentRequest, ResultSource
from gateway.broker.messages import Delivery, Message
from gateway.broker.topology import RESULTS
from gateway.deadletters import park
from gateway.errors import Permanent, Retryable
from gateway.logs import get_logger
from gateway.orchestration.messages import (
    ResultMessage,
    attempt_of,
    parse_task,
    routing_key,
    task_of,
)
from gateway.orchestration.records import TERMINAL, TaskStatus
from gateway.periodic import repeat
from gateway.store.cases import CaseStore

log = get_logger(__name__)
Publish = Callable[[str, str, Message], Awaitable[None]]
RETRY_PAUSE_SECONDS = 1.0
POLLED = frozenset(
    {TaskStatus.SUBMITTED, TaskStatus.IN_PROGRESS, TaskStatus.SUSPENDED, TaskStatus.DISPATCHED}
)


class Reporter:
    """Turns a department's decision into a ``gw.results`` message (confirmed).

    Used by the connector runner and by the intake's callback routes, which need no
    connector of their own."""

    def __init__(self, system: str, cases: CaseStore, publish: Publish) -> None:
        self.system = system
        self._cases = cases
        self._publish = publish

    async def report(self, decision: Decision) -> None:
        result = ResultMessage.of_decision(self.system, attempt_of(decision.task_id), decision)
        task = await self._cases.task(result.task_id)
        matter, step = (task.matter, task.step) if task else ("unknown", "unknown")
        await self.publish(matter, step, result)

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
    ) -> None:
        self.system = system
        self._connector = connector
        self._cases = cases
        self._publish = publish
        self._poll = poll_seconds
        self._clock = clock
        self._reporter = Reporter(system, cases, publish)

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
        if task is not None and (task.attempt != request.attempt or task.status in TERMINAL):
            log.info("task_superseded", status=task.status.value, attempt=task.attempt)
            delivery.ack()  # withdrawn, cancelled, or re-dispatched since: do not send it
            return
        try:
            receipt = await self._connector.send(request)
        except Retryable as exc:
            log.warning("department_unavailable", error=str(exc), attempt=request.attempt)
            await asyncio.sleep(RETRY_PAUSE_SECONDS)
            delivery.reject(requeue=True)
            return
        except Permanent as exc:
            log.warning("department_refused", error=str(exc))
            await park(self._publish, delivery, reason=str(exc), extra={"x-system": self.system})
            await self._report(
                request.matter,
                request.task,
                ResultMessage(
                    task_id=task_of(request.task_id),
                    application_id=request.application_id,
                    system=self.system,
                    kind="dead_lettered",
                    attempt=request.attempt,
                    reason=str(exc),
                ),
            )
            delivery.ack()
            return
        await self._report(request.matter, request.task, ResultMessage.of_receipt(request, receipt))
        if receipt.decision is not None:
            result = ResultMessage.of_decision(self.system, request.attempt, receipt.decision)
            await self._report(request.matter, request.task, result)
        delivery.ack()
        log.info("task_handed_over", case_number=receipt.case_number)

    async def report(self, decision: Decision) -> None:
        await self._reporter.report(decision)

    async def _report(self, matter: str, step: str, result: ResultMessage) -> None:
        await self._reporter.publish(matter, step, result)

    # -- polling -------------------------------------------------------------------------
    async def poll_once(self) -> int:
        timers = await self._cases.claim_timers(self.system, self._clock(), 60.0, 50)
        for timer in timers:
            task = await self._cases.task(timer.task_id)
            if task is None or task.status not in POLLED:
                await self._cases.delete_timer(timer.task_id)  # nothing left to ask about
                continue
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
                await self._reporter.publish(
                    task.matter,
                    task.step,
                    ResultMessage(
                        task_id=task.id,
                        application_id=task.application_id,
                        system=self.system,
                        kind="dead_lettered",
                        attempt=task.attempt,
                        reason=f"{self.system} refused the status query: {exc}",
                    ),
                )
                await self._cases.delete_timer(task.id)
                continue
            if decision is not None:
                await self.report(decision)
            if decision is None or decision.outcome in ("in_progress", "suspended"):
                await self._cases.reschedule_timer(task.id, self._clock() + self._poll)
        return len(timers)

    async def run_polling(self, interval: float, stop: asyncio.Event) -> None:
        await repeat(self.poll_once, interval, stop, name="poll")

    async def run_source(self, source: ResultSource) -> None:
        await source.run(self.report)
