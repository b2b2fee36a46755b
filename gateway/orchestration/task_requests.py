"""The task message of a task's attempt, and the dead letters the gateway writes itself.

Pure: built from the case and the catalogue, put in a transition's outbox by the caller.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from connectors.base import DepartmentRequest
from gateway.broker.messages import Message, uuid7
from gateway.broker.topology import (
    DLX,
    HEADER_ERROR_KIND,
    HEADER_ORIGINAL_EXCHANGE,
    HEADER_ORIGINAL_ROUTING_KEY,
    HEADER_REASON,
    TASKS,
)
from gateway.catalogue.fields import PROVIDED, select
from gateway.catalogue.model import Catalogue, Step
from gateway.orchestration.messages import routing_key, task_message
from gateway.orchestration.records import CaseState, Outgoing, TaskRecord


def task_outgoing(
    state: CaseState, catalogue: Catalogue, task: TaskRecord
) -> tuple[Outgoing, Step]:
    """The task message of ``task``'s current attempt, rebuilt from the case (for a
    dead letter the gateway writes itself, e.g. a status query the department refused)."""
    app = state.application
    step = catalogue.matter(app.matter).step(task.step)
    envelope = json.loads(app.envelope_json)
    fields = _available(envelope, step.needs, state.provided)
    version = state.catalogue_version or catalogue.version
    return outgoing_for(task, step, fields, version), step


def synthetic_letter(
    task: TaskRecord,
    step: Step,
    envelope: Mapping[str, Any],
    provided: Mapping[str, str],
    catalogue_version: str,
    reason: str,
) -> Outgoing:
    """A dead letter for a task that failed without a message to park (a field missing at
    dispatch, a refused status query): its task message as it would have been sent, through
    ``gw.dlx`` with the reason — so an operator replays it like any other."""
    fields = _available(envelope, step.needs, provided)
    return dead_letter_of(outgoing_for(task, step, fields, catalogue_version), reason)


def dead_letter_of(
    o: Outgoing, reason: str, kind: str = "permanent", extra: Mapping[str, Any] | None = None
) -> Outgoing:
    """``o`` as a dead letter through ``gw.dlx``, with the headers ``park`` would add."""
    m = o.message
    headers = {
        **m.headers,
        **(extra or {}),
        HEADER_REASON: reason[:2000],
        HEADER_ERROR_KIND: kind,
        HEADER_ORIGINAL_EXCHANGE: o.exchange,
        HEADER_ORIGINAL_ROUTING_KEY: o.routing_key,
    }
    message = Message(
        body=m.body,
        message_id=uuid7(),  # kept in the outbox row: a republish parks the same letter
        correlation_id=m.correlation_id,
        headers=headers,
        content_type=m.content_type,
    )
    return Outgoing(DLX, o.routing_key, message)


def _available(
    envelope: Mapping[str, Any], needs: Iterable[str], provided: Mapping[str, str]
) -> dict[str, Any]:
    """``select`` without the ``provided.<name>`` values nobody provided."""
    head = f"{PROVIDED}."
    have = [n for n in needs if not n.startswith(head) or n[len(head) :] in provided]
    return select(envelope, have, provided)


def outgoing_for(
    task: TaskRecord, step: Step, fields: dict[str, Any], catalogue_version: str
) -> Outgoing:
    request = DepartmentRequest(
        task_id=task.request_id,
        application_id=task.application_id,
        matter=task.matter,
        task=step.key,
        system=step.system,
        operation=step.operation,
        attempt=task.attempt,
        fields=fields,
    )
    return Outgoing(
        TASKS,
        routing_key(step.system, task.matter, step.key),
        task_message(request, catalogue_version),
        request,
    )
