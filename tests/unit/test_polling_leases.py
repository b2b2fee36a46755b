"""A poller drops or reschedules only the timer row it claimed: it hands the store the lease its
claim wrote (a row written since, by a receipt after a correction, has another lease)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from connectors.base import Decision, DepartmentRequest, Receipt
from gateway.orchestration.records import PollTimer, TaskRecord, TaskStatus
from gateway.orchestration.runner import ConnectorRunner
from tests.unit.test_polling import submitted

LEASE = 1234.5678901234567  # what the store's claim wrote (not now + the runner's lease)


@dataclass
class Cases:
    tasks: dict[str, TaskRecord]
    deleted: list[tuple[str, float | None]] = field(default_factory=list)
    rescheduled: list[tuple[str, float | None]] = field(default_factory=list)

    async def claim_timers(
        self, system: str, now: float, lease: float, limit: int
    ) -> list[PollTimer]:
        return [PollTimer(t, system, now, LEASE + n) for n, t in enumerate(sorted(self.tasks))]

    async def task(self, task_id: str) -> TaskRecord:
        return self.tasks[task_id]

    async def reschedule_timer(
        self, task_id: str, due_at: float, lease_until: float | None = None
    ) -> None:
        self.rescheduled.append((task_id, lease_until))

    async def delete_timer(self, task_id: str, lease_until: float | None = None) -> None:
        self.deleted.append((task_id, lease_until))


@dataclass
class StillWorking:
    system: str = "hukou"
    polls: bool = True

    async def send(self, request: DepartmentRequest) -> Receipt:
        raise AssertionError("polling never sends")

    async def check(self, request: DepartmentRequest, case_number: str | None) -> Decision:
        return Decision(task_id=request.task_id, outcome="in_progress")

    async def close(self) -> None:
        return None


async def test_the_poller_deletes_and_reschedules_with_its_claims_lease() -> None:
    decided = replace(submitted("a1.hukou"), status=TaskStatus.COMPLETED)
    cases = Cases({"a0.hukou": submitted("a0.hukou"), "a1.hukou": decided})

    async def publish(*message: Any) -> None:
        return None

    runner = ConnectorRunner(
        "hukou", StillWorking(), cases, publish,  # type: ignore[arg-type]
        poll_seconds=30, timeout_seconds=12.0,
    )  # fmt: skip
    assert await runner.poll_once() == 2
    assert cases.rescheduled == [("a0.hukou", LEASE)]  # still in progress: asked again later
    assert cases.deleted == [("a1.hukou", LEASE + 1)]  # decided: nothing left to ask
