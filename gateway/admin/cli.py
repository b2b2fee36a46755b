"""``gateway dlq list|show|groups|replay|edit|purge`` and ``gateway apps list|show``: the
dead-letter desk and the application search from a shell.

The operator is whoever holds the token in ``GATEWAY_OPERATOR_TOKEN`` or in the file given
with ``--token-file``; roles, systems and the audit trail are the admin API's. A gateway
with no ``[operators.*]`` at all is a single-operator install: the commands then act as
``local`` with every role (audited as such); one configured operator and a token is needed.
Replays publish through a broker connection of their own that declares nothing, with
confirms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import zoneinfo
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from gateway.admin import views
from gateway.admin.auth import ROLES, Forbidden, Operator, OperatorAuth, Unauthenticated
from gateway.admin.copies import Invalid
from gateway.admin.desk import Desk
from gateway.admin.http import Query, app_cursor, letter_filter, resubmit_for
from gateway.admin.outcomes import Conflict, NotFound
from gateway.broker.client import BrokerClient
from gateway.broker.messages import Message
from gateway.broker.topology import Topology
from gateway.errors import ConfigurationError
from gateway.settings import Settings
from gateway.store import ApplicationStatus, Store, open_store
from gateway.store.operators import AppFilter

TOKEN_ENV = "GATEWAY_OPERATOR_TOKEN"  # noqa: S105 -- the name of a variable, not a secret
LOCAL = Operator("local", frozenset(ROLES), frozenset())  # no [operators.*] configured
Command = Callable[[argparse.Namespace, Desk, Operator, Settings], Awaitable[int]]


def register(sub: Any) -> None:
    """Add ``dlq`` and ``apps`` to the ``gateway`` command's sub-parsers."""
    _register_apps(sub)
    dlq = sub.add_parser("dlq", help="dead letters: find what failed, why, and replay it")
    d_sub = dlq.add_subparsers(required=True, metavar="action")

    listing = d_sub.add_parser("list", help="dead letters, newest first (masked)")
    _filters(listing)
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--before", type=int, help="only ids below this (the next page)")
    _common(listing, _list)

    groups = d_sub.add_parser("groups", help="dead letters counted by reason")
    _filters(groups)
    _common(groups, _groups)

    show = d_sub.add_parser("show", help="one dead letter: headers, body, edits (masked)")
    show.add_argument("id", type=int)
    show.add_argument("--unmask", action="store_true", help="full data (role unmask; audited)")
    show.add_argument("--why", help="why the full data is needed (goes to the audit trail)")
    _common(show, _show)

    replay = d_sub.add_parser(
        "replay", help="send dead letters again: by id, by filter, or --all parked ones"
    )
    replay.add_argument("ids", type=int, nargs="*", metavar="ID")
    _filters(replay)
    replay.add_argument("--all", action="store_true", help="every parked letter in scope")
    replay.add_argument("--reason", required=True, help="why (goes to the audit trail)")
    replay.add_argument("--force", action="store_true", help="again, though replayed before")
    replay.add_argument(
        "--limit", type=int, default=500, help="letters per round; every match is replayed"
    )
    _common(replay, _replay)

    edit = d_sub.add_parser(
        "edit", help="replay an edited copy of a task message under <task id>.r<n>"
    )
    edit.add_argument("id", type=int)
    edit.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="fields.PATH=JSON",
        help="a change, e.g. --set 'fields.subjects.child.name=\"王小明\"' (repeatable); "
        "the path must exist in the message",
    )
    edit.add_argument(
        "--add",
        action="append",
        default=[],
        metavar="fields.PATH=JSON",
        help="a field the message lacks, e.g. --add 'fields.provided.citizen_id=\"…\"'",
    )
    edit.add_argument("--reason", required=True)
    edit.add_argument("--force", action="store_true", help="the letter died of timeouts")
    _common(edit, _edit)

    purge = d_sub.add_parser("purge", help="drop dead letters with a reason")
    purge.add_argument("ids", type=int, nargs="+", metavar="ID")
    purge.add_argument("--reason", required=True)
    purge.add_argument(
        "--cancel-task",
        action="store_true",
        help="the letter's task is still dead-lettered: cancel it (the application goes on "
        "without it, rejected when the step is mandatory)",
    )
    _common(purge, _purge)


