"""Polling departments that decide later: a claimed batch is asked about together, under a
lease that outlives one department timeout, so a runner killed mid-poll delays those
decisions by one lease at most and a slow batch is not polled twice by another runner."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from connectors.base import Decision, DepartmentRequest, Receipt
from gateway.orchestration.records import PollTimer, TaskRecord, TaskStatus
from gateway.orchestration.runner import POLL_LEASE_MARGIN_SECONDS, ConnectorRunner


def submitted(task_id: str) -> TaskRecord:
    app, step = task_id.split(".")
    return TaskRecord(
        id=task_id, application_id=app, matter="newborn", step=step, system="hukou",
        operation="birth_registration", status=TaskStatus.SUBMITTED, depends_on=(),
        attempt=1, case_number=f"C-{app}",
    )  # fmt: skip


@dataclass
class Cases:
    due: list[str]
    claims: list[tuple[float, int]] = field(default_factory=list)
    rescheduled: list[str] = field(default_factory=list)

    async def claim_timers(
        self, system: str, now: float, lease: float, limit: int
    ) -> list[PollTimer]:
        self.claims.append((lease, limit))
        batch, self.due = self.due[:limit], self.due[limit:]
        return [PollTimer(t, system, now) for t in batch]

    async def task(self, task_id: str) -> TaskRecord:
        return submitted(task_id)

    async def reschedule_timer(
        self, task_id: str, due_at: float, lease_until: float | None = None
    ) -> None:
        self.rescheduled.append(task_id)

    async def delete_timer(self, task_id: str, lease_until: float | None = None) -> None:
        raise AssertionError("a submitted task's timer is kept")


@dataclass
class SlowDepartment:
    """Answers "still in progress" only once ``expected`` questions are open at the same
    time: asked one after another, the first question never returns."""

    expected: int
    system: str = "hukou"
    polls: bool = True
    open_now: int = 0
    most_open: int = 0
    everyone: asyncio.Event = field(default_factory=asyncio.Event)

    async def send(self, request: DepartmentRequest) -> Receipt:
        raise AssertionError("polling never sends")

    async def check(self, request: DepartmentRequest, case_number: str | None) -> Decision:
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        if self.open_now >= self.expected:
            self.everyone.set()
        await self.everyone.wait()
        self.open_now -= 1
        return Decision(task_id=request.task_id, outcome="in_progress")

    async def close(self) -> None:
        return None


async def test_a_claimed_batch_is_asked_about_together_under_a_lease_past_the_timeout() -> None:
    cases = Cases(due=[f"a{i}.hukou" for i in range(6)])
    department = SlowDepartment(expected=4)
    published: list[Any] = []

    async def publish(*message: Any) -> None:
        published.append(message)

    runner = ConnectorRunner(
        "hukou", department, cases, publish,  # type: ignore[arg-type]
        poll_seconds=30, timeout_seconds=12.0, poll_batch=4,
    )  # fmt: skip
    assert await asyncio.wait_for(runner.poll_once(), 5) == 4
    assert cases.claims == [(12.0 + POLL_LEASE_MARGIN_SECONDS, 4)]
    assert department.most_open == 4
    assert sorted(cases.rescheduled) == [f"a{i}.hukou" for i in range(4)]
    assert len(published) == 4  # one "in progress" result per task asked about
