"""``gateway demo``: the main job, end to end on the real broker, in one terminal.

It starts every role of the gateway in this process (a fresh SQLite store under ``var/``),
then plays a service-centre window and an online portal: the sample envelopes go in over
signed HTTP and over AMQP, the same request is retried to show idempotency, bad envelopes
show the problem+json answer and the dead-letter store, and every accepted application is
read back. Until the orchestrator lands, a stand-in consumer on ``gw.accepted`` shows what
the orchestrator will receive, and acknowledges it.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp
import pika

from gateway.broker.messages import Delivery, uuid7
from gateway.broker.topology import ACCEPTED, INTAKE
from gateway.runtime import Gateway
from gateway.settings import PortalConfig, Settings
from gateway.signing import signed_headers

WINDOW = "window"


def _examples(kind: str) -> list[tuple[str, bytes]]:
    folder = resources.files("contracts") / "envelope" / "examples" / kind
    return sorted(
        (entry.name.removesuffix(".json"), entry.read_bytes())
        for entry in folder.iterdir()
        if entry.name.endswith(".json") and not entry.name.endswith(".errors.json")
    )


def demo_settings(settings: Settings) -> Settings:
    """The operator's settings with a demo portal, a fresh store and an ephemeral port."""
    amqp_user = pika.URLParameters(settings.amqp_url).credentials.username
    portals = dict(settings.portals)
    portals.setdefault(WINDOW, PortalConfig(secret=os.urandom(16).hex(), amqp_user=amqp_user))
    run_dir = Path("var") / f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir.mkdir(parents=True, exist_ok=True)
    return settings.model_copy(
        update={
            "portals": portals,
            "database_url": f"sqlite:///{run_dir / 'gateway.sqlite3'}",
            "http_port": 0,
        }
    )


async def run_demo(base: Settings) -> int:
    settings = demo_settings(base)
    secret = settings.portals[WINDOW].secret.get_secret_value()
    print(f"store: {settings.database_url}")
    async with Gateway(settings, name="gateway-demo") as gw:
        assert gw.broker is not None
        assert gw.store is not None
        print(
            f"broker: RabbitMQ {gw.broker.server_version}   intake: http://127.0.0.1:{gw.http_port}"
        )
        seen: list[str] = []

        async def orchestrator_stand_in(delivery: Delivery) -> None:
            data = json.loads(delivery.body)
            seen.append(data["application_id"])
            delivery.ack()

        await gw.broker.consume(ACCEPTED, orchestrator_stand_in, prefetch=16)
        base_url = f"http://127.0.0.1:{gw.http_port}"
        async with aiohttp.ClientSession() as http:
            _section("1. The window submits each sample envelope over signed HTTP")
            accepted: dict[str, str] = {}
            for name, body in _examples("valid"):
                key = f"demo-{uuid7()}"
                status, answer = await _post(http, base_url, secret, key, body)
                accepted[name] = answer.get("application_id", "?")
                print(
                    f"  {name:<28} → {status} {answer.get('status', answer.get('title'))}"
                    f"  id={accepted[name]}"
                )
                if name == _examples("valid")[0][0]:
                    again, replay = await _post(http, base_url, secret, key, body)
                    same = replay.get("application_id") == accepted[name]
                    print(f"  {'(same key, sent again)':<28} → {again} same application: {same}")

            _section("2. Bad envelopes are refused with every field error at once")
            for name, body in _examples("invalid")[:3]:
                status, answer = await _post(http, base_url, secret, f"demo-{uuid7()}", body)
                locs = ", ".join(e["loc"] for e in answer.get("errors", []))
                print(f"  {name:<28} → {status} {answer.get('title')}: {locs}")

            _section("3. An online portal publishes to gw.intake over AMQP")
            name, body = _examples("valid")[-1]
            key = f"demo-amqp-{uuid7()}"
            await _publish_intake(settings, key, body)
            app = await _wait_for(lambda: _accepted_app(gw, key))
            print(
                f"  {name:<28} → {app.status.value if app else 'not seen'}"
                f"  id={app.id if app else '-'}"
            )
            bad_key = f"demo-amqp-bad-{uuid7()}"
            await _publish_intake(settings, bad_key, b'{"matter": "newborn", "oops": true}')
            letters = await _wait_for(lambda: _letters_for(gw, bad_key))
            reason = letters[0].letter.reason if letters else "not parked"
            print(f"  {'garbage envelope':<28} → parked as dead letter: {reason[:90]}")
            if app:
                accepted[name + " (amqp)"] = app.id

            _section("4. Each application read back by its portal")
            for name, app_id in accepted.items():
                path = f"/v1/applications/{app_id}"
                headers = signed_headers(WINDOW, secret, "GET", path, b"")
                async with http.get(base_url + path, headers=headers) as resp:
                    view = await resp.json()
                print(f"  {name:<28} {view.get('matter', '?'):<12} {view.get('status')}")

            await _wait_for(lambda: _all_seen(seen, accepted.values()))
            _section("5. What the orchestrator receives on gw.accepted")
            print(
                f"  {len(set(seen) & set(accepted.values()))} of {len(accepted)} accepted "
                "applications delivered to gw.accepted (the internal push starts here)"
            )
    return 0


def _section(title: str) -> None:
    print(f"\n{title}")


async def _post(
    http: aiohttp.ClientSession, base_url: str, secret: str, key: str, body: bytes
) -> tuple[int, dict[str, Any]]:
    path = "/v1/applications"
    headers = signed_headers(WINDOW, secret, "POST", path, body, key)
    headers["Content-Type"] = "application/json"
    async with http.post(base_url + path, data=body, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


async def _publish_intake(settings: Settings, key: str, body: bytes) -> None:
    """Publish as a portal would, with a short-lived blocking connection off the loop."""
    params = pika.URLParameters(settings.amqp_url)

    def publish() -> None:
        with pika.BlockingConnection(params) as conn:
            channel = conn.channel()
            channel.confirm_delivery()
            channel.basic_publish(
                INTAKE,
                WINDOW,
                body,
                pika.BasicProperties(
                    message_id=key,
                    user_id=params.credentials.username,
                    content_type="application/json",
                    delivery_mode=2,
                ),
            )

    await asyncio.to_thread(publish)


async def _accepted_app(gw: Gateway, key: str) -> Any:
    assert gw.store is not None
    app = await gw.store.find_application(WINDOW, key)
    return app if app is not None and app.status.value == "accepted" else None


async def _letters_for(gw: Gateway, key: str) -> list[Any]:
    assert gw.store is not None
    return [d for d in await gw.store.list_dead_letters() if d.letter.message_id.endswith(key)]


async def _all_seen(seen: list[str], ids: Any) -> bool:
    return set(ids) <= set(seen)


async def _wait_for(probe: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await probe()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.1)
