"""The operator surface end to end: real RabbitMQ, real store, the four simulators.

The provincial platform is down past its retry budget, so both of a newborn's provincial
tasks are dead-lettered and the application is blocked. The platform comes back; operators
use the admin API over a real socket: roles and department scopes refuse what they must,
one letter is replayed, the other is sent as an edited copy under ``<task>.r1``, the
application completes. Replaying again has no second effect in the department's ledger;
a purge drops the letter from the listing; the audit trail names every action and every
unmasked read."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.runtime import Gateway
from gateway.settings import OperatorConfig, RetryPolicy, Settings
from gateway.simulators.fleet import Fleet, local_systems
from gateway.simulators.ledger import EffectLedger
from tests.conftest import WINDOW_SECRET
from tests.support.portal import Portal, example_json
from tests.support.rabbit import Rabbit
from tests.support.waiting import eventually

pytestmark = pytest.mark.broker

OPERATORS = {
    "lead": OperatorConfig(
        token="lead-token-0123456789",  # type: ignore[arg-type]
        roles=frozenset({"view", "replay", "edit", "purge", "unmask"}),
    ),
    "viewer": OperatorConfig(token="viewer-token-0123456789"),  # type: ignore[arg-type]
    "police": OperatorConfig(
        token="police-token-0123456789",  # type: ignore[arg-type]
        roles=frozenset({"view", "replay"}),
        systems=frozenset({"hukou"}),
    ),
}


class Admin:
    def __init__(self, base: str, session: aiohttp.ClientSession, token: str | None) -> None:
        self.base, self.session, self.token = base, session, token

    async def call(
        self, method: str, path: str, body: Any = None, **params: str
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        async with self.session.request(
            method, self.base + path, json=body, params=params, headers=headers
        ) as resp:
            data = await resp.json(content_type=None)
            return resp.status, data

    async def get(self, path: str, **params: str) -> tuple[int, Any]:
        return await self.call("GET", path, **params)

    async def post(self, path: str, body: Any) -> tuple[int, Any]:
        return await self.call("POST", path, body)


class Desk:
    def __init__(self, gw: Gateway, fleet: Fleet, ledger: EffectLedger, portal: Portal) -> None:
        self.gw, self.fleet, self.ledger, self.portal = gw, fleet, ledger, portal
        base = f"http://127.0.0.1:{gw.http_port}"
        self.lead = Admin(base, portal.session, "lead-token-0123456789")
        self.viewer = Admin(base, portal.session, "viewer-token-0123456789")
        self.police = Admin(base, portal.session, "police-token-0123456789")
        self.nobody = Admin(base, portal.session, None)

    async def status(self, app_id: str) -> str:
        answer = await self.portal.show(app_id)
        status: str = answer.json()["status"]
        return status


@pytest.fixture
async def desk(
    settings_for: Callable[..., Settings], database_url: str, tmp_path: Path, rabbit: Rabbit
) -> AsyncIterator[Desk]:
    systems = local_systems(tmp_path / "sim", poll_seconds=0.2)
    one_try = RetryPolicy(attempts=1, quick_attempts=1, ladder=(0.05,))
    systems["provincial"] = systems["provincial"].model_copy(update={"retry": one_try})
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
    assert await ledger.double_effects() == []  # nothing twice, whatever the test did
    ledger.close()


def name_paths(node: Any, prefix: str) -> list[str]:
    """Dotted paths of string leaves whose key ends in 'name'."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{prefix}.{key}"
            if isinstance(value, str) and key.endswith("name"):
                found.append(path)
            found += name_paths(value, path)
    return found


