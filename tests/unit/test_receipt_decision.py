"""A department that decides at once: one receipt result carrying the decision.

The connector runner sends it as one ``gw.results`` message; the planner applies the
receipt and the decision in one transition, with the same task, timeline, events and
timers as the two messages runners sent before (which are still read).
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from typing import Any

import pytest

from connectors.base import Decision, DepartmentRequest, Gap, Receipt
from gateway.broker.messages import Delivery, Message
from gateway.errors import Permanent
from gateway.orchestration import planner
from gateway.orchestration.messages import ResultMessage
from gateway.orchestration.records import CaseState, TaskStatus, Transition
from gateway.orchestration.runner import ConnectorRunner
from tests.unit.test_planner import NOW, answer, apply, ctx, new_case

GAP = Gap("subjects.child.name", "illegible")
OUTCOMES: dict[str, dict[str, Any]] = {
    "completed": {"provides": {"birth_certificate_no": "A1"}, "certificate": "A1"},
    "denied": {"reason": "not born here"},
    "correction_requested": {"gaps": (GAP,), "reason": "name"},
    "suspended": {"reason": "waiting for the court"},
    "in_progress": {},
}


def _request(state: CaseState, step: str) -> DepartmentRequest:
    task = state.task(step)
    return DepartmentRequest(
        task.request_id, "app1", task.matter, step, task.system, task.operation, task.attempt, {}
    )


def _receipt(state: CaseState, step: str, outcome: str, **kw: Any) -> Receipt:
    task = state.task(step)
    decided = Decision(task.request_id, outcome, f"C-{step}", decided_at=NOW + 2, **kw)  # type: ignore[arg-type]
    return Receipt(f"C-{step}", NOW - 30, decided)


def _timers(before: set[str], *transitions: Transition) -> set[tuple[str, float]]:
    """The timer rows after each transition as the store writes them: drops, then inserts."""
    rows = {(t, 0.0) for t in before}
    for tr in transitions:
        rows = {r for r in rows if r[0] not in tr.drop_timers}
        rows |= {(t.task_id, t.due_at) for t in tr.timers}
    return rows


def _sent(tr: Transition) -> list[tuple[str, str, bytes, dict[str, Any]]]:
    """The outbox without the random trace ids: exchange, routing key, body, headers."""
    return [
        (
            o.exchange,
            o.routing_key,
            o.message.body,
            {k: v for k, v in o.message.headers.items() if k != "traceparent"},
        )
        for o in tr.outbox
    ]


def _started_at(step: str) -> CaseState:
    state = apply(new_case(), planner.start(new_case(), ctx()))
    if step == "hukou":  # a polled system: the receipt sets a timer the decision drops
        state, _ = answer(state, "birth_certificate", provides={"birth_certificate_no": "A1"})
    return state


@pytest.mark.parametrize("step", ["birth_certificate", "hukou"])
@pytest.mark.parametrize("outcome", list(OUTCOMES))
def test_one_message_makes_the_transition_the_two_messages_made(step: str, outcome: str) -> None:
    state = _started_at(step)
    receipt = _receipt(state, step, outcome, **OUTCOMES[outcome])
    request = _request(state, step)
    combined = ResultMessage.of_receipt(request, receipt)
    assert combined.decision is not None and combined.decision.outcome == outcome
    # before: a receipt result, then a decision result, each its own transition
    alone = ResultMessage.of_receipt(request, Receipt(receipt.case_number, receipt.accepted_at))
    tr1 = planner.on_result(state, ctx(), alone)
    assert receipt.decision is not None
    decision = ResultMessage.of_decision(request.system, request.attempt, receipt.decision)
    tr2 = planner.on_result(apply(state, tr1), ctx(), decision)
    assert tr1.changed and tr2.changed
    # now: one message through the wire, one transition
    tr = planner.on_result(state, ctx(), ResultMessage.parse(combined.message().body))
    assert apply(state, tr) == apply(apply(state, tr1), tr2)
    assert tr.timeline == tr1.timeline + tr2.timeline
    assert tr.timeline[0].kind == "task.submitted"
    assert _sent(tr) == _sent(tr1) + _sent(tr2)  # the same events and tasks, in order
    assert _timers(set(), tr) == _timers(set(), tr1, tr2)
    task = apply(state, tr).task(step)
    assert task.clock_started_at == NOW - 30 and task.case_number == f"C-{step}"
    polled = step == "hukou" and outcome in ("in_progress", "suspended")
    assert bool(tr.timers) is polled  # a decided task gets no timer to be dropped later


def test_a_redelivered_combined_message_changes_nothing() -> None:
    state = _started_at("birth_certificate")
    combined = ResultMessage.of_receipt(
        _request(state, "birth_certificate"),
        _receipt(state, "birth_certificate", "in_progress"),
    )
    state = apply(state, planner.on_result(state, ctx(), combined))
    assert state.task("birth_certificate").status is TaskStatus.IN_PROGRESS
    assert not planner.on_result(state, ctx(NOW + 5), combined).changed


def test_the_decision_counts_when_an_earlier_answer_already_moved_the_task() -> None:
    """A callback's interim answer came before the runner's receipt: as with two messages,
    the receipt part is late and the decision in it still applies."""
    state = _started_at("birth_certificate")
    task = state.task("birth_certificate")
    interim = ResultMessage(task.id, "app1", "hospital", "decision", 1, outcome="in_progress")
    state = apply(state, planner.on_result(state, ctx(), interim))
    combined = ResultMessage.of_receipt(
        _request(state, "birth_certificate"),
        _receipt(state, "birth_certificate", "completed", provides={"birth_certificate_no": "A1"}),
    )
    tr = planner.on_result(state, ctx(NOW + 5), combined)
    assert [e.kind for e in tr.timeline][:1] == ["task.completed"]  # no task.submitted
    assert apply(state, tr).task("birth_certificate").status is TaskStatus.COMPLETED
    assert {"vaccination", "hukou"} <= {t.step for t in tr.tasks}  # the next ones dispatched


def test_the_wire_form_round_trips_and_carries_only_the_decision_fields() -> None:
    state = _started_at("birth_certificate")
    gaps = {"gaps": (GAP,), "reason": "name"}
    receipt = _receipt(state, "birth_certificate", "correction_requested", **gaps)
    combined = ResultMessage.of_receipt(_request(state, "birth_certificate"), receipt)
    body = json.loads(combined.message().body)
    assert body["kind"] == "receipt" and body["outcome"] is None
    assert body["decision"] == {
        "outcome": "correction_requested",
        "case_number": "C-birth_certificate",
        "provides": {},
        "certificate": None,
        "reason": "name",
        "gaps": [{"field": "subjects.child.name", "message": "illegible"}],
        "decided_at": NOW + 2,
    }
    assert ResultMessage.parse(combined.message().body) == combined
    plain = ResultMessage.of_receipt(_request(state, "birth_certificate"), Receipt("C-1", 1.0))
    assert "decision" not in json.loads(plain.message().body)
    assert ResultMessage.parse(plain.message().body) == plain


@pytest.mark.parametrize(
    "change",
    [
        {"kind": "decision", "outcome": "completed"},  # only a receipt carries one
        {"decision": {"outcome": "completed", "task_id": "app1.hukou"}},  # a receipt's field
        {"decision": {"case_number": "C-1"}},  # no outcome
        {"decision": ["completed"]},
    ],
)
def test_a_malformed_decision_object_is_refused(change: dict[str, Any]) -> None:
    body = {
        "task_id": "app1.hukou",
        "application_id": "app1",
        "system": "hukou",
        "kind": "receipt",
        "attempt": 1,
        "decision": {"outcome": "completed"},
        **change,
    }
    with pytest.raises(Permanent, match=r"result message is malformed|no outcome"):
        ResultMessage.parse(json.dumps(body).encode())


# --- the connector runner -------------------------------------------------------------------
@dataclass
class AtOnce:
    """A department that answers with its decision in the receipt."""

    decision: Decision | None
    system: str = "hospital"
    polls: bool = False

    async def send(self, request: DepartmentRequest) -> Receipt:
        return Receipt("C-1", 1.0, self.decision)

    async def check(self, request: DepartmentRequest, case_number: str | None) -> None:
        return None

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


REQUEST = DepartmentRequest(
    "app1.birth_certificate", "app1", "newborn", "birth_certificate", "hospital", "issue", 1, {}
)


@pytest.mark.parametrize("decided", [None, Decision("app1.birth_certificate", "completed")])
async def test_the_runner_publishes_one_result_whether_or_not_the_department_decided(
    decided: Decision | None,
) -> None:
    sent, settled = Sent(), list[str]()
    runner = ConnectorRunner(
        "hospital", AtOnce(decided), NoCases(), sent.publish,  # type: ignore[arg-type]
        poll_seconds=1, rng=random.Random(1),
    )  # fmt: skip
    body = json.dumps({**asdict(REQUEST), "catalogue_version": "1"}).encode()
    await runner.on_task(
        Delivery(body, "gw.tasks", "hospital.newborn.birth_certificate", "m1", "app1", None,
                 {"x-attempt": 1}, "application/json", False, settled.append)
    )  # fmt: skip
    assert settled == ["ack"]
    [(exchange, key, message)] = sent.messages
    assert (exchange, key) == ("gw.results", "hospital.newborn.birth_certificate")
    result = ResultMessage.parse(message.body)
    assert result.kind == "receipt" and result.case_number == "C-1"
    assert (result.decision and result.decision.outcome) == (decided and decided.outcome)
