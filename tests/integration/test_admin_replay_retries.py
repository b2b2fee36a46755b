"""Replays against the real broker, store and simulators, where retries and timing matter:
a replayed task gets a fresh retry budget (the department still down → retried through the
delay queue, then parked again, not parked at once); a forced replay while the first one is
still in flight has one effect; an intake letter without a portal is refused with what the
portal must do."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.runtime import Gateway
from gateway.settings import RetryPolicy, Settings
from gateway.simulators.fleet import Fleet, local_systems
from gateway.simulators.ledger import EffectLedger
from tests.conftest import WINDOW_SECRET
from tests.integration.test_admin_replay import OPERATORS, Desk
from tests.support.portal import Portal, example_json
from tests.support.rabbit import Rabbit
from tests.support.waiting import eventually

pytestmark = pytest.mark.broker
UNAVAILABLE = "unavailable: 503"


@pytest.fixture
async def desk(
    settings_for: Callable[..., Settings], database_url: str, tmp_path: Path, rabbit: Rabbit
) -> AsyncIterator[Desk]:
    systems = local_systems(tmp_path / "sim", poll_seconds=0.2)
    three = RetryPolicy(
        attempts=3, quick_attempts=1, initial_seconds=0.05, max_seconds=0.1, ladder=(0.1,)
    )
    systems["provincial"] = systems["provincial"].model_copy(update={"retry": three})
    settings = settings_for(database_url, systems=systems, operators=OPERATORS)
    ledger = EffectLedger(tmp_path / "ledger.sqlite3")
    gw = Gateway(settings)
    await gw.start()
    fleet = Fleet(settings, ledger, callback_base_url=f"http://127.0.0.1:{gw.http_port}")
    await fleet.start()
    async with aiohttp.ClientSession() as session:
        portal = Portal(f"http://127.0.0.1:{gw.http_port}", "window", WINDOW_SECRET, session)
        yield Desk(gw, fleet, ledger, portal)
    await fleet.stop()
    await gw.stop(drain_seconds=2)
    assert await ledger.double_effects() == []
    ledger.close()


async def parked(desk: Desk, app_id: str, step: str) -> dict[str, Any] | None:
    status, page = await desk.lead.get(
        "/v1/admin/dead-letters", system="provincial", application=app_id
    )
    assert status == 200, page
    mine = [x for x in page["items"] if x["routing_key"].endswith(f".{step}")]
    return mine[0] if mine else None


async def tries(desk: Desk, app_id: str, step: str) -> int:
    return sum(
        1
        for system, task, _, detail in await desk.ledger.deliveries(app_id)
        if system == "provincial" and task == step and detail == UNAVAILABLE
    )


async def test_a_replay_gets_a_fresh_retry_budget_then_one_effect_when_forced(
    desk: Desk,
) -> None:
    provincial = desk.fleet.behaviour("provincial")
    provincial.outages.append((0.0, time.time() + 3600))
    answer = await desk.portal.submit(
        json.dumps(example_json("newborn-yizhang-window"), ensure_ascii=False).encode()
    )
    assert answer.status == 202, answer.body
    app_id: str = answer.json()["application_id"]

    async def both() -> tuple[dict[str, Any], dict[str, Any]] | None:
        a = await parked(desk, app_id, "medical_insurance")
        b = await parked(desk, app_id, "social_security_card")
        return (a, b) if a and b and await desk.status(app_id) == "blocked" else None

    found = await eventually(both, 60)
    assert found is not None
    insurance, card = found
    assert insurance["attempts"] == 3 and await tries(desk, app_id, "medical_insurance") == 3

    # -- the platform is still down: the replay spends a whole new budget, via the delay
    #    queue, before it is parked again (the x-attempt of the letter does not carry over)
    status, done = await desk.lead.post(
        f"/v1/admin/dead-letters/{insurance['id']}/replay", {"reason": "platform says it is up"}
    )
    assert status == 200 and done["sent"] is True, done

    async def parked_again() -> dict[str, Any] | None:
        again = await parked(desk, app_id, "medical_insurance")
        return again if again and again["id"] != insurance["id"] else None

    again = await eventually(parked_again, 60)
    assert again is not None, await desk.ledger.deliveries(app_id)
    assert await tries(desk, app_id, "medical_insurance") == 6  # 3 before, 3 after
    assert again["attempts"] == 3
    assert await desk.status(app_id) == "blocked"

    # -- back up; replay the card, and force it again while the first is in flight ------
    provincial.outages.clear()
    provincial.decision_delay_seconds = 1.0  # the first replay stays open for a while
    status, first = await desk.lead.post(
        f"/v1/admin/dead-letters/{card['id']}/replay", {"reason": "platform back"}
    )
    assert status == 200 and first["sent"] is True, first
    status, forced = await desk.lead.post(
        f"/v1/admin/dead-letters/{card['id']}/replay", {"reason": "impatient", "force": True}
    )
    assert status == 200 and forced["sent"] is True, forced  # the task was still open
    status, last = await desk.lead.post(
        f"/v1/admin/dead-letters/{again['id']}/replay", {"reason": "platform back"}
    )
    assert status == 200 and last["sent"] is True, last

    async def completed() -> bool:
        return await desk.status(app_id) == "completed"

    assert await eventually(completed, 60), await desk.portal.show(app_id)
    card_effects = [
        e for e in await desk.ledger.effects(app_id) if e.task == "social_security_card"
    ]
    assert len(card_effects) == 1  # two sends of one key, one effect
    keys = [
        k
        for s, t, k, d in await desk.ledger.deliveries(app_id)
        if t == "social_security_card" and d != UNAVAILABLE
    ]
    assert keys == [f"{app_id}.social_security_card"] * len(keys) and len(keys) >= 1


async def test_an_intake_letter_without_its_portal_is_refused_with_what_to_do(
    desk: Desk, rabbit: Rabbit
) -> None:
    body = json.dumps(example_json("newborn-yizhang-window"), ensure_ascii=False).encode()
    await rabbit.apublish("gw.intake", "window", body, message_id="no-user-1")  # no user_id

    async def letter() -> dict[str, Any] | None:
        _, page = await desk.lead.get("/v1/admin/dead-letters", status="parked")
        items = [x for x in page["items"] if x["exchange"] == "gw.intake"]
        return items[0] if items else None

    found = await eventually(letter, 30)
    assert found is not None and "user_id" in found["reason"]
    status, problem = await desk.lead.post(
        f"/v1/admin/dead-letters/{found['id']}/replay", {"reason": "try it"}
    )
    assert status == 409 and "portal must resend" in problem["detail"], problem
    status, page = await desk.lead.get("/v1/admin/applications")
    assert page["items"] == []  # nothing was accepted behind the portal's back
