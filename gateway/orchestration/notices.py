"""What the process manager tells portals: events on their own routing keys, and the
results pack the window hands out. Pure: events go to the transition's outbox."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from gateway import events
from gateway.broker.topology import EVENTS
from gateway.catalogue.model import Matter
from gateway.orchestration.records import CaseState, Context, Outgoing, TaskRecord, Transition


def results_pack(tasks: Iterable[TaskRecord], matter: Matter) -> list[dict[str, Any]]:
    """Per department: what the window hands out (certificate and case numbers)."""
    pack = []
    for t in tasks:
        step = matter.step(t.step)
        pack.append(
            {
                "step": t.step,
                "title": step.title,
                "department": step.department,
                "status": t.status.value,
                "case_number": t.case_number,
                "certificate": t.certificate,
                "provides": dict(t.provides),
            }
        )
    return pack


def event(
    tr: Transition,
    state: CaseState,
    ctx: Context,
    name: str,
    subject: tuple[str, ...],
    data: Mapping[str, Any],
) -> None:
    app = state.application
    tr.outbox.append(
        Outgoing(
            EVENTS,
            events.routing_key(app.portal_id, app.matter, name),
            events.event_message(
                name,
                portal_id=app.portal_id,
                matter=app.matter,
                subject=subject,
                application_id=app.id,
                data=data,
                occurred_at=ctx.now,
            ),
        )
    )