async def test_blocked_by_a_department_outage_then_replayed_by_operators(desk: Desk) -> None:
    desk.fleet.behaviour("provincial").outages.append((0.0, time.time() + 3600))
    envelope = example_json("newborn-yizhang-window")
    answer = await desk.portal.submit(json.dumps(envelope, ensure_ascii=False).encode())
    assert answer.status == 202, answer.body
    app_id: str = answer.json()["application_id"]

    async def both_parked() -> list[dict[str, Any]] | None:
        status, page = await desk.lead.get("/v1/admin/dead-letters", system="provincial")
        assert status == 200, page
        items: list[dict[str, Any]] = page["items"]
        return items if len(items) == 2 and await desk.status(app_id) == "blocked" else None

    letters = await eventually(both_parked, 40)
    assert letters, await desk.lead.get("/v1/admin/dead-letters", status="any")
    by_step = {x["routing_key"].split(".")[-1]: x for x in letters}
    insurance, card = by_step["medical_insurance"], by_step["social_security_card"]
    assert insurance["application_id"] == app_id and insurance["error_kind"] == "retryable"
    assert "retry budget spent" in insurance["reason"]
    desk.fleet.behaviour("provincial").outages.clear()  # the platform is back

    # -- who may do what ----------------------------------------------------------------
    status, problem = await desk.nobody.get("/v1/admin/dead-letters")
    assert status == 401 and problem["status"] == 401
    status, _ = await Admin(desk.lead.base, desk.lead.session, "x" * 24).get(
        "/v1/admin/dead-letters"
    )
    assert status == 401
    status, problem = await desk.viewer.post(
        f"/v1/admin/dead-letters/{insurance['id']}/replay", {"reason": "try"}
    )
    assert status == 403 and problem["missing_role"] == "replay", problem
    status, page = await desk.police.get("/v1/admin/dead-letters")
    assert status == 200 and page["items"] == []  # provincial letters are not the police's
    status, problem = await desk.police.get(f"/v1/admin/dead-letters/{insurance['id']}")
    assert status == 403 and problem["system"] == "provincial", problem
    status, problem = await desk.police.post(
        f"/v1/admin/dead-letters/{insurance['id']}/replay", {"reason": "not mine"}
    )
    assert status == 403
    status, groups = await desk.lead.get("/v1/admin/dead-letters/groups")
    assert status == 200 and [g["count"] for g in groups["groups"]] == [2], groups

    # -- replay one ---------------------------------------------------------------------
    status, problem = await desk.lead.post(f"/v1/admin/dead-letters/{insurance['id']}/replay", {})
    assert status == 422  # a reason is required
    status, done = await desk.lead.post(
        f"/v1/admin/dead-letters/{insurance['id']}/replay", {"reason": "platform back up"}
    )
    assert status == 200 and done["sent"] is True, done
    assert done["key"] == f"{app_id}.medical_insurance"

    # -- edit and replay the other ------------------------------------------------------
    status, full = await desk.lead.get(
        f"/v1/admin/dead-letters/{card['id']}", unmask="true", why="prepare an edit"
    )
    assert status == 200 and full["unmasked"] is True
    [path, *_] = name_paths(full["body"]["fields"], "fields")
    change = {"changes": {path: "王小明"}, "reason": "name as on the hukou record"}
    status, problem = await desk.lead.post(f"/v1/admin/dead-letters/{card['id']}/edit", change)
    assert status == 409 and "force" in problem["detail"]  # it died of an outage
    status, problem = await desk.lead.post(
        f"/v1/admin/dead-letters/{card['id']}/edit",
        {"changes": {"task_id": "x"}, "reason": "no"},
    )
    assert status == 422 and problem["errors"][0]["loc"] == "task_id"
    status, done = await desk.lead.post(
        f"/v1/admin/dead-letters/{card['id']}/edit", {**change, "force": True}
    )
    assert status == 200 and done["key"] == f"{app_id}.social_security_card.r1", done

    async def completed() -> bool:
        return await desk.status(app_id) == "completed"

    assert await eventually(completed, 40), await desk.portal.show(app_id)

    effects = Counter((e.system, e.task) for e in await desk.ledger.effects(app_id))
    assert set(effects.values()) == {1} and len(effects) == 5  # one effect per task
    keys = {(t, k) for _, t, k, _ in await desk.ledger.deliveries(app_id)}
    assert ("social_security_card", f"{app_id}.social_security_card.r1") in keys
    [card_effect] = [
        e for e in await desk.ledger.effects(app_id) if e.task == "social_security_card"
    ]
    assert card_effect.idempotency_key == f"{app_id}.social_security_card.r1"

    status, problem = await desk.lead.get(f"/v1/admin/dead-letters/{card['id']}", unmask="true")
    assert status == 422 and problem["errors"][0]["loc"] == "why"  # an unmasked read says why
    status, shown = await desk.lead.get(
        f"/v1/admin/dead-letters/{card['id']}", unmask="true", why="check the copy"
    )
    assert shown["body"]["task_id"] == f"{app_id}.social_security_card"  # the original kept
    assert shown["body"]["attempt"] == 1 and shown["status"] == "replayed"
    [edit] = shown["edits"]
    assert edit["idempotency_key"] == f"{app_id}.social_security_card.r1"
    assert edit["diff"][0]["path"] == path and edit["diff"][0]["after"] == "王小明"
    status, masked = await desk.lead.get(f"/v1/admin/dead-letters/{card['id']}")
    assert masked["edits"][0]["diff"][0]["after"] != "王小明"  # masked without unmask

    # -- replay twice: refused, and forced it changes nothing in the department --------
    status, problem = await desk.lead.post(
        f"/v1/admin/dead-letters/{insurance['id']}/replay", {"reason": "again"}
    )
    assert status == 409
    before = await desk.ledger.effects(app_id)
    status, done = await desk.lead.post(
        f"/v1/admin/dead-letters/{insurance['id']}/replay", {"reason": "again", "force": True}
    )
    assert status == 200 and done["sent"] is False, done  # the task completed meanwhile
    assert await desk.ledger.effects(app_id) == before

    # -- purge ----------------------------------------------------------------------------
    status, _ = await desk.lead.post(
        f"/v1/admin/dead-letters/{insurance['id']}/purge", {"reason": "done, test data"}
    )
    assert status == 200
    status, page = await desk.lead.get("/v1/admin/dead-letters", status="replayed")
    assert [x["id"] for x in page["items"]] == [card["id"]]
    status, page = await desk.lead.get("/v1/admin/dead-letters", status="purged")
    assert [x["purged_by"] for x in page["items"]] == ["lead"]

    # -- applications -------------------------------------------------------------------
    status, page = await desk.viewer.get("/v1/admin/applications", status="completed")
    assert status == 200 and [a["application_id"] for a in page["items"]] == [app_id]
    status, page = await desk.police.get("/v1/admin/applications", overdue="false")
    assert [a["application_id"] for a in page["items"]] == [app_id]  # it has a hukou task
    status, view = await desk.viewer.get(f"/v1/admin/applications/{app_id}")
    mother = envelope["subjects"]["mother"]["name"]
    assert status == 200 and mother not in json.dumps(view, ensure_ascii=False)
    assert any(e["kind"] == "task.replayed" for e in view["timeline"])
    status, problem = await desk.viewer.get(
        f"/v1/admin/applications/{app_id}", unmask="true", why="curious"
    )
    assert status == 403 and problem["missing_role"] == "unmask"
    status, view = await desk.lead.get(
        f"/v1/admin/applications/{app_id}", unmask="true", why="citizen called"
    )
    assert status == 200 and view["envelope"]["subjects"]["mother"]["name"] == mother

    # -- the audit trail ----------------------------------------------------------------
    status, trail = await desk.lead.get("/v1/admin/audit", limit="100")
    actions = Counter((e["operator"], e["action"]) for e in trail["items"])
    assert actions[("lead", "dlq.replay")] == 2  # replay, forced replay (an edit: dlq.edit)
    assert actions[("lead", "dlq.edit")] == 1 and actions[("lead", "dlq.purge")] == 1
    assert actions[("lead", "dead_letter.unmask")] == 2  # the one without why is refused
    assert actions[("lead", "application.unmask")] == 1
    assert actions[("viewer", "denied")] == 2 and actions[("police", "denied")] == 2
    assert actions[("-", "login.failed")] == 2  # no token, an unknown one (401s)
    unmask = next(e for e in trail["items"] if e["action"] == "application.unmask")
    assert unmask["reason"] == "citizen called" and unmask["target"] == f"application:{app_id}"
