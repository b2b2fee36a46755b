"""Escalation on a shifted clock: a slow police decision goes due soon, then overdue.

Every clock in the process reads ``time.time``, which the test shifts (as in
``test_slow_decisions.py``). The scheduler raises ``task.due_soon`` and ``task.overdue`` on
``gw.events``, once each; a restarted gateway does not raise them again.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.runtime import Gateway
from gateway.settings import Settings
from gateway.simulators.fleet import Fleet, local_systems
from gateway.simulators.ledger import EffectLedger
from tests.conftest import WINDOW_SECRET
from tests.integration.test_slow_decisions import ShiftedClock
from tests.support.portal import Portal, example
from tests.support.rabbit import Rabbit
from tests.support.waiting import eventually

pytestmark = pytest.mark.broker
DAYS = 86400.0


@pytest.fixture
async def slow(
    settings_for: Callable[..., Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[dict[str, Any]]:
    clock = ShiftedClock()
    monkeypatch.setattr(time, "time", clock)
    settings = settings_for(
        systems=local_systems(tmp_path / "sim", poll_seconds=0.2),
        scheduler={"interval_seconds": 0.2},
    )
    ledger = EffectLedger(tmp_path / "ledger.sqlite3")
    gw = Gateway(settings, clock=lambda: time.time())
    await gw.start()
    fleet = Fleet(settings, ledger, callback_base_url=f"http://127.0.0.1:{gw.http_port}")
    fleet.behaviour("hukou").decision_delay_seconds = 365 * DAYS  # the police never decide
    await fleet.start()
    ctx: dict[str, Any] = {"clock": clock, "settings": settings, "gw": gw}
    async with aiohttp.ClientSession() as session:
        ctx["portal"] = Portal(f"http://127.0.0.1:{gw.http_port}", "window", WINDOW_SECRET, session)
        yield ctx
    await fleet.stop()
    await ctx["gw"].stop(drain_seconds=2)
    ledger.close()


async def test_a_slow_task_goes_due_soon_then_overdue_once(
    slow: dict[str, Any], rabbit: Rabbit
) -> None:
    soon_q = rabbit.bind_test_queue("gw.events", "window.*.task.due_soon")
    over_q = rabbit.bind_test_queue("gw.events", "window.*.task.overdue")
    portal: Portal = slow["portal"]
    clock: ShiftedClock = slow["clock"]
    app_id = (await portal.submit(example("newborn-yizhang-window"))).json()["application_id"]
    gw: Gateway = slow["gw"]
    task_id = f"{app_id}.hukou"

    async def running() -> Any:
        assert gw.store is not None
        t = await gw.store.cases.task(task_id)
        ok = t and t.status.value in ("submitted", "in_progress") and t.due_at
        return t if ok else None

    task = await eventually(running, within=30)
    assert task is not None and task.clock_started_at is not None and task.due_at is not None
    share = slow["settings"].scheduler.due_soon_share
    soon_at = task.clock_started_at + share * (task.due_at - task.clock_started_at)
    assert await rabbit.aget_all(soon_q, wait=0.6) == []  # not yet

    clock.offset = soon_at - time.time() + clock.offset + 60  # past the share, before due
    [soon] = await rabbit.aget_all(soon_q, wait=15, at_least=1)
    body = soon.json()
    assert body["event"] == "task.due_soon" and body["application_id"] == app_id
    assert (
        body["data"]["step"] == "hukou" and soon.properties.headers["event_id"] == body["event_id"]
    )
    assert await rabbit.aget_all(over_q, wait=0.6) == []

    clock.offset += task.due_at - soon_at + 60  # a minute past the due time
    [over] = await rabbit.aget_all(over_q, wait=15, at_least=1)
    assert over.json()["event"] == "task.overdue" and over.json()["data"]["late_seconds"] >= 0
    assert await rabbit.aget_all(soon_q, wait=0.6) == []  # due-soon was not raised again

    view = (await portal.show(app_id)).json()
    assert next(t for t in view["tasks"] if t["step"] == "hukou")["overdue"] is True
    assert gw.store is not None
    kinds = [e.kind for e in await gw.store.cases.timeline(app_id) if e.task_id == task_id]
    assert kinds.count("task.due_soon") == 1 and kinds.count("task.overdue") == 1

    # a restarted gateway (a new process) does not raise either again
    await gw.stop(drain_seconds=2)
    again = Gateway(slow["settings"], clock=lambda: time.time())
    await again.start()
    slow["gw"] = again
    assert await rabbit.aget_all(over_q, wait=1.5) == []
    assert await rabbit.aget_all(soon_q, wait=0.1) == []
    assert again.store is not None
    timeline = await again.store.cases.timeline(app_id)
    assert [e.kind for e in timeline if e.task_id == task_id].count("task.overdue") == 1
    assert json.dumps(body, ensure_ascii=False).count("citizen") == 0  # no personal data


async def test_an_escalation_left_by_a_killed_scheduler_is_sent_with_the_same_event_id(
    settings_for: Callable[..., Settings], tmp_path: Path, rabbit: Rabbit
) -> None:
    """A scheduler committed ``task.overdue`` (timeline, task, outbox row in one transaction),
    published the event, and was killed before it could delete the outbox row. The next
    process's relay sends the row again: the portal gets the same ``event_id`` twice and
    drops the second; no scheduler raises the threshold a third time."""
    from gateway.orchestration import escalation
    from gateway.store import open_store
    from gateway.store.sql import SqlStore
    from tests.store.test_reports import at as ctx_at
    from tests.store.test_reports import seeded

    over_q = rabbit.bind_test_queue("gw.events", "window.*.task.overdue")
    db = f"sqlite:///{tmp_path / 'killed.sqlite3'}"
    store = await open_store(db)
    try:
        await seeded(store)  # app2's police task: due 26 October 2026 11:30, never answered
        assert isinstance(store, SqlStore)
        async with store.database.transaction() as tx:
            await tx.execute("DELETE FROM outbox")  # the dispatches went out long ago
        crashed_at = time.time() - 120  # the outbox lease (30 s) ran out since
        _, rows = await store.cases.transition(
            "app2",
            lambda s: escalation.on_deadline(s, ctx_at(crashed_at), "app2.hukou"),
            crashed_at,
        )
        [row] = rows
        sent = row.outgoing.message  # the killed scheduler had published it once
        await rabbit.apublish(
            row.outgoing.exchange, row.outgoing.routing_key, bytes(sent.body), headers=sent.headers
        )
    finally:
        await store.close()

    settings = settings_for(db, scheduler={"interval_seconds": 0.2})
    gw = Gateway(settings, roles=["relay", "scheduler"])
    await gw.start()
    try:
        # app1's two unanswered provincial tasks go overdue now, raised by this scheduler
        every = await rabbit.aget_all(over_q, wait=15, at_least=4)
        got = [g for g in every if g.json()["application_id"] == "app2"]
        assert len(got) == 2
        ids = {g.json()["event_id"] for g in got} | {g.properties.headers["event_id"] for g in got}
        assert ids == {json.loads(sent.body)["event_id"]}  # one event, delivered twice
        assert await rabbit.aget_all(over_q, wait=1.0) == []  # not raised a third time
        assert gw.store is not None
        timeline = await gw.store.cases.timeline("app2")
        assert [e.kind for e in timeline if e.task_id == "app2.hukou"].count("task.overdue") == 1
    finally:
        await gw.stop(drain_seconds=1)
