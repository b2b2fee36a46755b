"""HTTP intake against the real RabbitMQ and both stores: one test per DESIGN rule."""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest

from gateway.errors import StoreUnavailable
from gateway.intake.service import fingerprint
from gateway.runtime import Gateway
from gateway.settings import Settings
from gateway.store import ApplicationStatus
from tests.conftest import INTAKE_ROLES, ONLINE_OLD_SECRET, ONLINE_SECRET, WINDOW_SECRET
from tests.support.portal import Portal, example, example_json
from tests.support.proxy import TcpProxy
from tests.support.rabbit import Rabbit

NEWBORN = example("newborn-yizhang-window")


@pytest.fixture
async def gw(settings_for: Callable[..., Settings], database_url: str) -> AsyncIterator[Gateway]:
    gateway = Gateway(
        roles=INTAKE_ROLES,
        settings=settings_for(
            database_url, intake={"max_body_bytes": 64 * 1024, "idempotency_lease_seconds": 0.5}
        ),
    )
    await gateway.start()
    yield gateway
    await gateway.stop(drain_seconds=2)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def window(gw: Gateway, session: aiohttp.ClientSession) -> Portal:
    return Portal(f"http://127.0.0.1:{gw.http_port}", "window", WINDOW_SECRET, session)


@pytest.fixture
def online(gw: Gateway, session: aiohttp.ClientSession) -> Portal:
    return Portal(f"http://127.0.0.1:{gw.http_port}", "online", ONLINE_SECRET, session)


# --- the dual write -------------------------------------------------------------------


async def test_valid_envelope_is_stored_published_confirmed_then_202(
    gw: Gateway, window: Portal, rabbit: Rabbit
) -> None:
    answer = await window.submit(NEWBORN, key="birth-0001")
    assert answer.status == 202, answer.body
    app_id = answer.json()["application_id"]
    assert answer.headers["Location"] == f"/v1/applications/{app_id}"
    assert gw.store is not None
    record = await gw.store.get_application(app_id)
    assert record is not None and record.status is ApplicationStatus.ACCEPTED
    assert record.accepted_at is not None and record.portal_id == "window"

    [msg] = await rabbit.aget_all("gw.accepted", wait=5, at_least=1)
    assert msg.routing_key == "newborn"
    assert msg.properties.correlation_id == app_id
    assert msg.properties.delivery_mode == 2
    headers = msg.properties.headers
    assert headers["x-attempt"] == 1 and "x-task-id" in headers
    assert headers["traceparent"].startswith("00-")
    body = msg.json()
    assert body["application_id"] == app_id
    assert body["envelope"] == json.loads(record.envelope_json)
    assert body["envelope"]["subjects"]["child"]["birth_place"] == "431022"


async def test_application_ids_are_uuid7(window: Portal) -> None:
    ids = [(await window.submit(NEWBORN)).json()["application_id"] for _ in range(3)]
    assert all(i[14] == "7" for i in ids)  # version nibble
    assert ids == sorted(ids)  # time-ordered


# --- idempotency ----------------------------------------------------------------------


async def test_same_key_same_body_returns_the_stored_answer_once(
    gw: Gateway, window: Portal, rabbit: Rabbit
) -> None:
    first = await window.submit(NEWBORN, key="same-key")
    again = await window.submit(NEWBORN, key="same-key")
    assert (again.status, again.body) == (first.status, first.body)
    assert again.headers["Location"] == first.headers["Location"]
    assert gw.store is not None
    assert len(await gw.store.list_applications(portal_id="window")) == 1
    assert len(await rabbit.aget_all("gw.accepted", wait=1, at_least=2)) == 1


async def test_same_key_other_body_is_422(window: Portal) -> None:
    await window.submit(NEWBORN, key="reused")
    other = await window.submit(example("retirement-online"), key="reused")
    assert other.status == 422
    assert other.json()["type"].endswith("/idempotency-key-reused")


async def test_keys_are_per_portal(window: Portal, online: Portal) -> None:
    a = await window.submit(NEWBORN, key="shared-key")
    b = await online.submit(NEWBORN, key="shared-key")
    assert a.status == b.status == 202
    assert a.json()["application_id"] != b.json()["application_id"]


