"""A polled department asked once right after its receipt (``poll_on_receipt``).

When it has decided, the one receipt result carries the decision and the planner writes no
poll timer; when it has not, or the question fails in any way, the receipt alone goes out
as before, the timer takes over, and the task is neither retried nor dead-lettered.
"""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import asdict, dataclass, field
from typing import Any

import pytest

from connectors.base import Decision, DepartmentRequest, Receipt
from gateway.broker.messages import Delivery, Message
from gateway.errors import Permanent, Retryable
from gateway.orchestration import planner
from gateway.orchestration.maintenance import Maintenance
from gateway.orchestration.messages import ResultMessage
from gateway.orchestration.records import CaseState, TaskStatus
from gateway.orchestration.runner import ConnectorRunner
from gateway.settings import SystemConfig, load_settings
from tests.unit.test_planner import NOW, apply, ctx
from tests.unit.test_receipt_decision import _request, _started_at

COMPLETED: dict[str, Any] = {"provides": {"citizen_id": "431022202611200014"}, "certificate": "CS1"}


@dataclass
class Police:
    """Takes every request; answers the status query with ``answer`` (a decision, None, an
    error to raise, or ``"hang"`` for a question that never returns)."""

    answer: Decision | Exception | str | None
    polls: bool = True
    system: str = "hukou"
    checks: list[tuple[str, str | None]] = field(default_factory=list)

    async def send(self, request: DepartmentRequest) -> Receipt:
        return Receipt("HK1", NOW - 30)

    async def check(self, request: DepartmentRequest, case_number: str | None) -> Decision | None:
        self.checks.append((request.task_id, case_number))
        if self.answer == "hang":
            await asyncio.Event().wait()
        if isinstance(self.answer, Exception):
            raise self.answer
        assert not isinstance(self.answer, str)
        return self.answer

    async def close(self) -> None:
        return None


class NoCases:
    async def task(self, task_id: str) -> None:
        return None


@dataclass
class Sent:
    messages: list[tuple[str, str, Message]] = field(default_factory=list)

    async def publish(self, exchange: str, key: str, message: Message) -> None:
        self.messages.append((exchange, key, message))


@pytest.fixture
def state() -> CaseState:
    return _started_at("hukou")  # the birth certificate is issued: hukou is dispatched


def decision(state: CaseState, outcome: str, **kw: Any) -> Decision:
    return Decision(state.task("hukou").request_id, outcome, "HK1", decided_at=NOW, **kw)  # type: ignore[arg-type]


async def handed_over(
    state: CaseState, police: Police, **kw: Any
) -> tuple[ResultMessage, list[str], Sent]:
    """Runs the task through the runner; the one message it published, parsed."""
    request = _request(state, "hukou")
    sent, settled = Sent(), list[str]()
    runner = ConnectorRunner(
        "hukou", police, NoCases(), sent.publish,  # type: ignore[arg-type]
        poll_seconds=60, rng=random.Random(1), **kw,
    )  # fmt: skip
    body = json.dumps({**asdict(request), "catalogue_version": "1"}).encode()
    task = Delivery(body, "gw.tasks", "hukou.newborn.hukou", "m1", "app1", None,
                    {"x-attempt": 1}, "application/json", False, settled.append)  # fmt: skip
    await asyncio.wait_for(runner.on_task(task), 10)  # a question left hanging fails here
    [(exchange, key, message)] = sent.messages  # nothing to gw.retry.* or gw.dlx
    assert (exchange, key) == ("gw.results", "hukou.newborn.hukou")
    return ResultMessage.parse(message.body), settled, sent


def timers(state: CaseState, result: ResultMessage) -> list[str]:
    """The poll timers the orchestrator writes on this result."""
    return [t.task_id for t in planner.on_result(state, ctx(), result).timers]


