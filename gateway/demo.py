"""``gateway demo``: a service centre's morning, end to end, in one terminal.

The gateway (every role) and the four department simulators run on this machine against
the real RabbitMQ, with a fresh SQLite store under ``var/``. The window submits a batch
over signed HTTP — newborns, retirements, after-death bundles and a few of every other
matter the envelope types — plus one application the police send back for a correction
(the window corrects it) and some invalid envelopes. Progress shows live; the end is a
table per application with its results pack, the invalid ones with their errors, and the
simulators' ledger check: nothing applied twice.

Then time limits: the police become slow (a 30-day decision delay, for the demo) and one more
newborn comes in. Its household registration is due in 2 working hours on the calendar; no
demo waits that long, so the demo moves the gateway's clock (and the window's, which signs
with it) to one minute past that due time. That jump is the demo's only fiction: the
scheduler then raises ``task.overdue`` as it would in production, and the supervision ledger
of the month, recomputed from the stored timelines, closes the demo.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import random
import time
import zoneinfo
from collections import Counter
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp
import pika

from gateway.calendar import calendar_from
from gateway.masking import mask_text
from gateway.runtime import Gateway
from gateway.settings import PortalConfig, SchedulerTuning, Settings
from gateway.signing import signed_headers
from gateway.simulators.behaviour import Verdict
from gateway.simulators.fleet import Fleet, local_systems
from gateway.simulators.ledger import EffectLedger
from gateway.supervision.ledger import Month
from gateway.supervision.render import table
from gateway.supervision.report import month_ledger

WINDOW = "window"
BATCH = {"newborn": 50, "retirement": 20, "after_death": 10}
OTHERS = 3  # applications of every other typed matter
FINAL = {"completed", "rejected", "withdrawn", "blocked"}
CORRECTION_NAME = "补正演示"
LATE_NAME = "超时演示"
SLOW_POLICE_SECONDS = 30 * 86400.0  # the demo's slow police station: 30 days to decide
GIVEN_NAMES = (
    "子轩",
    "梓涵",
    "一诺",
    "欣怡",
    "浩然",
    "雨桐",
    "宇航",
    "诗涵",
    "俊杰",
    "可馨",
    "思远",
)


def _examples(kind: str) -> list[tuple[str, dict[str, Any]]]:
    folder = resources.files("contracts") / "envelope" / "examples" / kind
    return sorted(
        (entry.name.removesuffix(".json"), json.loads(entry.read_bytes()))
        for entry in folder.iterdir()
        if entry.name.endswith(".json") and not entry.name.endswith(".errors.json")
    )


def demo_settings(settings: Settings, run_dir: Path) -> Settings:
    amqp_user = pika.URLParameters(settings.amqp_url).credentials.username
    portals = dict(settings.portals)
    portals.setdefault(WINDOW, PortalConfig(secret=os.urandom(16).hex(), amqp_user=amqp_user))
    return settings.model_copy(
        update={
            "portals": portals,
            "database_url": f"sqlite:///{run_dir / 'gateway.sqlite3'}",
            "http_port": 0,
            "systems": local_systems(run_dir / "departments", poll_seconds=0.3),
            "scheduler": SchedulerTuning(
                due_soon_share=settings.scheduler.due_soon_share, interval_seconds=0.5
            ),
        }
    )


class DemoClock:
    """The wall clock plus an offset the demo moves forward (gateway and window share it)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def batch(rng: random.Random) -> list[dict[str, Any]]:
    """The morning's applications: copies of the valid examples with their own children."""
    by_matter: dict[str, dict[str, Any]] = {}
    for _, envelope in _examples("valid"):
        by_matter.setdefault(envelope["matter"], envelope)
    out: list[dict[str, Any]] = []
    for matter, envelope in sorted(by_matter.items()):
        for _ in range(BATCH.get(matter, OTHERS)):
            copy = json.loads(json.dumps(envelope))
            child = copy.get("subjects", {}).get("child")
            if isinstance(child, dict) and "name" in child:
                child["name"] = child["name"][0] + rng.choice(GIVEN_NAMES)
            out.append(copy)
    newborn = json.loads(json.dumps(by_matter["newborn"]))
    newborn["subjects"]["child"]["name"] = CORRECTION_NAME
    out.append(newborn)
    return out