async def test_missing_or_overlong_key_is_400(window: Portal) -> None:
    assert (await window.submit(NEWBORN, key=None)).status == 400
    assert (await window.submit(NEWBORN, key="k" * 129)).status == 400
    assert (await window.submit(NEWBORN, key="k" * 128)).status == 202


async def test_key_in_flight_is_409_until_its_lease_expires(gw: Gateway, window: Portal) -> None:
    assert gw.store is not None
    await gw.store.claim_idempotency("window", "busy", fingerprint(NEWBORN), time.time(), 0.5)
    busy = await window.submit(NEWBORN, key="busy")
    assert busy.status == 409 and "Retry-After" in busy.headers
    await asyncio.sleep(0.6)
    assert (await window.submit(NEWBORN, key="busy")).status == 202


async def test_invalid_envelope_is_422_listing_every_error_and_is_stored(
    gw: Gateway, window: Portal, rabbit: Rabbit
) -> None:
    body = example("multiple-errors", "invalid")
    expected = json.loads(example("multiple-errors.errors", "invalid"))
    answer = await window.submit(body, key="bad-1")
    assert answer.status == 422
    assert answer.headers["Content-Type"].startswith("application/problem+json")
    problem = answer.json()
    assert sorted(e["loc"] for e in problem["errors"]) == sorted(expected)
    assert all(set(e) == {"loc", "msg", "type"} for e in problem["errors"])
    replay = await window.submit(body, key="bad-1")
    assert (replay.status, replay.body) == (422, answer.body)
    assert await rabbit.aget_all("gw.accepted", wait=0.5) == []


async def test_body_limit_is_413(window: Portal) -> None:
    envelope = example_json("newborn-yizhang-window")
    envelope["subjects"]["child"]["name"] = "王" * 30_000  # ~90 KB of UTF-8
    answer = await window.submit(json.dumps(envelope, ensure_ascii=False).encode())
    assert answer.status == 413
    assert answer.json()["type"].endswith("/body-too-large")


async def test_compressed_body_is_refused(window: Portal) -> None:
    answer = await window.submit(gzip.compress(NEWBORN), headers={"Content-Encoding": "gzip"})
    assert answer.status == 415


# --- portal authentication ------------------------------------------------------------


async def test_each_signature_rule(window: Portal, online: Portal) -> None:
    async def status(**kw: object) -> int:
        return (await window.submit(NEWBORN, **kw)).status  # type: ignore[arg-type]

    assert await status(secret="not-the-window-secret") == 401
    assert await status(now=time.time() - 301) == 401
    assert await status(now=time.time() + 301) == 401
    assert await status(now=time.time() - 290) == 202
    assert await status(sign_body=NEWBORN + b" ") == 401  # body changed after signing
    assert await status(sign_path="/v1/other") == 401
    # the query string is part of what is signed
    assert (
        await window.request(
            "POST", "/v1/applications?x=1", NEWBORN, "q1", sign_path="/v1/applications"
        )
    ).status == 401
    assert (await window.request("POST", "/v1/applications?x=1", NEWBORN, "q2")).status == 202
    # the idempotency key is part of what is signed
    answer = await window.submit(
        NEWBORN, key="signed-key", headers={"Idempotency-Key": "swapped-key"}
    )
    assert answer.status == 401


async def test_rotation_accepts_the_previous_secret(online: Portal) -> None:
    assert (await online.submit(NEWBORN, secret=ONLINE_OLD_SECRET)).status == 202
    assert (await online.submit(NEWBORN, secret="never-was-a-secret-0000")).status == 401


async def test_reused_nonce_is_refused(window: Portal) -> None:
    first = await window.submit(NEWBORN, nonce="n-123")
    second = await window.submit(NEWBORN, nonce="n-123")
    assert first.status == 202
    assert second.status == 401 and "nonce" in second.json()["detail"].lower()


async def test_a_reused_nonce_is_refused_whatever_else_the_request_holds(
    gw: Gateway, window: Portal
) -> None:
    first = await window.submit(NEWBORN, key="nonce-key-1", nonce="n-456")
    assert first.status == 202
    # another key and another body: still refused, and no second application is stored
    other = await window.submit(example("after-death-mobile"), key="nonce-key-2", nonce="n-456")
    assert other.status == 401 and "nonce" in other.json()["detail"].lower()
    assert gw.store is not None
    assert await gw.store.find_application("window", "nonce-key-2") is None
    # refused before intake (no Idempotency-Key; a compressed body): 401 still comes first
    assert (await window.submit(NEWBORN, key=None, nonce="n-456")).status == 401
    packed = gzip.compress(NEWBORN)
    assert (await window.submit(packed, key="nonce-key-3", nonce="n-456")).status == 401
    # and such a refused request uses its nonce up too
    assert (await window.submit(NEWBORN, key=None, nonce="n-789")).status == 400
    assert (await window.submit(NEWBORN, key="nonce-key-4", nonce="n-789")).status == 401
    assert (await window.submit(NEWBORN, key="nonce-key-4", nonce="n-790")).status == 202


