"""The admin API: operators find applications and dead letters, replay and purge.

    GET  /v1/admin/applications               ?status matter portal overdue from to limit cursor
    GET  /v1/admin/applications/{id}          ?unmask=true&why=…   (role unmask; audited)
    GET  /v1/admin/dead-letters               ?system reason group kind matter application
                                              since until status limit before
    GET  /v1/admin/dead-letters/groups        same filters; counts per normalised reason
    GET  /v1/admin/dead-letters/{id}          ?unmask=true&why=…   (why required)
    POST /v1/admin/dead-letters/{id}/replay   {"reason", "force"?}             (role replay)
    POST /v1/admin/dead-letters/replay        {"reason", "filter": {…} | "all": true,
                                               "limit"?, "after"?} → "more", "next_after"
    POST /v1/admin/dead-letters/{id}/edit     {"reason", "changes": {"fields.<path>": v},
                                               "add"?: {"fields.<new path>": v}}
    POST /v1/admin/dead-letters/{id}/purge    {"reason", "cancel_task"?}         (role purge)

A replay whose message the broker did not confirm is in the outbox already: 202, the relay
sends it.
    GET  /v1/admin/tasks/overdue
    GET  /v1/admin/audit                      ?limit before

``Authorization: Bearer <operator token>``; 401 without a known token, 403 naming the role
missing or the system out of scope (and audited). A route of another module is one line:
``admin.route("GET", "/v1/admin/reports/ledger", "view", handler)`` before ``add_routes``.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web

from gateway.admin import views
from gateway.admin.auth import Forbidden, Operator, OperatorAuth, Unauthenticated
from gateway.admin.casework import Publish
from gateway.admin.copies import Invalid
from gateway.admin.desk import Desk
from gateway.admin.outcomes import Conflict, NotFound
from gateway.admin.resubmit import Resubmit
from gateway.errors import BrokerUnavailable
from gateway.intake.problem_http import problem_response
from gateway.intake.service import IntakeService
from gateway.logs import get_logger
from gateway.metrics import Metrics
from gateway.problems import Problem
from gateway.settings import OperatorRole, Settings
from gateway.store import Store
from gateway.store.letters import LetterFilter, LetterStatus
from gateway.store.operators import AppFilter
from gateway.store.records import ApplicationStatus

log = get_logger(__name__)
Handler = Callable[[web.Request, Operator], Awaitable[web.StreamResponse]]
MAX_LIMIT = 500
BASE = "/v1/admin"


@dataclass(frozen=True, slots=True)
class AdminRoute:
    method: str
    path: str
    role: OperatorRole  # checked before the handler runs
    handler: Handler


class AdminApi:
    def __init__(
        self,
        auth: OperatorAuth,
        desk: Desk,
        *,
        timezone: dt.tzinfo,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._auth = auth
        self._desk = desk
        self._tz = timezone
        self._clock = clock
        letters = f"{BASE}/dead-letters"
        self._routes: list[AdminRoute] = [
            AdminRoute("GET", f"{BASE}/applications", "view", self.applications),
            AdminRoute("GET", f"{BASE}/applications/{{id}}", "view", self.application),
            AdminRoute("GET", letters, "view", self.letters),
            AdminRoute("GET", f"{letters}/groups", "view", self.groups),
            AdminRoute("POST", f"{letters}/replay", "replay", self.replay_matching),
            AdminRoute("GET", f"{letters}/{{id:\\d+}}", "view", self.letter),
            AdminRoute("POST", f"{letters}/{{id:\\d+}}/replay", "replay", self.replay),
            AdminRoute("POST", f"{letters}/{{id:\\d+}}/edit", "edit", self.edit),
            AdminRoute("POST", f"{letters}/{{id:\\d+}}/purge", "purge", self.purge),
            AdminRoute("GET", f"{BASE}/tasks/overdue", "view", self.overdue),
            AdminRoute("GET", f"{BASE}/audit", "view", self.audit),
        ]

    def route(self, method: str, path: str, role: OperatorRole, handler: Handler) -> None:
        """Add a route guarded like the others (token, role, 403 audited)."""
        self._routes.append(AdminRoute(method, path, role, handler))

    def add_routes(self, app: web.Application) -> None:
        for r in self._routes:
            app.router.add_route(r.method, r.path, self._guarded(r))

    def _guarded(self, r: AdminRoute) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            try:
                op = self._auth.from_header(request.headers.get("Authorization"))
            except Unauthenticated as exc:
                log.info("operator_unauthenticated", reason=exc.detail)
                what = f"{request.method} {request.path}"
                await self._desk.login_failed(what, exc.detail, request.remote)
                return problem_response(
                    Problem(401, "unauthenticated", "Unauthenticated", exc.detail),
                    headers={"WWW-Authenticate": 'Bearer realm="gateway-admin"'},
                )
            structlog.contextvars.bind_contextvars(operator=op.name)
            try:
                op.require(r.role)
                return await r.handler(request, op)
            except Forbidden as exc:
                log.info("operator_forbidden", detail=exc.detail)
                await self._desk.denied(op.name, f"{request.method} {request.path}", exc.detail)
                extra = {"missing_role": exc.role} if exc.role else {}
                if exc.system is not None:
                    extra["system"] = exc.system
                return problem_response(
                    Problem(403, "forbidden", "Forbidden", exc.detail, extra=extra)
                )
            except NotFound as exc:
                return problem_response(Problem(404, "not-found", "Not found", str(exc)))
            except Conflict as exc:
                return problem_response(
                    Problem(409, "not-allowed-now", "Not allowed now", str(exc))
                )
            except Invalid as exc:
                return problem_response(
                    Problem(422, "invalid-request", "Invalid request", exc.detail, exc.errors)
                )
            except BrokerUnavailable as exc:
                log.warning("replay_unconfirmed", error=str(exc))
                return problem_response(
                    Problem(
                        503,
                        "temporarily-unavailable",
                        "Broker unavailable",
                        "the broker (or the store) did not take it; nothing was marked "
                        "replayed — try again",
                    ),
                    headers={"Retry-After": "5"},
                )

        return handle

    # -- applications ------------------------------------------------------------------
    async def applications(self, request: web.Request, op: Operator) -> web.Response:
        q = Query(request.query, self._tz)
        status = q.choice("status", [s.value for s in ApplicationStatus])
        overdue = q.flag("overdue")
        created_from, created_to = q.time("from"), q.time("to", end=True)
        cursor = q.text("cursor")
        limit = q.limit()
        before = app_cursor(cursor, q)
        q.done()
        now = self._clock()
        f = AppFilter(
            status=None if status is None else ApplicationStatus(status),
            matter=q.text("matter"),
            portal_id=q.text("portal"),
            created_from=created_from,
            created_to=created_to,
            overdue_at=now if overdue is True else None,
            not_overdue_at=now if overdue is False else None,
        )
        rows = await self._desk.applications(op, f, limit=limit, before=before)
        body: dict[str, Any] = {"items": [views.application_summary(a, self._tz) for a in rows]}
        if len(rows) == limit:
            body["next_cursor"] = f"{rows[-1].created_at!r}|{rows[-1].id}"
        return _json(body)

    async def application(self, request: web.Request, op: Operator) -> web.Response:
        q = Query(request.query, self._tz)
        unmask = q.flag("unmask") is True
        q.done()
        detail = await self._desk.application(
            op, request.match_info["id"], unmask=unmask, why=q.text("why")
        )
        return _json(views.application_detail(detail, self._clock(), self._tz))

    async def overdue(self, request: web.Request, op: Operator) -> web.Response:
        q = Query(request.query, self._tz)
        limit = q.limit(default=1000, most=5000)
        q.done()
        now = self._clock()
        rows = await self._desk.overdue(op, limit=limit)
        return _json({"items": [views.overdue_view(t, now, self._tz) for t in rows]})

    async def audit(self, request: web.Request, op: Operator) -> web.Response:
        q = Query(request.query, self._tz)
        limit, before = q.limit(), q.integer("before")
        q.done()
        rows = await self._desk.audit_trail(op, limit=limit, before=before)
        return _json({"items": [views.audit_view(e, self._tz) for e in rows]})

    # -- dead letters ------------------------------------------------------------------
    async def letters(self, request: web.Request, op: Operator) -> web.Response:
        q = Query(request.query, self._tz)
        f = letter_filter(q)
        limit, before = q.limit(), q.integer("before")
        q.done()
        rows = await self._desk.letters(op, f, limit=limit, before=before)
        body: dict[str, Any] = {"items": [views.letter_summary(p, self._tz) for p in rows]}
        if len(rows) == limit:
            body["next_before"] = rows[-1].id
        return _json(body)

    async def groups(self, request: web.Request, op: Operator) -> web.Response:
        q = Query(request.query, self._tz)
        f = letter_filter(q)
        q.done()
        rows = await self._desk.groups(op, f)
        return _json({"groups": [views.group_view(g, self._tz) for g in rows]})

    async def letter(self, request: web.Request, op: Operator) -> web.Response:
        q = Query(request.query, self._tz)
        unmask = q.flag("unmask") is True
        q.done()
        detail = await self._desk.letter(
            op, int(request.match_info["id"]), unmask=unmask, why=q.text("why")
        )
        return _json(views.letter_detail(detail, self._tz))

    async def replay(self, request: web.Request, op: Operator) -> web.Response:
        body = await _body(request)
        done = await self._desk.replay(
            op, int(request.match_info["id"]), str(body.get("reason") or ""), force=_true(body)
        )
        return _json(views.replayed_view(done), 202 if done.pending else 200)

    async def replay_matching(self, request: web.Request, op: Operator) -> web.Response:
        body = await _body(request)
        raw = body.get("filter") or {}
        if not isinstance(raw, dict):
            raise Invalid("filter must be an object of the listing's query parameters")
        q = Query({str(k): str(v) for k, v in raw.items()}, self._tz)
        f = letter_filter(q)
        q.done()
        if not raw and body.get("all") is not True:
            raise Invalid('say which letters: a "filter", or "all": true for every parked one')
        limit = body.get("limit", MAX_LIMIT)
        if not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise Invalid(f"limit must be 1 to {MAX_LIMIT}")
        after = body.get("after")
        if after is not None and (not isinstance(after, int) or after < 0):
            raise Invalid("after must be the next_after of the previous call")
        batch = await self._desk.replay_matching(
            op, f, str(body.get("reason") or ""), limit=limit, after=after
        )
        return _json(views.batch_view(batch))

    async def edit(self, request: web.Request, op: Operator) -> web.Response:
        body = await _body(request)
        changes = body.get("changes", {})
        add = body.get("add", {})
        if not isinstance(changes, dict) or not isinstance(add, dict):
            raise Invalid('send {"changes": {"fields.<path>": value}, "add": {…}?, "reason": "…"}')
        done = await self._desk.edit(
            op,
            int(request.match_info["id"]),
            changes,
            str(body.get("reason") or ""),
            force=_true(body),
            add=add,
        )
        return _json(views.replayed_view(done), 202 if done.pending else 200)

    async def purge(self, request: web.Request, op: Operator) -> web.Response:
        body = await _body(request)
        letter_id = int(request.match_info["id"])
        cancel = body.get("cancel_task") is True
        done = await self._desk.purge(
            op, letter_id, str(body.get("reason") or ""), cancel_task=cancel
        )
        return _json(views.purged_view(done))


class Query:
    """Query parameters read with every error collected, then raised at once (422)."""

    def __init__(self, params: Mapping[str, str], tz: dt.tzinfo) -> None:
        self._params = params
        self._tz = tz
        self.errors: list[dict[str, str]] = []

    def text(self, name: str) -> str | None:
        value = self._params.get(name)
        return value if value else None

    def integer(self, name: str) -> int | None:
        value = self.text(name)
        if value is None:
            return None
        if not value.isdigit():
            self._error(name, "a whole number")
            return None
        return int(value)

    def limit(self, default: int = 50, most: int = MAX_LIMIT) -> int:
        value = self.integer("limit")
        if value is None:
            return default
        if not 1 <= value <= most:
            self._error("limit", f"1 to {most}")
            return default
        return value

    def flag(self, name: str) -> bool | None:
        value = self.text(name)
        if value is None:
            return None
        if value.lower() in ("true", "1", "yes"):
            return True
        if value.lower() in ("false", "0", "no"):
            return False
        self._error(name, "true or false")
        return None

    def choice(self, name: str, allowed: list[str]) -> str | None:
        value = self.text(name)
        if value is not None and value not in allowed:
            self._error(name, f"one of {', '.join(allowed)}")
            return None
        return value

    def time(self, name: str, *, end: bool = False) -> float | None:
        """Unix seconds, an ISO date (``to`` means the end of that day) or date-time."""
        value = self.text(name)
        if value is None:
            return None
        try:
            return float(value)
        except ValueError:
            pass
        try:
            if len(value) == 10:
                day = dt.date.fromisoformat(value) + dt.timedelta(days=1 if end else 0)
                return dt.datetime.combine(day, dt.time(), self._tz).timestamp()
            moment = dt.datetime.fromisoformat(value)
        except ValueError:
            self._error(name, "unix seconds, YYYY-MM-DD or an ISO 8601 date-time")
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=self._tz)
        return moment.timestamp()

    def _error(self, name: str, expected: str) -> None:
        self.errors.append({"loc": name, "msg": f"expected {expected}", "type": "value"})

    def done(self) -> None:
        if self.errors:
            raise Invalid(f"{len(self.errors)} query parameter(s) are wrong", self.errors)


def letter_filter(q: Query) -> LetterFilter:
    status = q.choice("status", [*(s.value for s in LetterStatus), "any"])
    return LetterFilter(
        system=q.text("system"),
        reason=q.text("reason"),
        group=q.text("group"),
        error_kind=q.text("kind"),
        matter=q.text("matter"),
        application_id=q.text("application"),
        since=q.time("since"),
        until=q.time("until", end=True),
        status=None if status == "any" else LetterStatus(status or "parked"),
    )


def app_cursor(cursor: str | None, q: Query) -> tuple[float, str] | None:
    if cursor is None:
        return None
    at, _, app_id = cursor.partition("|")
    try:
        return float(at), app_id
    except ValueError:
        q.errors.append({"loc": "cursor", "msg": "expected a next_cursor value", "type": "value"})
        return None


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        data = json.loads(raw or b"{}")
    except ValueError:
        raise Invalid("the body is not JSON") from None
    if not isinstance(data, dict):
        raise Invalid("the body must be a JSON object")
    return data


def _true(body: Mapping[str, Any]) -> bool:
    return body.get("force") is True


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=lambda v: json.dumps(v, ensure_ascii=False))


def build_admin(
    settings: Settings,
    store: Store,
    publish: Publish,
    *,
    timezone: dt.tzinfo,
    clock: Callable[[], float] = time.time,
) -> AdminApi:
    """The admin API of a running gateway: its operators, store and confirmed publish."""
    desk = Desk(
        store,
        publish,
        timezone=timezone,
        due_soon_share=settings.scheduler.due_soon_share,
        clock=clock,
        resubmit=resubmit_for(settings, store, publish, clock=clock),
    )
    return AdminApi(OperatorAuth(settings.operators), desk, timezone=timezone, clock=clock)


def resubmit_for(
    settings: Settings,
    store: Store,
    publish: Publish,
    *,
    clock: Callable[[], float] = time.time,
) -> Resubmit:
    """Intake in this process, for replaying ``gw.intake`` letters as their portal."""
    service = IntakeService(
        store,
        publish,
        Metrics(),  # the desk's own: a replay is not a portal's request
        lease_seconds=settings.intake.idempotency_lease_seconds,
        location_prefix=settings.public_base_url or "",
        clock=clock,
    )
    return Resubmit(
        service, settings.portal_for_amqp_user, max_body_bytes=settings.intake.max_body_bytes
    )