def _register_apps(sub: Any) -> None:
    apps = sub.add_parser("apps", help="find applications (personal data masked)")
    a_sub = apps.add_subparsers(required=True, metavar="action")
    listing = a_sub.add_parser("list", help="applications, newest first")
    listing.add_argument("--status", choices=[s.value for s in ApplicationStatus])
    listing.add_argument("--matter")
    listing.add_argument("--portal")
    listing.add_argument("--from", dest="created_from", help="received from: YYYY-MM-DD or ISO")
    listing.add_argument("--to", dest="created_to", help="received before (a date: its end)")
    late = listing.add_mutually_exclusive_group()
    late.add_argument("--overdue", action="store_const", const="true", help="a task is overdue")
    late.add_argument("--on-time", dest="overdue", action="store_const", const="false")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--cursor", help="the next page (printed at the end of a full page)")
    _common(listing, _apps_list)
    show = a_sub.add_parser("show", help="one application: tasks, timeline, envelope (masked)")
    show.add_argument("application_id")
    show.add_argument("--unmask", action="store_true", help="full data (role unmask; audited)")
    show.add_argument("--why", help="why the full data is needed (goes to the audit trail)")
    _common(show, _apps_show)


def _filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--system")
    p.add_argument("--reason-contains", dest="reason_part", metavar="TEXT")
    p.add_argument("--group", help="exactly this reason (as `dlq groups` prints it)")
    p.add_argument("--kind", help="error kind: permanent, delivery_limit, rejected, …")
    p.add_argument("--matter")
    p.add_argument("--application")
    p.add_argument("--since", help="last failure at or after: YYYY-MM-DD or ISO date-time")
    p.add_argument("--until", help="last failure before (a date: the end of that day)")
    p.add_argument("--status", default="parked", help="parked, replayed, purged or any")


def _common(p: argparse.ArgumentParser, command: Command) -> None:
    p.add_argument("--token-file", type=Path, help=f"the operator token (default: ${TOKEN_ENV})")
    p.add_argument("--json", action="store_true", help="print JSON")
    what = f"{p.prog.split(' ', 1)[-1]}"  # "dlq replay": what a failed login tried
    p.set_defaults(func=lambda args, settings: _run(args, settings, command), command_line=what)


def _token(args: argparse.Namespace, settings: Settings) -> str:
    if args.token_file is not None:
        try:
            return str(args.token_file.read_text(encoding="utf-8")).strip()
        except OSError as exc:
            raise ConfigurationError(f"cannot read --token-file {args.token_file}: {exc}") from None
    token = settings.operator_token
    return "" if token is None else token.get_secret_value().strip()


def _run(args: argparse.Namespace, settings: Settings, command: Command) -> int:
    token = _token(args, settings)
    if not settings.operators:
        operator = LOCAL
    else:
        try:
            operator = OperatorAuth(settings.operators).identify(token)
        except Unauthenticated:
            if token:
                said = "unknown operator token: no [operators.<name>] holds it"
            else:
                said = f"no operator token: set {TOKEN_ENV} (or --token-file) to a token of "
                said += "[operators.<name>]"
            asyncio.run(_login_failed(settings, f"gateway {args.command_line}", said))
            print(f"gateway: {said}", file=sys.stderr)
            return 2

    name = command.__name__.lstrip("_")

    async def go() -> int:
        publishes = name in ("replay", "edit") or getattr(args, "cancel_task", False)
        async with _desk(settings, needs_broker=publishes) as desk:
            try:
                return await command(args, desk, operator, settings)
            except Forbidden as exc:
                await desk.denied(operator.name, f"dlq {name}", exc.detail)
                print(f"gateway: forbidden: {exc.detail}", file=sys.stderr)
                return 3
            except (NotFound, Conflict) as exc:
                print(f"gateway: {exc}", file=sys.stderr)
                return 1
            except Invalid as exc:
                more = "".join(f"\n  {e['loc']}: {e['msg']}" for e in exc.errors)
                print(f"gateway: {exc.detail}{more}", file=sys.stderr)
                return 2

    return asyncio.run(go())


async def _login_failed(settings: Settings, what: str, detail: str) -> None:
    async with _desk(settings, needs_broker=False) as desk:
        await desk.login_failed(what, detail, "shell")


