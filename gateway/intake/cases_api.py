"""What a portal does with an application after submitting it: follow it, correct it,
withdraw it, and record that the window handed out the results.

    GET  /v1/applications/{id}               status, tasks with due times, timeline, results
    POST /v1/applications/{id}/corrections   {"changes": {"<dotted path>": value, ...}}
    POST /v1/applications/{id}/withdrawal    {"reason": "..."}
    POST /v1/applications/{id}/delivery      {}

A portal sees and changes only its own applications (anything else is 404).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import structlog
from aiohttp import web

from gateway.calendar import WorkCalendar, default_calendar
from gateway.catalogue.model import CURRENT_VERSION, load
from gateway.envelope import ENVELOPE_ADAPTER, parse_envelope
from gateway.errors import InvalidEnvelope
from gateway.intake.auth import PortalAuth
from gateway.intake.problem_http import problem_response
from gateway.orchestration import planner
from gateway.orchestration.clock import budget_view, task_estimate
from gateway.orchestration.orchestrator import Orchestrator, changed_paths
from gateway.orchestration.records import CaseState, TaskStatus, TimelineEntry
from gateway.problems import Problem
from gateway.store import ApplicationStatus, Store

MAX_CHANGES = 50
RUNNING = frozenset({TaskStatus.DISPATCHED, TaskStatus.SUBMITTED, TaskStatus.IN_PROGRESS})
_NOT_FOUND = Problem(
    404,
    "application-not-found",
    "Application not found",
    "no application with this id for this portal",
)


class CasesApi:
    def __init__(
        self,
        auth: PortalAuth,
        store: Store,
        orchestrator: Orchestrator,
        *,
        timezone: dt.tzinfo,
        clock: Callable[[], float] = time.time,
        calendar: WorkCalendar | None = None,
    ) -> None:
        self._auth = auth
        self._calendar = calendar or default_calendar()
        self._store = store
        self._orchestrator = orchestrator
        self._tz = timezone
        self._clock = clock

    def add_routes(self, app: web.Application) -> None:
        base = "/v1/applications/{application_id}"
        app.router.add_get(base, self.show)
        app.router.add_post(base + "/corrections", self.correct)
        app.router.add_post(base + "/withdrawal", self.withdraw)
        app.router.add_post(base + "/delivery", self.deliver)

    async def _own_case(self, request: web.Request) -> tuple[CaseState | None, bytes]:
        body = await request.read()
        portal_id = await self._auth.verify(request.headers, request.method, request.raw_path, body)
        app_id = request.match_info["application_id"]
        structlog.contextvars.bind_contextvars(portal_id=portal_id, application_id=app_id)
        state = await self._store.cases.load(app_id) if len(app_id) <= 64 else None
        if state is None or state.application.portal_id != portal_id:
            return None, body  # never reveal that another portal's application exists
        return state, body

    async def show(self, request: web.Request) -> web.Response:
        state, _ = await self._own_case(request)
        if state is None:
            return problem_response(_NOT_FOUND)
        timeline = await self._store.cases.timeline(state.application.id)
        view = self.view(state, timeline)
        view["timeline"] = [
            {"at": self._when(e.at), "kind": e.kind, "task_id": e.task_id, "detail": dict(e.detail)}
            for e in timeline
        ]
        return web.json_response(view, dumps=_dumps)

    async def correct(self, request: web.Request) -> web.Response:
        state, body = await self._own_case(request)
        if state is None:
            return problem_response(_NOT_FOUND)
        changes = _json_object(body).get("changes")
        if not isinstance(changes, dict) or not changes or len(changes) > MAX_CHANGES:
            return problem_response(
                Problem(
                    400,
                    "corrections-invalid",
                    "Corrections invalid",
                    f'send {{"changes": {{"<dotted envelope path>": value}}}} with 1 to '
                    f"{MAX_CHANGES} changes",
                )
            )
        envelope = copy.deepcopy(json.loads(state.application.envelope_json))
        for path, value in changes.items():
            _set(envelope, str(path), value)
        try:
            corrected = parse_envelope(json.dumps(envelope, ensure_ascii=False).encode())
        except InvalidEnvelope as exc:
            return problem_response(
                Problem(
                    422,
                    "invalid-envelope",
                    "Invalid application envelope",
                    f"{len(exc.errors)} field(s) are wrong after the corrections",
                    errors=exc.as_dicts(),
                )
            )
        new_json = ENVELOPE_ADAPTER.dump_json(corrected).decode()
        changed = list(
            changed_paths(json.loads(state.application.envelope_json), json.loads(new_json))
        )
        try:
            await self._orchestrator.apply(
                state.application.id, lambda s, c: planner.on_correction(s, c, new_json, changed)
            )
        except planner.NotAllowed as exc:
            return problem_response(Problem(409, "not-allowed-now", "Not allowed now", str(exc)))
        return await self._current(state.application.id, 202)

    async def withdraw(self, request: web.Request) -> web.Response:
        state, body = await self._own_case(request)
        if state is None:
            return problem_response(_NOT_FOUND)
        reason = str(_json_object(body).get("reason") or "withdrawn by the applicant")[:500]
        try:
            await self._orchestrator.apply(
                state.application.id, lambda s, c: planner.on_withdrawal(s, c, reason)
            )
        except planner.NotAllowed as exc:
            return problem_response(Problem(409, "not-allowed-now", "Not allowed now", str(exc)))
        return await self._current(state.application.id, 200)

    async def deliver(self, request: web.Request) -> web.Response:
        state, _ = await self._own_case(request)
        if state is None:
            return problem_response(_NOT_FOUND)
        try:
            await self._orchestrator.apply(state.application.id, planner.on_delivery)
        except planner.NotAllowed as exc:
            return problem_response(Problem(409, "not-allowed-now", "Not allowed now", str(exc)))
        return await self._current(state.application.id, 200)

    async def _current(self, app_id: str, status: int) -> web.Response:
        state = await self._store.cases.load(app_id)
        assert state is not None
        timeline: list[TimelineEntry] = []
        if state.application.status is ApplicationStatus.BLOCKED:  # its reason is there
            timeline = await self._store.cases.timeline(app_id)
        return web.json_response(self.view(state, timeline), status=status, dumps=_dumps)

    def view(self, state: CaseState, timeline: Sequence[TimelineEntry] = ()) -> dict[str, Any]:
        app = state.application
        now = self._clock()
        matter = None
        if state.tasks:
            matter = load(state.catalogue_version or CURRENT_VERSION).matter(app.matter)
        tasks = []
        for t in state.tasks:
            step = matter.step(t.step) if matter else None
            tasks.append(
                {
                    "step": t.step,
                    "title": step.title if step else None,
                    "department": step.department if step else None,
                    "system": t.system,
                    "status": t.status.value,
                    "attempt": t.attempt,
                    "case_number": t.case_number,
                    "certificate": t.certificate,
                    "reason": t.reason,
                    "gaps": [dict(g) for g in t.gaps],
                    "dispatched_at": self._when(t.dispatched_at),
                    "due_at": self._when(t.due_at),
                    **task_estimate(t, self._tz, self._calendar),
                    "finished_at": self._when(t.finished_at),
                    # the clock stops while a task waits for the citizen or an operator
                    "overdue": t.status in RUNNING and t.due_at is not None and now > t.due_at,
                }
            )
        view: dict[str, Any] = {
            "application_id": app.id,
            "portal_id": app.portal_id,
            "matter": app.matter,
            "status": app.status.value,
            "blocked_reason": blocked_reason(state, timeline),
            "schema_version": app.schema_version,
            "channel": app.channel,
            "catalogue_version": state.catalogue_version,
            "received_at": self._when(app.created_at),
            "accepted_at": self._when(app.accepted_at),
            "updated_at": self._when(app.updated_at),
            "calendar": self._calendar.describe(),
            **budget_view(state, self._tz, self._calendar),
            "tasks": tasks,
        }
        if matter and app.status in (ApplicationStatus.COMPLETED, ApplicationStatus.DELIVERED):
            view["results"] = planner.results_pack(state.tasks, matter)
        return view

    def _when(self, ts: float | None) -> str | None:
        if ts is None:
            return None
        return dt.datetime.fromtimestamp(ts, self._tz).isoformat(timespec="seconds")


def blocked_reason(state: CaseState, timeline: Sequence[TimelineEntry]) -> str | None:
    """Why a ``blocked`` application waits: the latest reason its timeline
    (``application.blocked``, ``task.dead_lettered``) or a dead-lettered task gives; None
    for any other status."""
    if state.application.status is not ApplicationStatus.BLOCKED:
        return None
    said = [
        (e.at, str(e.detail["reason"]))
        for e in timeline
        if e.kind in ("application.blocked", "task.dead_lettered") and e.detail.get("reason")
    ]
    said += [
        (t.updated_at, t.reason)
        for t in state.tasks
        if t.status is TaskStatus.DEAD_LETTERED and t.reason
    ]
    return max(said, key=lambda x: x[0])[1] if said else None


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _set(envelope: dict[str, Any], path: str, value: Any) -> None:
    node = envelope
    parts = path.split(".")[:8]
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
