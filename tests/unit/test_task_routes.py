"""A decision's ``gw.results`` routing key names its task's matter and step: a reporter
takes them from the task messages its process sent, and reads the store only for a task it
never saw or has forgotten."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from connectors.base import Decision
from gateway.broker.messages import Message
from gateway.orchestration.records import TaskRecord, TaskStatus
from gateway.orchestration.runner import Reporter, TaskRoutes
from gateway.store.cases import CaseStore


@dataclass
class Cases:
    reads: list[str] = field(default_factory=list)

    async def task(self, task_id: str) -> TaskRecord | None:
        self.reads.append(task_id)
        app, step = task_id.split(".")
        return TaskRecord(
            id=task_id, application_id=app, matter="newborn", step=step, system="hukou",
            operation="birth_registration", status=TaskStatus.SUBMITTED, depends_on=(),
        )  # fmt: skip


async def reporter(routes: TaskRoutes) -> tuple[Reporter, Cases, list[tuple[str, str, Message]]]:
    cases = Cases()
    sent: list[tuple[str, str, Message]] = []

    async def publish(exchange: str, key: str, message: Message) -> None:
        sent.append((exchange, key, message))

    return Reporter("hukou", cast(CaseStore, cases), publish, routes), cases, sent


async def test_a_task_seen_is_reported_without_reading_the_store() -> None:
    routes = TaskRoutes()
    routes.remember("a1.hukou", "newborn", "hukou")
    r, cases, sent = await reporter(routes)
    await r.report(Decision(task_id="a1.hukou.c1", outcome="completed"))  # attempt 2
    assert cases.reads == []
    assert [(e, k) for e, k, _ in sent] == [("gw.results", "hukou.newborn.hukou")]


async def test_a_task_never_seen_or_forgotten_is_read_from_the_store() -> None:
    routes = TaskRoutes(size=2)
    for app in ("a1", "a2", "a3"):  # a1 is the oldest: forgotten
        routes.remember(f"{app}.hukou", "newborn", "hukou")
    r, cases, sent = await reporter(routes)
    await r.report(Decision(task_id="a1.hukou", outcome="completed"))
    await r.report(Decision(task_id="a3.hukou", outcome="completed"))
    await r.report(Decision(task_id="a9.hukou", outcome="completed"))
    assert cases.reads == ["a1.hukou", "a9.hukou"]
    keys: list[Any] = [k for _, k, _ in sent]
    assert keys == ["hukou.newborn.hukou"] * 3
