"""Portal events as signed webhooks: retried through an outage, refused ones parked."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway import signing
from gateway.runtime import Gateway
from gateway.settings import PortalConfig, Settings
from tests.conftest import ONLINE_SECRET, WINDOW_SECRET
from tests.support.portal import Portal, example
from tests.support.waiting import eventually, true

pytestmark = pytest.mark.broker


class Receiver:
    """A portal's webhook endpoint on a real socket, scripted answers first."""

    def __init__(self) -> None:
        self.answers: list[int] = []
        self.got: list[dict[str, Any]] = []
        self.attempts = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        body = await request.read()
        status = self.answers.pop(0) if self.answers else 204
        ok = signing.matches(
            request.headers["X-Signature"],
            [WINDOW_SECRET],
            request.headers["X-Timestamp"],
            request.headers["X-Nonce"],
            "POST",
            request.raw_path,
            request.headers.get("Idempotency-Key", ""),
            body=body,
        )
        if status < 300:
            self.got.append(
                {
                    "signed": ok,
                    "key": request.headers.get("Idempotency-Key"),
                    "portal": request.headers.get("X-Portal-Id"),
                    **json.loads(body),
                }
            )
        return web.Response(status=status)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    r = Receiver()
    app = web.Application()
    app.router.add_post("/hooks/gateway", r.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield r, f"http://127.0.0.1:{port}/hooks/gateway?portal=window"
    await runner.cleanup()


async def test_events_reach_the_portal_signed_and_survive_an_outage(
    settings_for: Callable[..., Settings], receiver: tuple[Receiver, str]
) -> None:
    r, url = receiver
    r.answers = [503, 503]  # the portal is down for the first two tries
    settings = settings_for(
        portals={"window": PortalConfig(secret=WINDOW_SECRET, amqp_user="guest", webhook_url=url)}
    )  # type: ignore[arg-type]
    async with Gateway(settings, roles=["intake", "orchestrator", "webhooks"]) as gw:
        async with aiohttp.ClientSession() as session:
            portal = Portal(f"http://127.0.0.1:{gw.http_port}", "window", WINDOW_SECRET, session)
            app_id = (await portal.submit(example("newborn-yizhang-window"))).json()[
                "application_id"
            ]
        assert await eventually(
            lambda: true({"application.accepted", "task.dispatched"} <= {e["event"] for e in r.got})
        )
    accepted = next(e for e in r.got if e["event"] == "application.accepted")
    assert accepted["application_id"] == app_id
    assert accepted["signed"] and accepted["portal"] == "window"
    assert accepted["key"] == accepted["event_id"]  # the stable id is the idempotency key
    assert r.attempts >= len(r.got) + 2  # the two 503s were retried, not dropped


async def test_a_refused_webhook_is_parked_with_the_portals_answer(
    settings_for: Callable[..., Settings], receiver: tuple[Receiver, str]
) -> None:
    r, url = receiver
    r.answers = [410] * 10
    settings = settings_for(
        portals={"window": PortalConfig(secret=WINDOW_SECRET, amqp_user="guest", webhook_url=url)}
    )  # type: ignore[arg-type]
    async with Gateway(settings, roles=["intake", "orchestrator", "webhooks", "deadletters"]) as gw:
        assert gw.store is not None
        store = gw.store
        async with aiohttp.ClientSession() as session:
            portal = Portal(f"http://127.0.0.1:{gw.http_port}", "window", WINDOW_SECRET, session)
            await portal.submit(example("newborn-yizhang-window"))
        letters = await eventually(lambda: store.list_dead_letters())
    assert letters
    assert "portal window refused the webhook with 410" in letters[0].letter.reason
    assert letters[0].letter.exchange == "gw.events"


async def test_each_portal_gets_only_its_own_events_and_one_outage_holds_back_no_other(
    settings_for: Callable[..., Settings],
) -> None:
    down, up = Receiver(), Receiver()
    down.answers = [503] * 1000  # the window's webhook endpoint is down all along
    apps = []
    for r in (down, up):
        app = web.Application()
        app.router.add_post("/hooks", r.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        apps.append((runner, f"http://127.0.0.1:{runner.addresses[0][1]}/hooks"))
    try:
        settings = settings_for(
            portals={
                "window": PortalConfig(secret=WINDOW_SECRET, webhook_url=apps[0][1]),  # type: ignore[arg-type]
                "online": PortalConfig(secret=ONLINE_SECRET, webhook_url=apps[1][1]),  # type: ignore[arg-type]
            }
        )
        async with Gateway(settings, roles=["intake", "orchestrator", "webhooks"]) as gw:
            async with aiohttp.ClientSession() as session:
                base = f"http://127.0.0.1:{gw.http_port}"
                mine = Portal(base, "window", WINDOW_SECRET, session)
                theirs = Portal(base, "online", ONLINE_SECRET, session)
                for _ in range(20):  # fill the window's queue while its endpoint is down
                    await mine.submit(example("newborn-yizhang-window"))
                online_id = (await theirs.submit(example("retirement-online"))).json()[
                    "application_id"
                ]
            assert await eventually(
                lambda: true(any(e["event"] == "application.accepted" for e in up.got)), within=15
            )
    finally:
        for runner, _ in apps:
            await runner.cleanup()
    assert {e["application_id"] for e in up.got} == {online_id}  # nothing of the window's
    assert {e["portal"] for e in up.got} == {"online"}
    assert down.got == [] and down.attempts > 0
