"""The orchestrator's two message kinds: a task to a connector, a result back.

    gw.tasks    <system>.<matter>.<step>   TaskMessage   → connector:<system>
    gw.results  <system>.<matter>.<step>   ResultMessage → orchestrator

Both are JSON; both carry DESIGN's headers (``x-task-id``, ``x-attempt``, ``traceparent``)
and ``correlation_id`` = application id.

A department that decides at once answers with its decision in the receipt: one receipt
result then carries it as a ``decision`` object (the decision fields alone), which the
planner applies in the same transition. Separate receipt and decision messages (what
runners sent before) are still read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from connectors.base import Decision, DepartmentRequest, Gap, Receipt
from gateway.broker.messages import Message, new_traceparent
from gateway.broker.topology import HEADER_ATTEMPT, HEADER_TASK_ID, HEADER_TRACEPARENT
from gateway.errors import Permanent

ResultKind = Literal["receipt", "decision", "dead_lettered"]
DECISION_FIELDS = (
    "outcome",
    "case_number",
    "provides",
    "certificate",
    "reason",
    "gaps",
    "decided_at",
)


_REQUEST_FIELDS = tuple(f.name for f in fields(DepartmentRequest))


def routing_key(system: str, matter: str, step: str) -> str:
    return f"{system}.{matter}.{step}"


def task_message(
    request: DepartmentRequest, catalogue_version: str, traceparent: str | None = None
) -> Message:
    # shallow, unlike ``asdict``, which deep-copies ``fields`` only for json to read it
    body = {name: getattr(request, name) for name in _REQUEST_FIELDS}
    body["catalogue_version"] = catalogue_version
    return Message(
        body=json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(),
        correlation_id=request.application_id,
        headers={
            HEADER_TASK_ID: request.task_id,
            HEADER_ATTEMPT: request.attempt,
            HEADER_TRACEPARENT: traceparent or new_traceparent(),
        },
    )


def parse_task(body: bytes) -> DepartmentRequest:
    try:
        data = json.loads(body)
        return DepartmentRequest(
            task_id=str(data["task_id"]),
            application_id=str(data["application_id"]),
            matter=str(data["matter"]),
            task=str(data["task"]),
            system=str(data["system"]),
            operation=str(data["operation"]),
            attempt=int(data["attempt"]),
            fields=dict(data["fields"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise Permanent(f"task message is malformed: {exc!r}", code="bad_task_message") from None


@dataclass(frozen=True, slots=True)
class ResultMessage:
    """A receipt (the department took it) or a decision, for one task attempt."""

    task_id: str  # "<application>.<step>" — the task, whatever the attempt
    application_id: str
    system: str
    kind: ResultKind
    attempt: int
    outcome: str | None = None  # for decisions: connectors.base.Outcome
    case_number: str | None = None
    accepted_at: float | None = None
    provides: Mapping[str, str] = field(default_factory=dict)
    certificate: str | None = None
    reason: str | None = None
    gaps: tuple[Mapping[str, str], ...] = ()
    decided_at: float | None = None
    decision: ResultMessage | None = None  # a receipt's: the department decided at once

    @classmethod
    def of_receipt(cls, request: DepartmentRequest, receipt: Receipt) -> ResultMessage:
        """The receipt, with the department's decision when it came in the receipt."""
        decided = receipt.decision
        return cls(
            task_id=task_of(request.task_id),
            application_id=request.application_id,
            system=request.system,
            kind="receipt",
            attempt=request.attempt,
            case_number=receipt.case_number,
            accepted_at=receipt.accepted_at,
            decision=None
            if decided is None
            else cls.of_decision(request.system, request.attempt, decided),
        )

    @classmethod
    def dead_lettered(
        cls, task_id: str, application_id: str, system: str, attempt: int, reason: str
    ) -> ResultMessage:
        """The gateway's own answer for a task whose message or answer was parked: the
        orchestrator blocks the application with ``reason``."""
        return cls(task_id, application_id, system, "dead_lettered", attempt, reason=reason)

    @classmethod
    def of_decision(cls, system: str, attempt: int, decision: Decision) -> ResultMessage:
        task_id = task_of(decision.task_id)
        return cls(
            task_id=task_id,
            application_id=task_id.split(".")[0],
            system=system,
            kind="decision",
            attempt=attempt,
            outcome=decision.outcome,
            case_number=decision.case_number,
            provides=dict(decision.provides),
            certificate=decision.certificate,
            reason=decision.reason,
            gaps=tuple({"field": g.field, "message": g.message} for g in decision.gaps),
            decided_at=decision.decided_at,
        )

    def message(self, traceparent: str | None = None) -> Message:
        body = self._fields()
        if self.decision is not None:  # only the decision's own fields: the rest is ours
            decided = self.decision._fields()
            body["decision"] = {k: decided[k] for k in DECISION_FIELDS}
        return Message(
            body=json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(),
            correlation_id=self.application_id,
            headers={
                HEADER_TASK_ID: self.task_id,
                HEADER_ATTEMPT: self.attempt,
                HEADER_TRACEPARENT: traceparent or new_traceparent(),
            },
        )

    def _fields(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "application_id": self.application_id,
            "system": self.system,
            "kind": self.kind,
            "attempt": self.attempt,
            "outcome": self.outcome,
            "case_number": self.case_number,
            "accepted_at": self.accepted_at,
            "provides": dict(self.provides),
            "certificate": self.certificate,
            "reason": self.reason,
            "gaps": [dict(g) for g in self.gaps],
            "decided_at": self.decided_at,
        }

    @classmethod
    def parse(cls, body: bytes) -> ResultMessage:
        try:
            data: dict[str, Any] = json.loads(body)
            decided = data.pop("decision", None)
            result = cls(**_typed(data))
            if decided is not None:
                if result.kind != "receipt" or set(decided) - set(DECISION_FIELDS):
                    raise ValueError("a decision object belongs in a receipt, with its fields")
                result = replace(
                    result,
                    decision=cls(
                        task_id=result.task_id,
                        application_id=result.application_id,
                        system=result.system,
                        kind="decision",
                        attempt=result.attempt,
                        **_typed(dict(decided)),
                    ),
                )
        except (ValueError, TypeError, AttributeError) as exc:
            raise Permanent(
                f"result message is malformed: {exc!r}", code="bad_result_message"
            ) from None
        if result.kind not in ("receipt", "decision", "dead_lettered"):
            raise Permanent(f"unknown result kind {result.kind!r}", code="bad_result_message")
        if result.decision is not None and result.decision.outcome is None:
            raise Permanent("a receipt's decision has no outcome", code="bad_result_message")
        return result

    def gap_list(self) -> list[Gap]:
        return [Gap(g.get("field", ""), g.get("message", "")) for g in self.gaps]


def _typed(data: dict[str, Any]) -> dict[str, Any]:
    data["gaps"] = tuple(dict(g) for g in data.get("gaps", ()))
    data["provides"] = {str(k): str(v) for k, v in data.get("provides", {}).items()}
    return data


def task_of(request_id: str) -> str:
    """``<app>.<step>[.c<n>|.r<n>]`` → ``<app>.<step>``: the task behind a request id."""
    parts = request_id.split(".")
    return ".".join(parts[:2])


def attempt_of(request_id: str) -> int:
    """``<app>.<step>`` → 1, ``<app>.<step>.c2`` → 3: the attempt a request id belongs to."""
    parts = request_id.split(".")
    if len(parts) > 2 and parts[2][:1] in ("c", "r") and parts[2][1:].isdigit():
        return int(parts[2][1:]) + 1
    return 1