@asynccontextmanager
async def _desk(settings: Settings, *, needs_broker: bool) -> AsyncIterator[Desk]:
    store: Store = await open_store(settings.database_url)
    broker: BrokerClient | None = None
    try:
        if needs_broker:
            broker = BrokerClient(settings.amqp_url, Topology((), (), ()), name="gateway-dlq")
            await broker.start()
        client = broker

        async def publish(exchange: str, routing_key: str, message: Message) -> None:
            if client is None:
                raise ConfigurationError("this command does not publish")
            await client.publish(
                exchange,
                routing_key,
                message,
                timeout=settings.broker.publish_timeout_seconds,
            )

        yield Desk(
            store,
            publish,
            timezone=zoneinfo.ZoneInfo(settings.timezone),
            due_soon_share=settings.scheduler.due_soon_share,
            resubmit=resubmit_for(settings, store, publish),
            cancel_flag="--cancel-task",
        )
    finally:
        if broker is not None:
            await broker.close(2.0)
        await store.close()


def _filter_of(args: argparse.Namespace, settings: Settings) -> Any:
    params = {
        "system": args.system,
        "reason": args.reason_part,
        "group": args.group,
        "kind": args.kind,
        "matter": args.matter,
        "application": args.application,
        "since": args.since,
        "until": args.until,
        "status": args.status,
    }
    if args.system and settings.systems and args.system not in settings.systems:
        known = ", ".join(sorted(settings.systems)) or "none"
        raise Invalid(f"unknown system {args.system!r}: the configured systems are {known}")
    q = Query({k: v for k, v in params.items() if v}, zoneinfo.ZoneInfo(settings.timezone))
    f = letter_filter(q)
    q.done()
    return f


def _print(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2))


async def _list(args: argparse.Namespace, desk: Desk, op: Operator, s: Settings) -> int:
    tz = zoneinfo.ZoneInfo(s.timezone)
    rows = await desk.letters(op, _filter_of(args, s), limit=args.limit, before=args.before)
    items = [views.letter_summary(p, tz) for p in rows]
    if args.json:
        _print(items)
        return 0
    if not items:
        print("no dead letters")
    for v in items:
        print(
            f"{v['id']:>6} {v['status']:<8} {v['last_failed_at']} {v['system'] or '-':<10} "
            f"{v['matter'] or '-':<14} {v['application_id'] or '-':<38} {v['error_kind']:<14} "
            f"{v['reason'][:100]}"
        )
    if len(items) == args.limit:
        print(f"more: --before {items[-1]['id']}")
    return 0


async def _groups(args: argparse.Namespace, desk: Desk, op: Operator, s: Settings) -> int:
    tz = zoneinfo.ZoneInfo(s.timezone)
    items = [views.group_view(g, tz) for g in await desk.groups(op, _filter_of(args, s))]
    if args.json:
        _print(items)
        return 0
    if not items:
        print("no dead letters")
    for g in items:
        print(
            f"{g['count']:>6}  {g['system'] or '-':<10} {g['error_kind']:<14} "
            f"{g['last_failed_at']}  {g['reason']}"
        )
    return 0


async def _show(args: argparse.Namespace, desk: Desk, op: Operator, s: Settings) -> int:
    detail = await desk.letter(op, args.id, unmask=args.unmask, why=args.why)
    _print(views.letter_detail(detail, zoneinfo.ZoneInfo(s.timezone)))
    return 0


async def _replay(args: argparse.Namespace, desk: Desk, op: Operator, s: Settings) -> int:
    filtered = any(
        (args.system, args.reason_part, args.group, args.kind, args.matter, args.application)
    ) or any((args.since, args.until))
    replayed: list[dict[str, Any]] = []
    refused: list[dict[str, Any]] = []
    if args.ids:
        if filtered or args.all:
            raise Invalid("give letter ids, or a filter / --all, not both")
        for letter_id in args.ids:  # every one is tried; each outcome is printed
            try:
                done = await desk.replay(op, letter_id, args.reason, force=args.force)
            except (NotFound, Conflict) as exc:
                refused.append({"id": letter_id, "detail": str(exc)})
                _say(args, None, refused[-1])
                continue
            replayed.append(views.replayed_view(done))
            _say(args, replayed[-1], None)
    elif filtered or args.all:
        f, after = _filter_of(args, s), None
        # the newest match now is the last one replayed: a replay that dies again parks a
        # new letter, which waits for the next command instead of looping here for ever
        newest = await desk.letters(op, f, limit=1)
        f = replace(f, up_to=newest[0].id if newest else 0)
        while True:  # round after round, oldest first, until nothing more matches
            batch = views.batch_view(
                await desk.replay_matching(op, f, args.reason, limit=args.limit, after=after)
            )
            for r in batch["replayed"]:
                replayed.append(r)
                _say(args, r, None)
            for r in batch["refused"]:
                refused.append(r)
                _say(args, None, r)
            if not batch["more"]:
                break
            after = batch["next_after"]
    else:
        raise Invalid("say which letters: ids, a filter (--system, --group, …) or --all")
    if args.json:
        _print({"replayed": replayed, "refused": refused})
    elif not replayed and not refused:
        print("no dead letters matched")
    return 1 if refused else 0