async def run_demo(base: Settings) -> int:
    started = time.monotonic()
    run_dir = Path("var") / f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir.mkdir(parents=True, exist_ok=True)
    settings = demo_settings(base, run_dir)
    secret = settings.portals[WINDOW].secret.get_secret_value()
    ledger = EffectLedger(run_dir / "ledger.sqlite3")
    clock = DemoClock()
    demo_month = Month.parse(f"{dt.datetime.now(zoneinfo.ZoneInfo(settings.timezone)):%Y-%m}")
    async with Gateway(settings, name="gateway-demo", clock=clock) as gw:
        assert gw.broker is not None
        url = f"http://127.0.0.1:{gw.http_port}"
        fleet = Fleet(settings, ledger, callback_base_url=url)
        for name, delay in (("hospital", 0.2), ("hukou", 0.5), ("provincial", 0.3), ("cdc", 0.2)):
            fleet.behaviour(name).decision_delay_seconds = delay
        fleet.behaviour("hukou").by_name[CORRECTION_NAME] = Verdict(
            "correction_requested",
            reason="the newborn's name differs from the birth record",
            gaps=[("NewbornName", "give the name exactly as on the birth certificate")],
        )
        await fleet.start()
        try:
            print(f"RabbitMQ {gw.broker.server_version} · intake {url} · store {run_dir}")
            async with aiohttp.ClientSession() as http:
                window = _Window(http, url, secret, clock)
                rng = random.Random(7)  # noqa: S311  # sample names, not secrets
                apps = await _submit_all(window, batch(rng))
                invalid = await _submit_invalid(window)
                await _follow(window, apps, started)
                await _table(window, apps)
                _invalid_table(invalid)
                fleet.behaviour("hukou").decision_delay_seconds = SLOW_POLICE_SECONDS
                await _overdue(window, gw, clock)
            await _ledger(gw, settings, clock, demo_month)
            doubles = await ledger.double_effects()
            effects = len(await ledger.effects())
            print(
                f"\nDepartment ledgers: {effects} effects applied, {len(doubles)} applied "
                f"twice. Took {time.monotonic() - started:.1f} s in all."
            )
        finally:
            await fleet.stop()
            ledger.close()
    return 0 if not doubles else 1


