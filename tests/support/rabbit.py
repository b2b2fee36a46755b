"""Real RabbitMQ for tests: a private vhost per test session, and small blocking helpers.

The vhost keeps the tests away from whatever else uses the broker (the demo, a developer's
gateway) and is deleted at the end. Helpers run pika's BlockingConnection in a thread so
async tests never block their loop.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import pika
import pytest

from gateway.broker.topology import build_topology


def rabbitmqctl(*args: str) -> str:
    exe = shutil.which("rabbitmqctl")
    if exe is None:
        pytest.fail(
            "rabbitmqctl not found; the broker tests need a local RabbitMQ "
            "(or set GATEWAY_TEST_AMQP_URL to a vhost of your own)"
        )
    done = subprocess.run([exe, *args], capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        pytest.fail(f"rabbitmqctl {' '.join(args)} failed: {done.stderr or done.stdout}")
    return done.stdout


def create_vhost(base_url: str) -> tuple[str, str]:
    vhost = f"gw-test-{uuid.uuid4().hex[:8]}"
    user = pika.URLParameters(base_url).credentials.username
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
    parts = urlsplit(base_url)
    return vhost, urlunsplit(parts._replace(path="/" + quote(vhost, safe="")))


def with_port(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


@dataclass
class Got:
    body: bytes
    properties: Any
    routing_key: str

    def json(self) -> Any:
        return json.loads(self.body)


class Rabbit:
    """Blocking helpers over one vhost, each call on its own short connection."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.params = pika.URLParameters(url)

    def _run(self, fn: Any) -> Any:
        with pika.BlockingConnection(self.params) as conn:
            return fn(conn.channel())

    def reset(self) -> None:
        """Delete the gateway's queues (and test queues) so each test starts empty."""

        def go(ch: Any) -> None:
            for q in build_topology().queues:
                ch.queue_delete(q.name)

        self._run(go)

    def publish(self, exchange: str, routing_key: str, body: bytes, **props: Any) -> None:
        def go(ch: Any) -> None:
            ch.confirm_delivery()
            ch.basic_publish(
                exchange, routing_key, body, pika.BasicProperties(delivery_mode=2, **props)
            )

        self._run(go)

    def bind_test_queue(self, exchange: str, routing_key: str) -> str:
        name = f"test.{uuid.uuid4().hex[:8]}"

        def go(ch: Any) -> None:
            ch.queue_declare(name, durable=False, auto_delete=False)
            ch.queue_bind(name, exchange, routing_key)

        self._run(go)
        return name

    def get_all(self, queue: str, wait: float = 0.0, at_least: int = 0) -> list[Got]:
        """Take (and ack) what is in ``queue``, waiting up to ``wait`` s for ``at_least``."""
        got: list[Got] = []
        deadline = time.monotonic() + wait

        def go(ch: Any) -> None:
            while True:
                method, props, body = ch.basic_get(queue, auto_ack=True)
                if method is not None:
                    got.append(Got(body, props, method.routing_key))
                    continue
                if len(got) >= at_least or time.monotonic() > deadline:
                    return
                time.sleep(0.05)

        self._run(go)
        return got

    def depth(self, queue: str) -> int:
        return int(self._run(lambda ch: ch.queue_declare(queue, passive=True).method.message_count))

    async def aget_all(self, queue: str, wait: float = 0.0, at_least: int = 0) -> list[Got]:
        return await asyncio.to_thread(self.get_all, queue, wait, at_least)

    async def apublish(self, exchange: str, routing_key: str, body: bytes, **props: Any) -> None:
        await asyncio.to_thread(self.publish, exchange, routing_key, body, **props)
