"""The admin API over a real socket with the gateway's real store and broker: replay by
filter and "all", messages that are not tasks going back to their own exchange, every
query error at once, and an operator scope that hides what has no department."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from gateway.runtime import Gateway
from gateway.settings import OperatorConfig, Settings
from gateway.store import DeadLetter, Store
from tests.conftest import INTAKE_ROLES
from tests.support.rabbit import Rabbit

pytestmark = pytest.mark.broker
LEAD, POLICE = "lead-token-0123456789", "police-token-0123456789"
OPERATORS = {
    "lead": OperatorConfig(token=LEAD, roles=frozenset({"view", "replay"})),  # type: ignore[arg-type]
    "police": OperatorConfig(
        token=POLICE,  # type: ignore[arg-type]
        roles=frozenset({"view", "replay"}),
        systems=frozenset({"hukou"}),
    ),
}


@pytest.fixture
async def admin(
    settings_for: Callable[..., Settings], database_url: str
) -> AsyncIterator[tuple[Gateway, aiohttp.ClientSession]]:
    gw = Gateway(settings_for(database_url, operators=OPERATORS), roles=INTAKE_ROLES)
    await gw.start()
    async with aiohttp.ClientSession(f"http://127.0.0.1:{gw.http_port}") as session:
        yield gw, session
    await gw.stop(drain_seconds=2)


async def call(
    session: aiohttp.ClientSession, token: str, method: str, path: str, body: Any = None, **q: str
) -> tuple[int, Any]:
    async with session.request(
        method, path, json=body, params=q, headers={"Authorization": f"Bearer {token}"}
    ) as resp:
        return resp.status, await resp.json(content_type=None)


async def seed(store: Store) -> None:
    now = time.time()
    for n, (exchange, key, system, app, body) in enumerate(
        [
            ("gw.accepted", "newborn", None, "app-a", b'{"application_id": "app-a"}'),
            ("gw.accepted", "newborn", None, "app-b", b'{"application_id": "app-b"}'),
            (
                "gw.tasks",
                "hukou.newborn.hukou",
                "hukou",
                "gone",
                b'{"task_id": "gone.hukou"}',
            ),
        ]
    ):
        await store.add_dead_letter(
            DeadLetter(
                message_id=f"m{n}",
                exchange=exchange,
                routing_key=key,
                headers_json=json.dumps(
                    {"x-task-id": "gone.hukou"} if system else {"x-reason": "not in store"}
                ),
                body=body,
                reason=f"application {app} is not in this gateway's store"
                if system is None
                else "police refused",
                error_kind="permanent",
                system=system,
                matter="newborn",
                application_id=app,
                portal_id=None,
                attempts=1,
                first_failed_at=now,
                last_failed_at=now,
            ),
            now,
        )


async def test_replay_by_filter_and_all(
    admin: tuple[Gateway, aiohttp.ClientSession], rabbit: Rabbit
) -> None:
    gw, session = admin
    assert gw.store is not None
    await seed(gw.store)

    status, problem = await call(
        session, LEAD, "GET", "/v1/admin/dead-letters", limit="0", since="x"
    )
    assert status == 422 and {e["loc"] for e in problem["errors"]} == {"limit", "since"}
    assert problem["type"].endswith("invalid-request")

    status, page = await call(session, POLICE, "GET", "/v1/admin/dead-letters")
    assert [x["system"] for x in page["items"]] == ["hukou"]  # letters with no system: hidden
    status, problem = await call(session, POLICE, "GET", "/v1/admin/dead-letters/1")
    assert status == 403 and problem["system"] == ""

    status, problem = await call(
        session, LEAD, "POST", "/v1/admin/dead-letters/replay", {"reason": "r"}
    )
    assert status == 422  # neither a filter nor "all"
    status, done = await call(
        session,
        LEAD,
        "POST",
        "/v1/admin/dead-letters/replay",
        {"reason": "orchestrator store restored", "filter": {"reason": "NOT IN THIS gateway"}},
    )
    assert status == 200, done
    assert [r["sent"] for r in done["replayed"]] == [True, True] and done["refused"] == []
    got = await rabbit.aget_all("gw.accepted", wait=10, at_least=2)
    assert sorted(g.json()["application_id"] for g in got) == ["app-a", "app-b"]
    assert all("x-reason" not in (g.properties.headers or {}) for g in got)
    assert all(g.properties.message_id not in ("m0", "m1") for g in got)  # new per publish

    status, done = await call(
        session, LEAD, "POST", "/v1/admin/dead-letters/replay", {"reason": "r", "all": True}
    )
    assert status == 200 and done["replayed"] == []
    [(letter_id, detail)] = [(r["id"], r["detail"]) for r in done["refused"]]
    assert letter_id == 3 and "no application gone" in detail
    status, page = await call(session, LEAD, "GET", "/v1/admin/dead-letters")
    assert [x["id"] for x in page["items"]] == [3]  # still parked
    status, trail = await call(session, LEAD, "GET", "/v1/admin/audit")
    actions = [e["action"] for e in trail["items"]]
    assert actions.count("dlq.replay") == 2 and actions.count("dlq.replay_filter") == 2
    assert actions.count("denied") == 1