@pytest.mark.parametrize(
    ("outcome", "kw"),
    [("completed", COMPLETED), ("denied", {"reason": "not born here"}),
     ("suspended", {"reason": "waiting for the court"})],
)  # fmt: skip
async def test_a_decision_taken_at_once_travels_in_the_receipt_result(
    state: CaseState, outcome: str, kw: dict[str, Any]
) -> None:
    police = Police(decision(state, outcome, **kw))
    result, settled, _ = await handed_over(state, police)
    assert police.checks == [(state.task("hukou").request_id, "HK1")]  # asked once, by number
    assert settled == ["ack"]
    assert result.kind == "receipt" and result.case_number == "HK1"
    assert result.decision is not None and result.decision.outcome == outcome
    tr = planner.on_result(state, ctx(), result)
    after = apply(state, tr).task("hukou")
    assert after.status.value == outcome
    # a suspended case is still asked about later; a decided one needs no timer
    assert [t.task_id for t in tr.timers] == (["app1.hukou"] if outcome == "suspended" else [])
    if outcome == "completed":
        assert apply(state, tr).provided["citizen_id"] == COMPLETED["provides"]["citizen_id"]


@pytest.mark.parametrize(
    "answer",
    [None, "in_progress", Retryable("HTTP 503"), Permanent("SOAP Client fault"),
     ValueError("a bug in check"), "hang"],
    ids=["pending", "in_progress", "retryable", "permanent", "crash", "no_answer_in_time"],
)  # fmt: skip
async def test_no_decision_yet_or_a_failed_question_leaves_the_receipt_and_its_timer(
    state: CaseState, answer: Exception | str | None
) -> None:
    given = decision(state, "in_progress") if answer == "in_progress" else answer
    police = Police(given)
    result, settled, _ = await handed_over(state, police, timeout_seconds=0.2)
    assert len(police.checks) == 1
    assert settled == ["ack"]  # handed over: not retried, not dead-lettered
    assert result.kind == "receipt" and result.case_number == "HK1" and result.decision is None
    assert timers(state, result) == ["app1.hukou"]  # the poll timer asks later
    assert apply(state, planner.on_result(state, ctx(), result)).task("hukou").status is (
        TaskStatus.SUBMITTED
    )


async def test_switched_off_the_department_is_not_asked(state: CaseState) -> None:
    police = Police(decision(state, "completed", **COMPLETED))
    result, settled, _ = await handed_over(state, police, poll_on_receipt=False)
    assert police.checks == [] and settled == ["ack"] and result.decision is None


async def test_a_department_that_is_not_polled_is_not_asked(state: CaseState) -> None:
    police = Police(decision(state, "completed", **COMPLETED), polls=False)
    result, _, _ = await handed_over(state, police)
    assert police.checks == [] and result.decision is None


async def test_no_question_once_a_maintenance_window_has_begun(state: CaseState) -> None:
    """The window opens while the submission is under way: the receipt is reported, and
    the department is not called again until the window ends (the timer waits too)."""
    windows = Maintenance.parse(["2026-11-18 14:00-15:00"], "Asia/Shanghai")  # NOW is 14:00
    times = iter([NOW - 1])  # before the send: available; after it: in the window

    def clock() -> float:
        return next(times, NOW + 1)

    police = Police(decision(state, "completed", **COMPLETED))
    result, settled, _ = await handed_over(state, police, maintenance=windows, clock=clock)
    assert police.checks == [] and settled == ["ack"] and result.decision is None


def test_the_setting_is_on_for_soap_and_off_for_rest_unless_given() -> None:
    """SOAP police have no callback; the REST platform's callback brings its decision, and
    a question right after each receipt would spend half of its rate for nothing."""
    assert SystemConfig(kind="soap").poll_on_receipt is True
    assert SystemConfig(kind="soap", poll_on_receipt=False).poll_on_receipt is False
    assert SystemConfig(kind="rest").poll_on_receipt is False
    assert SystemConfig(kind="rest", poll_on_receipt=True).poll_on_receipt is True
    assert SystemConfig(kind="filedrop").poll_on_receipt is False
    env = {"GATEWAY_SYSTEMS__HUKOU__KIND": "soap", "GATEWAY_SYSTEMS__PROVINCIAL__KIND": "rest",
           "GATEWAY_SYSTEMS__PROVINCIAL__POLL_ON_RECEIPT": "true"}  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("GATEWAY_CONFIG", raising=False)
        for key, value in env.items():
            patch.setenv(key, value)
        systems = load_settings().systems
    assert systems["hukou"].poll_on_receipt and systems["provincial"].poll_on_receipt
