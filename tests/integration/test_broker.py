"""The broker layer against the real RabbitMQ: recovery, confirms, delivery limit, topology."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pika
import pytest

from gateway.broker.client import BrokerClient
from gateway.broker.messages import Delivery, Message
from gateway.broker.topology import build_topology
from gateway.errors import BrokerTooOld, BrokerUnavailable, ConfigurationError
from gateway.runtime import Gateway
from gateway.settings import Settings
from tests.support.proxy import TcpProxy
from tests.support.rabbit import Rabbit, rabbitmqctl, with_port
from tests.support.waiting import eventually, true

pytestmark = pytest.mark.broker


def client(url: str, **kw: Any) -> BrokerClient:
    return BrokerClient(url, build_topology(), reconnect_max_seconds=0.5, **kw)


async def test_declares_every_queue_of_the_topology(rabbit: Rabbit) -> None:
    c = client(rabbit.url)
    await c.start()
    try:
        for queue in build_topology().queues:
            assert await asyncio.to_thread(rabbit.depth, queue.name) == 0  # exists
    finally:
        await c.close()


async def test_recovers_from_a_closed_connection_and_redeclares_the_topology(
    rabbit: Rabbit, amqp_vhost: tuple[str, str]
) -> None:
    vhost = amqp_vhost[0]
    if not vhost:
        pytest.skip("needs a vhost of its own (GATEWAY_TEST_AMQP_URL is set)")
    c = client(rabbit.url)
    got: list[bytes] = []

    async def handler(d: Delivery) -> None:
        got.append(d.body)
        d.ack()

    await c.start()
    await c.consume("gw.results", handler, prefetch=10)
    try:
        await asyncio.to_thread(lambda: rabbit._run(lambda ch: ch.queue_delete("gw.accepted")))
        await asyncio.to_thread(rabbitmqctl, "close_all_connections", "-p", vhost, "test cut")
        assert await eventually(lambda: true(c.reconnects >= 1 and c.connected))
        # topology back: the deleted queue exists again and takes a routed message
        await c.publish("gw.accepted", "newborn", Message(b"{}"), timeout=10)
        assert await asyncio.to_thread(rabbit.depth, "gw.accepted") == 1
        # the consumer is registered again
        await c.publish("gw.results", "hukou.newborn.hukou", Message(b"after-cut"), timeout=10)
        assert await eventually(lambda: true(got == [b"after-cut"]))
    finally:
        await c.close()


async def test_publishes_wait_out_an_outage_and_are_confirmed_after_it(
    rabbit: Rabbit, proxy: TcpProxy
) -> None:
    c = client(with_port(rabbit.url, proxy.port))
    await c.start()
    try:
        await proxy.refuse()
        await eventually(lambda: true(not c.connected))
        pending = [
            asyncio.create_task(
                c.publish("gw.accepted", "newborn", Message(f"m{i}".encode()), timeout=20)
            )
            for i in range(50)
        ]
        await asyncio.sleep(0.5)
        assert not any(t.done() for t in pending)  # held, not failed, not lost
        await proxy.restore()
        await asyncio.gather(*pending)
        bodies = sorted(m.body for m in await rabbit.aget_all("gw.accepted", wait=5, at_least=50))
        assert bodies == sorted(f"m{i}".encode() for i in range(50))
    finally:
        await c.close()


async def test_publish_fails_clearly_when_the_broker_stays_down(
    rabbit: Rabbit, proxy: TcpProxy
) -> None:
    c = client(with_port(rabbit.url, proxy.port))
    await c.start()
    try:
        await proxy.refuse()
        await eventually(lambda: true(not c.connected))
        with pytest.raises(BrokerUnavailable, match="not connected to RabbitMQ"):
            await c.publish("gw.accepted", "newborn", Message(b"x"), timeout=0.5)
    finally:
        await c.close()


async def test_start_says_what_to_do_when_nothing_answers(proxy: TcpProxy) -> None:
    await proxy.refuse()
    c = client(f"amqp://guest:guest@127.0.0.1:{proxy.port}/")
    with pytest.raises(BrokerUnavailable, match=r"docker compose -f deploy/compose\.yaml up -d"):
        await c.start(timeout=1)


async def test_a_message_that_keeps_failing_is_dead_lettered_after_the_delivery_limit(
    settings_for: Callable[..., Settings], rabbit: Rabbit
) -> None:
    settings = settings_for(broker={"delivery_limit": 2})
    async with Gateway(settings, roles=["deadletters"]) as gw:
        assert gw.broker is not None and gw.store is not None
        attempts: list[bool] = []

        async def poison(d: Delivery) -> None:
            attempts.append(d.redelivered)
            raise RuntimeError("this handler always fails")

        await gw.broker.consume("gw.results", poison, prefetch=1)
        await gw.publish(
            "gw.results",
            "hukou.newborn.hukou",
            Message(
                b'{"x": 1}', correlation_id="app-1", headers={"x-task-id": "t-1", "x-attempt": 1}
            ),
        )
        store = gw.store
        [letter] = await eventually(lambda: store.list_dead_letters())
    assert len(attempts) == 3  # delivery limit 2: delivered 3 times, then dead-lettered
    dl = letter.letter
    assert dl.error_kind == "delivery_limit"
    assert (dl.exchange, dl.routing_key) == ("gw.results", "hukou.newborn.hukou")
    assert (dl.system, dl.matter, dl.application_id) == ("hukou", "newborn", "app-1")
    assert dl.body == b'{"x": 1}'


async def test_rejected_without_requeue_is_dead_lettered_with_its_reason(
    gateway: Gateway, rabbit: Rabbit
) -> None:
    assert gateway.broker is not None and gateway.store is not None

    async def refuse(d: Delivery) -> None:
        d.reject(requeue=False)

    await gateway.broker.consume("gw.results", refuse, prefetch=1)
    await gateway.publish("gw.results", "cdc.newborn.vaccination", Message(b"{}"))
    store = gateway.store
    [letter] = await eventually(lambda: store.list_dead_letters())
    assert letter.letter.error_kind == "rejected"
    assert "rejected" in letter.letter.reason


async def test_a_queue_declared_with_other_arguments_stops_the_gateway_with_advice(
    rabbit: Rabbit,
) -> None:
    def classic(ch: Any) -> None:
        ch.queue_declare("gw.accepted", durable=True)  # classic, no delivery limit

    await asyncio.to_thread(rabbit._run, classic)
    c = client(rabbit.url)
    with pytest.raises(ConfigurationError, match=r"'gw\.accepted' exists with other arguments"):
        await c.start()
    await c.close()


async def test_user_id_is_validated_by_the_broker(rabbit: Rabbit) -> None:
    """Why intake can trust user_id: RabbitMQ refuses a user_id that is not the sender's."""
    with pytest.raises(pika.exceptions.ChannelClosedByBroker, match="user_id property"):
        await asyncio.to_thread(
            rabbit.publish, "gw.intake", "window", b"{}", user_id="someone-else"
        )


