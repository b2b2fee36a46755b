"""JSON views for operators: masked by default, full only for an audited unmasked read.

Pure functions over store records; the CLI prints them, the API returns them.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from gateway.admin.outcomes import BatchReplay, CaseDetail, LetterDetail, Purged, Replayed
from gateway.masking import mask_text, mask_value
from gateway.orchestration.records import TaskRecord
from gateway.store.audit import AuditEntry
from gateway.store.disclosures import Disclosure
from gateway.store.letters import LetterGroup, ParkedLetter
from gateway.store.records import ApplicationRecord


def when(ts: float | None, tz: dt.tzinfo) -> str | None:
    return None if ts is None else dt.datetime.fromtimestamp(ts, tz).isoformat(timespec="seconds")


def letter_summary(p: ParkedLetter, tz: dt.tzinfo) -> dict[str, Any]:
    d = p.record.letter
    return {
        "id": p.id,
        "status": p.status.value,
        "system": d.system,
        "matter": d.matter,
        "application_id": d.application_id,
        "portal_id": d.portal_id,
        "exchange": d.exchange,
        "routing_key": d.routing_key,
        "reason": mask_text(d.reason, ()),
        "error_kind": d.error_kind,
        "attempts": d.attempts,
        "first_failed_at": when(d.first_failed_at, tz),
        "last_failed_at": when(d.last_failed_at, tz),
        "replays": p.replays,
        "replayed_at": when(p.replayed_at, tz),
        "replayed_by": p.replayed_by,
        "replay_reason": _text(p.replay_reason),
        "purged_at": when(p.purged_at, tz),
        "purged_by": p.purged_by,
        "purge_reason": _text(p.purge_reason),
    }


def _text(free: str | None) -> str | None:
    """An operator's free text, masked: it may name a citizen."""
    return None if free is None else mask_text(free, ())


def letter_detail(detail: LetterDetail, tz: dt.tzinfo) -> dict[str, Any]:
    d = detail.letter.record.letter
    view = letter_summary(detail.letter, tz)
    headers = json.loads(d.headers_json or "{}")
    body: Any
    try:
        body = json.loads(d.body) if d.body else None
    except ValueError:
        body = d.body.decode("utf-8", "replace")
    edits: list[dict[str, Any]] = [
        {
            "id": e.id,
            "idempotency_key": e.idempotency_key,
            "diff": [dict(c) for c in e.diff],
            "reason": e.reason,
            "operator": e.operator,
            "at": when(e.at, tz),
        }
        for e in detail.edits
    ]
    if detail.unmasked:
        view.update(reason=d.reason, headers=headers, body=body, edits=edits, unmasked=True)
        view.update(replay_reason=detail.letter.replay_reason)
        view.update(purge_reason=detail.letter.purge_reason)
    else:
        view.update(
            headers=mask_value(headers, known=()),
            body=mask_value(body, known=()),
            edits=[
                {**e, "reason": _text(e["reason"]), "diff": [_masked_change(c) for c in e["diff"]]}
                for e in edits
            ],
            unmasked=False,
        )
    view["message_id"] = d.message_id
    return view


def _masked_change(change: dict[str, Any]) -> dict[str, Any]:
    """A diff entry masked as its field would be: by the last part of its path."""
    key = str(change.get("path", "")).rsplit(".", 1)[-1]
    return {
        "path": change.get("path"),
        "before": mask_value(change.get("before"), key, ()),
        "after": mask_value(change.get("after"), key, ()),
    }


def group_view(g: LetterGroup, tz: dt.tzinfo) -> dict[str, Any]:
    return {
        "system": g.system,
        "error_kind": g.error_kind,
        "reason": mask_text(g.reason, ()),
        "count": g.count,
        "first_failed_at": when(g.first_failed_at, tz),
        "last_failed_at": when(g.last_failed_at, tz),
        "latest_id": g.latest_id,
    }


def replayed_view(r: Replayed) -> dict[str, Any]:
    return {"id": r.letter_id, "sent": r.sent, "key": r.key, "note": r.note, "pending": r.pending}


def batch_view(b: BatchReplay) -> dict[str, Any]:
    return {
        "replayed": [replayed_view(r) for r in b.replayed],
        "refused": [{"id": i, "detail": mask_text(why, ())} for i, why in b.refused],
        "more": b.more,
        "next_after": b.next_after,
    }


def purged_view(p: Purged) -> dict[str, Any]:
    return {
        "id": p.letter_id,
        "status": "purged",
        "cancelled_task": p.cancelled,
        "application_status": p.application_status,
    }


def application_summary(a: ApplicationRecord, tz: dt.tzinfo) -> dict[str, Any]:
    return {
        "application_id": a.id,
        "portal_id": a.portal_id,
        "matter": a.matter,
        "status": a.status.value,
        "channel": a.channel,
        "received_at": when(a.created_at, tz),
        "updated_at": when(a.updated_at, tz),
    }


def task_view(t: TaskRecord, now: float, tz: dt.tzinfo) -> dict[str, Any]:
    running = t.status.value in ("dispatched", "submitted", "in_progress")
    return {
        "task_id": t.id,
        "step": t.step,
        "system": t.system,
        "status": t.status.value,
        "attempt": t.attempt,
        "request_id": t.request_id,
        "case_number": t.case_number,
        "reason": None if t.reason is None else mask_text(t.reason, ()),
        "due_at": when(t.due_at, tz),
        "overdue": running
        and t.due_at is not None
        and t.clock_stopped_at is None
        and now > t.due_at,
    }


def application_detail(c: CaseDetail, now: float, tz: dt.tzinfo) -> dict[str, Any]:
    app = c.state.application
    envelope = json.loads(app.envelope_json)
    view = application_summary(app, tz)
    view.update(
        catalogue_version=c.state.catalogue_version,
        tasks=[task_view(t, now, tz) for t in c.state.tasks],
        timeline=[
            {"at": when(e.at, tz), "kind": e.kind, "task_id": e.task_id, "detail": dict(e.detail)}
            for e in c.timeline
        ],
        envelope=envelope,
        provided=dict(c.state.provided),
        unmasked=c.unmasked,
        disclosures=[disclosure_view(d, tz) for d in c.disclosures],
    )
    if c.unmasked:
        for t, raw in zip(view["tasks"], c.state.tasks, strict=True):
            t["reason"] = raw.reason
        return view
    for key in ("envelope", "provided", "timeline"):
        view[key] = mask_value(view[key], known=())
    return view


def disclosure_view(d: Disclosure, tz: dt.tzinfo) -> dict[str, Any]:
    """Which department system received which personal fields: names only, never values."""
    return {
        "system": d.system,
        "operation": d.operation,
        "task_id": d.task_id,
        "attempt": d.attempt,
        "at": when(d.at, tz),
        "fields": list(d.fields),
    }


def overdue_view(t: TaskRecord, now: float, tz: dt.tzinfo) -> dict[str, Any]:
    late = None if t.due_at is None else now - t.due_at
    return {
        "application_id": t.application_id,
        "matter": t.matter,
        "step": t.step,
        "system": t.system,
        "status": t.status.value,
        "due_at": when(t.due_at, tz),
        "state": "overdue" if late is not None and late >= 0 else "due_soon",
        "seconds_late": late,
    }


def audit_view(e: AuditEntry, tz: dt.tzinfo) -> dict[str, Any]:
    return {
        "id": e.id,
        "at": when(e.at, tz),
        "operator": e.operator,
        "action": e.action,
        "target": e.target,
        "reason": _text(e.reason),
        "details": mask_value(dict(e.details), known=()),
    }
