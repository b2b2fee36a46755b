"""The orchestrator's two message kinds: a task to a connector, a result back.

    gw.tasks    <system>.<matter>.<step>   TaskMessage   → connector:<system>
    gw.results  <system>.<matter>.<step>   ResultMessage → orchestrator

Both are JSON; both carry DESIGN's headers (``x-task-id``, ``x-attempt``, ``traceparent``)
and ``correlation_id`` = application id.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from connectors.base import Decision, DepartmentRequest, Gap, Receipt
from gateway.broker.messages import Message, new_traceparent
from gateway.broker.topology import HEADER_ATTEMPT, HEADER_TASK_ID, HEADER_TRACEPARENT
from gateway.errors import Permanent

ResultKind = Literal["receipt", "decision", "dead_lettered"]


def routing_key(system: str, matter: str, step: str) -> str:
    return f"{system}.{matter}.{step}"


def task_message(
    request: DepartmentRequest, catalogue_version: str, traceparent: str | None = None
) -> Message:
    body = {**asdict(request), "catalogue_version": catalogue_version}
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

    @classmethod
    def of_receipt(cls, request: DepartmentRequest, receipt: Receipt) -> ResultMessage:
        return cls(
            task_id=task_of(request.task_id),
            application_id=request.application_id,
            system=request.system,
            kind="receipt",
            attempt=request.attempt,
            case_number=receipt.case_number,
            accepted_at=receipt.accepted_at,
        )

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
        body = asdict(self)
        body["gaps"] = [dict(g) for g in self.gaps]
        return Message(
            body=json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(),
            correlation_id=self.application_id,
            headers={
                HEADER_TASK_ID: self.task_id,
                HEADER_ATTEMPT: self.attempt,
                HEADER_TRACEPARENT: traceparent or new_traceparent(),
            },
        )

    @classmethod
    def parse(cls, body: bytes) -> ResultMessage:
        try:
            data: dict[str, Any] = json.loads(body)
            data["gaps"] = tuple(dict(g) for g in data.get("gaps", ()))
            data["provides"] = {str(k): str(v) for k, v in data.get("provides", {}).items()}
            result = cls(**data)
        except (ValueError, TypeError, AttributeError) as exc:
            raise Permanent(
                f"result message is malformed: {exc!r}", code="bad_result_message"
            ) from None
        if result.kind not in ("receipt", "decision", "dead_lettered"):
            raise Permanent(f"unknown result kind {result.kind!r}", code="bad_result_message")
        return result

    def gap_list(self) -> list[Gap]:
        return [Gap(g.get("field", ""), g.get("message", "")) for g in self.gaps]


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