class _Window:
    """The service-centre window: signed requests to the gateway."""

    def __init__(
        self, http: aiohttp.ClientSession, url: str, secret: str, clock: DemoClock
    ) -> None:
        self.http, self.url, self.secret, self.clock = http, url, secret, clock

    async def call(
        self, method: str, path: str, body: dict[str, Any] | None = None, key: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        raw = b"" if body is None else json.dumps(body, ensure_ascii=False).encode()
        headers = signed_headers(WINDOW, self.secret, method, path, raw, key, now=self.clock())
        headers["Content-Type"] = "application/json"
        async with self.http.request(method, self.url + path, data=raw, headers=headers) as r:
            return r.status, await r.json(content_type=None)


async def _submit_all(
    window: _Window, envelopes: list[dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    gate = asyncio.Semaphore(16)
    apps: dict[str, dict[str, Any]] = {}

    async def one(envelope: dict[str, Any]) -> None:
        async with gate:
            status, answer = await window.call(
                "POST", "/v1/applications", envelope, key=f"demo-{os.urandom(8).hex()}"
            )
        if status == 202:
            apps[answer["application_id"]] = {
                "matter": envelope["matter"],
                "sent": time.monotonic(),
            }
        else:
            print(f"  refused at intake: {status} {answer.get('detail')}")

    await asyncio.gather(*(one(e) for e in envelopes))
    counts = Counter(a["matter"] for a in apps.values())
    print("Submitted at the window: " + ", ".join(f"{n} {m}" for m, n in sorted(counts.items())))
    return apps


async def _submit_invalid(window: _Window) -> list[tuple[str, int, list[dict[str, Any]]]]:
    out = []
    for name, envelope in _examples("invalid")[:4]:
        status, answer = await window.call(
            "POST", "/v1/applications", envelope, key=f"demo-bad-{os.urandom(8).hex()}"
        )
        out.append((name, status, answer.get("errors", [])))
    return out


async def _follow(window: _Window, apps: dict[str, dict[str, Any]], started: float) -> None:
    print("\nInternal push under way (status of every application):")
    corrected: set[str] = set()
    deadline = time.monotonic() + 50
    while True:
        views = await asyncio.gather(*(window.call("GET", f"/v1/applications/{a}") for a in apps))
        counts: Counter[str] = Counter()
        for app_id, (_, view) in zip(apps, views, strict=True):
            status = view.get("status", "?")
            counts[status] += 1
            apps[app_id]["view"] = view
            if status in FINAL and "took" not in apps[app_id]:
                apps[app_id]["took"] = time.monotonic() - apps[app_id]["sent"]
            if status == "correction_requested" and app_id not in corrected:
                corrected.add(app_id)  # the window takes the citizen's correction at once
                await window.call(
                    "POST",
                    f"/v1/applications/{app_id}/corrections",
                    {"changes": {"subjects.child.name": "王子轩"}},
                )
                print(f"  {app_id[:13]}… police asked for a correction; the window sent it")
        line = "  ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        print(f"  {time.monotonic() - started:5.1f} s  {line}", flush=True)
        if sum(counts[s] for s in FINAL) == len(apps) or time.monotonic() > deadline:
            return
        await asyncio.sleep(1.0)


async def _table(window: _Window, apps: dict[str, dict[str, Any]]) -> None:
    print(f"\n{'application':<15} {'matter':<14} {'status':<11} {'took':>6}  results pack")
    for app_id, app in sorted(apps.items(), key=lambda kv: (kv[1]["matter"], kv[0])):
        view = app.get("view", {})
        pack = ", ".join(
            f"{r['step']}={r.get('certificate') or r.get('case_number') or '-'}"
            for r in view.get("results", [])
        ) or "; ".join(
            f"{t['step']} {t['status']}"
            for t in view.get("tasks", [])
            if t["status"] not in ("completed",)
        )
        took = f"{app.get('took', 0):.1f}s"
        print(
            f"{app_id[:13]}… {app['matter']:<14} {view.get('status', '?'):<11} {took:>6}  "
            f"{mask_text(pack)[:150]}"
        )


def _invalid_table(invalid: list[tuple[str, int, list[dict[str, Any]]]]) -> None:
    print("\nInvalid envelopes, refused at intake with every error at once:")
    for name, status, errors in invalid:
        fields = ", ".join(e["loc"] for e in errors)
        print(f"  {name:<26} {status}  {fields}")


async def _overdue(window: _Window, gw: Gateway, clock: DemoClock) -> None:
    """One newborn whose police registration runs late: the scheduler raises task.overdue."""
    print(
        "\nTime limits: the police now take 30 days to decide (the demo's slow department); "
        "one more newborn comes in."
    )
    rng = random.Random(7)  # noqa: S311  # sample data, not secrets
    envelope = next(e for e in batch(rng) if e["matter"] == "newborn")
    envelope["subjects"]["child"]["name"] = LATE_NAME
    status, answer = await window.call(
        "POST", "/v1/applications", envelope, key=f"demo-late-{os.urandom(8).hex()}"
    )
    if status != 202:
        print(f"  refused at intake: {status} {answer.get('detail')}")
        return
    app_id = answer["application_id"]
    police = await _police_task(
        window, app_id, lambda t: t["status"] in ("submitted", "in_progress")
    )
    if police is None or police["due_at"] is None:
        print("  the police never took the registration; nothing to show")
        return
    due = dt.datetime.fromisoformat(police["due_at"])
    print(
        f"  {app_id[:13]}… police took the registration; due {police['due_at']} "
        "(2 working hours on the working-day calendar)"
    )
    clock.offset = due.timestamp() - time.time() + 60
    moved = dt.datetime.fromtimestamp(clock(), due.tzinfo)
    print(f"  the demo moves its clock to {moved:%Y-%m-%d %H:%M}, a minute past it")
    assert gw.store is not None
    entry = None
    for _ in range(60):
        timeline = await gw.store.cases.timeline(app_id)
        entry = next((e for e in timeline if e.kind == "task.overdue"), None)
        if entry is not None:
            break
        await asyncio.sleep(0.25)
    if entry is None:
        print("  the scheduler raised nothing (is the scheduler role running?)")
        return
    late = int(entry.detail.get("late_seconds", 0) // 60)
    print(
        f"  task.overdue  {app_id[:13]}… step {entry.detail.get('step')} on system "
        f"{entry.detail.get('system')}, {late} min late — event on gw.events "
        f"window.newborn.task.overdue; `gateway tasks overdue` lists it"
    )
    view = await _police_task(window, app_id, lambda t: bool(t["overdue"]))
    print(f"  the case view now says overdue: {bool(view and view['overdue'])}")


async def _police_task(
    window: _Window, app_id: str, ready: Callable[[dict[str, Any]], bool]
) -> dict[str, Any] | None:
    for _ in range(80):
        _, view = await window.call("GET", f"/v1/applications/{app_id}")
        task: dict[str, Any] | None = next(
            (t for t in view.get("tasks", []) if t["step"] == "hukou"), None
        )
        if task is not None and ready(task):
            return task
        await asyncio.sleep(0.25)
    return None


async def _ledger(gw: Gateway, settings: Settings, clock: DemoClock, month: Month) -> None:
    """The supervision ledger of the demo's month, as of the demo clock."""
    assert gw.store is not None
    ledger = await month_ledger(
        gw.store,
        month,
        now=clock(),
        tz=zoneinfo.ZoneInfo(settings.timezone),
        calendar=calendar_from(settings.calendar),
    )
    print("\n" + table(ledger, per_matter=False), end="")
    print(
        "  per department and matter, CSV or JSON: GATEWAY_DATABASE_URL="
        f"{settings.database_url} gateway report ledger --month {month} [--format csv]"
    )