def _say(args: argparse.Namespace, done: dict[str, Any] | None, no: dict[str, Any] | None) -> None:
    if args.json:
        return
    if done is not None:
        state = "pending" if done["pending"] else "sent" if done["sent"] else "skipped"
        print(f"{done['id']:>6} {state:<8} {done['key'] or '-'}  {done['note']}")
    if no is not None:
        print(f"{no['id']:>6} refused  {no['detail']}", file=sys.stderr)


def _changes(items: list[str], errors: list[dict[str, str]]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for item in items:
        path, sep, raw = item.partition("=")
        try:
            changes[path.strip()] = json.loads(raw) if sep else None
        except ValueError:
            errors.append({"loc": path, "msg": "the value must be JSON (quote strings)"})
    return changes


async def _edit(args: argparse.Namespace, desk: Desk, op: Operator, s: Settings) -> int:
    errors: list[dict[str, str]] = []
    changes, add = _changes(args.set, errors), _changes(args.add, errors)
    if errors or not (changes or add):
        raise Invalid("give changes as --set fields.PATH=JSON (or --add for a new path)", errors)
    done = await desk.edit(op, args.id, changes, args.reason, force=args.force, add=add)
    if args.json:
        _print(views.replayed_view(done))
    else:
        print(f"{done.letter_id:>6} {'pending' if done.pending else 'sent'} as {done.key}")
    return 0


async def _purge(args: argparse.Namespace, desk: Desk, op: Operator, s: Settings) -> int:
    failed = 0
    for letter_id in args.ids:  # every one is tried; each outcome is printed
        try:
            done = await desk.purge(op, letter_id, args.reason, cancel_task=args.cancel_task)
        except (NotFound, Conflict) as exc:
            failed += 1
            print(f"{letter_id:>6} refused  {exc}", file=sys.stderr)
            continue
        if done.cancelled:
            print(
                f"{letter_id:>6} purged   task {done.cancelled} cancelled; application "
                f"{done.application_status or 'unchanged'}"
            )
        else:
            print(f"{letter_id:>6} purged")
    return 1 if failed else 0


async def _apps_list(args: argparse.Namespace, desk: Desk, op: Operator, s: Settings) -> int:
    tz = zoneinfo.ZoneInfo(s.timezone)
    params = {
        "from": args.created_from,
        "to": args.created_to,
        "overdue": args.overdue,
        "cursor": args.cursor,
    }
    q = Query({k: v for k, v in params.items() if v}, tz)
    created_from, created_to, overdue = q.time("from"), q.time("to", end=True), q.flag("overdue")
    before = app_cursor(q.text("cursor"), q)
    q.done()
    now = time.time()
    f = AppFilter(
        status=ApplicationStatus(args.status) if args.status else None,
        matter=args.matter,
        portal_id=args.portal,
        created_from=created_from,
        created_to=created_to,
        overdue_at=now if overdue is True else None,
        not_overdue_at=now if overdue is False else None,
    )
    rows = await desk.applications(op, f, limit=args.limit, before=before)
    items = [views.application_summary(a, tz) for a in rows]
    if args.json:
        _print(items)
        return 0
    print(f"{'application id':<38} {'portal':<12} {'matter':<14} {'status':<22} received")
    for v in items:
        print(
            f"{v['application_id']:<38} {v['portal_id']:<12} {v['matter']:<14} "
            f"{v['status']:<22} {v['received_at']}"
        )
    if rows and len(rows) == args.limit:
        print(f"more: --cursor '{rows[-1].created_at!r}|{rows[-1].id}'")
    return 0


async def _apps_show(args: argparse.Namespace, desk: Desk, op: Operator, s: Settings) -> int:
    from gateway.supervision.cli import application_budget

    tz = zoneinfo.ZoneInfo(s.timezone)
    detail = await desk.application(op, args.application_id, unmask=args.unmask, why=args.why)
    view = views.application_detail(detail, time.time(), tz)
    # due_at (critical path from acceptance), critical_path, promise
    view.update(await application_budget(desk.store, args.application_id, s))
    _print(view)
    return 0