async def test_unknown_portal_and_missing_headers(window: Portal) -> None:
    stranger = Portal(window.base_url, "stranger", WINDOW_SECRET, window.session)
    assert (await stranger.submit(NEWBORN)).status == 401
    async with window.session.post(
        window.base_url + "/v1/applications",
        data=NEWBORN,
        headers={"Content-Type": "application/json"},
    ) as resp:
        assert resp.status == 401
        assert "X-Portal-Id" in (await resp.json(content_type=None))["detail"]


# --- reading back ---------------------------------------------------------------------


async def test_a_portal_sees_only_its_own_applications(window: Portal, online: Portal) -> None:
    app_id = (await window.submit(NEWBORN)).json()["application_id"]
    mine = await window.show(app_id)
    assert mine.status == 200
    view = mine.json()
    assert (view["application_id"], view["status"], view["matter"]) == (
        app_id,
        "accepted",
        "newborn",
    )
    assert view["accepted_at"].endswith("+08:00")  # Asia/Shanghai
    assert (await online.show(app_id)).status == 404
    assert (await window.show("01a2217c-0000-7000-8000-000000000000")).status == 404


async def test_health_readiness_and_metrics(gw: Gateway, window: Portal) -> None:
    await window.submit(NEWBORN)
    async with window.session.get(window.base_url + "/healthz") as resp:
        assert resp.status == 200
    async with window.session.get(window.base_url + "/readyz") as resp:
        assert resp.status == 200
        assert (await resp.json())["checks"] == {"broker": "ok", "store": "ok"}
    async with window.session.get(window.base_url + "/metrics") as resp:
        text = await resp.text()
    assert 'gateway_intake_total{channel="http",outcome="202"} 1.0' in text
    assert "gateway_broker_connected 1.0" in text


# --- broker down ----------------------------------------------------------------------


async def test_broker_down_is_503_and_the_same_key_succeeds_later(
    settings_for: Callable[..., Settings],
    proxy: TcpProxy,
    session: aiohttp.ClientSession,
    rabbit: Rabbit,
) -> None:
    settings = settings_for(
        via=proxy, broker={"publish_timeout_seconds": 1.0, "reconnect_max_seconds": 0.5}
    )
    async with Gateway(settings, roles=INTAKE_ROLES) as gw:
        assert gw.store is not None and gw.broker is not None
        portal = Portal(f"http://127.0.0.1:{gw.http_port}", "window", WINDOW_SECRET, session)
        await proxy.refuse()
        down = await portal.submit(NEWBORN, key="while-down")
        assert down.status == 503 and down.headers["Retry-After"]
        [stored] = await gw.store.list_applications()
        assert stored.status is ApplicationStatus.RECEIVED  # kept; nothing lost
        async with session.get(portal.base_url + "/readyz") as resp:
            assert resp.status == 503

        await proxy.restore()
        for _ in range(100):
            if gw.broker.connected:
                break
            await asyncio.sleep(0.1)
        later = await portal.submit(NEWBORN, key="while-down")
        assert later.status == 202
        assert later.json()["application_id"] == stored.id  # the same application, not a 2nd
        assert len(await gw.store.list_applications()) == 1
        delivered = await rabbit.aget_all("gw.accepted", wait=2, at_least=1)
        assert {m.properties.correlation_id for m in delivered} == {stored.id}


async def test_readyz_says_503_when_the_store_is_down(
    gw: Gateway, window: Portal, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert gw.store is not None

    async def down() -> None:
        raise StoreUnavailable("connection refused")

    monkeypatch.setattr(gw.store, "ping", down)
    async with window.session.get(window.base_url + "/readyz") as resp:
        assert resp.status == 503
        assert (await resp.json())["checks"] == {"broker": "ok", "store": "down"}