async def test_publishes_in_flight_when_the_connection_drops_are_resent(
    rabbit: Rabbit, proxy: TcpProxy
) -> None:
    c = client(with_port(rabbit.url, proxy.port))
    await c.start()
    try:
        pending = [
            asyncio.create_task(
                c.publish("gw.accepted", "newborn", Message(f"m{i}".encode()), timeout=30)
            )
            for i in range(3000)
        ]
        await asyncio.sleep(0.05)  # some confirmed, many on the wire
        await proxy.cut()
        await asyncio.gather(*pending)  # every caller gets its confirm in the end
        assert c.reconnects >= 1
        got = await rabbit.aget_all("gw.accepted", wait=10, at_least=3000)
        bodies = {m.body for m in got}
        assert bodies == {f"m{i}".encode() for i in range(3000)}  # none lost (dupes allowed)
    finally:
        await c.close()


async def test_a_broker_older_than_3_10_is_refused_over_a_real_connection(
    rabbit: Rabbit, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pika.connection

    original = pika.connection.Connection._on_connection_start

    def pretend_3_9(self: Any, method_frame: Any) -> None:
        method_frame.method.server_properties["version"] = b"3.9.29"
        original(self, method_frame)

    monkeypatch.setattr(pika.connection.Connection, "_on_connection_start", pretend_3_9)
    c = client(rabbit.url)
    with pytest.raises(BrokerTooOld, match=r"RabbitMQ 3\.9\.29; the gateway needs RabbitMQ 3\.10"):
        await c.start()
    await c.close()
