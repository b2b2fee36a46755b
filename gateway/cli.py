"""The ``gateway`` command: run the roles, the demo, and operator commands.

Every sub-command takes ``--config FILE``; ``GATEWAY_*`` environment variables override it.
Errors the operator can fix end the command with exit status 2 and one line saying what
to do, not a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from gateway.errors import GatewayError
from gateway.logs import configure_logging
from gateway.settings import Role, Settings, load_settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
        configure_logging(settings.log_format, level=20 if getattr(args, "verbose", True) else 40)
        return int(args.func(args, settings) or 0)
    except GatewayError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, help="TOML settings file")
    sub = parser.add_subparsers(required=True, metavar="command")

    run = sub.add_parser("run", help="run gateway roles until SIGTERM")
    run.add_argument(
        "--role",
        action="append",
        dest="roles",
        metavar="ROLE",
        help="intake, orchestrator, relay, deadletters, webhooks, scheduler or "
        "connector:<system> "
        "(repeatable); all roles by default",
    )
    run.set_defaults(func=_cmd_run)

    demo = sub.add_parser("demo", help="submit the sample envelopes and show them accepted")
    demo.add_argument("-v", "--verbose", action="store_true", help="show the gateway's log")
    demo.set_defaults(func=_cmd_demo, verbose=False)

    simulate = sub.add_parser(
        "simulate", help="run the department simulators of [systems.*] until SIGTERM"
    )
    simulate.add_argument(
        "--system",
        action="append",
        dest="systems",
        metavar="NAME",
        help="only this system (repeatable); all configured by default",
    )
    simulate.add_argument(
        "--ledger",
        type=Path,
        default=Path("var/ledger.sqlite3"),
        help="the effect ledger file (default var/ledger.sqlite3)",
    )
    simulate.add_argument(
        "--delay",
        type=float,
        default=1.0,
        help="seconds each department takes to decide (default 1)",
    )
    simulate.set_defaults(func=_cmd_simulate)

    bench = sub.add_parser(
        "bench", help="measure the gateway against the raw broker on this machine"
    )
    bench.add_argument(
        "--quick",
        action="store_true",
        help="a short run (under 2 minutes on 2 cores); without it the push holds a 10-minute "
        "steady run and drains a backlog of 50,000 tasks per store, about 40-45 minutes",
    )
    bench.add_argument(
        "--json", type=Path, dest="json_path", metavar="FILE", help="also write the figures as JSON"
    )
    bench.add_argument(
        "--postgres",
        metavar="URL",
        help="PostgreSQL to time store transactions on (default: the "
        "configured database if PostgreSQL, else the local test database)",
    )
    bench.add_argument(
        "--store",
        choices=("sqlite", "postgresql", "both"),
        default="both",
        help="the store(s) the push runs on (default both)",
    )
    bench.add_argument("--plan", choices=("smoke",), help=argparse.SUPPRESS)  # the CLI's test
    bench.set_defaults(func=_cmd_bench)

    tasks = sub.add_parser("tasks", help="tasks of applications in progress")
    tasks_sub = tasks.add_subparsers(required=True, metavar="action")
    overdue = tasks_sub.add_parser(
        "overdue", help="overdue and due-soon tasks by department (no personal data)"
    )
    overdue.add_argument("--limit", type=int, default=1000)
    overdue.set_defaults(func=_cmd_tasks_overdue)

    contracts = sub.add_parser("contracts", help="contract artefacts generated from the code")
    c_sub = contracts.add_subparsers(required=True, metavar="action")
    export = c_sub.add_parser("export", help="write the envelope schema and definitions.json")
    export.add_argument("--root", type=Path, default=Path.cwd(), help="repository root")
    export.set_defaults(func=_cmd_contracts_export)
    from gateway.compat.command import register as register_contracts_check

    register_contracts_check(c_sub)  # contracts check --against REF

    from gateway.supervision.cli import register as register_reports

    register_reports(sub)  # report ledger

    from gateway.admin.cli import register as register_operators

    register_operators(sub)  # apps list|show, dlq list|show|groups|replay|edit|purge
    return parser


def _cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.runtime import serve

    roles: list[Role] = settings.check_roles(args.roles or list(settings.all_roles()))
    asyncio.run(serve(settings, roles))
    return 0


def _cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.demo import run_demo

    return asyncio.run(run_demo(settings))


def _cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.simulators.fleet import serve_fleet

    asyncio.run(
        serve_fleet(settings, args.ledger, set(args.systems or settings.systems), delay=args.delay)
    )
    return 0


def _cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.bench import run_bench

    return asyncio.run(
        run_bench(
            settings,
            quick=args.quick,
            json_path=args.json_path,
            postgres_url=args.postgres,
            store=args.store,
            plan=args.plan,
        )
    )


def _cmd_tasks_overdue(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.supervision.overdue import command

    return command(args, settings)  # refuses a missing SQLite file: a listing creates nothing


def _cmd_contracts_export(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.exports import export_all

    for path in export_all(args.root, settings):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
